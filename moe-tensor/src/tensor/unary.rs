//! Elementwise unary ops, each declared with its function `f` and derivative
//! `df` side by side so forward and backward cannot drift apart.

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::storage::Storage;
use crate::{Result, Tensor};
use moe_kernels::cpu::elementwise;
use moe_kernels::Real;

/// An elementwise function with a known derivative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Recip,
    Abs,
    Sigmoid,
    Silu,
    /// GELU with the tanh approximation (`approximate="tanh"` in torch).
    GeluTanh,
    /// Exact GELU, x·Φ(x) with the error function.
    GeluErf,
    Relu,
    Tanh,
    /// x^p for a constant exponent p.
    Powf(f64),
    /// x·mul + add.
    Affine {
        mul: f64,
        add: f64,
    },
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

fn erf<T: Real>(x: T) -> T {
    T::from_f64_lossy(libm::erf(x.to_f64_lossy()))
}

fn sigmoid<T: Real>(x: T) -> T {
    // Split by sign so exp never overflows.
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// x^p with the common integer exponents done by multiplication (powf is slow).
fn powf<T: Real>(x: T, p: f64) -> T {
    if p == 2.0 {
        x * x
    } else if p == 1.0 {
        x
    } else if p == 3.0 {
        x * x * x
    } else if p == 0.5 {
        x.sqrt()
    } else if p == -1.0 {
        x.recip()
    } else {
        x.powf(c(p))
    }
}

fn c<T: Real>(v: f64) -> T {
    T::from_f64_lossy(v)
}

impl UnaryOp {
    /// The function.
    pub fn f<T: Real>(self, x: T) -> T {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Recip => x.recip(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Silu => x * sigmoid(x),
            UnaryOp::GeluTanh => {
                let u = c::<T>(SQRT_2_OVER_PI) * (x + c::<T>(GELU_C) * x * x * x);
                c::<T>(0.5) * x * (T::one() + u.tanh())
            }
            UnaryOp::GeluErf => c::<T>(0.5) * x * (T::one() + erf(x * c::<T>(std::f64::consts::FRAC_1_SQRT_2))),
            UnaryOp::Relu => x.max(T::zero()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Powf(p) => powf(x, p),
            UnaryOp::Affine { mul, add } => x * c(mul) + c(add),
        }
    }

    /// dy/dx given the input x and the output y = f(x).
    pub fn df<T: Real>(self, x: T, y: T) -> T {
        match self {
            UnaryOp::Neg => -T::one(),
            UnaryOp::Exp => y,
            UnaryOp::Log => x.recip(),
            UnaryOp::Sqrt => c::<T>(0.5) / y,
            UnaryOp::Recip => -y * y,
            UnaryOp::Abs => {
                if x > T::zero() {
                    T::one()
                } else if x < T::zero() {
                    -T::one()
                } else {
                    T::zero()
                }
            }
            UnaryOp::Sigmoid => y * (T::one() - y),
            UnaryOp::Silu => {
                let s = sigmoid(x);
                s * (T::one() + x * (T::one() - s))
            }
            UnaryOp::GeluTanh => {
                let k = c::<T>(SQRT_2_OVER_PI);
                let t = (k * (x + c::<T>(GELU_C) * x * x * x)).tanh();
                let du = k * (T::one() + c::<T>(3.0 * GELU_C) * x * x);
                c::<T>(0.5) * (T::one() + t) + c::<T>(0.5) * x * (T::one() - t * t) * du
            }
            UnaryOp::GeluErf => {
                let cdf = c::<T>(0.5) * (T::one() + erf(x * c::<T>(std::f64::consts::FRAC_1_SQRT_2)));
                let pdf = (-(x * x) * c::<T>(0.5)).exp() * c::<T>(0.398_942_280_401_432_7);
                cdf + x * pdf
            }
            UnaryOp::Relu => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            UnaryOp::Tanh => T::one() - y * y,
            UnaryOp::Powf(p) => c::<T>(p) * powf(x, p - 1.0),
            UnaryOp::Affine { mul, .. } => c(mul),
        }
    }

    fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Abs => "abs",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Silu => "silu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::GeluErf => "gelu_erf",
            UnaryOp::Relu => "relu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::Affine { .. } => "affine",
        }
    }
}

struct UnaryBackward {
    op: UnaryOp,
    x: Tensor,
    y: Tensor,
}

impl BackwardOp for UnaryBackward {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (g, x, y) = (g.contiguous()?, self.x.contiguous()?, self.y.contiguous()?);
        if !x.device().is_cpu() {
            let dx = crate::cuda_backend::unary_backward(&g, &x, &y, self.op)?;
            return Ok(vec![Some(Tensor::from_storage(dx, self.x.shape().clone()))]);
        }
        let (gs, xs, ys) = (g.read_storage(), x.read_storage(), y.read_storage());
        let op = self.op;
        let name = op.name();
        let (gr, xr, yr) = (g.layout().offset(), x.layout().offset(), y.layout().offset());
        let n = g.elem_count();
        let out = crate::map_float2!(gs.cpu(name)?, xs.cpu(name)?, name, |gv, xv: T| {
            let yv = <T as WithDType>::slice(ys.cpu(name)?).ok_or(crate::Error::DTypeMismatch {
                op: name,
                lhs: x.dtype(),
                rhs: y.dtype(),
            })?;
            let dx = elementwise::ternary_contiguous(&gv[gr..gr + n], &xv[xr..xr + n], &yv[yr..yr + n], |g, x, y| {
                g * op.df(x, y)
            });
            Ok(T::into_storage(dx))
        })?;
        Ok(vec![Some(Tensor::from_cpu_no_grad(out, self.x.shape().clone()))])
    }
}

impl Tensor {
    /// Applies an elementwise [`UnaryOp`] (differentiable; f32/f64 only).
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let name = op.name();
        let out = if self.device().is_cpu() {
            let guard = self.read_storage();
            Storage::Cpu(crate::map_float!(guard.cpu(name)?, name, |v: T| {
                Ok(T::into_storage(match op {
                    // The scaling ops get a closure without the per-element
                    // match on `op` and f64 → T conversion, so the loop
                    // vectorises (the same arithmetic as `op.f`).
                    UnaryOp::Affine { mul, add } => {
                        let (m, a) = (c::<T>(mul), c::<T>(add));
                        elementwise::unary(v, self.strided(), move |x: T| x * m + a)
                    }
                    _ => elementwise::unary(v, self.strided(), |x: T| op.f(x)),
                }))
            })?)
        } else {
            crate::cuda_backend::unary(self, op)?
        };
        // Backward gets the output too (it shares storage, no copy), so every
        // derivative can use whichever of x and y is cheaper.
        let x = self.clone();
        Ok(Tensor::from_op_saving_output(out, self.shape().clone(), |y| {
            UnaryBackward { op, x, y }
        }))
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Recip)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Silu)
    }
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::GeluTanh)
    }
    pub fn gelu_erf(&self) -> Result<Tensor> {
        self.unary(UnaryOp::GeluErf)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    /// x^p for a constant exponent.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p))
    }
    /// x·mul + add.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Affine { mul, add })
    }
    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }
    pub fn sub_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, -s)
    }
    pub fn div_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0 / s, 0.0)
    }
    pub fn sqr(&self) -> Result<Tensor> {
        self.powf(2.0)
    }
}
