//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`.

use crate::error::Result;
use moe_tensor::optim::sum_of_squares;
use moe_tensor::{no_grad, Params};

/// The pre-clip L2 norm of all gradients in `params` together, and the factor
/// `max_norm / (norm + 1e-6)` that `torch.nn.utils.clip_grad_norm_` would
/// scale them by when the norm exceeds `max_norm` (else 1).
///
/// Parameters without a gradient are skipped. The norm is accumulated in f64 in a fixed
/// order where the gradients live (moe-tensor's `optim::sum_of_squares`); on a GPU its
/// total is the one value read back to the host. A non-finite norm comes with a
/// factor of 1, so the caller can stop or skip the step (PyTorch would fill the
/// gradients with NaN). Training hands the factor to [`AdamW::step_with_grad_scale`](super::AdamW::step_with_grad_scale),
/// which applies it while reading each gradient: the same bits as scaling them
/// first, without a pass that writes every gradient again.
pub fn clip_coefficient(params: &Params, max_norm: f64) -> Result<(f64, f64)> {
    let grads: Vec<_> = params.iter().filter_map(|(_, p)| p.grad()).collect();
    let norm = sum_of_squares(&grads)?.sqrt();
    let coef = max_norm / (norm + 1e-6);
    Ok((norm, if norm.is_finite() && coef < 1.0 { coef } else { 1.0 }))
}

/// Scales every gradient in `params` by [`clip_coefficient`]'s factor, as
/// `torch.nn.utils.clip_grad_norm_`, and returns the pre-clip norm (a
/// non-finite norm leaves the gradients untouched).
pub fn clip_grad_norm(params: &Params, max_norm: f64) -> Result<f64> {
    let (norm, coef) = clip_coefficient(params, max_norm)?;
    if coef != 1.0 {
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
