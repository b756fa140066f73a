//! Forgetting and adaptation of continual pre-training runs, read from the
//! training logs: the change of validation loss on the old domain(s) (the
//! parent's training data) and on the new domain(s) between the checkpoint
//! CPT started from and the end, with the replay share, next to a model
//! re-trained from scratch on all domains.

use crate::runs::{parent_of, Run};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Loss change of one domain over a CPT run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainShift {
    /// Domain.
    pub domain: String,
    /// Whether the parent trained on it (forgetting) or not (adaptation).
    pub old: bool,
    /// Validation loss where CPT started.
    pub before: f64,
    /// Validation loss at the end of the CPT run.
    pub after: f64,
    /// `after - before`: positive on an old domain is forgetting; negative on a
    /// new domain is adaptation.
    pub delta: f64,
    /// Final loss of the re-training baseline on this domain, when one was given.
    pub baseline: Option<f64>,
    /// `after - baseline`.
    pub gap_to_baseline: Option<f64>,
    /// Every validation of the CPT run on this domain: the change since CPT
    /// started at each evaluation (checkpoint) of the run.
    pub history: Vec<ShiftPoint>,
}

/// The loss change of one domain at one evaluation of a CPT run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShiftPoint {
    /// Tokens this run had trained on (add the run's `cpt_start_tokens` to
    /// place it after its parent).
    pub tokens: u64,
    /// Validation loss.
    pub loss: f64,
    /// `loss - before`.
    pub delta: f64,
}

/// One CPT run's forgetting and adaptation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CptResult {
    /// Run name.
    pub run: String,
    /// Model label (`dense`, `MoE 8x top-2`).
    pub model: String,
    /// Share of the CPT run's training tokens drawn from old domains.
    pub replay_share: f64,
    /// Where the pre-CPT losses came from.
    pub before_source: String,
    /// The re-training baseline's run name, when one matched.
    pub baseline_run: Option<String>,
    /// One entry per validated domain.
    pub domains: Vec<DomainShift>,
}

impl CptResult {
    /// Mean `delta` over old domains (the run's forgetting).
    pub fn forgetting(&self) -> Option<f64> {
        mean(self.domains.iter().filter(|d| d.old).map(|d| d.delta))
    }

    /// Mean `delta` over new domains (negative: the run learned them).
    pub fn adaptation(&self) -> Option<f64> {
        mean(self.domains.iter().filter(|d| !d.old).map(|d| d.delta))
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = xs.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Pre-CPT losses per domain and where they came from: the CPT run's own
/// validation at token 0 (eval `at_start`), else the parent run's last
/// validation at or before the CPT start.
fn before_losses(run: &Run, runs: &[Run]) -> Option<(BTreeMap<String, f64>, String)> {
    let own: BTreeMap<String, f64> = run
        .val
        .iter()
        .filter(|v| v.tokens == 0)
        .map(|v| (v.domain.clone(), v.loss))
        .collect();
    if !own.is_empty() {
        return Some((own, format!("{} at token 0", run.info.name)));
    }
    let parent = parent_of(run.info.init_from.as_deref()?, runs)?;
    let mut out = BTreeMap::new();
    for v in parent.val.iter().filter(|v| v.tokens <= run.offset()) {
        out.insert(v.domain.clone(), v.loss);
    }
    (!out.is_empty()).then(|| (out, format!("{} (parent) at its CPT checkpoint", parent.info.name)))
}

/// Domains the parent of `run` trained on; without the parent, every
/// validated domain except the one the CPT run trained on most.
fn old_domains(run: &Run, runs: &[Run]) -> Vec<String> {
    if let Some(p) = run.info.init_from.as_deref().and_then(|c| parent_of(c, runs)) {
        let d = p.training_domains();
        if !d.is_empty() {
            return d;
        }
    }
    let tokens = run.domain_tokens();
    let main = tokens.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k.clone());
    run.val_domains()
        .into_iter()
        .filter(|d| Some(d) != main.as_ref())
        .collect()
}

/// A re-training baseline for `run`: a from-scratch run with the same model
/// config that trained on every domain `run` was validated on.
pub fn find_baseline<'a>(run: &Run, runs: &'a [Run]) -> Option<&'a Run> {
    let cfg = run.model_config();
    let need = run.val_domains();
    runs.iter().find(|b| {
        !b.is_cpt()
            && !std::ptr::eq(*b, run)
            && b.training_domains().len() >= 2
            && need.iter().all(|d| b.training_domains().contains(d))
            && (cfg.is_none() || b.model_config().is_none() || b.model_config() == cfg)
    })
}

/// Forgetting and adaptation of every CPT run among `runs` whose pre-CPT
/// losses are known; `skipped` collects a reason for the others.
pub fn cpt_results(runs: &[Run], skipped: &mut Vec<String>) -> Vec<CptResult> {
    let mut out = Vec::new();
    for run in runs.iter().filter(|r| r.is_cpt()) {
        let Some((before, source)) = before_losses(run, runs) else {
            skipped.push(format!(
                "{}: no validation at token 0 and its parent run was not given, so its pre-CPT loss is unknown",
                run.info.name
            ));
            continue;
        };
        let old = old_domains(run, runs);
        let tokens = run.domain_tokens();
        let total: f64 = tokens.values().sum();
        let replay: f64 = tokens.iter().filter(|(k, _)| old.contains(k)).map(|(_, v)| v).sum();
        let baseline = find_baseline(run, runs);
        let mut domains = Vec::new();
        for d in run.val_domains() {
            let (Some(&b), Some(a)) = (before.get(&d), run.final_val(&d)) else {
                continue;
            };
            let base = baseline.and_then(|r| r.final_val(&d));
            let history = run
                .val_series(&d)
                .into_iter()
                .map(|(tokens, loss)| ShiftPoint {
                    tokens,
                    loss,
                    delta: loss - b,
                })
                .collect();
            domains.push(DomainShift {
                history,
                old: old.contains(&d),
                before: b,
                after: a,
                delta: a - b,
                baseline: base,
                gap_to_baseline: base.map(|x| a - x),
                domain: d,
            });
        }
        out.push(CptResult {
            run: run.info.name.clone(),
            model: run.model_label(),
            replay_share: if total > 0.0 { replay / total + 0.0 } else { 0.0 },
            before_source: source,
            baseline_run: baseline.map(|b| b.info.name.clone()),
            domains,
        });
    }
    out
}
