//! Routers and balancing losses against goldens computed by transformers and by
//! PyTorch transcriptions of Megatron-LM and DeepSeek code
//! (`tools/goldens/router/gen_router.py`, output committed beside it).

use moe_router::{
    load_balancing_loss_hf, sinkhorn, AuxLoss, BalanceStats, RouteMode, Router, RouterConfig, RoutingDecision,
};
use moe_tensor::{DType, Device, Tensor};
use std::collections::BTreeMap;

const E: usize = 8;
const K: usize = 2;

fn goldens() -> BTreeMap<String, Tensor> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/goldens/router/router.safetensors"
    );
    moe_tensor::safetensors::load(path, &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

/// Asserts |a − b| ≤ atol + rtol·|b| elementwise.
fn close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: {g} vs {w}");
    }
}

/// Each token's (id, weight) pairs sorted by id, as the golden stores them.
fn by_id(d: &RoutingDecision) -> (Vec<i64>, Vec<f64>) {
    let ids = d.topk_ids_NK.to_vec::<i64>().unwrap();
    let w = vals(&d.weights_NK);
    let k = d.topk_ids_NK.dims()[1];
    let mut out = (Vec::new(), Vec::new());
    for (ids, w) in ids.chunks(k).zip(w.chunks(k)) {
        let mut pairs: Vec<(i64, f64)> = ids.iter().copied().zip(w.iter().copied()).collect();
        pairs.sort_by_key(|p| p.0);
        out.0.extend(pairs.iter().map(|p| p.0));
        out.1.extend(pairs.iter().map(|p| p.1));
    }
    out
}

