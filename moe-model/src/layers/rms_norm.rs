//! RMSNorm: `x / sqrt(mean(x²) + eps) · w` over the last dim (LlamaRMSNorm).

use moe_tensor::{Result, Tensor};

/// Root-mean-square layer norm with a learned scale.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    /// `[D]`.
    pub weight: Tensor,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl RmsNorm {
    /// Normalises `x [.., D]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Composite of differentiable ops; exact in f32 like HF's f32 path.
        let inv = x.sqr()?.mean(&[-1], true)?.add_scalar(self.eps)?.sqrt()?.recip()?;
        x.mul(&inv)?.mul(&self.weight)
    }
}
