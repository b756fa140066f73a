//! The shapes a decay phase can take.

use serde::{Deserialize, Serialize};

/// How a decay phase moves from its start value to its end value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayShape {
    /// Straight line.
    #[default]
    Linear,
    /// Half a cosine period: `to + (from - to) · (1 + cos(π p)) / 2`.
    Cosine,
}

impl DecayShape {
    /// The value at progress `p ∈ [0, 1]` between `from` (p = 0) and `to` (p = 1).
    pub fn interpolate(self, from: f64, to: f64, p: f64) -> f64 {
        match self {
            Self::Linear => from + (to - from) * p,
            Self::Cosine => to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
        }
    }
}
