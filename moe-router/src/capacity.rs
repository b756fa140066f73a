//! Expert capacity: which routed token copies an expert keeps.
//!
//! With a capacity factor, expert e keeps at most `C = ceil(factor · N · K / E)`
//! copies (Megatron-LM's `get_capacity`); the rest are dropped, and a dropped
//! copy contributes nothing to its token's MoE output. Copies are ranked per
//! expert either by position (earlier tokens first) or by router score
//! (higher first, ties to the earlier token), both deterministic. The
//! ranking itself is part of the dispatch plan
//! ([`Tensor::dispatch_plan_limited`]), on the router's device.

use crate::config::{Capacity, DropPolicy};
use moe_tensor::{CopyLimit, Tensor};

/// Copies each expert may keep: `ceil(factor · N · K / E)`, or None when dropless.
pub fn expert_capacity(capacity: &Capacity, num_tokens: usize, top_k: usize, num_experts: usize) -> Option<usize> {
    match *capacity {
        Capacity::Dropless => None,
        Capacity::Factor { factor, .. } => {
            let share = (num_tokens * top_k) as f64 / num_experts.max(1) as f64;
            Some((factor * share).ceil() as usize)
        }
    }
}

/// The dispatch plan's limit for `N` tokens routed to `K` of `E` experts:
/// none when dropless, else the capacity by position or by `scores_NK`
/// (the router's scores of the chosen experts, ranking copies for
/// [`DropPolicy::Score`]).
pub fn copy_limit<'a>(
    capacity: &Capacity,
    num_tokens: usize,
    top_k: usize,
    num_experts: usize,
    scores_NK: &'a Tensor,
) -> CopyLimit<'a> {
    match (capacity, expert_capacity(capacity, num_tokens, top_k, num_experts)) {
        (Capacity::Factor { drop_policy, .. }, Some(c)) => match drop_policy {
            DropPolicy::Position => CopyLimit::FirstCopies(c),
            DropPolicy::Score => CopyLimit::TopScores {
                capacity: c,
                scores: scores_NK,
            },
        },
        _ => CopyLimit::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moe_tensor::Device;

    #[test]
    fn capacity_is_the_rounded_up_share() {
        let c = Capacity::Factor {
            factor: 1.0,
            drop_policy: DropPolicy::Position,
        };
        assert_eq!(expert_capacity(&c, 10, 2, 8), Some(3)); // 20 / 8 = 2.5
        assert_eq!(expert_capacity(&Capacity::Dropless, 10, 2, 8), None);
    }

    #[test]
    fn position_keeps_early_tokens_and_score_keeps_high_scores() {
        // 4 tokens, top-1, 2 experts, capacity 2; expert 0 gets 3 tokens.
        let ids = Tensor::from_vec(vec![0i64, 0, 1, 0], (4, 1), &Device::Cpu).unwrap();
        let scores = Tensor::from_vec(vec![0.1f64, 0.9, 0.5, 0.8], (4, 1), &Device::Cpu).unwrap();
        let dropped = |drop_policy| {
            let c = Capacity::Factor {
                factor: 1.0,
                drop_policy,
            };
            let plan = ids.dispatch_plan_limited(2, copy_limit(&c, 4, 1, 2, &scores)).unwrap();
            plan.dropped.to_vec::<u8>().unwrap()
        };
        assert_eq!(dropped(DropPolicy::Position), vec![0, 0, 0, 1]);
        assert_eq!(dropped(DropPolicy::Score), vec![1, 0, 0, 0]);
        assert!(matches!(
            copy_limit(&Capacity::Dropless, 4, 1, 2, &scores),
            CopyLimit::None
        ));
    }
}
