//! Sinkhorn–Knopp balancing of router scores, as in GPT-NeoX's `SinkhornRouter`
//! and Megatron-LM's `megatron/core/transformer/moe/moe_utils.py::sinkhorn`
//! (the routers the paper's Sinkhorn-balanced runs used):
//!
//! ```text
//! cost = exp(logits); d0 = ones(N); d1 = ones(E); eps = 1e-8
//! repeat: d0 = (1/N) / (cost @ d1 + eps)
//!         d1_new = (1/E) / (d0 @ cost + eps)
//!         err = mean |d1_new − d1|; d1 = d1_new     until err ≤ tol
//! return d1 * cost * d0[:, None]
//! ```
//!
//! Alternating column and row scaling drives the matrix towards equal row sums
//! (1/N, one unit per token) and equal column sums (1/E, one share per expert),
//! so the top-k of the result spreads tokens evenly over experts. One deviation,
//! for overflow safety only: each row of `logits` is shifted by its maximum
//! before `exp`. A row scale is absorbed exactly by `d0`, so the result is the
//! same up to the `eps` term. An iteration cap bounds the work when the
//! tolerance is not reached. The loop is [`Tensor::sinkhorn`]: on CUDA one
//! kernel runs it, convergence test included, so routing never waits for the
//! device (Megatron-LM reads the error back every iteration).

use crate::config::SinkhornConfig;
use crate::error::{Result, RouterError};
use crate::topk::{select_chosen, Selection};
use moe_tensor::{no_grad, Tensor};

/// The Sinkhorn-balanced version of `logits_NE` (no gradient) and the number
/// of iterations run (read back from the device). Stops when the mean change
/// of the expert scaling is at most `tolerance`, or after `max_iters`
/// iterations.
pub fn sinkhorn(logits_NE: &Tensor, tolerance: f64, max_iters: usize) -> Result<(Tensor, usize)> {
    let (balanced, iters) = balance(logits_NE, tolerance, max_iters)?;
    let iters = iters.to_vec::<i64>()?.first().copied().unwrap_or(0);
    Ok((balanced, iters.max(0) as usize))
}

/// [`sinkhorn`] with the iteration count left on the device (`[1]`, I64).
fn balance(logits_NE: &Tensor, tolerance: f64, max_iters: usize) -> Result<(Tensor, Tensor)> {
    if logits_NE.rank() != 2 {
        return Err(RouterError::Shape {
            what: "sinkhorn logits",
            expected: "[N, E]".into(),
            got: logits_NE.dims().to_vec(),
        });
    }
    Ok(logits_NE.sinkhorn(tolerance, max_iters)?)
}

/// Sinkhorn-balanced top-k, as GPT-NeoX's `SinkhornRouter` and Megatron-LM's
/// `sinkhorn_load_balancing` route:
///
/// ```text
/// training:  ids = topk(sinkhorn(logits), k)      # no gradient
///            act = sigmoid(logits) if k == 1 else softmax(logits)
///            weights = gather(act, ids)           # the router learns through these
/// inference: weights, ids = topk(act, k)          # no balancing
/// ```
pub(crate) fn sinkhorn_topk(logits_NE: &Tensor, top_k: usize, cfg: &SinkhornConfig, train: bool) -> Result<Selection> {
    let act_NE = if top_k == 1 {
        logits_NE.sigmoid()?
    } else {
        logits_NE.softmax(-1)?
    };
    let (ids_NK, iters) = if train {
        let (balanced, iters) = balance(logits_NE, cfg.tolerance, cfg.max_iters)?;
        (no_grad(|| balanced.topk(top_k))?.1, Some(iters))
    } else {
        (no_grad(|| act_NE.topk(top_k))?.1, None)
    };
    let raw_NK = select_chosen(&act_NE, &ids_NK)?;
    Ok(Selection {
        ids_NK,
        weights_NK: raw_NK.clone(),
        raw_NK,
        probs_NE: logits_NE.softmax(-1)?,
        sinkhorn_iters: iters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use moe_tensor::{DType, Device};

    #[test]
    fn balanced_matrix_has_uniform_row_and_column_sums() {
        let (n, e) = (12, 4);
        let logits: Vec<f64> = (0..n * e).map(|i| ((i * 7919) % 13) as f64 / 3.0 - 2.0).collect();
        let x = Tensor::from_vec(logits, (n, e), &Device::Cpu).unwrap();
        let (p, iters) = sinkhorn(&x, 1e-10, 10_000).unwrap();
        assert!(iters > 1);
        let rows = p.sum(&[1], false).unwrap().to_vec_f64().unwrap();
        let cols = p.sum(&[0], false).unwrap().to_vec_f64().unwrap();
        // Both converge to the uniform marginals, up to the relative effect
        // of the 1e-8 guard in the denominators.
        for r in rows {
            assert!((r * n as f64 - 1.0).abs() < 1e-6, "row sum {r}");
        }
        for c in cols {
            assert!((c * e as f64 - 1.0).abs() < 1e-6, "column sum {c}");
        }
    }

    #[test]
    fn iteration_cap_is_respected_and_huge_logits_stay_finite() {
        let x = Tensor::from_vec(vec![500.0f32, 0.0, 0.0, 400.0, 1.0, 2.0], (3, 2), &Device::Cpu).unwrap();
        let (p, iters) = sinkhorn(&x, 1e-30, 3).unwrap();
        assert_eq!(iters, 3);
        assert_eq!(p.dtype(), DType::F32);
        assert!(p.to_vec_f64().unwrap().iter().all(|v| v.is_finite()));
    }
}
