//! Expert capacity: which routed token copies an expert keeps.
//!
//! With a capacity factor, expert e keeps at most `C = ceil(factor · N · K / E)`
//! copies (Megatron-LM's `get_capacity`); the rest are dropped, and a dropped
//! copy contributes nothing to its token's MoE output. Copies are ranked per
//! expert either by position (earlier tokens first) or by router score
//! (higher first, ties to the earlier token), both deterministic.

use crate::config::{Capacity, DropPolicy};
use crate::error::{Result, RouterError};

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

/// Keep mask over the `N·K` copies (row-major `[N, K]`): false where the copy is
/// dropped. `scores_NK` ranks copies for [`DropPolicy::Score`].
pub fn keep_mask(
    capacity: &Capacity,
    topk_ids_NK: &[i64],
    scores_NK: &[f64],
    top_k: usize,
    num_experts: usize,
) -> Result<Vec<bool>> {
    let copies = topk_ids_NK.len();
    let mut keep = vec![true; copies];
    let Capacity::Factor { drop_policy, .. } = *capacity else {
        return Ok(keep);
    };
    let n = copies / top_k.max(1);
    let cap = expert_capacity(capacity, n, top_k, num_experts).unwrap_or(usize::MAX);
    // Copies of each expert in token order (a token picks an expert at most once).
    let mut per_expert: Vec<Vec<usize>> = vec![Vec::new(); num_experts];
    for (i, &id) in topk_ids_NK.iter().enumerate() {
        let e = crate::dispatch::expert_index(id, num_experts)?;
        per_expert[e].push(i);
    }
    if drop_policy == DropPolicy::Score && scores_NK.len() != copies {
        return Err(RouterError::Invalid {
            what: "capacity",
            msg: format!("{} scores for {copies} token copies", scores_NK.len()),
        });
    }
    for list in &mut per_expert {
        if list.len() <= cap {
            continue;
        }
        if drop_policy == DropPolicy::Score {
            // Stable sort: equal scores keep token order.
            list.sort_by(|&a, &b| scores_NK[b].total_cmp(&scores_NK[a]));
        }
        for &i in &list[cap..] {
            keep[i] = false;
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let ids = [0i64, 0, 1, 0];
        let scores = [0.1, 0.9, 0.5, 0.8];
        let pos = Capacity::Factor {
            factor: 1.0,
            drop_policy: DropPolicy::Position,
        };
        assert_eq!(
            keep_mask(&pos, &ids, &scores, 1, 2).unwrap(),
            vec![true, true, true, false]
        );
        let score = Capacity::Factor {
            factor: 1.0,
            drop_policy: DropPolicy::Score,
        };
        assert_eq!(
            keep_mask(&score, &ids, &scores, 1, 2).unwrap(),
            vec![false, true, true, true]
        );
        assert!(keep_mask(&pos, &[0, 2], &[0.0, 0.0], 1, 2).is_err());
    }
}
