//! The result of routing one batch of tokens.

use crate::dispatch::Dispatch;
use crate::error::{Result, RouterError};
use crate::losses::BalanceStats;
use crate::stats::{count_drops, RoutingStats};
use moe_tensor::{Segments, Tensor};
use std::sync::OnceLock;

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
    /// 1 where a token copy was dropped by capacity, `[N, K]`, U8 (on
    /// CUDA also a copy whose expert id was out of range, which
    /// [`RoutingDecision::stats`] reports as an error).
    pub dropped_NK: Tensor,
    /// The configured auxiliary balancing loss (unweighted), if any.
    pub aux_loss: Option<Tensor>,
    /// Router z-loss `mean_t logsumexp(logits_t)²` (unweighted), always computed.
    pub z_loss: Tensor,
    /// This layer's input to HF's model-level [`crate::load_balancing_loss_hf`].
    pub balance: BalanceStats,
    /// Where each kept copy goes, for the expert computation.
    pub dispatch: Dispatch,
    pub(crate) aux_loss_coef: f64,
    pub(crate) z_loss_coef: f64,
    /// The statistics once computed.
    pub(crate) stats: OnceLock<RoutingStats>,
    /// What the statistics are computed from, when first asked.
    pub(crate) pending_stats: PendingStats,
}

/// The plan's statistics, still on the device: the copies per expert
/// before and after capacity, the dropped flags (with a capacity) and the
/// number of out-of-range ids the plan left out.
#[derive(Clone, Debug)]
pub(crate) struct PendingStats {
    pub selected_E: Tensor,
    pub kept_E: Tensor,
    pub dropped_NK: Option<Tensor>,
    pub invalid_ids: Tensor,
    pub num_tokens: usize,
    pub top_k: usize,
    /// Sinkhorn's iteration count (`[1]`, I64), when Sinkhorn chose.
    pub sinkhorn_iters: Option<Tensor>,
}

impl PendingStats {
    /// Reads the counts back in one copy (two with a capacity: the dropped
    /// flags too) and forms the statistics.
    fn compute(&self) -> Result<RoutingStats> {
        let e = self.selected_E.elem_count();
        let mut parts = vec![&self.selected_E, &self.kept_E, &self.invalid_ids];
        parts.extend(&self.sinkhorn_iters);
        let flat: Vec<Tensor> = parts
            .iter()
            .map(|t| t.flatten(0, -1))
            .collect::<moe_tensor::Result<_>>()?;
        let refs: Vec<&Tensor> = flat.iter().collect();
        let host = Tensor::cat(&refs, 0)?.to_vec::<i64>()?;
        let invalid = host[2 * e];
        if invalid != 0 {
            return Err(RouterError::Invalid {
                what: "expert ids",
                msg: format!("{invalid} routed copies chose an expert outside 0..E"),
            });
        }
        let counts = |r: std::ops::Range<usize>| -> Vec<usize> { host[r].iter().map(|&c| c.max(0) as usize).collect() };
        let (selected, kept) = (counts(0..e), counts(e..2 * e));
        let dropped = match &self.dropped_NK {
            None => (0, 0),
            Some(flags) => count_drops(&flags.to_vec::<u8>()?, self.top_k, |&f| f != 0),
        };
        let mut s = RoutingStats::from_counts(selected, kept, dropped, self.num_tokens, self.top_k);
        s.sinkhorn_iters = host.get(2 * e + 1).map(|&i| i.max(0) as usize);
        Ok(s)
    }
}

impl RoutingDecision {
    /// Loads, drops and imbalance of this forward. A plan made on the
    /// device is read back here, the first time they are asked for (so the
    /// forward itself never waits for the routing); an out-of-range expert
    /// id, which the device plan can only count, is reported here.
    pub fn stats(&self) -> Result<&RoutingStats> {
        if let Some(s) = self.stats.get() {
            return Ok(s);
        }
        let computed = self.pending_stats.compute()?;
        Ok(self.stats.get_or_init(|| computed))
    }

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

    /// The experts' rows for `grouped_matmul` (host counts, or offsets on
    /// the device for a device plan).
    pub fn segments(&self) -> &Segments {
        self.dispatch.segments()
    }

    /// Weighted scatter of expert outputs back to tokens (`y_MD` → `[N, D]`)
    /// with [`RoutingDecision::weights_NK`]; see [`Dispatch::combine`].
    pub fn combine(&self, y_MD: &Tensor) -> Result<Tensor> {
        self.dispatch.combine(y_MD, &self.weights_NK)
    }
}
