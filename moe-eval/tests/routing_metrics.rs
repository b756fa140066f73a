//! Routing metrics on hand-written top-k choices; every expected value is
//! worked out by hand in the comments.

use moe_eval::routing::{
    batch_mri, co_activation, median, routing_change, routing_load, vocab_specialisation, RoutingTrace,
};

const E: usize = 4;
const K: usize = 2;

/// 7 tokens, top-2 of 4 experts, expert 3 never chosen, batches of 3, 3 and 1 tokens.
/// t0 [0,1] t1 [0,2] t2 [1,0] | t3 [2,1] t4 [0,2] t5 [1,0] | t6 [0,1]
fn trace_a() -> RoutingTrace {
    let mut tr = RoutingTrace::default();
    let ids = [10u32, 11, 10, 12, 11, 12, 11];
    tr.push_raw(&ids[0..3], &[(1, E, K, vec![0, 1, 0, 2, 1, 0])]).unwrap();
    tr.push_raw(&ids[3..6], &[(1, E, K, vec![2, 1, 0, 2, 1, 0])]).unwrap();
    tr.push_raw(&ids[6..7], &[(1, E, K, vec![0, 1])]).unwrap();
    tr
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn load_shares_dead_expert_entropy_and_mri() {
    let loads = routing_load(&trace_a());
    assert_eq!(loads.len(), 1);
    let l = &loads[0];
    // Assignments: e0 in t0 t1 t2 t4 t5 t6 = 6, e1 in t0 t2 t3 t5 t6 = 5, e2 in t1 t3 t4 = 3, e3 none; 14 in all.
    assert_eq!((l.layer, l.num_experts, l.top_k, l.tokens), (1, 4, 2, 7));
    for (got, want) in l.load_share.iter().zip([6.0 / 14.0, 5.0 / 14.0, 3.0 / 14.0, 0.0]) {
        close(*got, want);
    }
    close(l.min_share, 0.0);
    close(l.max_share, 6.0 / 14.0);
    close(l.mean_share, 0.25);
    close(l.max_over_mean, 12.0 / 7.0);
    assert_eq!(l.dead_experts, vec![3]);
    close(l.dead_fraction, 0.25);
    let h = -[6.0f64 / 14.0, 5.0 / 14.0, 3.0 / 14.0]
        .iter()
        .map(|p| p * p.ln())
        .sum::<f64>();
    close(l.load_entropy, h);
    close(l.load_entropy_norm, h / 4f64.ln());
    // Batch 1: e0 in all 3 tokens -> 1. Batch 2: each of e0, e1, e2 in 2 of 3 -> 2/3.
    // Batch 3: one token -> 1. Median of [1, 2/3, 1] = 1 (the mean would be 8/9).
    assert_eq!(l.mri_per_batch.len(), 3);
    close(l.mri_per_batch[0], 1.0);
    close(l.mri_per_batch[1], 2.0 / 3.0);
    close(l.mri_per_batch[2], 1.0);
    close(l.mri_median, 1.0);
}

#[test]
fn mri_bounds_and_median() {
    // Perfectly balanced top-2 of 4: each expert in 2 of 4 tokens -> K/E = 0.5.
    close(batch_mri(&[0, 1, 2, 3, 0, 1, 2, 3], 2, 4), 0.5);
    // Top-1: 3 of 4 tokens on expert 2.
    close(batch_mri(&[2, 2, 0, 2], 1, 4), 0.75);
    close(median(&[0.5, 0.9, 0.6, 0.7]), 0.65);
    close(median(&[]), 0.0);
}

#[test]
fn identical_routing_changes_by_exactly_zero() {
    let a = trace_a();
    let c = routing_change(&a, &a.clone()).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].change, 0.0);
    assert_eq!(c[0].saturation, 1.0);
    assert_eq!(c[0].top1_agreement, 1.0);
}

#[test]
fn routing_change_counts_shared_choices() {
    let a = trace_a();
    // B differs on t0 (same set, order swapped), t1 ([0,3]: one of two kept), t2 ([2,3]: none kept).
    let mut b = RoutingTrace::default();
    let ids = [10u32, 11, 10, 12, 11, 12, 11];
    b.push_raw(&ids[0..3], &[(1, E, K, vec![1, 0, 0, 3, 2, 3])]).unwrap();
    b.push_raw(&ids[3..6], &[(1, E, K, vec![2, 1, 0, 2, 1, 0])]).unwrap();
    b.push_raw(&ids[6..7], &[(1, E, K, vec![0, 1])]).unwrap();
    let c = &routing_change(&a, &b).unwrap()[0];
    // Overlaps: 2 + 1 + 0 + 2·4 = 11 of 14 choices; top-1 equal on t1 t3 t4 t5 t6 = 5 of 7.
    close(c.saturation, 11.0 / 14.0);
    close(c.change, 3.0 / 14.0);
    close(c.top1_agreement, 5.0 / 7.0);
    assert_eq!(c.tokens, 7);
}