#[test]
fn hf_load_balancing_loss_matches_transformers() {
    let g = goldens();
    for k in [1, 2] {
        let layers: Vec<Tensor> = (0..2).map(|l| g[&format!("logits_l{l}")].to_param()).collect();
        // Once from the logits (what HF recomputes), once from the routers' decisions.
        let stats: Vec<BalanceStats> = layers
            .iter()
            .map(|l| BalanceStats::from_logits(l, k).unwrap())
            .collect();
        let loss = load_balancing_loss_hf(&stats.iter().collect::<Vec<_>>()).unwrap();
        close(
            &format!("hf_aux_k{k}"),
            &vals(&loss),
            &vals(&g[&format!("hf_aux_k{k}")]),
            1e-6,
            1e-6,
        );
        loss.backward().unwrap();
        for (l, t) in layers.iter().enumerate() {
            let want = vals(&g[&format!("hf_aux_k{k}_grad_l{l}")]);
            close(
                &format!("hf_aux_k{k} grad l{l}"),
                &vals(&t.grad().unwrap()),
                &want,
                1e-7,
                1e-4,
            );
        }
        let router = Router::new(
            RouterConfig::mixtral(E, k),
            Tensor::zeros((E, 3), DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        let decisions: Vec<RoutingDecision> = layers
            .iter()
            .map(|l| router.route_logits(&l.detach(), RouteMode::Train).unwrap())
            .collect();
        let loss = load_balancing_loss_hf(&decisions.iter().map(|d| &d.balance).collect::<Vec<_>>()).unwrap();
        close(
            "hf_aux via routers",
            &vals(&loss),
            &vals(&g[&format!("hf_aux_k{k}")]),
            1e-6,
            1e-6,
        );
    }
}

/// The decision of a softmax router with `aux` on layer 0's logits in f64.
fn route_l0(g: &BTreeMap<String, Tensor>, mut config: RouterConfig, aux: AuxLoss) -> (Tensor, RoutingDecision) {
    config.aux_loss = aux;
    let l0 = g["logits_l0"].to_dtype(DType::F64).unwrap().to_param();
    let router = Router::new(config, Tensor::zeros((E, 3), DType::F64, &Device::Cpu).unwrap()).unwrap();
    let d = router.route_logits(&l0, RouteMode::Train).unwrap();
    (l0, d)
}

#[test]
fn megatron_switch_aux_loss_matches_reference() {
    let g = goldens();
    let (l0, d) = route_l0(&g, RouterConfig::qwen2_moe(E, K, false), AuxLoss::Switch);
    let aux = d.aux_loss.unwrap();
    close("megatron_aux", &vals(&aux), &vals(&g["megatron_aux"]), 1e-12, 1e-12);
    aux.backward().unwrap();
    close(
        "megatron_aux grad",
        &vals(&l0.grad().unwrap()),
        &vals(&g["megatron_aux_grad"]),
        1e-12,
        1e-9,
    );
    // HF's per-layer value is K times Megatron's (Σ f = K rather than 1).
    let hf_one_layer = load_balancing_loss_hf(&[&d.balance]).unwrap().to_scalar_f64().unwrap();
    assert!((hf_one_layer - K as f64 * vals(&g["megatron_aux"])[0]).abs() < 1e-12);
}

#[test]
fn sequence_aux_loss_matches_deepseek_formula() {
    let g = goldens();
    let (l0, d) = route_l0(
        &g,
        RouterConfig::deepseek_v2(E, K, 1.0),
        AuxLoss::Sequence { seq_len: 6 },
    );
    let aux = d.aux_loss.unwrap();
    close("seq_aux", &vals(&aux), &vals(&g["seq_aux"]), 1e-12, 1e-12);
    aux.backward().unwrap();
    close(
        "seq_aux grad",
        &vals(&l0.grad().unwrap()),
        &vals(&g["seq_aux_grad"]),
        1e-12,
        1e-9,
    );
}

#[test]
fn z_loss_matches_logsumexp_squared() {
    let g = goldens();
    let (l0, d) = route_l0(&g, RouterConfig::mixtral(E, K), AuxLoss::None);
    close("z_loss", &vals(&d.z_loss), &vals(&g["z_loss"]), 1e-12, 1e-12);
    d.z_loss.backward().unwrap();
    close(
        "z_loss grad",
        &vals(&l0.grad().unwrap()),
        &vals(&g["z_loss_grad"]),
        1e-12,
        1e-9,
    );
}

#[test]
fn routers_match_transformers_modules() {
    let g = goldens();
    let (x, w) = (&g["router_x"], &g["router_w"]);
    let bias: Vec<f32> = g["dsv3_bias"].to_vec().unwrap();
    let cases = [
        ("mixtral", RouterConfig::mixtral(E, K)),
        ("qwen2", RouterConfig::qwen2_moe(E, K, false)),
        ("dsv2", RouterConfig::deepseek_v2(E, K, 2.5)),
        ("dsv3", RouterConfig::aux_free(E, K, 2.5)),
    ];
    for (name, config) in cases {
        let router = Router::new(config, w.clone()).unwrap();
        if let Some(b) = router.expert_bias() {
            b.set_bias(&bias).unwrap();
        }
        let d = router.route(x, RouteMode::Eval).unwrap();
        assert_eq!(d.logits_NE.dtype(), DType::F32);
        let (ids, weights) = by_id(&d);
        assert_eq!(ids, g[&format!("{name}_ids")].to_vec::<i64>().unwrap(), "{name} ids");
        close(
            &format!("{name} weights"),
            &weights,
            &vals(&g[&format!("{name}_weights")]),
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn sinkhorn_matches_megatron() {
    let g = goldens();
    let l0 = &g["logits_l0"];
    let (balanced, iters) = sinkhorn(l0, 1e-4, 10_000).unwrap();
    assert!(iters > 1);
    close("sinkhorn", &vals(&balanced), &vals(&g["sinkhorn_balanced"]), 1e-9, 1e-4);
    for k in [1, 2] {
        let router = Router::new(
            RouterConfig::sinkhorn(E, k),
            Tensor::zeros((E, 3), DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        let d = router.route_logits(l0, RouteMode::Train).unwrap();
        // The router's statistics report the iterations the balancing ran.
        assert_eq!(d.stats().unwrap().sinkhorn_iters, Some(iters), "k = {k}");
        assert_eq!(
            by_id(&d).0,
            g[&format!("sinkhorn_ids_k{k}")].to_vec::<i64>().unwrap(),
            "k = {k}"
        );
    }
}
