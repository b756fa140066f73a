//! Routing of each MoE CPT run on an old domain, before (the checkpoint CPT
//! started from) and after (the run's newest checkpoint): load and MRI per
//! layer, and how much the routing changed on identical tokens.

use crate::checkpoint::{load_checkpoint, open_dataset_for};
use crate::error::{EvalError, Result};
use crate::routing::collect::evaluate_domain;
use crate::routing::{routing_change, routing_load, LayerChange, LayerLoad};
use crate::runs::{parent_of, Run};
use moe_data::ValWindows;
use moe_tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Before/after routing of one CPT run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CptRouting {
    /// Run name.
    pub run: String,
    /// Domain evaluated (an old domain).
    pub domain: String,
    /// The checkpoint CPT started from.
    pub before_checkpoint: PathBuf,
    /// The run's newest checkpoint.
    pub after_checkpoint: PathBuf,
    /// Tokens routed.
    pub tokens: u64,
    /// Per layer, before CPT.
    pub before: Vec<LayerLoad>,
    /// Per layer, after CPT.
    pub after: Vec<LayerLoad>,
    /// Per layer routing change from before to after.
    pub change: Vec<LayerChange>,
}

/// How to evaluate routing for the report.
#[derive(Clone, Debug)]
pub struct RoutingSettings {
    /// Dataset folder; `None`: the run's `config.toml` `data.dir`.
    pub data: Option<PathBuf>,
    /// Domain; `None`: the first old domain.
    pub domain: Option<String>,
    /// Validation windows.
    pub max_windows: usize,
    /// Windows per batch (MRI batch).
    pub batch_size: usize,
    /// Device.
    pub device: Device,
}

/// The checkpoint a CPT run started from, as it exists now: the recorded
/// path, else the same `checkpoints/step-*` folder inside its parent run.
fn before_checkpoint(run: &Run, runs: &[Run]) -> Option<PathBuf> {
    let from = run.info.init_from.as_deref()?;
    if from.is_dir() {
        return Some(from.to_path_buf());
    }
    let parent = parent_of(from, runs)?;
    let p = parent.dir.join("checkpoints").join(from.file_name()?);
    p.is_dir().then_some(p)
}

/// Evaluates the routing of CPT run `run` on `domain` before and after CPT.
pub fn cpt_routing(run: &Run, runs: &[Run], domain: &str, s: &RoutingSettings) -> Result<CptRouting> {
    let name = &run.info.name;
    let before_dir = before_checkpoint(run, runs)
        .ok_or_else(|| EvalError::bad(name.clone(), "the checkpoint it started from (init_from) is not found"))?;
    let after_dir = run
        .last_checkpoint()
        .ok_or_else(|| EvalError::bad(name.clone(), "the run has no checkpoint"))?
        .to_path_buf();
    let data: PathBuf = match &s.data {
        Some(d) => d.clone(),
        None => run
            .config_get(&["data", "dir"])
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
            .ok_or_else(|| EvalError::bad(name.clone(), "no dataset given and config.toml names none (data.dir)"))?,
    };
    let before = load_checkpoint(&before_dir, &s.device)?;
    let after = load_checkpoint(&after_dir, &s.device)?;
    let ds = open_dataset_for(&after, &data)?;
    open_dataset_for(&before, &data)?;
    let max_pos = after.model.config().max_position_embeddings;
    let seq_len = run
        .config_get(&["data", "seq_len"])
        .and_then(|v| v.as_integer())
        .map_or(max_pos.saturating_sub(1), |t| t as usize)
        .min(max_pos.saturating_sub(1));
    let windows = ValWindows::new(&ds, domain, seq_len, s.max_windows)?;
    let what = |p: &Path| p.display().to_string();
    let tb = evaluate_domain(
        &before.model,
        &what(&before_dir),
        &windows,
        s.batch_size,
        true,
        |_, _| {},
    )?;
    let ta = evaluate_domain(&after.model, &what(&after_dir), &windows, s.batch_size, true, |_, _| {})?;
    let (tb, ta) = (tb.trace.unwrap_or_default(), ta.trace.unwrap_or_default());
    Ok(CptRouting {
        run: name.clone(),
        domain: domain.to_string(),
        before_checkpoint: before_dir,
        after_checkpoint: after_dir,
        tokens: ta.num_tokens() as u64,
        before: routing_load(&tb),
        after: routing_load(&ta),
        change: routing_change(&tb, &ta)?,
    })
}

/// Whether `run`'s model has MoE layers (from its newest checkpoint or its log).
pub fn is_moe_run(run: &Run) -> bool {
    match run.model_config() {
        Some(c) => c.num_moe_layers() > 0,
        None => run.train.iter().any(|t| !t.moe.is_empty()),
    }
}
