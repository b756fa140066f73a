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
    /// Sinkhorn iterations (`[1]`, I64, on the logits' device), when
    /// Sinkhorn chose.
    pub sinkhorn_iters: Option<Tensor>,
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

/// `scores_NE[t, ids_NK[t, k]]`, differentiable in the scores: `gather` on
/// the CPU; on a device a one-hot sum with the same values and gradient
/// (each sum adds one score and zeros), because `gather` reads its indices
/// back to check them and these are the top-k's own, so in range.
pub(crate) fn select_chosen(scores_NE: &Tensor, ids_NK: &Tensor) -> Result<Tensor> {
    if scores_NE.device().is_cpu() {
        return Ok(scores_NE.gather(1, ids_NK)?);
    }
    select_by_one_hot(scores_NE, ids_NK)
}

/// [`select_chosen`] as a one-hot sum (any device).
pub(crate) fn select_by_one_hot(scores_NE: &Tensor, ids_NK: &Tensor) -> Result<Tensor> {
    let (n, e) = (scores_NE.dims()[0], scores_NE.dims()[1]);
    let one_hot_NKE = crate::losses::one_hot(ids_NK, e, scores_NE.dtype())?;
    Ok(one_hot_NKE.mul(&scores_NE.reshape((n, 1, e))?)?.sum(&[2], false)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use moe_tensor::Device;

    #[test]
    fn one_hot_selection_equals_gather_in_value_and_gradient() {
        let dev = Device::Cpu;
        let s = Tensor::from_vec(vec![0.1f64, 0.7, 0.2, 0.5, 0.3, 0.9], (2, 3), &dev).unwrap();
        let ids = Tensor::from_vec(vec![1i64, 2, 2, 0], (2, 2), &dev).unwrap();
        let (a, b) = (s.to_param(), s.to_param());
        let via_gather = a.gather(1, &ids).unwrap();
        let via_one_hot = select_by_one_hot(&b, &ids).unwrap();
        assert_eq!(
            via_gather.to_vec::<f64>().unwrap(),
            via_one_hot.to_vec::<f64>().unwrap()
        );
        let g = Tensor::from_vec(vec![1.5f64, -2.0, 0.25, 3.0], (2, 2), &dev).unwrap();
        via_gather.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
        via_one_hot.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (a.grad().unwrap(), b.grad().unwrap());
        assert_eq!(ga.to_vec::<f64>().unwrap(), gb.to_vec::<f64>().unwrap());
    }
}
