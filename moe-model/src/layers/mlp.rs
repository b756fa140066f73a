//! Gated feed-forward network: `down(act(gate(x)) ⊙ up(x))`.

use super::linear;
use crate::config::Activation;
use moe_tensor::{Result, Tensor, UnaryOp};

/// Applies the gate activation.
pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Swiglu => x.silu(),
        Activation::Geglu => x.gelu_tanh(),
        Activation::GegluErf => x.gelu_erf(),
    }
}

/// `act(gate) ⊙ up` as moe-tensor's fused gated op (one pass forward, one
/// backward; the same values as [`activate`] followed by a multiply).
pub fn gated(gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
    gate.gated(up, gate_op(act))
}

/// `act(gate) ⊙ up` for a fused gate/up projection `h [.., 2F]` (gate values,
/// then up values): the same values as [`gated`] on the two halves, without
/// copying them.
pub fn gated_packed(h: &Tensor, act: Activation) -> Result<Tensor> {
    h.gated_packed(gate_op(act))
}

fn gate_op(act: Activation) -> UnaryOp {
    match act {
        Activation::Swiglu => UnaryOp::Silu,
        Activation::Geglu => UnaryOp::GeluTanh,
        Activation::GegluErf => UnaryOp::GeluErf,
    }
}

/// A dense gated FFN (also the shared expert of an MoE block).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// `[F, D]`.
    pub gate_proj: Tensor,
    /// `[F, D]`.
    pub up_proj: Tensor,
    /// `[D, F]`.
    pub down_proj: Tensor,
    /// Gate activation.
    pub act: Activation,
}

impl Mlp {
    /// `x [.., D]` → `[.., D]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = linear(x, &self.gate_proj, None)?;
        let u = linear(x, &self.up_proj, None)?;
        linear(&gated(&g, &u, self.act)?, &self.down_proj, None)
    }
}
