//! Broadcasting elementwise binary ops: add, sub, mul, div, maximum, minimum.

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::elementwise;
use moe_kernels::Real;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl BinaryOp {
    /// The op's code in the CUDA kernels.
    fn cuda_code(self) -> i32 {
        use moe_kernels::cuda::ops::binary as b;
        match self {
            BinaryOp::Add => b::ADD,
            BinaryOp::Sub => b::SUB,
            BinaryOp::Mul => b::MUL,
            BinaryOp::Div => b::DIV,
            BinaryOp::Maximum => b::MAXIMUM,
            BinaryOp::Minimum => b::MINIMUM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }

    fn f<T: Real>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            // Ties send the gradient to `a`, like the >= below.
            BinaryOp::Maximum => {
                if a >= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Minimum => {
                if a <= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }
        }
    }
}

/// Checks dtype and device agreement and returns the broadcast output shape.
pub(crate) fn check_binary(op: &'static str, a: &Tensor, b: &Tensor) -> Result<Shape> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: a.device(),
            rhs: b.device(),
        });
    }
    a.shape().broadcast_with(b.shape(), op)
}

struct BinaryBackward {
    op: BinaryOp,
    a: Tensor,
    b: Tensor,
}

impl BackwardOp for BinaryBackward {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.a, &self.b]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (&self.a, &self.b);
        let (ga, gb) = match self.op {
            BinaryOp::Add => (g.clone(), g.clone()),
            BinaryOp::Sub => (g.clone(), g.neg()?),
            BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
            BinaryOp::Div => {
                let ga = g.div(b)?;
                (ga.clone(), ga.mul(a)?.div(b)?.neg()?)
            }
            BinaryOp::Maximum | BinaryOp::Minimum => {
                // The gradient goes to whichever operand was selected (a on ties).
                let pick_a = if self.op == BinaryOp::Maximum {
                    a.ge(b)?
                } else {
                    a.le(b)?
                };
                let mask_a = pick_a.to_dtype(g.dtype())?;
                let ga = g.mul(&mask_a)?;
                (ga.clone(), g.sub(&ga)?)
            }
        };
        let ga = a.requires_grad().then(|| ga.sum_to_shape(a.shape())).transpose()?;
        let gb = b.requires_grad().then(|| gb.sum_to_shape(b.shape())).transpose()?;
        Ok(vec![ga, gb])
    }
}

impl Tensor {
    fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let name = op.name();
        let shape = check_binary(name, self, rhs)?;
        let la = self.layout().broadcast_as(&shape)?;
        let lb = rhs.layout().broadcast_as(&shape)?;
        if !self.device().is_cpu() {
            let out = crate::cuda_backend::binary(self, &la, rhs, &lb, op.cuda_code())?;
            let back = BinaryBackward {
                op,
                a: self.clone(),
                b: rhs.clone(),
            };
            return Ok(Tensor::from_op(out, shape, back));
        }
        let out = {
            let (ga, gb) = (self.read_storage(), rhs.read_storage());
            crate::map_float2!(ga.cpu(name)?, gb.cpu(name)?, name, |va, vb: T| {
                let sa = moe_kernels::cpu::strided::Strided {
                    dims: la.dims(),
                    strides: la.strides(),
                    offset: la.offset(),
                };
                let sb = moe_kernels::cpu::strided::Strided {
                    dims: lb.dims(),
                    strides: lb.strides(),
                    offset: lb.offset(),
                };
                // One monomorphic closure per arithmetic op (no per-element
                // match), so the contiguous loops vectorise.
                Ok(T::into_storage(match op {
                    BinaryOp::Add => elementwise::binary(va, sa, vb, sb, |x: T, y: T| x + y),
                    BinaryOp::Sub => elementwise::binary(va, sa, vb, sb, |x: T, y: T| x - y),
                    BinaryOp::Mul => elementwise::binary(va, sa, vb, sb, |x: T, y: T| x * y),
                    BinaryOp::Div => elementwise::binary(va, sa, vb, sb, |x: T, y: T| x / y),
                    _ => elementwise::binary(va, sa, vb, sb, |x: T, y: T| op.f(x, y)),
                }))
            })?
        };
        Ok(Tensor::from_op(
            Storage::Cpu(out),
            shape,
            BinaryBackward {
                op,
                a: self.clone(),
                b: rhs.clone(),
            },
        ))
    }

    /// `self + rhs` with broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    /// `self - rhs` with broadcasting.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    /// `self * rhs` with broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    /// `self / rhs` with broadcasting.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    /// Elementwise maximum with broadcasting (gradient to `self` on ties).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum)
    }
    /// Elementwise minimum with broadcasting (gradient to `self` on ties).
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum)
    }
}
