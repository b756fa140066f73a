//! The MoE block: a moe-router [`Router`] picks experts per token, token copies
//! are sorted by expert and run through all experts with two grouped matmuls,
//! then weighted back; plus an optional always-on shared expert (optionally
//! gated by `sigmoid(x·w)`, as in Qwen2-MoE).

use super::linear;
use super::mlp::{gated_packed, Mlp};
use crate::config::{Activation, AuxLossForm, ModelConfig, MoeConfig};
use crate::decoder::{mlp_from, take};
use crate::{Error, Result};
use moe_router::{load_balancing_loss_hf, RouteMode, Router, RoutingDecision};
use moe_tensor::{Params, Tensor};
use std::sync::Arc;

/// One MoE layer's routing from a forward pass.
#[derive(Clone, Debug)]
pub struct MoeRouting {
    /// Index of the decoder layer.
    pub layer: usize,
    /// What the router decided: experts, weights, losses, statistics.
    pub decision: RoutingDecision,
}

/// Routed experts (stacked as in transformers v5) and an optional shared expert.
#[derive(Clone, Debug)]
pub struct MoeBlock {
    /// The router (its weight is the `mlp.gate.weight` parameter).
    pub router: Arc<Router>,
    /// `[E, 2F, D]`: each expert's gate rows, then its up rows.
    pub gate_up_proj: Tensor,
    /// `[E, D, F]`.
    pub down_proj: Tensor,
    /// The shared expert.
    pub shared: Option<Mlp>,
    /// `[1, D]`: the shared expert's sigmoid gate.
    pub shared_gate: Option<Tensor>,
    /// Gate activation of every expert.
    pub act: Activation,
}

impl MoeBlock {
    /// The block over `{prefix}.gate.weight`, `{prefix}.experts.*` and
    /// `{prefix}.shared_expert*` in `params`.
    pub fn from_params(cfg: &ModelConfig, params: &Params, prefix: &str) -> Result<Self> {
        let m = cfg
            .moe
            .as_ref()
            .ok_or_else(|| Error::config("moe", "an MoE layer needs the moe section"))?;
        let (d, e, f) = (cfg.hidden_size, m.num_experts(), m.expert_intermediate_size);
        let router_w = take(params, &format!("{prefix}.gate.weight"), &[e, d])?;
        let shared = if m.shared_intermediate_size > 0 {
            Some(mlp_from(params, &format!("{prefix}.shared_expert"), cfg)?)
        } else {
            None
        };
        let shared_gate = if m.shared_expert_gate {
            Some(take(params, &format!("{prefix}.shared_expert_gate.weight"), &[1, d])?)
        } else {
            None
        };
        Ok(MoeBlock {
            router: Arc::new(Router::new(m.router, router_w)?),
            gate_up_proj: take(params, &format!("{prefix}.experts.gate_up_proj"), &[e, 2 * f, d])?,
            down_proj: take(params, &format!("{prefix}.experts.down_proj"), &[e, d, f])?,
            shared,
            shared_gate,
            act: cfg.activation,
        })
    }

    /// `x [B, T, D]` → `[B, T, D]` and the layer's routing.
    pub fn forward(&self, x: &Tensor, layer: usize, mode: RouteMode) -> Result<(Tensor, MoeRouting)> {
        let dims = x.dims().to_vec();
        let d = dims[dims.len() - 1];
        let x_nd = x.reshape((x.elem_count() / d, d))?;
        let route = self.router.route(&x_nd, mode)?;
        let x_md = route.permute(&x_nd)?;
        let h_m2f = x_md.grouped_matmul(&self.gate_up_proj.transpose(1, 2)?, route.segments())?;
        let g_mf = gated_packed(&h_m2f, self.act)?;
        let y_md = g_mf.grouped_matmul(&self.down_proj.transpose(1, 2)?, route.segments())?;
        let mut y_nd = route.combine(&y_md)?;
        if let Some(shared) = &self.shared {
            let mut s = shared.forward(&x_nd)?;
            if let Some(gw) = &self.shared_gate {
                s = s.mul(&linear(&x_nd, gw, None)?.sigmoid()?)?;
            }
            y_nd = y_nd.add(&s)?;
        }
        let routing = MoeRouting { layer, decision: route };
        Ok((y_nd.reshape(dims)?, routing))
    }
}

/// The model's load-balancing loss (unweighted) from every MoE layer's routing,
/// in the config's [`AuxLossForm`]. Zero when the routers report none.
pub fn aux_loss(m: &MoeConfig, routing: &[MoeRouting]) -> Result<Tensor> {
    let first = routing
        .first()
        .ok_or_else(|| Error::config("moe", "an MoE model produced no routing"))?;
    match m.aux_loss_form {
        AuxLossForm::Hf => {
            let stats: Vec<_> = routing.iter().map(|r| &r.decision.balance).collect();
            Ok(load_balancing_loss_hf(&stats)?)
        }
        AuxLossForm::PerLayer => {
            let mut total = first.decision.z_loss.zeros_like()?;
            for r in routing {
                if let Some(a) = &r.decision.aux_loss {
                    total = total.add(a)?;
                }
            }
            Ok(total)
        }
    }
}

/// The router z-loss summed over MoE layers (unweighted).
pub fn z_loss(routing: &[MoeRouting]) -> Result<Tensor> {
    let first = routing
        .first()
        .ok_or_else(|| Error::config("moe", "an MoE model produced no routing"))?;
    let mut total = first.decision.z_loss.clone();
    for r in &routing[1..] {
        total = total.add(&r.decision.z_loss)?;
    }
    Ok(total)
}
