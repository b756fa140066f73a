//! Vocabulary specialisation (OLMoE): for each expert, the share of a token
//! id's occurrences routed to it; and expert co-activation P(j | i).

use super::trace::{LayerTrace, RoutingTrace};
use crate::error::{EvalError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One token id's specialisation towards an expert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenShare {
    /// Token id.
    pub token_id: u32,
    /// Decoded text of the token, when a tokenizer was at hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Occurrences of the token among the evaluated positions.
    pub count: u64,
    /// Share of those occurrences whose top-k contains the expert.
    pub share: f64,
}

/// An expert's most specialised tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpertVocab {
    /// Expert index.
    pub expert: usize,
    /// Up to `top_n` tokens (seen at least `min_count` times) by decreasing share.
    pub top_tokens: Vec<TokenShare>,
}

/// Vocabulary specialisation of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VocabSpecialisation {
    /// Decoder layer index.
    pub layer: usize,
    /// Tokens seen fewer times than this are left out of `experts`.
    pub min_count: u64,
    /// Mean over token occurrences of the largest per-expert share of that
    /// token id (K/E-ish for no specialisation, 1 when every id always goes
    /// to the same expert).
    pub mean_max_share: f64,
    /// One entry per expert.
    pub experts: Vec<ExpertVocab>,
}

/// Expert co-activation of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoActivation {
    /// Decoder layer index.
    pub layer: usize,
    /// Tokens whose top-k contains expert i, `[E]`.
    pub tokens_per_expert: Vec<u64>,
    /// `p[i][j]` = P(j in top-k | i in top-k); 1 on the diagonal of a live
    /// expert; a row of zeros for an expert no token chose.
    pub p: Vec<Vec<f64>>,
}

/// Per-token-id, per-expert counts of `trace`.
fn counts(trace: &LayerTrace, token_ids: &[u32]) -> HashMap<u32, (u64, Vec<u64>)> {
    let mut by_id: HashMap<u32, (u64, Vec<u64>)> = HashMap::new();
    for (t, &id) in token_ids.iter().enumerate().take(trace.num_tokens()) {
        let entry = by_id.entry(id).or_insert_with(|| (0, vec![0; trace.num_experts]));
        entry.0 += 1;
        let row = trace.row(t);
        for (j, &e) in row.iter().enumerate() {
            if !row[..j].contains(&e) {
                entry.1[e as usize] += 1;
            }
        }
    }
    by_id
}

/// Vocabulary specialisation of decoder layer `layer`: each expert's `top_n`
/// tokens (seen at least `min_count` times) by share of occurrences routed to it.
pub fn vocab_specialisation(
    trace: &RoutingTrace,
    layer: usize,
    top_n: usize,
    min_count: u64,
) -> Result<VocabSpecialisation> {
    let lt = trace.layer(layer)?;
    if trace.token_ids_N.len() != lt.num_tokens() {
        return Err(EvalError::bad(
            "routing trace",
            format!(
                "{} token ids for {} routed tokens",
                trace.token_ids_N.len(),
                lt.num_tokens()
            ),
        ));
    }
    let by_id = counts(lt, &trace.token_ids_N);
    let (mut weighted, mut total) = (0.0, 0u64);
    for (n, per_e) in by_id.values() {
        let max = per_e.iter().copied().max().unwrap_or(0);
        weighted += max as f64; // = n · (max / n)
        total += n;
    }
    let mut experts = Vec::with_capacity(lt.num_experts);
    for e in 0..lt.num_experts {
        let mut top: Vec<TokenShare> = by_id
            .iter()
            .filter(|(_, (n, per_e))| *n >= min_count.max(1) && per_e[e] > 0)
            .map(|(&id, (n, per_e))| TokenShare {
                token_id: id,
                text: None,
                count: *n,
                share: per_e[e] as f64 / *n as f64,
            })
            .collect();
        top.sort_by(|a, b| {
            b.share
                .total_cmp(&a.share)
                .then(b.count.cmp(&a.count))
                .then(a.token_id.cmp(&b.token_id))
        });
        top.truncate(top_n);
        experts.push(ExpertVocab {
            expert: e,
            top_tokens: top,
        });
    }
    Ok(VocabSpecialisation {
        layer,
        min_count,
        mean_max_share: if total > 0 { weighted / total as f64 } else { 0.0 },
        experts,
    })
}

/// Expert co-activation P(j | i) of decoder layer `layer`.
pub fn co_activation(trace: &RoutingTrace, layer: usize) -> Result<CoActivation> {
    let lt = trace.layer(layer)?;
    let e = lt.num_experts;
    let mut joint = vec![vec![0u64; e]; e];
    let mut alone = vec![0u64; e];
    for t in 0..lt.num_tokens() {
        let row = lt.row(t);
        let mut set: Vec<usize> = row.iter().map(|&x| x as usize).collect();
        set.sort_unstable();
        set.dedup();
        for &i in &set {
            alone[i] += 1;
            for &j in &set {
                joint[i][j] += 1;
            }
        }
    }
    let p = (0..e)
        .map(|i| {
            (0..e)
                .map(|j| {
                    if alone[i] > 0 {
                        joint[i][j] as f64 / alone[i] as f64
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    Ok(CoActivation {
        layer,
        tokens_per_expert: alone,
        p,
    })
}
