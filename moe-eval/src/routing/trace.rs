//! What routing metrics are computed from: each MoE layer's top-k expert
//! choices for every evaluated token, kept per batch.

use crate::error::{EvalError, Result};
use moe_model::layers::moe::MoeRouting;

/// One MoE layer's choices over the evaluated tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTrace {
    /// Decoder layer index.
    pub layer: usize,
    /// Routed experts (E).
    pub num_experts: usize,
    /// Experts per token (K).
    pub top_k: usize,
    /// Chosen experts, row-major `[N, K]` over all batches.
    pub topk_ids_NK: Vec<u32>,
}

/// Top-k choices of every MoE layer for a sequence of evaluation batches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutingTrace {
    /// Input token id at each routed position, `[N]`.
    pub token_ids_N: Vec<u32>,
    /// Tokens of each batch, in order (they sum to N).
    pub batch_sizes: Vec<usize>,
    /// One entry per MoE layer, in layer order.
    pub layers: Vec<LayerTrace>,
}

impl RoutingTrace {
    /// Tokens recorded (N).
    pub fn num_tokens(&self) -> usize {
        self.token_ids_N.len()
    }

    /// Appends one batch given as plain data: `token_ids` (`[n]`) and, per
    /// layer, `(layer, E, K, topk_ids [n, K])`. Every expert id must be in `0..E`.
    pub fn push_raw(&mut self, token_ids: &[u32], layers: &[(usize, usize, usize, Vec<u32>)]) -> Result<()> {
        let n = token_ids.len();
        if self.layers.is_empty() && self.batch_sizes.is_empty() {
            self.layers = layers
                .iter()
                .map(|(layer, e, k, _)| LayerTrace {
                    layer: *layer,
                    num_experts: *e,
                    top_k: *k,
                    topk_ids_NK: Vec::new(),
                })
                .collect();
        }
        if layers.len() != self.layers.len() {
            return Err(EvalError::bad(
                "routing batch",
                format!("{} MoE layers, earlier batches had {}", layers.len(), self.layers.len()),
            ));
        }
        for (trace, (layer, e, k, ids)) in self.layers.iter().zip(layers) {
            if (trace.layer, trace.num_experts, trace.top_k) != (*layer, *e, *k) {
                return Err(EvalError::bad(
                    "routing batch",
                    format!(
                        "layer {layer} with E = {e}, K = {k} does not match layer {} with E = {}, K = {}",
                        trace.layer, trace.num_experts, trace.top_k
                    ),
                ));
            }
            if ids.len() != n * k {
                return Err(EvalError::bad(
                    format!("routing of layer {layer}"),
                    format!("{} expert ids for {n} tokens with K = {k}", ids.len()),
                ));
            }
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= *e) {
                return Err(EvalError::bad(
                    format!("routing of layer {layer}"),
                    format!("expert id {bad} outside 0..{e}"),
                ));
            }
        }
        for (trace, (_, _, _, ids)) in self.layers.iter_mut().zip(layers) {
            trace.topk_ids_NK.extend_from_slice(ids);
        }
        self.token_ids_N.extend_from_slice(token_ids);
        self.batch_sizes.push(n);
        Ok(())
    }

    /// Appends one forward's routing: `token_ids` are the batch's inputs,
    /// flattened `[B·T]` in the order the model flattens them.
    pub fn push_forward(&mut self, token_ids: &[u32], routing: &[MoeRouting]) -> Result<()> {
        let mut layers = Vec::with_capacity(routing.len());
        for r in routing {
            let d = &r.decision;
            let dims = d.topk_ids_NK.dims();
            if dims.len() != 2 {
                return Err(EvalError::bad(
                    format!("routing of layer {}", r.layer),
                    format!("topk_ids_NK has shape {dims:?}, expected [N, K]"),
                ));
            }
            let e = d.probs_NE.dims().last().copied().unwrap_or(0);
            let ids: Vec<u32> = d
                .topk_ids_NK
                .to_vec::<i64>()?
                .into_iter()
                .map(|id| u32::try_from(id).unwrap_or(u32::MAX))
                .collect();
            layers.push((r.layer, e, dims[1], ids));
        }
        self.push_raw(token_ids, &layers)
    }

    /// The trace of decoder layer `layer`, or an error listing the MoE layers.
    pub fn layer(&self, layer: usize) -> Result<&LayerTrace> {
        self.layers.iter().find(|l| l.layer == layer).ok_or_else(|| {
            EvalError::bad(
                "layer",
                format!(
                    "{layer} is not an MoE layer (MoE layers: {:?})",
                    self.layers.iter().map(|l| l.layer).collect::<Vec<_>>()
                ),
            )
        })
    }
}

impl LayerTrace {
    /// Tokens recorded (N).
    pub fn num_tokens(&self) -> usize {
        self.topk_ids_NK.len().checked_div(self.top_k).unwrap_or(0)
    }

    /// The K experts of token `t`.
    pub fn row(&self, t: usize) -> &[u32] {
        &self.topk_ids_NK[t * self.top_k..(t + 1) * self.top_k]
    }
}
