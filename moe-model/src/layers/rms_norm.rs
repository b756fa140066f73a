//! RMSNorm: `x / sqrt(mean(x²) + eps) · w` over the last dim (LlamaRMSNorm),
//! as moe-tensor's fused `rms_norm` op (one pass forward, one backward).

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
        x.rms_norm(&self.weight, self.eps)
    }
}
