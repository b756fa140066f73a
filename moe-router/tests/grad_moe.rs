//! Finite-difference gradient checks (f64) through a whole small MoE layer —
//! router → dispatch → two grouped expert matmuls → weighted combine, plus the
//! aux and z losses — for every router, the capacity path, and an expert that
//! receives no token.

mod common;

use common::{moe_layer, moe_outputs, randn};
use moe_router::{AuxLoss, DropPolicy, RouteMode, RouterConfig};
use moe_tensor::init::Rng;
use moe_tensor::testing::{gradcheck_with, GradCheck};
use moe_tensor::Tensor;

const N: usize = 12;
const D: usize = 5;
const F: usize = 3;

/// Inputs x, router weight, W1, W2 for `e` experts (router std 1: clear choices).
fn inputs(seed: u64, e: usize) -> Vec<Tensor> {
    let mut rng = Rng::seed(seed);
    vec![
        randn(&mut rng, &[N, D], 1.0),
        randn(&mut rng, &[e, D], 1.0),
        randn(&mut rng, &[e, D, F], 0.5),
        randn(&mut rng, &[e, F, D], 0.5),
    ]
}

fn opts() -> GradCheck {
    GradCheck {
        atol: 1e-6,
        rtol: 1e-5,
        ..GradCheck::default()
    }
}

