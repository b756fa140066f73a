//! The decoder's building blocks. Each holds the parameter tensors it uses
//! (handles shared with the model's [`moe_tensor::Params`]) and a forward.

pub mod attention;
pub mod embedding;
pub mod mlp;
pub mod moe;
pub mod rms_norm;
pub mod rope;

use moe_tensor::{Result, Tensor};

/// `x · wᵀ (+ b)` for `x [.., I]`, `w [O, I]`, `b [O]` (torch's `F.linear`).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}
