//! Expert load per MoE layer: load shares, their spread, dead experts, load
//! entropy and the paper's Maximum Routing Imbalance (median over batches).

use super::trace::{LayerTrace, RoutingTrace};
use serde::{Deserialize, Serialize};

/// Load statistics of one MoE layer over the evaluated tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerLoad {
    /// Decoder layer index.
    pub layer: usize,
    /// Routed experts (E).
    pub num_experts: usize,
    /// Experts per token (K).
    pub top_k: usize,
    /// Tokens routed (N).
    pub tokens: u64,
    /// Share of the N·K token-to-expert assignments each expert received (sums to 1).
    pub load_share: Vec<f64>,
    /// Smallest load share.
    pub min_share: f64,
    /// Largest load share.
    pub max_share: f64,
    /// Mean load share (always 1/E).
    pub mean_share: f64,
    /// `max_share / mean_share` (1 when perfectly balanced).
    pub max_over_mean: f64,
    /// Experts that received no token at all.
    pub dead_experts: Vec<usize>,
    /// `dead_experts.len() / E`.
    pub dead_fraction: f64,
    /// Entropy of the load shares in nats (`ln E` when balanced).
    pub load_entropy: f64,
    /// `load_entropy / ln E`, in [0, 1] (1 when balanced; 1 when E = 1).
    pub load_entropy_norm: f64,
    /// Maximum Routing Imbalance of each batch: max over experts of the share
    /// of the batch's tokens whose top-k contains the expert, in [K/E, 1].
    pub mri_per_batch: Vec<f64>,
    /// Median of `mri_per_batch` (the paper's per-layer MRI).
    pub mri_median: f64,
}

/// The median of `xs` (mean of the two middle values for an even count; 0 when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// The MRI of one batch of `[n, K]` choices: max over experts of the share
/// of the n tokens whose top-k contains it (a token counts once per expert).
pub fn batch_mri(topk_ids_NK: &[u32], top_k: usize, num_experts: usize) -> f64 {
    let n = topk_ids_NK.len().checked_div(top_k).unwrap_or(0);
    if n == 0 {
        return 0.0;
    }
    let mut tokens_E = vec![0usize; num_experts];
    for row in topk_ids_NK.chunks(top_k) {
        for (j, &e) in row.iter().enumerate() {
            if !row[..j].contains(&e) {
                tokens_E[e as usize] += 1;
            }
        }
    }
    *tokens_E.iter().max().unwrap_or(&0) as f64 / n as f64
}

/// Load statistics of one layer; `batch_sizes` splits its tokens into the
/// batches whose MRI is taken.
pub fn layer_load(trace: &LayerTrace, batch_sizes: &[usize]) -> LayerLoad {
    let (e, k) = (trace.num_experts, trace.top_k);
    let mut count_E = vec![0u64; e];
    for &id in &trace.topk_ids_NK {
        count_E[id as usize] += 1;
    }
    let total = trace.topk_ids_NK.len() as f64;
    let load_share: Vec<f64> = count_E
        .iter()
        .map(|&c| if total > 0.0 { c as f64 / total } else { 0.0 })
        .collect();
    let min_share = load_share.iter().copied().fold(f64::INFINITY, f64::min);
    let max_share = load_share.iter().copied().fold(0.0, f64::max);
    let mean_share = if e > 0 { 1.0 / e as f64 } else { 0.0 };
    let dead_experts: Vec<usize> = (0..e).filter(|&i| count_E[i] == 0).collect();
    let load_entropy = -load_share
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>();
    let load_entropy_norm = if e > 1 { load_entropy / (e as f64).ln() } else { 1.0 };
    let mut mri_per_batch = Vec::with_capacity(batch_sizes.len());
    let mut start = 0;
    for &n in batch_sizes {
        let end = (start + n * k).min(trace.topk_ids_NK.len());
        mri_per_batch.push(batch_mri(&trace.topk_ids_NK[start..end], k, e));
        start = end;
    }
    LayerLoad {
        layer: trace.layer,
        num_experts: e,
        top_k: k,
        tokens: trace.num_tokens() as u64,
        min_share: if min_share.is_finite() { min_share } else { 0.0 },
        max_share,
        mean_share,
        max_over_mean: if mean_share > 0.0 { max_share / mean_share } else { 0.0 },
        dead_fraction: if e > 0 {
            dead_experts.len() as f64 / e as f64
        } else {
            0.0
        },
        dead_experts,
        load_entropy,
        load_entropy_norm,
        mri_median: median(&mri_per_batch),
        mri_per_batch,
        load_share,
    }
}

/// [`layer_load`] for every MoE layer of `trace`.
pub fn routing_load(trace: &RoutingTrace) -> Vec<LayerLoad> {
    trace.layers.iter().map(|l| layer_load(l, &trace.batch_sizes)).collect()
}
