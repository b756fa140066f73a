//! Per-layer routing statistics, computed on every forward: load per expert,
//! dropped share, max/mean load and the paper's Maximum Routing Imbalance.

use serde::{Deserialize, Serialize};

/// What one router forward did, for logging (serialises to one JSON object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutingStats {
    /// N: tokens routed.
    pub num_tokens: usize,
    /// K: experts per token.
    pub top_k: usize,
    /// Tokens whose top-k contains each expert, `[E]` (before capacity dropping).
    pub tokens_per_expert: Vec<usize>,
    /// Copies each expert actually processed, `[E]` (after capacity dropping).
    pub kept_per_expert: Vec<usize>,
    /// Token copies dropped by capacity.
    pub dropped_copies: usize,
    /// Tokens with every copy dropped (their MoE output is zero).
    pub dropped_tokens: usize,
    /// `dropped_copies / (N·K)`.
    pub dropped_fraction: f64,
    /// Largest entry of `tokens_per_expert`.
    pub max_load: usize,
    /// Mean of `tokens_per_expert` (`N·K / E`).
    pub mean_load: f64,
    /// `max_load / mean_load` (1 when balanced; `MRI · E / K`).
    pub max_over_mean: f64,
    /// Maximum Routing Imbalance: max over experts of the fraction of tokens
    /// whose top-k includes the expert, in `[K/E, 1]` (0 for an empty batch).
    pub mri: f64,
    /// Sinkhorn iterations run (Sinkhorn router in training only).
    pub sinkhorn_iters: Option<usize>,
}

/// `(dropped copies, tokens with every copy dropped)` of row-major `[N, K]`
/// per-copy flags, `dropped` telling whether a flag marks a dropped copy.
pub(crate) fn count_drops<T>(flags_NK: &[T], top_k: usize, dropped: impl Fn(&T) -> bool) -> (usize, usize) {
    let copies = flags_NK.iter().filter(|&f| dropped(f)).count();
    let tokens = flags_NK.chunks(top_k.max(1)).filter(|c| c.iter().all(&dropped)).count();
    (copies, tokens)
}

impl RoutingStats {
    /// Statistics of `N·K` assignments (`topk_ids_NK` row-major, ids already
    /// checked to be in `0..E`) and their keep flags.
    pub fn from_assignments(topk_ids_NK: &[i64], keep_NK: &[bool], top_k: usize, num_experts: usize) -> Self {
        let mut tokens_per_expert = vec![0usize; num_experts];
        let mut kept_per_expert = vec![0usize; num_experts];
        for (&id, &keep) in topk_ids_NK.iter().zip(keep_NK) {
            tokens_per_expert[id as usize] += 1;
            kept_per_expert[id as usize] += keep as usize;
        }
        let copies = topk_ids_NK.len();
        let num_tokens = copies.checked_div(top_k).unwrap_or(0);
        Self::from_counts(
            tokens_per_expert,
            kept_per_expert,
            count_drops(keep_NK, top_k, |&kp| !kp),
            num_tokens,
            top_k,
        )
    }

    /// Statistics from per-expert counts: `tokens_per_expert` before and
    /// `kept_per_expert` after capacity, `(dropped copies, dropped tokens)`,
    /// of `num_tokens` tokens routed to `top_k` experts each.
    pub fn from_counts(
        tokens_per_expert: Vec<usize>,
        kept_per_expert: Vec<usize>,
        (dropped_copies, dropped_tokens): (usize, usize),
        num_tokens: usize,
        top_k: usize,
    ) -> Self {
        let copies = num_tokens * top_k;
        let num_experts = tokens_per_expert.len();
        let max_load = tokens_per_expert.iter().copied().max().unwrap_or(0);
        let mean_load = copies as f64 / num_experts.max(1) as f64;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        RoutingStats {
            num_tokens,
            top_k,
            dropped_copies,
            dropped_tokens,
            dropped_fraction: ratio(dropped_copies as f64, copies as f64),
            max_load,
            mean_load,
            max_over_mean: ratio(max_load as f64, mean_load),
            mri: ratio(max_load as f64, num_tokens as f64),
            tokens_per_expert,
            kept_per_expert,
            sinkhorn_iters: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mri_bounds_and_drop_counts() {
        // Balanced: 4 tokens, top-2, 4 experts, each expert in exactly 2 top-k sets.
        let ids = [0i64, 1, 2, 3, 0, 1, 2, 3];
        let s = RoutingStats::from_assignments(&ids, &[true; 8], 2, 4);
        assert_eq!(s.mri, 0.5); // K / E
        assert_eq!(s.max_over_mean, 1.0);
        // Collapsed: every token picks expert 0 (and another): MRI = 1.
        let ids = [0i64, 1, 0, 2, 0, 3, 0, 1];
        let keep = [true, true, false, false, true, false, true, true];
        let s = RoutingStats::from_assignments(&ids, &keep, 2, 4);
        assert_eq!(s.mri, 1.0);
        assert_eq!(s.tokens_per_expert, vec![4, 2, 1, 1]);
        assert_eq!(s.kept_per_expert, vec![3, 2, 0, 0]);
        assert_eq!((s.dropped_copies, s.dropped_tokens), (3, 1));
        assert_eq!(s.dropped_fraction, 3.0 / 8.0);
        assert!((s.max_over_mean - s.mri * 4.0 / 2.0).abs() < 1e-12);
    }
}
