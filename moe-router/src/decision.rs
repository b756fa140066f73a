//! The result of routing one batch of tokens.

use crate::dispatch::Dispatch;
use crate::error::Result;
use crate::losses::BalanceStats;
use crate::stats::RoutingStats;
use moe_tensor::Tensor;

/// Whether a forward is part of training (Sinkhorn balances, the aux-free
/// bias records load) or inference (plain top-k, nothing recorded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteMode {
    /// Training forward.
    Train,
    /// Evaluation or generation.
    Eval,
}

/// Everything a router decided for `N` tokens: which experts, with which
/// weights, what was dropped, the balancing losses and the statistics.
#[derive(Clone, Debug)]
pub struct RoutingDecision {
    /// Router logits `[N, E]` (f32, or f64 for f64 inputs).
    pub logits_NE: Tensor,
    /// Normalised scores over all experts `[N, E]` used by the balancing losses
    /// (softmax probabilities; per-token-normalised sigmoid scores for a
    /// sigmoid aux-free router).
    pub probs_NE: Tensor,
    /// Chosen experts `[N, K]`, I64.
    pub topk_ids_NK: Tensor,
    /// Combine weights `[N, K]`, differentiable in the router weight; zero
    /// (and without gradient) for dropped copies.
    pub weights_NK: Tensor,
    /// Tokens whose top-k contains each expert `[E]`, I64 (before capacity).
    pub tokens_per_expert_E: Tensor,
    /// 1 where a token copy was dropped by capacity, `[N, K]`, U8.
    pub dropped_NK: Tensor,
    /// The configured auxiliary balancing loss (unweighted), if any.
    pub aux_loss: Option<Tensor>,
    /// Router z-loss `mean_t logsumexp(logits_t)²` (unweighted), always computed.
    pub z_loss: Tensor,
    /// This layer's input to HF's model-level [`crate::load_balancing_loss_hf`].
    pub balance: BalanceStats,
    /// Loads, drops and imbalance of this forward.
    pub stats: RoutingStats,
    /// Where each kept copy goes, for the expert computation.
    pub dispatch: Dispatch,
    pub(crate) aux_loss_coef: f64,
    pub(crate) z_loss_coef: f64,
}

impl RoutingDecision {
    /// `aux_loss_coef · aux_loss + z_loss_coef · z_loss` with the config's
    /// coefficients (terms with a zero coefficient are left out), or None when
    /// both are off.
    pub fn weighted_loss(&self) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        let mut add = |t: Tensor| -> Result<()> {
            total = Some(match total.take() {
                Some(acc) => acc.add(&t)?,
                None => t,
            });
            Ok(())
        };
        if let (Some(aux), true) = (&self.aux_loss, self.aux_loss_coef > 0.0) {
            add(aux.mul_scalar(self.aux_loss_coef)?)?;
        }
        if self.z_loss_coef > 0.0 {
            add(self.z_loss.mul_scalar(self.z_loss_coef)?)?;
        }
        Ok(total)
    }

    /// Gathers token rows into expert order (`x_ND` → `x_MD`); see [`Dispatch::permute`].
    pub fn permute(&self, x_ND: &Tensor) -> Result<Tensor> {
        self.dispatch.permute(x_ND)
    }

    /// Segment sizes for `grouped_matmul`: kept copies per expert.
    pub fn counts(&self) -> &[usize] {
        self.dispatch.counts()
    }

    /// Weighted scatter of expert outputs back to tokens (`y_MD` → `[N, D]`)
    /// with [`RoutingDecision::weights_NK`]; see [`Dispatch::combine`].
    pub fn combine(&self, y_MD: &Tensor) -> Result<Tensor> {
        self.dispatch.combine(y_MD, &self.weights_NK)
    }
}
