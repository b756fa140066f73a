//! Unary ops (forward and backward), broadcasting binary ops and
//! comparisons on CUDA, f32 (kernels: elementwise.cu).

use super::device::cuda_err;
use super::launch::{config, long, strided};
use super::memory::{cuda_of, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Layout, Result, Tensor, UnaryOp};
use cudarc::driver::PushKernelArg;
use moe_kernels::cuda::launch::elementwise as ew;
use moe_kernels::cuda::{ops, ELEMENTWISE};

/// Errors unless `dtype` is f32, the compute type of the CUDA kernels.
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

/// `op` applied to every element of `x` (any layout), f32.
pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Result<Storage> {
    const OP: &str = "unary";
    check_f32(OP, x.dtype())?;
    let (code, p0, p1) = unary_code(op);
    let (p0, p1) = (p0 as f32, p1 as f32);
    let guard = x.read_storage();
    let xs = cuda_of(&guard, OP)?;
    let dev = xs.dev().clone();
    let n = x.elem_count();
    let mut out = CudaStorage::alloc(&dev, DType::F32, n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, "unary_fwd_f32")?;
        let (nn, sx) = (long(n, OP)?, strided(x.layout(), OP)?);
        let xv = xs.view::<f32>(0..xs.len(), OP)?;
        let mut yv = out.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&code).arg(&p0).arg(&p1).arg(&sx).arg(&xv).arg(&mut yv);
        // SAFETY: unary_fwd_f32(long long n, int op, float p0, float p1,
        // Strided sx, const float* x, float* y); y holds n elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// `g · op'(x, y)` for contiguous f32 `g`, `x` and `y = op(x)` of one shape.
pub(crate) fn unary_backward(g: &Tensor, x: &Tensor, y: &Tensor, op: UnaryOp) -> Result<Storage> {
    const OP: &str = "unary_backward";
    check_f32(OP, x.dtype())?;
    let (code, p0, _) = unary_code(op);
    let p0 = p0 as f32;
    let n = x.elem_count();
    let (gs, xs, ys) = (g.read_storage(), x.read_storage(), y.read_storage());
    let (gc, xc, yc) = (cuda_of(&gs, OP)?, cuda_of(&xs, OP)?, cuda_of(&ys, OP)?);
    let dev = xc.dev().clone();
    let mut out = CudaStorage::alloc(&dev, DType::F32, n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, "unary_bwd_f32")?;
        let nn = long(n, OP)?;
        let at = |t: &Tensor| t.layout().offset()..t.layout().offset() + n;
        let (gv, xv, yv) = (
            gc.view::<f32>(at(g), OP)?,
            xc.view::<f32>(at(x), OP)?,
            yc.view::<f32>(at(y), OP)?,
        );
        let mut dv = out.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&code).arg(&p0).arg(&gv).arg(&xv).arg(&yv).arg(&mut dv);
        // SAFETY: unary_bwd_f32(long long n, int op, float p0, const float* g,
        // const float* x, const float* y, float* dx), all n elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// The u8 mask `a <cmp> b` (`cmp` a `moe_kernels::cuda::ops::compare`
/// code) with both layouts already broadcast to the output shape, f32.
pub(crate) fn compare(a: &Tensor, la: &Layout, b: &Tensor, lb: &Layout, code: i32) -> Result<Storage> {
    const OP: &str = "compare";
    check_f32(OP, a.dtype())?;
    let n = la.shape().elem_count();
    let (ga, gb) = (a.read_storage(), b.read_storage());
    let (ac, bc) = (cuda_of(&ga, OP)?, cuda_of(&gb, OP)?);
    let dev = ac.dev().clone();
    let mut out = CudaStorage::alloc(&dev, DType::U8, n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, "compare_f32")?;
        let (nn, sa, sb) = (long(n, OP)?, strided(la, OP)?, strided(lb, OP)?);
        let (av, bv) = (ac.view::<f32>(0..ac.len(), OP)?, bc.view::<f32>(0..bc.len(), OP)?);
        let mut ov = out.view_mut::<u8>(OP)?;
        let mut bld = dev.stream.launch_builder(&f);
        bld.arg(&nn).arg(&code).arg(&sa).arg(&av).arg(&sb).arg(&bv).arg(&mut ov);
        // SAFETY: compare_f32(long long n, int op, Strided sa, const float* a,
        // Strided sb, const float* b, unsigned char* mask); mask holds n.
        unsafe { bld.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// `a op b` with both layouts already broadcast to the output shape, f32.
pub(crate) fn binary(a: &Tensor, la: &Layout, b: &Tensor, lb: &Layout, code: i32) -> Result<Storage> {
    const OP: &str = "binary";
    check_f32(OP, a.dtype())?;
    let n = la.shape().elem_count();
    let (ga, gb) = (a.read_storage(), b.read_storage());
    let (ac, bc) = (cuda_of(&ga, OP)?, cuda_of(&gb, OP)?);
    let dev = ac.dev().clone();
    let mut out = CudaStorage::alloc(&dev, DType::F32, n, OP)?;
    if let Some(l) = ew(n) {
        let f = dev.function(&ELEMENTWISE, "binary_f32")?;
        let (nn, sa, sb) = (long(n, OP)?, strided(la, OP)?, strided(lb, OP)?);
        let (av, bv) = (ac.view::<f32>(0..ac.len(), OP)?, bc.view::<f32>(0..bc.len(), OP)?);
        let mut ov = out.view_mut::<f32>(OP)?;
        let mut bld = dev.stream.launch_builder(&f);
        bld.arg(&nn).arg(&code).arg(&sa).arg(&av).arg(&sb).arg(&bv).arg(&mut ov);
        // SAFETY: binary_f32(long long n, int op, Strided sa, const float* a,
        // Strided sb, const float* b, float* out); out holds n elements.
        unsafe { bld.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}
