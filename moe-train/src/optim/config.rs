//! AdamW hyper-parameters and the weight-decay grouping of parameters.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};

/// The paper's AdamW betas.
pub const PAPER_BETAS: (f64, f64) = (0.9, 0.95);
/// The paper's decoupled weight decay.
pub const PAPER_WEIGHT_DECAY: f64 = 0.1;
/// The paper's global gradient-norm clip.
pub const PAPER_CLIP_NORM: f64 = 1.0;

/// AdamW's hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Decay rate of the first moment.
    pub beta1: f64,
    /// Decay rate of the second moment.
    pub beta2: f64,
    /// Added to the denominator (after the bias-corrected square root, as in PyTorch).
    pub eps: f64,
    /// Decoupled weight decay for the decayed group.
    pub weight_decay: f64,
    /// Whether parameters whose name contains one of `embedding_names` are decayed.
    pub decay_embeddings: bool,
    /// Name fragments that mark embedding parameters.
    pub embedding_names: Vec<String>,
}

impl Default for AdamWConfig {
    /// The paper's settings: betas (0.9, 0.95), eps 1e-8, weight decay 0.1, embeddings
    /// decayed like other matrices.
    fn default() -> Self {
        Self {
            beta1: PAPER_BETAS.0,
            beta2: PAPER_BETAS.1,
            eps: 1e-8,
            weight_decay: PAPER_WEIGHT_DECAY,
            decay_embeddings: true,
            embedding_names: vec!["embed_tokens".into()],
        }
    }
}

impl AdamWConfig {
    /// Checks every value, naming the field at fault (`optimizer.beta2`).
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(TrainError::config(
                    format!("optimizer.{field}"),
                    format!("must be in [0, 1), got {v}"),
                ));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(TrainError::config(
                "optimizer.eps",
                format!("must be > 0, got {}", self.eps),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::config(
                "optimizer.weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        Ok(())
    }

    /// The weight decay of parameter `name` of rank `rank`: 0 for rank ≤ 1 (norm gains,
    /// biases) and, unless `decay_embeddings`, for embeddings; `weight_decay` otherwise.
    pub fn weight_decay_for(&self, name: &str, rank: usize) -> f64 {
        let embedding = self.embedding_names.iter().any(|e| name.contains(e.as_str()));
        if rank <= 1 || (embedding && !self.decay_embeddings) {
            0.0
        } else {
            self.weight_decay
        }
    }
}
