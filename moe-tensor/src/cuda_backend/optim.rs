//! The optimiser step on CUDA (kernels: optim.cu): AdamW's in-place update
//! and the sum of squares of many tensors for global-norm clipping. The
//! checks (devices, shapes, dtypes, contiguity, no shared storage) are made
//! by the callers in `crate::optim`.

use super::device::{cuda_err, CudaDev};
use super::launch::{config, float_kernel, long};
use super::memory::{cuda_of, elems, internal, CudaStorage};
use crate::optim::AdamWScalars;
use crate::storage::Storage;
use crate::{DType, Result, Tensor};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use moe_kernels::cuda::{launch, OPTIM};
use std::sync::{Arc, RwLockWriteGuard};

/// The device storage of a tensor written in place.
fn cuda_mut<'a>(g: &'a mut RwLockWriteGuard<'_, Storage>, op: &'static str) -> Result<&'a mut CudaStorage> {
    match &mut **g {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(internal(op)),
    }
}

/// The element range of a contiguous tensor in its storage.
fn range(t: &Tensor, op: &'static str) -> Result<std::ops::Range<usize>> {
    t.layout().contiguous_range().ok_or_else(|| internal(op))
}

/// One AdamW update of contiguous f32 `param`, `exp_avg` and `exp_avg_sq`
/// from contiguous f32 `grad` (one shape, one device, four storages); no
/// host read, nothing waits.
pub(crate) fn adamw_update(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    k: &AdamWScalars,
) -> Result<()> {
    const OP: &str = "adamw_update";
    let n = param.elem_count();
    let Some(l) = launch::elementwise(n) else {
        return Ok(());
    };
    let (rp, rm, rv) = (range(param, OP)?, range(exp_avg, OP)?, range(exp_avg_sq, OP)?);
    let gs = grad.read_storage();
    let gc = cuda_of(&gs, OP)?;
    let (mut ps, mut ms, mut vs) = (
        param.write_storage(),
        exp_avg.write_storage(),
        exp_avg_sq.write_storage(),
    );
    let (pc, mc, vc) = (cuda_mut(&mut ps, OP)?, cuda_mut(&mut ms, OP)?, cuda_mut(&mut vs, OP)?);
    let dev = gc.dev().clone();
    let f = dev.function(&OPTIM, "adamw_f32")?;
    let nn = long(n, OP)?;
    let gv = elems::<f32>(gc, grad, OP)?;
    let mut pv = pc.view_mut::<f32>(OP)?;
    let mut pv = pv.slice_mut(rp);
    let mut mv = mc.view_mut::<f32>(OP)?;
    let mut mv = mv.slice_mut(rm);
    let mut vv = vc.view_mut::<f32>(OP)?;
    let mut vv = vv.slice_mut(rv);
    let mut b = dev.stream.launch_builder(&f);
    b.arg(&nn)
        .arg(&k.decay)
        .arg(&k.w1)
        .arg(&k.b2)
        .arg(&k.c2)
        .arg(&k.step_size)
        .arg(&k.inv_bc2_sqrt)
        .arg(&k.eps)
        .arg(&k.grad_scale)
        .arg(&mut pv)
        .arg(&mut mv)
        .arg(&mut vv)
        .arg(&gv);
    // SAFETY: adamw_f32(long long n, float decay, float w1, float b2,
    // float c2, float step_size, float inv_bc2_sqrt, float eps, float
    // grad_scale, float* theta, float* m, float* v, const float* g): four
    // distinct buffers (checked by
    // the caller) of n elements each.
    unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    Ok(())
}

/// Where each tensor's chunk partials start in the shared partials buffer
/// (tensor order), and how many partials there are in all.
fn partial_offsets(lens: &[usize]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(lens.len());
    let mut total = 0;
    for &n in lens {
        offsets.push(total);
        total += launch::chunks(n);
    }
    (offsets, total)
}

