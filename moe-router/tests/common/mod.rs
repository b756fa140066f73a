//! Helpers shared by moe-router's integration tests.
#![allow(dead_code, non_snake_case)]

use moe_router::{RouteMode, Router, RouterConfig, RoutingDecision};
use moe_tensor::init::Rng;
use moe_tensor::{DType, Device, Tensor};

/// A seeded f64 tensor with N(0, std²) entries.
pub fn randn(rng: &mut Rng, dims: &[usize], std: f64) -> Tensor {
    rng.normal(dims.to_vec(), 0.0, std, DType::F64, &Device::Cpu).unwrap()
}

/// A small MoE layer: router → dispatch → experts `silu(x·W1[e])·W2[e]` as two
/// grouped matmuls → weighted combine. Inputs: x `[N, D]`, router weight
/// `[E, D]`, W1 `[E, D, F]`, W2 `[E, F, D]`. Returns the output `[N, D]` and
/// the routing decision.
pub fn moe_layer(
    config: RouterConfig,
    bias: Option<&[f32]>,
    mode: RouteMode,
    x: &Tensor,
    w_router: &Tensor,
    w1: &Tensor,
    w2: &Tensor,
) -> moe_router::Result<(Tensor, RoutingDecision)> {
    let router = Router::new(config, w_router.clone())?;
    if let (Some(b), Some(eb)) = (bias, router.expert_bias()) {
        eb.set_bias(b)?;
    }
    let route = router.route(x, mode)?;
    let x_MD = route.permute(x)?;
    let h_MF = x_MD.grouped_matmul(w1, route.segments())?.silu()?;
    let y_MD = h_MF.grouped_matmul(w2, route.segments())?;
    Ok((route.combine(&y_MD)?, route))
}

/// The layer output with the aux loss (if configured) and z-loss appended, flat.
pub fn moe_outputs(
    config: RouterConfig,
    bias: Option<&[f32]>,
    mode: RouteMode,
    t: &[Tensor],
) -> moe_tensor::Result<Tensor> {
    let (y, route) = moe_layer(config, bias, mode, &t[0], &t[1], &t[2], &t[3]).map_err(to_tensor_err)?;
    let mut parts = vec![y.flatten(0, -1)?, route.z_loss.reshape(1)?];
    if let Some(aux) = &route.aux_loss {
        parts.push(aux.reshape(1)?);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::cat(&refs, 0)
}

/// gradcheck wants moe_tensor errors; router errors become `Autograd` messages.
pub fn to_tensor_err(e: moe_router::RouterError) -> moe_tensor::Error {
    match e {
        moe_router::RouterError::Tensor(t) => t,
        other => moe_tensor::Error::Autograd { msg: other.to_string() },
    }
}
