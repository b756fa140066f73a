//! Unary ops (forward and backward), broadcasting binary ops and
//! comparisons on CUDA, f32 and f64 (kernels: elementwise.cu).

use super::device::cuda_err;
use super::launch::{config, float_kernel, long, strided};
use super::memory::{cuda_of, CudaStorage};
use crate::dtype::WithDType;
use crate::storage::Storage;
use crate::{DType, Error, Layout, Result, Tensor, UnaryOp};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use moe_kernels::cuda::launch::elementwise as ew;
use moe_kernels::cuda::{ops, ELEMENTWISE};

/// Errors unless `dtype` is f32, the compute type of the f32-only kernels
/// (reductions, softmax, norms, embedding, top-k).
pub(crate) fn check_f32(op: &'static str, dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 => Ok(()),
        dtype => Err(Error::UnsupportedDType { op, dtype }),
    }
}

/// Kernel code and constants (p0, p1) of a unary op; the f32 kernels take
/// the constants rounded to f32, the f64 ones as they are.
pub(super) fn unary_code(op: UnaryOp) -> (i32, f64, f64) {
    use ops::unary as u;
    match op {
        UnaryOp::Neg => (u::NEG, 0.0, 0.0),
        UnaryOp::Exp => (u::EXP, 0.0, 0.0),
        UnaryOp::Log => (u::LOG, 0.0, 0.0),
        UnaryOp::Sqrt => (u::SQRT, 0.0, 0.0),
        UnaryOp::Recip => (u::RECIP, 0.0, 0.0),
        UnaryOp::Abs => (u::ABS, 0.0, 0.0),
        UnaryOp::Sigmoid => (u::SIGMOID, 0.0, 0.0),
        UnaryOp::Silu => (u::SILU, 0.0, 0.0),
        UnaryOp::GeluTanh => (u::GELU_TANH, 0.0, 0.0),
        UnaryOp::GeluErf => (u::GELU_ERF, 0.0, 0.0),
        UnaryOp::Relu => (u::RELU, 0.0, 0.0),
        UnaryOp::Tanh => (u::TANH, 0.0, 0.0),
        UnaryOp::Powf(p) => (u::POWF, p, 0.0),
        UnaryOp::Affine { mul, add } => (u::AFFINE, mul, add),
    }
}

/// `op` applied to every element of `x` (any layout), f32 or f64.
pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Result<Storage> {
    float_kernel!(x.dtype(), "unary", unary_typed(x, op))
}

fn unary_typed<T: DeviceRepr + WithDType>(suffix: &str, x: &Tensor, op: UnaryOp) -> Result<Storage> {
    const OP: &str = "unary";
    let (code, p0, p1) = unary_code(op);
    let (p0, p1) = (T::from_f64(p0), T::from_f64(p1));
    let guard = x.read_storage();
    let xs = cuda_of(&guard, OP)?;
    let dev = xs.dev().clone();
    let n = x.elem_count();
    let mut out = CudaStorage::alloc(&dev, T::DTYPE, n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, &format!("unary_fwd_{suffix}"))?;
        let (nn, sx) = (long(n, OP)?, strided(x.layout(), OP)?);
        let xv = xs.view::<T>(0..xs.len(), OP)?;
        let mut yv = out.view_mut::<T>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&code).arg(&p0).arg(&p1).arg(&sx).arg(&xv).arg(&mut yv);
        // SAFETY: unary_fwd_T(long long n, int op, T p0, T p1, Strided sx,
        // const T* x, T* y); y holds n elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// `g · op'(x, y)` for contiguous `g`, `x` and `y = op(x)` of one shape and
/// float dtype.
pub(crate) fn unary_backward(g: &Tensor, x: &Tensor, y: &Tensor, op: UnaryOp) -> Result<Storage> {
    float_kernel!(x.dtype(), "unary_backward", unary_backward_typed(g, x, y, op))
}