#[test]
fn routing_change_refuses_different_tokens_or_layers() {
    let a = trace_a();
    let mut b = trace_a();
    b.token_ids_N[0] = 13;
    assert!(routing_change(&a, &b)
        .unwrap_err()
        .to_string()
        .contains("different tokens"));
    let mut c = RoutingTrace::default();
    c.push_raw(&a.token_ids_N, &[(1, 8, K, vec![0; 14])]).unwrap();
    assert!(routing_change(&a, &c).unwrap_err().to_string().contains("E = 8"));
}

#[test]
fn co_activation_is_conditional_share() {
    let co = co_activation(&trace_a(), 1).unwrap();
    // Tokens containing each expert: 6, 5, 3, 0.
    assert_eq!(co.tokens_per_expert, vec![6, 5, 3, 0]);
    // Both 0 and 1: t0 t2 t5 t6 = 4. Both 0 and 2: t1 t4 = 2. Both 1 and 2: t3 = 1.
    let want = [
        [1.0, 4.0 / 6.0, 2.0 / 6.0, 0.0],
        [4.0 / 5.0, 1.0, 1.0 / 5.0, 0.0],
        [2.0 / 3.0, 1.0 / 3.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ];
    for (got, want) in co.p.iter().zip(want) {
        for (g, w) in got.iter().zip(want) {
            close(*g, w);
        }
    }
    assert!(co_activation(&trace_a(), 0)
        .unwrap_err()
        .to_string()
        .contains("not an MoE layer"));
}

#[test]
fn vocabulary_specialisation_top_tokens() {
    // Token 10 at t0 t2 ({0,1} twice); 11 at t1 t4 t6 ({0,2}, {0,2}, {0,1}); 12 at t3 t5 ({1,2}, {0,1}).
    let v = vocab_specialisation(&trace_a(), 1, 5, 1).unwrap();
    let e0: Vec<(u32, u64, f64)> = v.experts[0]
        .top_tokens
        .iter()
        .map(|t| (t.token_id, t.count, t.share))
        .collect();
    // Expert 0: 11 -> 3/3, 10 -> 2/2 (tie on share: more occurrences first), 12 -> 1/2.
    assert_eq!(e0, vec![(11, 3, 1.0), (10, 2, 1.0), (12, 2, 0.5)]);
    let e2: Vec<(u32, f64)> = v.experts[2].top_tokens.iter().map(|t| (t.token_id, t.share)).collect();
    assert_eq!(e2.len(), 2);
    assert_eq!(e2[0].0, 11);
    close(e2[0].1, 2.0 / 3.0);
    assert_eq!(e2[1].0, 12);
    close(e2[1].1, 0.5);
    assert!(v.experts[3].top_tokens.is_empty());
    // min_count 3 keeps only token 11.
    let v3 = vocab_specialisation(&trace_a(), 1, 5, 3).unwrap();
    assert!(v3.experts.iter().all(|e| e.top_tokens.iter().all(|t| t.token_id == 11)));
}

#[test]
fn vocabulary_specialisation_mean_max_share_top1() {
    // K = 1, E = 2: token 5 -> experts 0, 1; token 6 -> 1, 1. Max shares 1/2 and 1,
    // weighted by occurrences: (1 + 2) / 4.
    let mut tr = RoutingTrace::default();
    tr.push_raw(&[5, 5, 6, 6], &[(0, 2, 1, vec![0, 1, 1, 1])]).unwrap();
    close(vocab_specialisation(&tr, 0, 3, 1).unwrap().mean_max_share, 0.75);
}

#[test]
fn bad_expert_ids_are_errors() {
    let mut tr = RoutingTrace::default();
    let err = tr.push_raw(&[1, 2], &[(0, 4, 2, vec![0, 1, 2, 4])]).unwrap_err();
    assert!(err.to_string().contains("expert id 4 outside 0..4"), "{err}");
    let err = tr.push_raw(&[1, 2], &[(0, 4, 2, vec![0, 1, 2])]).unwrap_err();
    assert!(err.to_string().contains("3 expert ids for 2 tokens"), "{err}");
}
