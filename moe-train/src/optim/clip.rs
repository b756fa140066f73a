//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`.

use crate::error::Result;
use moe_tensor::{no_grad, Params};
use rayon::prelude::*;

/// Elements per partial sum of squares: fixed, so the norm does not depend on
/// the thread count.
const CHUNK: usize = 1 << 13;

/// `Σ x²` in f64, as ordered partial sums over fixed chunks (each with four
/// interleaved accumulators) added in chunk order: deterministic, parallel,
/// and not one long serial chain of dependent additions.
fn sum_sq_of<T: Copy + Into<f64> + Sync>(x: &[T]) -> f64 {
    let partial: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|c| {
            let mut acc = [0.0f64; 4];
            let mut quads = c.chunks_exact(4);
            for q in &mut quads {
                for (a, &v) in acc.iter_mut().zip(q) {
                    let v: f64 = v.into();
                    *a += v * v;
                }
            }
            let tail: f64 = quads.remainder().iter().map(|&v| v.into() * v.into()).sum();
            (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
        })
        .collect();
    partial.iter().sum()
}

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
                g.with_f32_slice(sum_sq_of)?
            } else {
                sum_sq_of(&g.to_vec_f64()?)
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
