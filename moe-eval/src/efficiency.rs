//! Sample efficiency from the training logs: validation loss against tokens
//! seen and against training FLOPs, CPT runs placed after their parent.

use crate::runs::{parent_of, Run};
use serde::{Deserialize, Serialize};

/// One validation of one run, on the global token / FLOP axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyPoint {
    /// Tokens seen, counting the parent's for a CPT run.
    pub tokens: u64,
    /// Training FLOPs spent, counting the parent's when its log was given
    /// (`None` when the log has no `flops`).
    pub flops: Option<f64>,
    /// Validation loss.
    pub loss: f64,
}

/// Validation loss of one run on one domain over training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EfficiencySeries {
    /// Run name.
    pub run: String,
    /// Model label.
    pub model: String,
    /// Domain.
    pub domain: String,
    /// Where this run started on the token axis (its parent's tokens).
    pub start_tokens: u64,
    /// Points in training order.
    pub points: Vec<EfficiencyPoint>,
}

/// Cumulative FLOPs of `run` at `step` (the last train line at or before it).
fn flops_at(run: &Run, step: u64) -> Option<f64> {
    run.train
        .iter()
        .rev()
        .find(|t| t.step <= step)
        .and_then(|t| t.flops)
        .or(if step == 0 { Some(0.0) } else { None })
}

/// FLOPs spent before `run` started (its parent's, up to the CPT start).
fn flops_offset(run: &Run, runs: &[Run]) -> f64 {
    let Some(parent) = run.info.init_from.as_deref().and_then(|c| parent_of(c, runs)) else {
        return 0.0;
    };
    let upto = parent.train.iter().rev().find(|t| t.tokens <= run.offset());
    upto.and_then(|t| t.flops).unwrap_or(0.0) + flops_offset(parent, runs)
}

/// One series per run and validated domain.
pub fn efficiency_series(runs: &[Run]) -> Vec<EfficiencySeries> {
    let mut out = Vec::new();
    for run in runs {
        let f0 = flops_offset(run, runs);
        for d in run.val_domains() {
            let points = run
                .val
                .iter()
                .filter(|v| v.domain == d)
                .map(|v| EfficiencyPoint {
                    tokens: run.offset() + v.tokens,
                    flops: flops_at(run, v.step).map(|f| f + f0),
                    loss: v.loss,
                })
                .collect();
            out.push(EfficiencySeries {
                run: run.info.name.clone(),
                model: run.model_label(),
                domain: d,
                start_tokens: run.offset(),
                points,
            });
        }
    }
    out
}
