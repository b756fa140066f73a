//! Sinkhorn balancing on CUDA (kernel: sinkhorn.cu): one block runs every
//! iteration and the convergence test, so nothing is read back; the
//! iteration count stays on the device.

use super::device::cuda_err;
use super::launch::{config, float_kernel, int, long};
use super::memory::{cuda_of, elems, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use moe_kernels::cuda::SINKHORN;

const OP: &str = "sinkhorn";

/// The balanced matrix of the contiguous f32/f64 logits `[N, E]` and the
/// iterations run (`[1]`, I64).
pub(crate) fn sinkhorn(x: &Tensor, tolerance: f64, max_iters: usize) -> Result<(Storage, Storage)> {
    float_kernel!(x.dtype(), OP, sinkhorn_typed(x, tolerance, max_iters))
}

fn sinkhorn_typed<T: DeviceRepr>(
    suffix: &str,
    x: &Tensor,
    tolerance: f64,
    max_iters: usize,
) -> Result<(Storage, Storage)> {
    let (n, e) = (x.dims()[0], x.dims()[1]);
    let guard = x.read_storage();
    let xc = cuda_of(&guard, OP)?;
    let dev = xc.dev().clone();
    let mut out = CudaStorage::alloc(&dev, x.dtype(), n * e, OP)?;
    let mut iters = CudaStorage::alloc(&dev, DType::I64, 1, OP)?;
    if n == 0 || e == 0 {
        iters.zero(OP)?;
        return Ok((Storage::Cuda(out), Storage::Cuda(iters)));
    }
    let launch = moe_kernels::cuda::launch::sinkhorn(e).ok_or_else(|| Error::InvalidShape {
        op: OP,
        msg: format!("{e} experts is more than the kernel's block"),
    })?;
    let mut d0 = CudaStorage::alloc(&dev, x.dtype(), n, OP)?;
    let (nn, ee) = (long(n, OP)?, int(e, OP, "experts")?);
    let cap = i64::try_from(max_iters).unwrap_or(i64::MAX);
    {
        let f = dev.function(&SINKHORN, &format!("sinkhorn_{suffix}"))?;
        let xv = elems::<T>(xc, x, OP)?;
        let (mut ov, mut dv) = (out.view_mut::<T>(OP)?, d0.view_mut::<T>(OP)?);
        let mut iv = iters.view_mut::<i64>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&ee).arg(&tolerance).arg(&cap).arg(&xv);
        b.arg(&mut ov).arg(&mut dv).arg(&mut iv);
        // SAFETY: sinkhorn_{f32,f64}(long long n, int e, double tolerance,
        // long long max_iters, const T* x, T* out, T* d0, long long* iters):
        // x and out hold n·e elements, d0 n, iters 1; one block of
        // SINKHORN_THREADS ≥ e threads.
        unsafe { b.launch(config(launch)) }.map_err(cuda_err(OP))?;
    }
    Ok((Storage::Cuda(out), Storage::Cuda(iters)))
}
