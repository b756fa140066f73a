//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`.

use crate::error::Result;
use moe_tensor::optim::sum_of_squares;
use moe_tensor::{no_grad, Params};

/// Scales every gradient in `params` by `max_norm / (norm + 1e-6)` when the L2 norm of
/// all gradients together exceeds `max_norm`, and returns that pre-clip norm.
///
/// Parameters without a gradient are skipped. The norm is accumulated in f64 in a fixed
/// order where the gradients live (moe-tensor's `optim::sum_of_squares`); on a GPU its
/// total is the one value read back to the host, and the scaling runs on the device. A
/// non-finite norm is returned without touching the gradients, so the caller can stop
/// or skip the step (PyTorch would fill the gradients with NaN).
pub fn clip_grad_norm(params: &Params, max_norm: f64) -> Result<f64> {
    let grads: Vec<_> = params.iter().filter_map(|(_, p)| p.grad()).collect();
    let norm = sum_of_squares(&grads)?.sqrt();
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
