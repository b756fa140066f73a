//! Test support: a gradient checker against central finite differences.
//!
//! `gradcheck(f, inputs)` evaluates `L = Σ f(inputs) ⊙ R` for a fixed random
//! probe R, backpropagates, and compares each float input's gradient with
//! (L(x + ε) − L(x − ε)) / 2ε per element, in f64. Inputs that are not float
//! (indices, masks) pass through unchanged and are not checked.

use crate::backprop::no_grad;
use crate::init::Rng;
use crate::{DType, Error, Result, Tensor};

/// Tolerances and sampling of the finite-difference check.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (of the numeric derivative's magnitude).
    pub rtol: f64,
    /// At most this many elements per input are perturbed (chosen at random).
    pub max_elems: usize,
    /// Seed of the probe and of the element sample.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-6,
            atol: 1e-7,
            rtol: 1e-5,
            max_elems: 256,
            seed: 0,
        }
    }
}

/// What a passing check measured.
#[derive(Clone, Debug)]
pub struct GradReport {
    /// Largest |analytic − numeric| seen.
    pub max_abs_err: f64,
    /// Number of partial derivatives compared.
    pub checked: usize,
    /// Names of the backward ops the checked graph went through.
    pub ops: std::collections::BTreeSet<&'static str>,
}

/// Checks the gradients of `f` at `inputs` with default tolerances.
pub fn gradcheck(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) -> Result<GradReport> {
    gradcheck_with(f, inputs, GradCheck::default())
}

/// Checks the gradients of `f` at `inputs` (float inputs must be F64).
pub fn gradcheck_with(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradCheck,
) -> Result<GradReport> {
    for t in inputs {
        if t.dtype().is_float() && t.dtype() != DType::F64 {
            return Err(Error::UnsupportedDType {
                op: "gradcheck (inputs must be f64)",
                dtype: t.dtype(),
            });
        }
    }
    let fresh = |data: &[Vec<f64>]| -> Result<Vec<Tensor>> {
        inputs
            .iter()
            .zip(data)
            .map(|(t, d)| {
                if t.dtype().is_float() {
                    Ok(Tensor::from_vec(d.clone(), t.shape().clone(), &t.device())?.to_param())
                } else {
                    Ok(t.clone())
                }
            })
            .collect()
    };
    let base: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_vec_f64()).collect::<Result<_>>()?;
    let mut rng = Rng::seed(opts.seed);

    // Analytic gradients of L = Σ f(x) ⊙ R.
    let params = fresh(&base)?;
    let y = f(&params)?;
    let ops = crate::backprop::op_names(&y);
    let probe = rng.normal(y.shape().clone(), 0.0, 1.0, DType::F64, &y.device())?;
    y.mul(&probe)?.sum_all()?.backward()?;
    let loss_at =
        |data: &[Vec<f64>]| -> Result<f64> { no_grad(|| f(&fresh(data)?)?.mul(&probe)?.sum_all()?.to_scalar_f64()) };

    let mut report = GradReport {
        max_abs_err: 0.0,
        checked: 0,
        ops,
    };
    for (i, (t, p)) in inputs.iter().zip(&params).enumerate() {
        if !t.dtype().is_float() {
            continue;
        }
        let analytic = match p.grad() {
            Some(g) => g.to_vec_f64()?,
            None => vec![0.0; t.elem_count()],
        };
        let n = t.elem_count();
        let elems: Vec<usize> = if n <= opts.max_elems {
            (0..n).collect()
        } else {
            (0..opts.max_elems).map(|_| rng.below(n as u64) as usize).collect()
        };
        for j in elems {
            let mut data = base.clone();
            data[i][j] = base[i][j] + opts.eps;
            let plus = loss_at(&data)?;
            data[i][j] = base[i][j] - opts.eps;
            let minus = loss_at(&data)?;
            let numeric = (plus - minus) / (2.0 * opts.eps);
            let err = (analytic[j] - numeric).abs();
            // Written so that a NaN error fails the check too.
            let within = err <= opts.atol + opts.rtol * numeric.abs();
            if !within {
                return Err(Error::Autograd {
                    msg: format!(
                        "gradcheck: input {i} {:?} element {j}: analytic {} vs numeric {numeric} (|diff| {err:e})",
                        t.shape(),
                        analytic[j]
                    ),
                });
            }
            report.max_abs_err = report.max_abs_err.max(err);
            report.checked += 1;
        }
    }
    Ok(report)
}

/// Largest absolute elementwise difference between two equally shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.shape() != b.shape() {
        return Err(Error::ShapeMismatch {
            op: "max_abs_diff",
            lhs: a.shape().clone(),
            rhs: b.shape().clone(),
        });
    }
    let (x, y) = (a.to_vec_f64()?, b.to_vec_f64()?);
    Ok(x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max))
}
