//! Gated feed-forward network: `down(act(gate(x)) ⊙ up(x))`.

use super::linear;
use crate::config::Activation;
use moe_tensor::{Result, Tensor};

/// Applies the gate activation.
pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Swiglu => x.silu(),
        Activation::Geglu => x.gelu_tanh(),
        Activation::GegluErf => x.gelu_erf(),
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
        let g = activate(&linear(x, &self.gate_proj, None)?, self.act)?;
        let u = linear(x, &self.up_proj, None)?;
        linear(&g.mul(&u)?, &self.down_proj, None)
    }
}
