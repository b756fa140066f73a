//! Routing change between two checkpoints on identical tokens (OLMoE's
//! "router saturation"): the share of a token's top-k experts at checkpoint 1
//! that are also among its top-k at checkpoint 2.

use super::trace::RoutingTrace;
use crate::error::{EvalError, Result};
use serde::{Deserialize, Serialize};

/// Routing agreement of one MoE layer between two checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerChange {
    /// Decoder layer index.
    pub layer: usize,
    /// Tokens compared.
    pub tokens: u64,
    /// Mean over tokens of |top-k₁ ∩ top-k₂| / K (1 = identical routing).
    pub saturation: f64,
    /// `1 - saturation`: the share of top-k choices that changed.
    pub change: f64,
    /// Share of tokens whose top-1 (first-ranked) expert is the same.
    pub top1_agreement: f64,
}

/// Per-layer routing change from `a` to `b`, which must hold the same tokens
/// and the same MoE layers (E and K included).
pub fn routing_change(a: &RoutingTrace, b: &RoutingTrace) -> Result<Vec<LayerChange>> {
    if a.token_ids_N != b.token_ids_N {
        return Err(EvalError::Incompatible(format!(
            "the two routings were recorded on different tokens ({} vs {} tokens)",
            a.num_tokens(),
            b.num_tokens()
        )));
    }
    if a.layers.len() != b.layers.len() {
        return Err(EvalError::Incompatible(format!(
            "{} MoE layers vs {}",
            a.layers.len(),
            b.layers.len()
        )));
    }
    let mut out = Vec::with_capacity(a.layers.len());
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        if (la.layer, la.num_experts, la.top_k) != (lb.layer, lb.num_experts, lb.top_k) {
            return Err(EvalError::Incompatible(format!(
                "layer {} (E = {}, K = {}) vs layer {} (E = {}, K = {})",
                la.layer, la.num_experts, la.top_k, lb.layer, lb.num_experts, lb.top_k
            )));
        }
        let (n, k) = (la.num_tokens(), la.top_k);
        let (mut overlap, mut top1) = (0u64, 0u64);
        for t in 0..n {
            let (ra, rb) = (la.row(t), lb.row(t));
            overlap += ra.iter().filter(|e| rb.contains(e)).count() as u64;
            top1 += (ra.first() == rb.first()) as u64;
        }
        let saturation = if n > 0 { overlap as f64 / (n * k) as f64 } else { 1.0 };
        out.push(LayerChange {
            layer: la.layer,
            tokens: n as u64,
            saturation,
            change: 1.0 - saturation,
            top1_agreement: if n > 0 { top1 as f64 / n as f64 } else { 1.0 },
        });
    }
    Ok(out)
}