/// `Σ x²` in f64 over contiguous f32/f64 tensors on one CUDA device.
///
/// Every tensor's chunks write f64 partials into consecutive slots of one
/// buffer, in tensor order; one block adds all slots in a fixed order and
/// the 8-byte total is read back. That read is the one host sync of a
/// clipped optimiser step: the clip factor is computed from it on the host.
pub(crate) fn sum_of_squares(tensors: &[Tensor]) -> Result<f64> {
    const OP: &str = "sum_of_squares";
    let lens: Vec<usize> = tensors.iter().map(Tensor::elem_count).collect();
    let (offsets, total) = partial_offsets(&lens);
    let Some(first) = tensors.first() else {
        return Ok(0.0);
    };
    if total == 0 {
        return Ok(0.0);
    }
    let dev = {
        let g = first.read_storage();
        cuda_of(&g, OP)?.dev().clone()
    };
    let mut partials = CudaStorage::alloc(&dev, DType::F64, total, OP)?;
    for (t, &off) in tensors.iter().zip(&offsets) {
        float_kernel!(t.dtype(), OP, sum_sq_chunks(&dev, t, &mut partials, off))?;
    }
    let mut out = CudaStorage::alloc(&dev, DType::F64, 1, OP)?;
    {
        let f = dev.function(&OPTIM, "sum_partials_f64")?;
        let nn = long(total, OP)?;
        let pv = partials.view::<f64>(0..total, OP)?;
        let mut ov = out.view_mut::<f64>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&pv).arg(&mut ov);
        // SAFETY: sum_partials_f64(long long n, const double* partial,
        // double* out): n partials, one output; a single block.
        unsafe { b.launch(config(launch::single_block(total))) }.map_err(cuda_err(OP))?;
    }
    let mut host = [0.0f64];
    super::note_host_read();
    // Waits for the stream: the step's one read-back of the norm.
    dev.stream
        .memcpy_dtoh(&out.view::<f64>(0..1, OP)?, &mut host)
        .map_err(cuda_err(OP))?;
    Ok(host[0])
}

/// Launches the chunk partials of one tensor into `partials[off..]`.
fn sum_sq_chunks<T: DeviceRepr>(
    suffix: &str,
    dev: &Arc<CudaDev>,
    t: &Tensor,
    partials: &mut CudaStorage,
    off: usize,
) -> Result<()> {
    const OP: &str = "sum_of_squares";
    let n = t.elem_count();
    let Some(l) = launch::per_chunk(n) else {
        return Ok(());
    };
    let guard = t.read_storage();
    let xc = cuda_of(&guard, OP)?;
    if !Arc::ptr_eq(xc.dev(), dev) {
        return Err(crate::Error::DeviceMismatch {
            op: OP,
            lhs: dev.device(),
            rhs: xc.device(),
        });
    }
    let f = dev.function(&OPTIM, &format!("sum_sq_chunks_{suffix}"))?;
    let (nn, chunk) = (long(n, OP)?, long(launch::SUM_SQ_CHUNK, OP)?);
    let xv = elems::<T>(xc, t, OP)?;
    let mut pv = partials.view_mut::<f64>(OP)?;
    let mut pv = pv.slice_mut(off..off + launch::chunks(n));
    let mut b = dev.stream.launch_builder(&f);
    b.arg(&nn).arg(&chunk).arg(&xv).arg(&mut pv);
    // SAFETY: sum_sq_chunks_T(long long n, long long chunk, const T* x,
    // double* partial): x holds n elements, partial chunks(n) slots.
    unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_of_each_tensor_follow_the_previous_ones() {
        let c = launch::SUM_SQ_CHUNK;
        assert_eq!(partial_offsets(&[]), (vec![], 0));
        assert_eq!(partial_offsets(&[1, 0, c, c + 1, 5]), (vec![0, 1, 1, 2, 4], 5));
    }
}