fn unary_backward_typed<T: DeviceRepr + WithDType>(
    suffix: &str,
    g: &Tensor,
    x: &Tensor,
    y: &Tensor,
    op: UnaryOp,
) -> Result<Storage> {
    const OP: &str = "unary_backward";
    let (code, p0, _) = unary_code(op);
    let p0 = T::from_f64(p0);
    let n = x.elem_count();
    let (gs, xs, ys) = (g.read_storage(), x.read_storage(), y.read_storage());
    let (gc, xc, yc) = (cuda_of(&gs, OP)?, cuda_of(&xs, OP)?, cuda_of(&ys, OP)?);
    let dev = xc.dev().clone();
    let mut out = CudaStorage::alloc(&dev, T::DTYPE, n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, &format!("unary_bwd_{suffix}"))?;
        let nn = long(n, OP)?;
        let at = |t: &Tensor| t.layout().offset()..t.layout().offset() + n;
        let (gv, xv, yv) = (
            gc.view::<T>(at(g), OP)?,
            xc.view::<T>(at(x), OP)?,
            yc.view::<T>(at(y), OP)?,
        );
        let mut dv = out.view_mut::<T>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&code).arg(&p0).arg(&gv).arg(&xv).arg(&yv).arg(&mut dv);
        // SAFETY: unary_bwd_T(long long n, int op, T p0, const T* g,
        // const T* x, const T* y, T* dx), all n elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// `a <kernel> b` for two layouts already broadcast to the output shape:
/// `compare_*` (a u8 mask) or `binary_*` (`a`'s dtype), f32 or f64.
fn pairwise<T: DeviceRepr + WithDType>(
    (kernel, suffix, out_dtype): (&str, &str, DType),
    (a, la): (&Tensor, &Layout),
    (b, lb): (&Tensor, &Layout),
    code: i32,
    op: &'static str,
) -> Result<Storage> {
    let n = la.shape().elem_count();
    let (ga, gb) = (a.read_storage(), b.read_storage());
    let (ac, bc) = (cuda_of(&ga, op)?, cuda_of(&gb, op)?);
    let dev = ac.dev().clone();
    let mut out = CudaStorage::alloc(&dev, out_dtype, n, op)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, &format!("{kernel}_{suffix}"))?;
        let (nn, sa, sb) = (long(n, op)?, strided(la, op)?, strided(lb, op)?);
        let (av, bv) = (ac.view::<T>(0..ac.len(), op)?, bc.view::<T>(0..bc.len(), op)?);
        let mut bld = dev.stream.launch_builder(&f);
        bld.arg(&nn).arg(&code).arg(&sa).arg(&av).arg(&sb).arg(&bv);
        // SAFETY: compare_T / binary_T(long long n, int op, Strided sa,
        // const T* a, Strided sb, const T* b, out): out holds n elements of
        // u8 (compare) or T (binary).
        if out_dtype == DType::U8 {
            let mut ov = out.view_mut::<u8>(op)?;
            bld.arg(&mut ov);
            unsafe { bld.launch(config(l)) }.map_err(cuda_err(op))?;
        } else {
            let mut ov = out.view_mut::<T>(op)?;
            bld.arg(&mut ov);
            unsafe { bld.launch(config(l)) }.map_err(cuda_err(op))?;
        }
    }
    Ok(Storage::Cuda(out))
}

fn compare_typed<T: DeviceRepr + WithDType>(
    suffix: &str,
    (a, la): (&Tensor, &Layout),
    (b, lb): (&Tensor, &Layout),
    code: i32,
) -> Result<Storage> {
    pairwise::<T>(("compare", suffix, DType::U8), (a, la), (b, lb), code, "compare")
}

fn binary_typed<T: DeviceRepr + WithDType>(
    suffix: &str,
    (a, la): (&Tensor, &Layout),
    (b, lb): (&Tensor, &Layout),
    code: i32,
) -> Result<Storage> {
    pairwise::<T>(("binary", suffix, T::DTYPE), (a, la), (b, lb), code, "binary")
}

/// The u8 mask `a <cmp> b` (`cmp` a `moe_kernels::cuda::ops::compare`
/// code) with both layouts already broadcast to the output shape, f32 or f64.
pub(crate) fn compare(a: &Tensor, la: &Layout, b: &Tensor, lb: &Layout, code: i32) -> Result<Storage> {
    float_kernel!(a.dtype(), "compare", compare_typed((a, la), (b, lb), code))
}

/// `a op b` with both layouts already broadcast to the output shape, f32 or
/// f64.
pub(crate) fn binary(a: &Tensor, la: &Layout, b: &Tensor, lb: &Layout, code: i32) -> Result<Storage> {
    float_kernel!(a.dtype(), "binary", binary_typed((a, la), (b, lb), code))
}
