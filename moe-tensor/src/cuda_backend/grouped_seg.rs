//! Grouped matmul over segments whose offsets live on the device (kernels:
//! grouped_seg.cu): the expert GEMMs of a routing plan that never came back
//! to the host. Operands are read in place through their strides; f32
//! and f64 on SIMT kernels, and f32 under `MatmulPrecision::Bf16` on bf16
//! tensor cores (sm_80+; SIMT kernels with rounded operands before that).

use super::device::{cuda_err, CudaDev};
use super::launch::{float_kernel, int, long};
use super::memory::{cuda_of, elems, CudaStorage};
use crate::precision::{matmul_precision, MatmulPrecision};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use moe_kernels::cuda::launch::{grouped_seg_fwd, grouped_seg_wgrad, Launch3d, SEG_TC_THREADS, SEG_THREADS};
use moe_kernels::cuda::GROUPED_SEG;

const OP: &str = "grouped_matmul";
const WOP: &str = "grouped_matmul_backward";

fn config3(l: Launch3d) -> LaunchConfig {
    LaunchConfig {
        grid_dim: l.grid,
        block_dim: (l.block, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn too_large(op: &'static str, dims: &[usize]) -> Error {
    Error::InvalidShape {
        op,
        msg: format!("grouped matmul of {dims:?} exceeds the kernel's grid"),
    }
}

/// 1 when f32 operands are to be rounded to bf16 (the thread's precision).
fn round_bf16(dtype: DType) -> i32 {
    i32::from(dtype == DType::F32 && matmul_precision() == MatmulPrecision::Bf16)
}

/// Whether the tensor-core kernels run: f32 operands rounded to bf16 on a
/// device with sm_80's bf16 mma.
fn uses_tensor_cores(dtype: DType, precision: MatmulPrecision, sm_major: i32) -> bool {
    dtype == DType::F32 && precision == MatmulPrecision::Bf16 && sm_major >= 8
}

/// The kernel (`{stem}_{suffix}` or the tensor-core `tc` one) and its block.
fn kernel_of(dev: &CudaDev, stem: &str, suffix: &str, dtype: DType, op: &'static str) -> Result<(String, u32, bool)> {
    let (major, _) = dev.ctx.compute_capability().map_err(cuda_err(op))?;
    Ok(if uses_tensor_cores(dtype, matmul_precision(), major) {
        (format!("grouped_seg_tc_{stem}"), SEG_TC_THREADS, true)
    } else {
        (format!("grouped_seg_{stem}_{suffix}"), SEG_THREADS, false)
    })
}

/// `[rows, cols]` strides of a rank-2 tensor (or of dims 1, 2 of rank 3).
fn strides2(t: &Tensor, first: usize, op: &'static str) -> Result<(i64, i64)> {
    let s = t.layout().strides();
    Ok((long(s[first], op)?, long(s[first + 1], op)?))
}

/// `y [M, F]`, `y[seg e] = x[seg e] · w[e]` for `x [M, D]`, `w [E, D, F]`
/// (any layouts, one float dtype) and device `offsets [E + 1]`.
pub(crate) fn grouped_matmul_offsets(x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Storage> {
    let offsets = &offsets.contiguous()?;
    float_kernel!(x.dtype(), OP, forward(x, w, offsets))
}

fn forward<T: DeviceRepr>(suffix: &str, x: &Tensor, w: &Tensor, offsets: &Tensor) -> Result<Storage> {
    let (m, d, f, e) = (x.dims()[0], x.dims()[1], w.dims()[2], w.dims()[0]);
    let (xs, ws, os) = (x.read_storage(), w.read_storage(), offsets.read_storage());
    let (xc, wc, oc) = (cuda_of(&xs, OP)?, cuda_of(&ws, OP)?, cuda_of(&os, OP)?);
    let dev = xc.dev().clone();
    let mut y = CudaStorage::alloc(&dev, x.dtype(), m * f, OP)?;
    // Rows in no segment (offsets[E] < M) read as zero, as on the CPU.
    y.zero(OP)?;
    if m == 0 || f == 0 {
        return Ok(Storage::Cuda(y));
    }
    let mut launch = grouped_seg_fwd(m, f, e).ok_or_else(|| too_large(OP, &[m, d, f, e]))?;
    let (name, block, tc) = kernel_of(&dev, "fwd", suffix, x.dtype(), OP)?;
    launch.block = block;
    let func = dev.function(&GROUPED_SEG, &name)?;
    let (ars, acs) = strides2(x, 0, OP)?;
    let ws3 = w.layout().strides();
    let bes = long(ws3[0], OP)?;
    let (brs, bcs) = strides2(w, 1, OP)?;
    let (mm, nn, kk, ee) = (long(m, OP)?, long(f, OP)?, long(d, OP)?, int(e, OP, "experts")?);
    let round = round_bf16(x.dtype());
    let xv = xc.view::<T>(x.layout().offset()..xc.len(), OP)?;
    let wv = wc.view::<T>(w.layout().offset()..wc.len(), OP)?;
    let ov = elems::<i64>(oc, offsets, OP)?;
    let mut yv = y.view_mut::<T>(OP)?;
    let mut b = dev.stream.launch_builder(&func);
    b.arg(&mm).arg(&nn).arg(&kk).arg(&ee).arg(&ov);
    b.arg(&xv).arg(&ars).arg(&acs).arg(&wv).arg(&bes).arg(&brs).arg(&bcs);
    b.arg(&mut yv);
    if !tc {
        b.arg(&round);
    }
    // SAFETY: grouped_seg_fwd_*(long long m_rows, n_cols, k_dim, int E,
    // const long long* offsets, const T* a, long long ars, acs, const T* b,
    // long long bes, brs, bcs, T* c, int round_bf16) and grouped_seg_tc_fwd
    // (the same for f32, without round_bf16), the block the kernel's
    // (SEG_THREADS or SEG_TC_THREADS): the kernel clamps the
    // offsets into 0..=m_rows, so it reads x's view (rows < M, cols < D from
    // its offset and strides) and w's view (E × D × F) only inside their
    // storages, and writes rows < M of the row-major [M, F] output.
    unsafe { b.launch(config3(launch)) }.map_err(cuda_err(OP))?;
    Ok(Storage::Cuda(y))
}

/// `[E, P, Q]`, `out[e] = a[seg e]ᵀ · b[seg e]` for `a [M, P]`, `b [M, Q]`
/// and device `offsets [E + 1]`; zero for an empty segment.
pub(crate) fn grouped_weight_grad_offsets(a: &Tensor, b: &Tensor, offsets: &Tensor) -> Result<Storage> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op: WOP,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    let offsets = &offsets.contiguous()?;
    float_kernel!(a.dtype(), WOP, weight_grad(a, b, offsets))
}

fn weight_grad<T: DeviceRepr>(suffix: &str, a: &Tensor, b: &Tensor, offsets: &Tensor) -> Result<Storage> {
    let (m, p, q) = (a.dims()[0], a.dims()[1], b.dims()[1]);
    let e = offsets.elem_count().saturating_sub(1);
    let (as_, bs, os) = (a.read_storage(), b.read_storage(), offsets.read_storage());
    let (ac, bc, oc) = (cuda_of(&as_, WOP)?, cuda_of(&bs, WOP)?, cuda_of(&os, WOP)?);
    let dev = ac.dev().clone();
    let mut out = CudaStorage::alloc(&dev, a.dtype(), e * p * q, WOP)?;
    let Some(mut launch) = grouped_seg_wgrad(p, q, e) else {
        if e * p * q == 0 {
            return Ok(Storage::Cuda(out));
        }
        return Err(too_large(WOP, &[m, p, q, e]));
    };
    let (name, block, tc) = kernel_of(&dev, "wgrad", suffix, a.dtype(), WOP)?;
    launch.block = block;
    let func = dev.function(&GROUPED_SEG, &name)?;
    let ((ars, acs), (brs, bcs)) = (strides2(a, 0, WOP)?, strides2(b, 0, WOP)?);
    let (mm, pp, qq) = (long(m, WOP)?, long(p, WOP)?, long(q, WOP)?);
    let round = round_bf16(a.dtype());
    let av = ac.view::<T>(a.layout().offset()..ac.len(), WOP)?;
    let bv = bc.view::<T>(b.layout().offset()..bc.len(), WOP)?;
    let ov = elems::<i64>(oc, offsets, WOP)?;
    let mut outv = out.view_mut::<T>(WOP)?;
    let mut builder = dev.stream.launch_builder(&func);
    builder.arg(&mm).arg(&pp).arg(&qq).arg(&ov);
    builder.arg(&av).arg(&ars).arg(&acs).arg(&bv).arg(&brs).arg(&bcs);
    builder.arg(&mut outv);
    if !tc {
        builder.arg(&round);
    }
    // SAFETY: grouped_seg_wgrad_*(long long m_rows, d_dim, f_dim, const long
    // long* offsets, const T* a, long long ars, acs, const T* b, long long
    // brs, bcs, T* c, int round_bf16) and grouped_seg_tc_wgrad (f32, without
    // round_bf16), with the kernel's block: offsets clamped into 0..=m_rows, so a
    // and b are read at rows < M inside their views; c is the row-major
    // [E, P, Q] output, every element written (zero for an empty segment).
    unsafe { builder.launch(config3(launch)) }.map_err(cuda_err(WOP))?;
    Ok(Storage::Cuda(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_cores_only_for_f32_under_bf16_precision_on_sm80() {
        let (bf16, highest) = (MatmulPrecision::Bf16, MatmulPrecision::Highest);
        assert!(uses_tensor_cores(DType::F32, bf16, 8));
        assert!(uses_tensor_cores(DType::F32, bf16, 9));
        assert!(!uses_tensor_cores(DType::F64, bf16, 9), "f64 keeps SIMT");
        assert!(!uses_tensor_cores(DType::F32, highest, 9), "full f32 keeps SIMT");
        assert!(!uses_tensor_cores(DType::F32, bf16, 7), "no bf16 mma before sm_80");
    }
}
