//! index_select and gather along a dim on CUDA (kernels: select.cu), and
//! their backward, index_add and scatter-add; scatter-add is also the op
//! `scatter_add` itself and the backward of max. The forward copies elements
//! of any dtype (by element size) from any view of the source; the adds
//! (f32, f64) add each element's contributions in the CPU's order, so they
//! are deterministic. The callers check the indices on the host first.

use super::device::{cuda_err, CudaDev};
use super::launch::{config, float_kernel, long, strided, DevStrided};
use super::layout::copy_layout;
use super::memory::{cuda_of, elems, upload_i64, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Shape, Tensor};
use cudarc::driver::{CudaView, DeviceRepr, PushKernelArg};
use moe_kernels::cpu::index::{group_by_index, Dims3};
use moe_kernels::cuda::launch::{elementwise as ew, Launch1d};
use moe_kernels::cuda::SELECT;
use std::sync::Arc;

/// `outer · k · inner`, or an error naming `op` when it overflows.
fn numel(op: &'static str, d: Dims3, k: usize) -> Result<usize> {
    d.with_dim(k).numel(op).map_err(crate::tensor::kernel_err(op))
}

/// Kernel arguments shared by the forward kernels: n, k, dim, inner, x's view.
type PickArgs = (i64, i64, i64, i64, DevStrided);

fn launch_pick<T: DeviceRepr>(
    dev: &Arc<CudaDev>,
    name: &str,
    (l, args): (Launch1d, PickArgs),
    x: &CudaStorage,
    idx: &CudaView<'_, i64>,
    y: &mut CudaStorage,
    op: &'static str,
) -> Result<()> {
    let f = dev.function(&SELECT, name)?;
    let (n, k, dim, inner, sx) = args;
    let xv = x.view::<T>(0..x.len(), op)?;
    let mut yv = y.view_mut::<T>(op)?;
    let mut b = dev.stream.launch_builder(&f);
    b.arg(&n)
        .arg(&k)
        .arg(&dim)
        .arg(&inner)
        .arg(&sx)
        .arg(&xv)
        .arg(idx)
        .arg(&mut yv);
    // SAFETY: index_select_bN / gather_bN(long long n, long long k,
    // long long dim, long long inner, Strided sx, const T* x,
    // const long long* idx, T* y): the host checked every index against dim,
    // so each read lies inside x's view; y holds n elements.
    unsafe { b.launch(config(l)) }.map_err(cuda_err(op))?;
    Ok(())
}

/// `kernel` ("index_select" or "gather") of `x` seen as `d` = `[outer, dim,
/// inner]` at the device indices `index` (`[k]` for index_select,
/// `[outer, k, inner]` for gather): a row-major `[outer, k, inner]` of x's dtype.
fn pick(kernel: &str, x: &Tensor, d: Dims3, index: &Tensor, k: usize, op: &'static str) -> Result<Storage> {
    let index = index.contiguous()?;
    let n = numel(op, d, k)?;
    let (xs, is) = (x.read_storage(), index.read_storage());
    let (xc, ic) = (cuda_of(&xs, op)?, cuda_of(&is, op)?);
    let dev = xc.dev().clone();
    let mut y = CudaStorage::alloc(&dev, x.dtype(), n, op)?;
    if let Some(l) = ew(n) {
        let args = (
            long(n, op)?,
            long(k, op)?,
            long(d.dim, op)?,
            long(d.inner, op)?,
            strided(x.layout(), op)?,
        );
        let iv = elems::<i64>(ic, &index, op)?;
        let name = |bytes: usize| format!("{kernel}_b{bytes}");
        match x.dtype().size_in_bytes() {
            1 => launch_pick::<u8>(&dev, &name(1), (l, args), xc, &iv, &mut y, op)?,
            2 => launch_pick::<u16>(&dev, &name(2), (l, args), xc, &iv, &mut y, op)?,
            4 => launch_pick::<u32>(&dev, &name(4), (l, args), xc, &iv, &mut y, op)?,
            _ => launch_pick::<u64>(&dev, &name(8), (l, args), xc, &iv, &mut y, op)?,
        }
    }
    Ok(Storage::Cuda(y))
}

/// `x.index_select` along the dim that `d` describes, for a device i64
/// `index` of `k` checked entries: row-major `[outer, k, inner]`, any dtype.
pub(crate) fn index_select(x: &Tensor, d: Dims3, index: &Tensor) -> Result<Storage> {
    pick("index_select", x, d, index, index.elem_count(), "index_select")
}

/// torch.gather of `x` (any view, seen as `d`) at the device i64 `index`
/// `[outer, k, inner]` with checked entries: row-major, `index`'s shape.
pub(crate) fn gather(x: &Tensor, d: Dims3, index: &Tensor, k: usize) -> Result<Storage> {
    pick("gather", x, d, index, k, "gather")
}

/// The gradient of index_select: `dx [outer, dim, inner]` (`d`) with
/// `dx[o, index[j], i] = Σ_j g[o, j, i]`, `g` the `[outer, k, inner]`
/// output gradient and `index` the host copy of the (checked) indices.
pub(crate) fn index_add(g: &Tensor, index: &[i64], d: Dims3) -> Result<Storage> {
    float_kernel!(g.dtype(), "index_select_backward", index_add_typed(g, index, d))
}

fn as_i64(v: Vec<usize>) -> Vec<i64> {
    v.into_iter().map(|x| x as i64).collect()
}

