//! Cumulative sums along a dim on CUDA (kernel: scan.cu): prefix sums
//! (cumsum) and suffix sums (its backward), read in place from any view,
//! one thread per column adding in the CPU's order.

use super::device::cuda_err;
use super::launch::{config, long, strided};
use super::memory::{cuda_of, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use moe_kernels::cuda::launch::elementwise as ew;
use moe_kernels::cuda::SCAN;

/// Inclusive sums of `x` (any view) along `dim`, ascending (cumsum) or,
/// when `reverse`, descending (cumsum's backward): row-major, `x`'s shape.
/// f32, f64 and i64 sum in their own type; u8 (masks) sums into i64, as on
/// the CPU; other dtypes are `UnsupportedDType` for `op`.
pub(crate) fn cumsum(x: &Tensor, dim: usize, reverse: bool, op: &'static str) -> Result<Storage> {
    let args = (dim, reverse, op);
    match x.dtype() {
        DType::F32 => scan::<f32, f32>("cumsum_f32", x, DType::F32, args),
        DType::F64 => scan::<f64, f64>("cumsum_f64", x, DType::F64, args),
        DType::I64 => scan::<i64, i64>("cumsum_i64", x, DType::I64, args),
        DType::U8 => scan::<u8, i64>("cumsum_u8_i64", x, DType::I64, args),
        dtype => Err(Error::UnsupportedDType { op, dtype }),
    }
}

/// Kernel `name` reading `S` and writing `D` (`out` as a dtype).
fn scan<S: DeviceRepr, D: DeviceRepr>(
    name: &str,
    x: &Tensor,
    out: DType,
    (dim, reverse, op): (usize, bool, &'static str),
) -> Result<Storage> {
    let total = x.elem_count();
    let guard = x.read_storage();
    let xc = cuda_of(&guard, op)?;
    let dev = xc.dev().clone();
    let mut y = CudaStorage::alloc(&dev, out, total, op)?;
    if total == 0 {
        return Ok(Storage::Cuda(y));
    }
    let (outer, len, inner) = x.shape().outer_dim_inner(dim);
    // total > 0, so outer · inner ≤ total (no overflow).
    let columns = outer * inner;
    if let Some(l) = ew(columns) {
        let f = dev.function(&SCAN, name)?;
        let (n, dd, ii) = (long(columns, op)?, long(len, op)?, long(inner, op)?);
        let (sd, sx) = (long(x.layout().strides()[dim], op)?, strided(x.layout(), op)?);
        let rev = i32::from(reverse);
        let xv = xc.view::<S>(0..xc.len(), op)?;
        let mut yv = y.view_mut::<D>(op)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&n)
            .arg(&dd)
            .arg(&ii)
            .arg(&sd)
            .arg(&rev)
            .arg(&sx)
            .arg(&xv)
            .arg(&mut yv);
        // SAFETY: cumsum_*(long long n, long long dim, long long inner,
        // long long sd, int reverse, Strided sx, const S* x, D* y): x's view
        // (offsets of sx plus d · sd along dim, d < dim) lies inside its
        // storage; y holds outer · dim · inner elements, one thread per
        // (outer, inner) column.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(op))?;
    }
    Ok(Storage::Cuda(y))
}
