//! Capacity factor 1.0 on a skewed router: the dropped copies are exactly
//! those an independent computation (plain loops over the logits) predicts,
//! they are counted exactly, and a dropped token's MoE output is zero.

// Plain index loops keep the reference computation obviously independent.
#![allow(clippy::needless_range_loop)]

mod common;

use common::randn;
use moe_router::{DropPolicy, RouteMode, Router, RouterConfig};
use moe_tensor::init::Rng;
use moe_tensor::Tensor;

const N: usize = 64;
const D: usize = 8;
const F: usize = 5;
const E: usize = 4;

/// What the test expects, computed without the crate: top-k per token and
/// which copies each expert keeps.
struct Expected {
    ids: Vec<Vec<usize>>,
    probs: Vec<Vec<f64>>,
    keep: Vec<Vec<bool>>,
}

fn expected(x: &[f64], w: &[f64], k: usize, capacity: usize, policy: DropPolicy) -> Expected {
    let mut ids = Vec::new();
    let mut probs = Vec::new();
    for t in 0..N {
        let logits: Vec<f64> = (0..E)
            .map(|e| (0..D).map(|i| x[t * D + i] * w[e * D + i]).sum())
            .collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
        let p: Vec<f64> = logits.iter().map(|l| (l - m).exp() / z).collect();
        let mut order: Vec<usize> = (0..E).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        ids.push(order[..k].to_vec());
        probs.push(p);
    }
    let mut keep = vec![vec![true; k]; N];
    for e in 0..E {
        let mut copies: Vec<(usize, usize)> = (0..N)
            .flat_map(|t| (0..k).map(move |j| (t, j)))
            .filter(|&(t, j)| ids[t][j] == e)
            .collect();
        if policy == DropPolicy::Score {
            copies.sort_by(|a, b| probs[b.0][e].total_cmp(&probs[a.0][e]));
        }
        for &(t, j) in copies.iter().skip(capacity) {
            keep[t][j] = false;
        }
    }
    Expected { ids, probs, keep }
}

#[test]
fn capacity_factor_one_drops_exactly_and_zeroes_dropped_tokens() {
    let mut rng = Rng::seed(21);
    let x_t = randn(&mut rng, &[N, D], 1.0);
    let mut w = randn(&mut rng, &[E, D], 0.5).to_vec_f64().unwrap();
    // Skew: expert 0 is favoured by +2.5 on every token (last feature ≈ 1).
    let mut x = x_t.to_vec_f64().unwrap();
    for row in x.chunks_mut(D) {
        row[D - 1] = 1.0;
    }
    for (e, row) in w.chunks_mut(D).enumerate() {
        row[D - 1] = [2.5, 0.5, 0.0, -0.5][e];
    }
    let dev = x_t.device();
    let x_t = Tensor::from_vec(x.clone(), (N, D), &dev).unwrap();
    let w_t = Tensor::from_vec(w.clone(), (E, D), &dev).unwrap();
    let w_exp = randn(&mut rng, &[E, D, F], 1.0);
    let w_exp_v = w_exp.to_vec_f64().unwrap();

    for (k, base) in [(1, RouterConfig::switch(E)), (2, RouterConfig::mixtral(E, 2))] {
        for policy in [DropPolicy::Position, DropPolicy::Score] {
            let capacity = (N * k).div_ceil(E); // ceil(1.0 · N·K / E)
            let want = expected(&x, &w, k, capacity, policy);
            let router = Router::new(base.with_capacity(1.0, policy), w_t.clone()).unwrap();
            let route = router.route(&x_t, RouteMode::Train).unwrap();
            let y = route
                .combine(
                    &route
                        .permute(&x_t)
                        .unwrap()
                        .grouped_matmul(&w_exp, route.segments())
                        .unwrap(),
                )
                .unwrap();
            let y = y.to_vec_f64().unwrap();
            let tag = format!("k={k} {policy:?}");

            // Counts: routed per expert, and dropped = Σ_e max(0, routed_e − C).
            let mut routed = [0usize; E];
            want.ids.iter().flatten().for_each(|&e| routed[e] += 1);
            let dropped: usize = routed.iter().map(|&r| r.saturating_sub(capacity)).sum();
            assert!(
                dropped > 0,
                "{tag}: the skewed router must overflow expert 0 ({routed:?})"
            );
            assert_eq!(route.stats().unwrap().tokens_per_expert, routed.to_vec(), "{tag}");
            assert_eq!(route.stats().unwrap().dropped_copies, dropped, "{tag}");
            let dropped_tokens = want.keep.iter().filter(|row| row.iter().all(|&kp| !kp)).count();
            assert_eq!(route.stats().unwrap().dropped_tokens, dropped_tokens, "{tag}");
            assert_eq!(
                route.stats().unwrap().dropped_fraction,
                dropped as f64 / (N * k) as f64,
                "{tag}"
            );
            assert!(
                route.stats().unwrap().kept_per_expert.iter().all(|&c| c <= capacity),
                "{tag}"
            );

            // The mask names exactly the predicted copies (ids compared as sets per token).
            let ids = route.topk_ids_NK.to_vec::<i64>().unwrap();
            let mask = route.dropped_NK.to_vec::<u8>().unwrap();
            for t in 0..N {
                for j in 0..k {
                    let e = ids[t * k + j] as usize;
                    let jj = want.ids[t].iter().position(|&w| w == e).expect("same top-k set");
                    assert_eq!(mask[t * k + j] == 1, !want.keep[t][jj], "{tag}: token {t} expert {e}");
                }
            }

            // Outputs: zero for a token with every copy dropped, else Σ kept w · x·W_e.
            for t in 0..N {
                let p = &want.probs[t];
                let sel: f64 = want.ids[t].iter().map(|&e| p[e]).sum();
                for f in 0..F {
                    let mut v = 0.0;
                    for (jj, &e) in want.ids[t].iter().enumerate() {
                        if want.keep[t][jj] {
                            let gate = if k == 1 { p[e] } else { p[e] / sel };
                            v += gate * (0..D).map(|i| x[t * D + i] * w_exp_v[(e * D + i) * F + f]).sum::<f64>();
                        }
                    }
                    let got = y[t * F + f];
                    if want.keep[t].iter().all(|&kp| !kp) {
                        assert_eq!(got, 0.0, "{tag}: dropped token {t} must output exactly zero");
                    } else {
                        assert!((got - v).abs() < 1e-12, "{tag}: token {t}: {got} vs {v}");
                    }
                }
            }
        }
    }
}
