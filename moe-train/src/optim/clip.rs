//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`.

use crate::error::Result;
use moe_tensor::{no_grad, Params};

/// Scales every gradient in `params` by `max_norm / (norm + 1e-6)` when the L2 norm of
/// all gradients together exceeds `max_norm`, and returns that pre-clip norm.
///
/// Parameters without a gradient are skipped. The norm is accumulated in f64. A
/// non-finite norm is returned without touching the gradients, so the caller can stop
/// or skip the step (PyTorch would fill the gradients with NaN).
pub fn clip_grad_norm(params: &Params, max_norm: f64) -> Result<f64> {
    let mut sum_sq = 0.0f64;
    for (_, p) in params.iter() {
        if let Some(g) = p.grad() {
            // Borrowed when possible; the same f64 sum in the same order either way.
            sum_sq += if g.is_contiguous_cpu_f32() {
                g.with_f32_slice(|x| x.iter().map(|&x| x as f64 * x as f64).sum::<f64>())?
            } else {
                g.to_vec_f64()?.iter().map(|x| x * x).sum::<f64>()
            };
        }
    }
    let norm = sum_sq.sqrt();
    if !norm.is_finite() {
        return Ok(norm);
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        no_grad(|| -> Result<()> {
            for (_, p) in params.iter() {
                if let Some(g) = p.grad() {
                    p.set_grad(Some(g.mul_scalar(coef)?));
                }
            }
            Ok(())
        })?;
    }
    Ok(norm)
}
