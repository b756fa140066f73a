//! Layout copies and selection on CUDA, for every dtype (kernels:
//! strided.cu): `contiguous`, strided scatter (narrow backward, `cat`),
//! `where_cond`, and dtype casts.

use super::device::{cuda_err, CudaDev};
use super::launch::{config, long, strided, DevStrided};
use super::memory::{cuda_of, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Layout, Result, Tensor};
use cudarc::driver::PushKernelArg;
use moe_kernels::cuda::launch::{elementwise as ew, Launch1d};
use moe_kernels::cuda::STRIDED;
use std::sync::Arc;

#[allow(clippy::too_many_arguments)]
fn copy_kernel<T>(
    dev: &Arc<CudaDev>,
    name: &str,
    l: Launch1d,
    n: i64,
    sx: DevStrided,
    x: &CudaStorage,
    out: &mut CudaStorage,
) -> Result<()> {
    const OP: &str = "contiguous";
    let f = dev.function(&STRIDED, name)?;
    let xv = x.view::<T>(0..x.len(), OP)?;
    let mut yv = out.view_mut::<T>(OP)?;
    let mut b = dev.stream.launch_builder(&f);
    b.arg(&n).arg(&sx).arg(&xv).arg(&mut yv);
    // SAFETY: copy_strided_bN(long long n, Strided s, const T* x, T* y):
    // the view's offsets stay inside x (the layout lies within its storage)
    // and y holds n elements.
    unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    Ok(())
}

/// A fresh row-major copy of `t`'s logical elements (always a copy, even
/// for a contiguous `t`), any dtype.
pub(crate) fn contiguous(t: &Tensor) -> Result<Storage> {
    let guard = t.read_storage();
    Ok(Storage::Cuda(copy_layout(cuda_of(&guard, "contiguous")?, t.layout())?))
}

/// The elements of `x` seen through `layout`, copied row-major.
pub(crate) fn copy_layout(x: &CudaStorage, layout: &Layout) -> Result<CudaStorage> {
    const OP: &str = "contiguous";
    let dev = x.dev().clone();
    let n = layout.shape().elem_count();
    let mut out = CudaStorage::alloc(&dev, x.dtype(), n, OP)?;
    if let Some(l) = ew(n) {
        let (sx, nn) = (strided(layout, OP)?, long(n, OP)?);
        match x.dtype().size_in_bytes() {
            1 => copy_kernel::<u8>(&dev, "copy_strided_b1", l, nn, sx, x, &mut out)?,
            2 => copy_kernel::<u16>(&dev, "copy_strided_b2", l, nn, sx, x, &mut out)?,
            4 => copy_kernel::<u32>(&dev, "copy_strided_b4", l, nn, sx, x, &mut out)?,
            _ => copy_kernel::<u64>(&dev, "copy_strided_b8", l, nn, sx, x, &mut out)?,
        }
    }
    Ok(out)
}

/// Writes the row-major `src` into the view `region` of `dst` (same dtype).
fn scatter_into(src: &CudaStorage, dst: &mut CudaStorage, region: &Layout, op: &'static str) -> Result<()> {
    let n = region.shape().elem_count();
    let Some(l) = ew(n) else { return Ok(()) };
    let dev = dst.dev().clone();
    let (nn, sd) = (long(n, op)?, strided(region, op)?);
    fn go<T>(
        dev: &Arc<CudaDev>,
        name: &str,
        (l, nn, sd): (Launch1d, i64, DevStrided),
        src: &CudaStorage,
        dst: &mut CudaStorage,
        op: &'static str,
    ) -> Result<()> {
        let f = dev.function(&STRIDED, name)?;
        let (xv, mut yv) = (src.view::<T>(0..src.len(), op)?, dst.view_mut::<T>(op)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&sd).arg(&xv).arg(&mut yv);
        // SAFETY: scatter_strided_bN(long long n, Strided s, const T* x, T* y):
        // x holds n elements (a row-major copy of the region's shape), the
        // region lies inside y.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(op))?;
        Ok(())
    }
    let args = (l, nn, sd);
    match dst.dtype().size_in_bytes() {
        1 => go::<u8>(&dev, "scatter_strided_b1", args, src, dst, op),
        2 => go::<u16>(&dev, "scatter_strided_b2", args, src, dst, op),
        4 => go::<u32>(&dev, "scatter_strided_b4", args, src, dst, op),
        _ => go::<u64>(&dev, "scatter_strided_b8", args, src, dst, op),
    }
}

/// A zeroed buffer of `shape` with `g`'s elements written into the view
/// `region` of it (the backward of `narrow`), any dtype.
pub(crate) fn pad_narrowed(g: &Tensor, shape: &crate::Shape, region: &Layout) -> Result<Storage> {
    const OP: &str = "narrow_backward";
    let src = {
        let guard = g.read_storage();
        copy_layout(cuda_of(&guard, OP)?, g.layout())?
    };
    let dev = src.dev().clone();
    let mut out = CudaStorage::alloc(&dev, g.dtype(), shape.elem_count(), OP)?;
    out.zero(OP)?;
    scatter_into(&src, &mut out, region, OP)?;
    Ok(Storage::Cuda(out))
}

