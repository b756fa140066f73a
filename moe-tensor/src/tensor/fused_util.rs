//! Plumbing shared by the fused ops (softmax, RMSNorm, RoPE, cross-entropy,
//! attention): dtype dispatch, borrowing a tensor's row-major elements as a
//! typed slice, wrapping kernel results, and the common argument checks.

use crate::dtype::WithDType;
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use moe_kernels::Real;

/// A float element type the fused kernels run in.
pub(crate) trait Float: Real + WithDType {}
impl Float for f32 {}
impl Float for f64 {}

/// Calls `$f::<f32>(args)` or `$f::<f64>(args)` by `$dtype`; other dtypes are
/// `UnsupportedDType` for `$op`.
macro_rules! float_call {
    ($dtype:expr, $op:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $dtype {
            $crate::DType::F32 => $f::<f32>($($arg),*),
            $crate::DType::F64 => $f::<f64>($($arg),*),
            other => Err($crate::Error::UnsupportedDType { op: $op, dtype: other }),
        }
    };
}
pub(crate) use float_call;

/// The row-major elements of a contiguous tensor `t` as a `&[T]`, borrowed
/// from its storage guard `s`.
pub(crate) fn elems<'a, T: WithDType>(s: &'a Storage, t: &Tensor, op: &'static str) -> Result<&'a [T]> {
    let all = T::slice(s.cpu(op)?).ok_or(Error::DTypeMismatch {
        op,
        lhs: T::DTYPE,
        rhs: t.dtype(),
    })?;
    let range = t.layout().contiguous_range().ok_or_else(|| Error::Autograd {
        msg: format!("{op}: internal: expected a contiguous tensor"),
    })?;
    all.get(range).ok_or_else(|| Error::Autograd {
        msg: format!("{op}: internal: layout outside its storage"),
    })
}

/// A result tensor with no graph (gradients handed back by backward).
pub(crate) fn plain<T: WithDType>(v: Vec<T>, shape: &crate::Shape) -> Tensor {
    Tensor::from_cpu_no_grad(T::into_storage(v), shape.clone())
}

/// Errors unless `t` is a float tensor of `dtype` on `device` (the first operand's).
pub(crate) fn check_like(op: &'static str, first: &Tensor, t: &Tensor) -> Result<()> {
    if t.dtype() != first.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            lhs: first.dtype(),
            rhs: t.dtype(),
        });
    }
    if t.device() != first.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: first.device(),
            rhs: t.device(),
        });
    }
    Ok(())
}

/// Errors unless `t` is f32 or f64.
pub(crate) fn check_float(op: &'static str, t: &Tensor) -> Result<()> {
    match t.dtype() {
        DType::F32 | DType::F64 => Ok(()),
        dtype => Err(Error::UnsupportedDType { op, dtype }),
    }
}
