//! Softmax top-k selection (HF Mixtral, Qwen2-MoE, DeepSeek-V2 "greedy",
//! Switch with K = 1) and the weight rules shared by every router.

use crate::config::TopKWeights;
use crate::error::Result;
use moe_tensor::Tensor;

/// One router's choice for a batch, before capacity.
pub(crate) struct Selection {
    /// Chosen experts, `[N, K]` I64.
    pub ids_NK: Tensor,
    /// The chosen experts' scores before renormalisation and scaling,
    /// `[N, K]`; they rank copies for score-based dropping.
    pub raw_NK: Tensor,
    /// Combine weights, `[N, K]`, differentiable in the logits.
    pub weights_NK: Tensor,
    /// Normalised scores over all experts `[N, E]` for the balancing losses.
    pub probs_NE: Tensor,
    /// Sinkhorn iterations, when Sinkhorn chose.
    pub sinkhorn_iters: Option<usize>,
}

/// Renormalises (`raw / (Σ_k raw + eps)`) and scales the selected scores.
pub(crate) fn apply_weights(raw_NK: &Tensor, w: &TopKWeights, eps: f64) -> Result<Tensor> {
    let mut out = raw_NK.clone();
    if w.renormalize {
        let denom = raw_NK.sum(&[1], true)?;
        let denom = if eps > 0.0 { denom.add_scalar(eps)? } else { denom };
        out = out.div(&denom)?;
    }
    if w.scaling_factor != 1.0 {
        out = out.mul_scalar(w.scaling_factor)?;
    }
    Ok(out)
}

/// Softmax over the experts, then the top-k probabilities (ties to the lower
/// expert index), weighted per `w` exactly as the HF routers do.
pub(crate) fn softmax_topk(logits_NE: &Tensor, top_k: usize, w: &TopKWeights) -> Result<Selection> {
    let probs_NE = logits_NE.softmax(-1)?;
    let (raw_NK, ids_NK) = probs_NE.topk(top_k)?;
    // HF Mixtral divides by the plain sum (no eps): softmax values are positive.
    let weights_NK = apply_weights(&raw_NK, w, 0.0)?;
    Ok(Selection {
        ids_NK,
        raw_NK,
        weights_NK,
        probs_NE,
        sinkhorn_iters: None,
    })
}
