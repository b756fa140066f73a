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
//! tolerance is not reached.

use crate::config::SinkhornConfig;
use crate::error::{Result, RouterError};
use crate::topk::Selection;
use moe_tensor::{no_grad, Tensor};

/// Megatron-LM's guard against division by zero.
const EPS: f64 = 1e-8;

/// The Sinkhorn-balanced version of `logits_NE` (no gradient) and the number
/// of iterations run. Stops when the mean change of the expert scaling is at
/// most `tolerance`, or after `max_iters` iterations.
pub fn sinkhorn(logits_NE: &Tensor, tolerance: f64, max_iters: usize) -> Result<(Tensor, usize)> {
    if logits_NE.rank() != 2 {
        return Err(RouterError::Shape {
            what: "sinkhorn logits",
            expected: "[N, E]".into(),
            got: logits_NE.dims().to_vec(),
        });
    }
    let (n, e) = (logits_NE.dims()[0], logits_NE.dims()[1]);
    no_grad(|| {
        let x = logits_NE.detach();
        if n == 0 || e == 0 {
            return Ok((x, 0));
        }
        let cost_NE = x.sub(&x.max(1, true)?)?.exp()?;
        let mut d1_1E = Tensor::ones((1, e), x.dtype(), &x.device())?;
        let mut d0_N1 = Tensor::ones((n, 1), x.dtype(), &x.device())?;
        let mut iters = 0;
        while iters < max_iters {
            iters += 1;
            // Row scaling: each token's row sums to 1/N.
            d0_N1 = cost_NE
                .mul(&d1_1E)?
                .sum(&[1], true)?
                .add_scalar(EPS)?
                .recip()?
                .mul_scalar(1.0 / n as f64)?;
            // Column scaling: each expert's column sums to 1/E.
            let d1_new = cost_NE
                .mul(&d0_N1)?
                .sum(&[0], true)?
                .add_scalar(EPS)?
                .recip()?
                .mul_scalar(1.0 / e as f64)?;
            let err = d1_new.sub(&d1_1E)?.abs()?.mean_all()?.to_scalar_f64()?;
            d1_1E = d1_new;
            if err <= tolerance {
                break;
            }
        }
        Ok((cost_NE.mul(&d1_1E)?.mul(&d0_N1)?, iters))
    })
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
        let (balanced, iters) = sinkhorn(logits_NE, cfg.tolerance, cfg.max_iters)?;
        (no_grad(|| balanced.topk(top_k))?.1, Some(iters))
    } else {
        (no_grad(|| act_NE.topk(top_k))?.1, None)
    };
    let raw_NK = act_NE.gather(1, &ids_NK)?;
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
