//! Reading run folders as `moe train` writes them (docs/run-format.md):
//! `run.json`, `metrics.jsonl`, `config.toml` and `checkpoints/step-*`.

use crate::error::{EvalError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `run.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Run name.
    #[serde(default)]
    pub name: String,
    /// The checkpoint a CPT run started from; `None` for training from scratch.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Tokens the parent had seen when this run started (0 from scratch).
    #[serde(default)]
    pub cpt_start_tokens: u64,
}

/// One MoE layer's routing in a training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoeLayerLog {
    /// Decoder layer index.
    pub layer: usize,
    /// Maximum Routing Imbalance of the step.
    pub mri: f64,
    /// Largest per-expert load of the step.
    #[serde(default)]
    pub max_load: f64,
    /// Mean per-expert load of the step.
    #[serde(default)]
    pub mean_load: f64,
    /// Share of token copies dropped by capacity.
    #[serde(default)]
    pub dropped_fraction: f64,
}

/// A `"kind": "train"` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    /// Optimiser steps done.
    pub step: u64,
    /// Tokens seen by this run.
    pub tokens: u64,
    /// Total loss.
    #[serde(default)]
    pub loss: Option<f64>,
    /// Cross-entropy part.
    #[serde(default)]
    pub lm_loss: Option<f64>,
    /// Cumulative training FLOPs of this run.
    #[serde(default)]
    pub flops: Option<f64>,
    /// Tokens per domain seen so far.
    #[serde(default)]
    pub domain_tokens: BTreeMap<String, u64>,
    /// Per MoE layer routing statistics (empty for dense models).
    #[serde(default)]
    pub moe: Vec<MoeLayerLog>,
}

/// A `"kind": "val"` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValPoint {
    /// Optimiser steps done.
    pub step: u64,
    /// Tokens seen by this run.
    pub tokens: u64,
    /// Domain.
    pub domain: String,
    /// Mean next-token cross-entropy (NaN when the log holds `null`).
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
}

/// Reads a number that JSON wrote as `null` (NaN, infinities) as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A run folder, read.
#[derive(Clone, Debug)]
pub struct Run {
    /// The folder.
    pub dir: PathBuf,
    /// `run.json`.
    pub info: RunInfo,
    /// Train lines in file order.
    pub train: Vec<TrainPoint>,
    /// Val lines in file order.
    pub val: Vec<ValPoint>,
    /// `config.toml`, when present.
    pub config: Option<toml::Value>,
    /// Complete checkpoints by step.
    pub checkpoints: Vec<(u64, PathBuf)>,
}

fn json_err(path: &Path, line: Option<usize>, msg: impl ToString) -> EvalError {
    EvalError::Json {
        path: path.to_path_buf(),
        line,
        msg: msg.to_string(),
    }
}

/// Reads the run folder `dir`.
pub fn load_run(dir: &Path) -> Result<Run> {
    let info_path = dir.join("run.json");
    let text = std::fs::read_to_string(&info_path).map_err(|e| EvalError::io(&info_path, e))?;
    let mut info: RunInfo = serde_json::from_str(&text).map_err(|e| json_err(&info_path, None, e))?;
    if info.name.is_empty() {
        info.name = dir
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy().into_owned());
    }
    let metrics = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).map_err(|e| EvalError::io(&metrics, e))?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| json_err(&metrics, Some(i + 1), e))?;
        let bad = |e: serde_json::Error| json_err(&metrics, Some(i + 1), e);
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("train") => train.push(serde_json::from_value(v).map_err(bad)?),
            Some("val") => val.push(serde_json::from_value(v).map_err(bad)?),
            Some(_) => {}
            None => return Err(json_err(&metrics, Some(i + 1), "no \"kind\" field")),
        }
    }
    let cfg_path = dir.join("config.toml");
    let config = match std::fs::read_to_string(&cfg_path) {
        Ok(t) => Some(toml::from_str(&t).map_err(|e| json_err(&cfg_path, None, e))?),
        Err(_) => None,
    };
    let mut checkpoints = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("checkpoints")) {
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
                checkpoints.push((step, entry.path()));
            }
        }
    }
    checkpoints.sort();
    Ok(Run {
        dir: dir.to_path_buf(),
        info,
        train,
        val,
        config,
        checkpoints,
    })
}

impl Run {
    /// Whether this run continued from a checkpoint (CPT).
    pub fn is_cpt(&self) -> bool {
        self.info.init_from.is_some()
    }

    /// Tokens seen before this run (its parent's, for a CPT run).
    pub fn offset(&self) -> u64 {
        self.info.cpt_start_tokens
    }

    /// Domains with validation lines, in first-seen order.
    pub fn val_domains(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.val {
            if !out.contains(&v.domain) {
                out.push(v.domain.clone());
            }
        }
        out
    }

    /// `(tokens since the run started, loss)` of `domain`'s validations.
    pub fn val_series(&self, domain: &str) -> Vec<(u64, f64)> {
        self.val
            .iter()
            .filter(|v| v.domain == domain)
            .map(|v| (v.tokens, v.loss))
            .collect()
    }

    /// The last validation loss of `domain`.
    pub fn final_val(&self, domain: &str) -> Option<f64> {
        self.val_series(domain).last().map(|p| p.1)
    }

    /// Tokens per domain this run trained on (last train line; the config's
    /// mixture weights when no line records them).
    pub fn domain_tokens(&self) -> BTreeMap<String, f64> {
        if let Some(t) = self.train.iter().rev().find(|t| !t.domain_tokens.is_empty()) {
            return t.domain_tokens.iter().map(|(k, &v)| (k.clone(), v as f64)).collect();
        }
        self.config_get(&["data", "mixture"])
            .and_then(|m| m.as_table().cloned())
            .map(|m| {
                m.into_iter()
                    .filter_map(|(k, v)| v.as_float().or(v.as_integer().map(|i| i as f64)).map(|f| (k, f)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Domains this run trained on (a positive share).
    pub fn training_domains(&self) -> Vec<String> {
        self.domain_tokens()
            .into_iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(k, _)| k)
            .collect()
    }

    /// A value of `config.toml` by path (`["data", "dir"]`).
    pub fn config_get(&self, path: &[&str]) -> Option<&toml::Value> {
        let mut v = self.config.as_ref()?;
        for p in path {
            v = v.get(p)?;
        }
        Some(v)
    }

    /// The newest checkpoint folder.
    pub fn last_checkpoint(&self) -> Option<&Path> {
        self.checkpoints.last().map(|(_, p)| p.as_path())
    }

    /// The model config of the newest checkpoint, when readable.
    pub fn model_config(&self) -> Option<moe_model::ModelConfig> {
        moe_model::hf::read_model_config(self.last_checkpoint()?).ok()
    }

    /// A short model label: `dense`, `MoE 8x top-1`, `MoE 31x top-3 + shared, Sinkhorn`
    /// (from the newest checkpoint).
    pub fn model_label(&self) -> String {
        match self.model_config() {
            Some(c) => match &c.moe {
                Some(m) => {
                    let kind = match m.router.kind {
                        moe_router::RouterKind::SoftmaxTopK(_) => "",
                        moe_router::RouterKind::Sinkhorn(_) => ", Sinkhorn",
                        moe_router::RouterKind::AuxFree(_) => ", aux-free",
                    };
                    let shared = if m.shared_intermediate_size > 0 {
                        " + shared"
                    } else {
                        ""
                    };
                    format!("MoE {}x top-{}{shared}{kind}", m.num_experts(), m.top_k())
                }
                None => "dense".into(),
            },
            None if self.train.iter().any(|t| !t.moe.is_empty()) => "MoE".into(),
            None => "unknown".into(),
        }
    }
}

/// Whether two paths name the same folder (canonical forms when they exist).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The run among `runs` holding checkpoint `ckpt` (its `checkpoints/step-*` parent).
pub fn parent_of<'a>(ckpt: &Path, runs: &'a [Run]) -> Option<&'a Run> {
    let run_dir = ckpt.parent()?.parent()?;
    runs.iter().find(|r| same_dir(&r.dir, run_dir)).or_else(|| {
        // A relative path from another working directory: match the folder name.
        let name = run_dir.file_name()?;
        runs.iter().find(|r| r.dir.file_name() == Some(name))
    })
}
