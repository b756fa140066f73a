//! Balancing behaviour on a skewed router: Sinkhorn selection spreads tokens
//! evenly where softmax top-k does not, and the aux-free bias pulls a skewed
//! load toward uniform over update steps.

mod common;

use common::randn;
use moe_router::{RouteMode, Router, RouterConfig};
use moe_tensor::init::Rng;
use moe_tensor::{DType, Tensor};

const D: usize = 16;
const E: usize = 8;

/// Per-expert offsets that make the router strongly prefer low expert ids.
const SKEW: [f64; E] = [2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5];

/// A router weight `[E, D]` (f32) whose last input feature carries `SKEW`.
fn skewed_weight(rng: &mut Rng) -> Tensor {
    let mut w = randn(rng, &[E, D], 0.3).to_vec_f64().unwrap();
    for (e, row) in w.chunks_mut(D).enumerate() {
        row[D - 1] = SKEW[e];
    }
    Tensor::from_vec(w, (E, D), &moe_tensor::Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

/// `n` tokens whose last feature is 1 (so the skew applies to every token).
fn tokens(rng: &mut Rng, n: usize) -> Tensor {
    let mut x = randn(rng, &[n, D], 1.0).to_vec_f64().unwrap();
    for row in x.chunks_mut(D) {
        row[D - 1] = 1.0;
    }
    Tensor::from_vec(x, (n, D), &moe_tensor::Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

#[test]
fn sinkhorn_selection_is_near_uniform_where_softmax_topk_is_not() {
    let mut rng = Rng::seed(7);
    let w = skewed_weight(&mut rng);
    let n = 2048;
    let x = tokens(&mut rng, n);
    for k in [1, 2] {
        let uniform = (n * k) as f64 / E as f64;
        let softmax = Router::new(RouterConfig::mixtral(E, k), w.clone()).unwrap();
        let sinkhorn = Router::new(RouterConfig::sinkhorn(E, k), w.clone()).unwrap();
        let s = softmax.route(&x, RouteMode::Train).unwrap().stats().unwrap().clone();
        let b = sinkhorn.route(&x, RouteMode::Train).unwrap().stats().unwrap().clone();
        println!(
            "k={k} softmax {:?} (max/mean {:.3})",
            s.tokens_per_expert, s.max_over_mean
        );
        println!(
            "k={k} sinkhorn {:?} (max/mean {:.3}, {} iterations)",
            b.tokens_per_expert,
            b.max_over_mean,
            b.sinkhorn_iters.unwrap()
        );
        // Stated tolerance: every Sinkhorn count within 15% of the uniform share
        // (the soft marginals are balanced exactly; the hard top-k only nearly).
        for &c in &b.tokens_per_expert {
            assert!(
                (c as f64 - uniform).abs() <= 0.15 * uniform,
                "k={k}: sinkhorn count {c} vs {uniform}"
            );
        }
        // Softmax top-k on the same router is far from it.
        assert!(s.max_over_mean > 2.0, "k={k}: softmax max/mean {}", s.max_over_mean);
        assert!(s.tokens_per_expert.iter().any(|&c| (c as f64) < 0.25 * uniform));
        // At inference Sinkhorn does not balance: it is plain top-k on the activations.
        let eval = sinkhorn.route(&x, RouteMode::Eval).unwrap().stats().unwrap().clone();
        assert!(eval.max_over_mean > 2.0, "k={k}: eval max/mean {}", eval.max_over_mean);
    }
}

#[test]
fn aux_free_bias_moves_a_skewed_load_toward_uniform() {
    let mut rng = Rng::seed(8);
    let w = skewed_weight(&mut rng);
    let mut config = RouterConfig::aux_free(E, 2, 1.0);
    if let moe_router::RouterKind::AuxFree(a) = &mut config.kind {
        a.bias_update_rate = 0.01;
    }
    let router = Router::new(config, w).unwrap();
    let bias = router.expert_bias().unwrap();
    let mut history = Vec::new();
    for _step in 0..300 {
        // A fresh batch per step, as in training; the bias updates after each.
        let x = tokens(&mut rng, 512);
        let stats = router.route(&x, RouteMode::Train).unwrap().stats().unwrap().clone();
        history.push(stats.max_over_mean);
        assert_eq!(bias.pending_load().unwrap().iter().sum::<u64>(), 512 * 2);
        bias.update().unwrap();
    }
    let start = history[0];
    let end = history[280..].iter().sum::<f64>() / 20.0;
    println!("aux-free max/mean: step 0 {start:.3}, last 20 steps {end:.3}");
    println!("bias {:?}", bias.bias());
    assert!(start > 2.0, "the router starts skewed: {start}");
    assert!(end < 1.25, "balanced after updates: {end}");
    // The most favoured expert was pushed down, the least favoured up.
    let b = bias.bias();
    assert!(b[0] < 0.0 && b[E - 1] > 0.0, "{b:?}");
    // Eval forwards record nothing.
    router.route(&tokens(&mut rng, 64), RouteMode::Eval).unwrap();
    assert_eq!(bias.pending_load().unwrap().iter().sum::<u64>(), 0);
}