fn index_add_typed<T: DeviceRepr>(suffix: &str, g: &Tensor, index: &[i64], d: Dims3) -> Result<Storage> {
    const OP: &str = "index_select_backward";
    let k = index.len();
    let n = numel(OP, d, d.dim)?;
    // The positions reading each row, grouped on the host in the CPU's order.
    let (starts, order) = group_by_index(OP, index, d.dim).map_err(crate::tensor::kernel_err(OP))?;
    let g = g.contiguous()?;
    let guard = g.read_storage();
    let gc = cuda_of(&guard, OP)?;
    let dev = gc.dev().clone();
    let (starts, order) = (upload_i64(&dev, &as_i64(starts))?, upload_i64(&dev, &as_i64(order))?);
    let mut dx = CudaStorage::alloc(&dev, g.dtype(), n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&SELECT, &format!("index_add_{suffix}"))?;
        let (nn, kk, dd, ii) = (long(n, OP)?, long(k, OP)?, long(d.dim, OP)?, long(d.inner, OP)?);
        let (sv, ov) = (
            starts.view::<i64>(0..starts.len(), OP)?,
            order.view::<i64>(0..order.len(), OP)?,
        );
        let gv = elems::<T>(gc, &g, OP)?;
        let mut dv = dx.view_mut::<T>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn)
            .arg(&kk)
            .arg(&dd)
            .arg(&ii)
            .arg(&sv)
            .arg(&ov)
            .arg(&gv)
            .arg(&mut dv);
        // SAFETY: index_add_T(long long n, long long k, long long dim,
        // long long inner, const long long* starts, const long long* order,
        // const T* g, T* dx): starts holds dim + 1 offsets into order (k
        // positions < k), g holds outer·k·inner elements, dx n.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(dx))
}

/// The gradient of gather: a zero `dx [outer, dim, inner]` (`d`) with
/// `g [outer, k, inner]` added at the (checked, host) `index` of the same
/// shape, each element's contributions in ascending `j`.
pub(crate) fn gather_backward(g: &Tensor, index: &[i64], d: Dims3, k: usize) -> Result<Storage> {
    const OP: &str = "gather_backward";
    let idx = {
        let guard = g.read_storage();
        upload_i64(cuda_of(&guard, OP)?.dev(), index)?
    };
    let idx = Tensor::from_storage(Storage::Cuda(idx), Shape::from(vec![index.len()]));
    scatter_add(None, d, &idx, g, k, OP)
}

/// torch.scatter_add along the dim that `d` (`[outer, dim, inner]`)
/// describes: `base` (a row-major copy of it; zeros of `src`'s dtype when
/// `None`) with `src [outer, k, inner]` (any view) added at the device i64
/// `index` (`outer · k · inner` checked entries in `0..dim`, row-major):
/// `out[o, index[o, j, i], i] += src[o, j, i]`, j ascending, as the CPU
/// adds. f32, f64, i64 and u8 (wrapping, as the CPU's). Also the backward
/// of gather (zeros) and of max (zeros, k = 1, the positions of the maxima).
pub(crate) fn scatter_add(
    base: Option<&Tensor>,
    d: Dims3,
    index: &Tensor,
    src: &Tensor,
    k: usize,
    op: &'static str,
) -> Result<Storage> {
    match src.dtype() {
        DType::F32 => scatter_add_typed::<f32>("f32", base, d, index, src, k, op),
        DType::F64 => scatter_add_typed::<f64>("f64", base, d, index, src, k, op),
        DType::I64 => scatter_add_typed::<i64>("i64", base, d, index, src, k, op),
        DType::U8 => scatter_add_typed::<u8>("u8", base, d, index, src, k, op),
        dtype => Err(Error::UnsupportedDType { op, dtype }),
    }
}

fn scatter_add_typed<T: DeviceRepr>(
    suffix: &str,
    base: Option<&Tensor>,
    d: Dims3,
    index: &Tensor,
    src: &Tensor,
    k: usize,
    op: &'static str,
) -> Result<Storage> {
    let n_src = numel(op, d, k)?;
    let n = numel(op, d, d.dim)?;
    let base_ok = base.is_none_or(|b| b.elem_count() == n && b.dtype() == src.dtype());
    if index.elem_count() != n_src || src.elem_count() != n_src || !base_ok {
        return Err(Error::Autograd {
            msg: format!(
                "{op}: internal: {} indices and a {:?} source for {d:?} with k = {k}",
                index.elem_count(),
                src.shape()
            ),
        });
    }
    let (index, src) = (index.contiguous()?, src.contiguous()?);
    let (is, ss) = (index.read_storage(), src.read_storage());
    let (ic, sc) = (cuda_of(&is, op)?, cuda_of(&ss, op)?);
    let dev = sc.dev().clone();
    let mut out = match base {
        Some(b) => {
            let guard = b.read_storage();
            copy_layout(cuda_of(&guard, op)?, b.layout())?
        }
        None => {
            let mut z = CudaStorage::alloc(&dev, src.dtype(), n, op)?;
            z.zero(op)?;
            z
        }
    };
    let columns = d.outer * d.inner;
    if let (Some(l), true) = (ew(columns), n_src > 0) {
        let f = dev.function(&SELECT, &format!("scatter_add_{suffix}"))?;
        let (nc, kk, dd, ii) = (long(columns, op)?, long(k, op)?, long(d.dim, op)?, long(d.inner, op)?);
        let iv = elems::<i64>(ic, &index, op)?;
        let sv = elems::<T>(sc, &src, op)?;
        let mut ov = out.view_mut::<T>(op)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nc).arg(&kk).arg(&dd).arg(&ii).arg(&iv).arg(&sv).arg(&mut ov);
        // SAFETY: scatter_add_T(long long n, long long k, long long dim,
        // long long inner, const long long* idx, const T* g, T* dx): one
        // thread per (outer, inner) column; idx and g hold outer·k·inner
        // elements (checked above), every index lies in 0..dim (checked by
        // the caller), dx holds outer·dim·inner.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(op))?;
    }
    Ok(Storage::Cuda(out))
}