/// `tensors` (same dtype, device and dims but `d`'s) joined along dim `d`
/// into `shape`: each part copied row-major, then written into its slice.
pub(crate) fn cat(tensors: &[&Tensor], d: usize, shape: &crate::Shape) -> Result<Storage> {
    const OP: &str = "cat";
    let first = tensors.first().ok_or_else(|| super::memory::internal(OP))?;
    let dev = {
        let guard = first.read_storage();
        cuda_of(&guard, OP)?.dev().clone()
    };
    let mut out = CudaStorage::alloc(&dev, first.dtype(), shape.elem_count(), OP)?;
    let mut start = 0;
    for t in tensors {
        let len = t.dims()[d];
        let part = {
            let guard = t.read_storage();
            copy_layout(cuda_of(&guard, OP)?, t.layout())?
        };
        let region = Layout::contiguous(shape.clone()).narrow(d, start, len)?;
        scatter_into(&part, &mut out, &region, OP)?;
        start += len;
    }
    Ok(Storage::Cuda(out))
}

#[allow(clippy::too_many_arguments)]
fn where_kernel<T>(
    name: &str,
    n: usize,
    (mask, lm): (&CudaStorage, &Layout),
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
    out: &mut CudaStorage,
) -> Result<()> {
    const OP: &str = "where_cond";
    let Some(l) = ew(n) else { return Ok(()) };
    let dev = out.dev().clone();
    let f = dev.function(&STRIDED, name)?;
    let (nn, sm, sa, sb) = (long(n, OP)?, strided(lm, OP)?, strided(la, OP)?, strided(lb, OP)?);
    let mv = mask.view::<u8>(0..mask.len(), OP)?;
    let (av, bv) = (a.view::<T>(0..a.len(), OP)?, b.view::<T>(0..b.len(), OP)?);
    let mut yv = out.view_mut::<T>(OP)?;
    let mut bld = dev.stream.launch_builder(&f);
    bld.arg(&nn)
        .arg(&sm)
        .arg(&mv)
        .arg(&sa)
        .arg(&av)
        .arg(&sb)
        .arg(&bv)
        .arg(&mut yv);
    // SAFETY: where_bN(long long n, Strided sm, const u8* m, Strided sa,
    // const T* a, Strided sb, const T* b, T* y): the views lie inside their
    // buffers, y holds n elements.
    unsafe { bld.launch(config(l)) }.map_err(cuda_err(OP))?;
    Ok(())
}

/// `mask ? on_true : on_false` elementwise (u8 mask, any equal dtypes), all
/// three layouts already broadcast to the output shape.
pub(crate) fn where_cond(
    mask: (&Tensor, &Layout),
    on_true: (&Tensor, &Layout),
    on_false: (&Tensor, &Layout),
) -> Result<Storage> {
    const OP: &str = "where_cond";
    let n = mask.1.shape().elem_count();
    let (gm, ga, gb) = (
        mask.0.read_storage(),
        on_true.0.read_storage(),
        on_false.0.read_storage(),
    );
    let (mc, ac, bc) = (cuda_of(&gm, OP)?, cuda_of(&ga, OP)?, cuda_of(&gb, OP)?);
    let dev = ac.dev().clone();
    let dtype = ac.dtype();
    let mut out = CudaStorage::alloc(&dev, dtype, n, OP)?;
    let (m, a, b) = ((mc, mask.1), (ac, on_true.1), (bc, on_false.1));
    match dtype.size_in_bytes() {
        1 => where_kernel::<u8>("where_b1", n, m, a, b, &mut out)?,
        2 => where_kernel::<u16>("where_b2", n, m, a, b, &mut out)?,
        4 => where_kernel::<u32>("where_b4", n, m, a, b, &mut out)?,
        _ => where_kernel::<u64>("where_b8", n, m, a, b, &mut out)?,
    }
    Ok(Storage::Cuda(out))
}

fn cast_kernel<S, D>(name: &str, t: &Tensor, to: DType) -> Result<Storage> {
    const OP: &str = "to_dtype";
    let t = t.contiguous()?;
    let (n, off) = (t.elem_count(), t.layout().offset());
    let guard = t.read_storage();
    let x = cuda_of(&guard, OP)?;
    let dev = x.dev().clone();
    let mut out = CudaStorage::alloc(&dev, to, n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&STRIDED, name)?;
        let nn = long(n, OP)?;
        let xv = x.view::<S>(off..off + n, OP)?;
        let mut yv = out.view_mut::<D>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&xv).arg(&mut yv);
        // SAFETY: cast_*(long long n, const S* x, D* y), both n elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// `t` converted to `dtype`: f32 ↔ bf16 (round to nearest even), f32 ↔ f64, and i64 or
/// u8 → f32 or f64; other pairs are `UnsupportedDType` for now.
pub(crate) fn to_dtype(t: &Tensor, dtype: DType) -> Result<Storage> {
    match (t.dtype(), dtype) {
        (DType::F32, DType::BF16) => cast_kernel::<f32, u16>("cast_f32_bf16", t, dtype),
        (DType::BF16, DType::F32) => cast_kernel::<u16, f32>("cast_bf16_f32", t, dtype),
        (DType::F64, DType::F32) => cast_kernel::<f64, f32>("cast_f64_f32", t, dtype),
        (DType::F32, DType::F64) => cast_kernel::<f32, f64>("cast_f32_f64", t, dtype),
        (DType::I64, DType::F32) => cast_kernel::<i64, f32>("cast_i64_f32", t, dtype),
        (DType::U8, DType::F32) => cast_kernel::<u8, f32>("cast_u8_f32", t, dtype),
        (DType::I64, DType::F64) => cast_kernel::<i64, f64>("cast_i64_f64", t, dtype),
        (DType::U8, DType::F64) => cast_kernel::<u8, f64>("cast_u8_f64", t, dtype),
        (_, to) => Err(Error::UnsupportedDType {
            op: "to_dtype on CUDA (f32<->bf16, f32<->f64, i64 or u8 -> f32 or f64 so far)",
            dtype: to,
        }),
    }
}