/// Runs the check and returns the decision of the unperturbed forward.
fn check(name: &str, config: RouterConfig, bias: Option<&[f32]>, mode: RouteMode, t: &[Tensor]) {
    let report =
        gradcheck_with(|t| moe_outputs(config, bias, mode, t), t, opts()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(report.checked > 100, "{name}: only {} partials checked", report.checked);
}

fn decision(config: RouterConfig, bias: Option<&[f32]>, mode: RouteMode, t: &[Tensor]) -> moe_router::RoutingDecision {
    moe_layer(config, bias, mode, &t[0], &t[1], &t[2], &t[3]).unwrap().1
}

#[test]
fn softmax_topk_routers() {
    let t = inputs(1, 4);
    let mut mixtral = RouterConfig::mixtral(4, 2);
    mixtral.aux_loss = AuxLoss::Switch;
    check("mixtral", mixtral, None, RouteMode::Train, &t);
    check(
        "qwen2_moe",
        RouterConfig::qwen2_moe(4, 2, false),
        None,
        RouteMode::Train,
        &t,
    );
    let mut ds = RouterConfig::deepseek_v2(4, 2, 2.5);
    ds.aux_loss = AuxLoss::Sequence { seq_len: 4 };
    check("deepseek_v2", ds, None, RouteMode::Train, &t);
    check(
        "switch",
        RouterConfig::penalty_balanced(4, 1),
        None,
        RouteMode::Train,
        &t,
    );
}

#[test]
fn sinkhorn_router_in_training_and_inference() {
    let t = inputs(2, 4);
    for k in [1, 2] {
        let config = RouterConfig::sinkhorn(4, k);
        // The balanced choice must differ from plain top-k somewhere, or this
        // would not test the Sinkhorn path.
        let train = decision(config, None, RouteMode::Train, &t);
        let eval = decision(config, None, RouteMode::Eval, &t);
        assert!(train.stats().unwrap().sinkhorn_iters.unwrap() >= 1);
        assert_ne!(
            train.topk_ids_NK.to_vec::<i64>().unwrap(),
            eval.topk_ids_NK.to_vec::<i64>().unwrap(),
            "k = {k}"
        );
        check(&format!("sinkhorn k={k} train"), config, None, RouteMode::Train, &t);
        check(&format!("sinkhorn k={k} eval"), config, None, RouteMode::Eval, &t);
    }
}

#[test]
fn aux_free_router_with_a_bias() {
    let t = inputs(3, 4);
    let mut config = RouterConfig::aux_free(4, 2, 1.5);
    config.aux_loss = AuxLoss::Sequence { seq_len: 6 };
    let bias = [0.3f32, -0.2, 0.0, 0.25];
    let biased = decision(config, Some(&bias), RouteMode::Train, &t);
    let plain = decision(config, None, RouteMode::Train, &t);
    assert_ne!(
        biased.topk_ids_NK.to_vec::<i64>().unwrap(),
        plain.topk_ids_NK.to_vec::<i64>().unwrap(),
        "the bias must change some choice"
    );
    check("aux_free", config, Some(&bias), RouteMode::Train, &t);
}

#[test]
fn capacity_path_by_position_and_by_score() {
    let t = inputs(4, 4);
    for policy in [DropPolicy::Position, DropPolicy::Score] {
        let mut config = RouterConfig::mixtral(4, 2).with_capacity(0.75, policy);
        config.aux_loss = AuxLoss::Switch;
        let d = decision(config, None, RouteMode::Train, &t);
        assert!(d.stats().unwrap().dropped_copies > 0, "{policy:?}: nothing dropped");
        check(&format!("capacity {policy:?}"), config, None, RouteMode::Train, &t);
        // Top-1 Switch with capacity: some tokens lose their only copy.
        let config = RouterConfig::switch(4).with_capacity(0.5, policy);
        let d = decision(config, None, RouteMode::Train, &t);
        assert!(d.stats().unwrap().dropped_tokens > 0);
        check(
            &format!("switch capacity {policy:?}"),
            config,
            None,
            RouteMode::Train,
            &t,
        );
    }
}

/// Inputs where expert `E−1` never makes anyone's top-2: x's last feature is
/// about 1 and the router gives that expert −6 on it, the others +6.
fn inputs_with_idle_expert(seed: u64, e: usize) -> Vec<Tensor> {
    let mut t = inputs(seed, e);
    let mut x = t[0].to_vec_f64().unwrap();
    for row in x.chunks_mut(D) {
        row[D - 1] = 1.0 + 0.1 * row[D - 1];
    }
    t[0] = Tensor::from_vec(x, (N, D), &t[0].device()).unwrap();
    let mut w = t[1].to_vec_f64().unwrap();
    for (i, row) in w.chunks_mut(D).enumerate() {
        row[D - 1] = if i == e - 1 { -6.0 } else { 6.0 };
    }
    t[1] = Tensor::from_vec(w, (e, D), &t[1].device()).unwrap();
    t
}

#[test]
fn expert_without_tokens_gets_zero_gradients() {
    let e = 5;
    let t = inputs_with_idle_expert(5, e);
    for config in [
        RouterConfig::penalty_balanced(e, 2),
        RouterConfig::sinkhorn(e, 2),
        RouterConfig::mixtral(e, 2),
    ] {
        let d = decision(config, None, RouteMode::Eval, &t);
        assert_eq!(d.stats().unwrap().tokens_per_expert[e - 1], 0, "{config:?}");
        check("idle expert", config, None, RouteMode::Eval, &t);
        // Zero, not missing: every expert weight has a full gradient.
        let params: Vec<Tensor> = t.iter().map(|x| x.to_param()).collect();
        let (y, route) = moe_layer(
            config,
            None,
            RouteMode::Eval,
            &params[0],
            &params[1],
            &params[2],
            &params[3],
        )
        .unwrap();
        let mut loss = y.sqr().unwrap().sum_all().unwrap();
        if let Some(l) = route.weighted_loss().unwrap() {
            loss = loss.add(&l).unwrap();
        }
        loss.backward().unwrap();
        for (i, w) in params[2..].iter().enumerate() {
            let g = w.grad().expect("expert weights have a gradient").to_vec_f64().unwrap();
            let per = g.len() / e;
            assert!(g[(e - 1) * per..].iter().all(|&v| v == 0.0), "W{}: idle expert", i + 1);
            assert!(g[..per].iter().any(|&v| v != 0.0), "W{}: busy expert", i + 1);
        }
        assert_eq!(params[1].grad().unwrap().dims(), &[e, D]);
    }
}
