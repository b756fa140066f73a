//! Parsing, derived defaults and validation of a run config.

use super::{preset_config, ModelSpec, RunConfig};
use crate::error::{Result, TrainError};
use crate::schedule::warmup_steps_for;
use moe_model::ModelConfig;
use std::path::Path;
use toml::Value;

fn int_at(v: &Value, section: &str, key: &str) -> Option<u64> {
    v.get(section)?
        .get(key)?
        .as_integer()
        .and_then(|i| u64::try_from(i).ok())
}

/// Writes `total_steps` and `warmup_steps` (1% of the run) into a `[schedule]`
/// that leaves them out, from the token budget and batch shape.
fn fill_schedule_steps(root: &mut Value) {
    let steps = int_at(root, "train", "steps").or_else(|| {
        let tokens = int_at(root, "train", "tokens")?;
        let per_step = int_at(root, "data", "micro_batch")?
            * int_at(root, "data", "seq_len")?
            * int_at(root, "train", "grad_accum").unwrap_or(1);
        // A zero batch size is reported by validation, naming its field.
        Some(tokens.div_ceil(per_step.max(1)))
    });
    let Some(total) = steps else { return };
    let Some(sched) = root.get_mut("schedule").and_then(Value::as_table_mut) else {
        return;
    };
    let kind = sched.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    let to_i = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    if matches!(kind.as_str(), "cosine" | "rewarm" | "wsd") && !sched.contains_key("total_steps") {
        sched.insert("total_steps".into(), to_i(total));
    }
    if matches!(kind.as_str(), "cosine" | "rewarm" | "wsd" | "infinite") && !sched.contains_key("warmup_steps") {
        sched.insert("warmup_steps".into(), to_i(warmup_steps_for(total)));
    }
}

fn need(ok: bool, field: &str, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(TrainError::config(field, msg()))
    }
}

/// A moe-model config error, re-rooted under `prefix` (`model.config.moe.router.top_k`).
fn model_err(prefix: &str, e: moe_model::Error) -> TrainError {
    match e {
        moe_model::Error::Config { field, msg } => TrainError::config(format!("{prefix}.{field}"), msg),
        other => TrainError::config(prefix, other.to_string()),
    }
}

impl ModelSpec {
    /// The model config this spec names; a preset's vocabulary becomes
    /// `vocab_size` (the dataset's) when given.
    pub fn resolve(&self, vocab_size: Option<usize>) -> Result<ModelConfig> {
        let cfg = match (&self.preset, &self.config) {
            (Some(_), Some(c)) => c.clone(), // a resolved config keeps both; the inline one wins
            (Some(p), None) => {
                let mut c = preset_config(p)?;
                if let Some(v) = vocab_size {
                    c.vocab_size = v;
                }
                c
            }
            (None, Some(c)) => c.clone(),
            (None, None) => {
                return Err(TrainError::config(
                    "model",
                    "give either `preset = \"tiny-dense\"` or an inline [model.config]",
                ))
            }
        };
        cfg.validate().map_err(|e| model_err("model.config", e))?;
        if let Some(v) = vocab_size {
            need(cfg.vocab_size == v, "model.config.vocab_size", || {
                format!("{} differs from the dataset's vocabulary of {v}", cfg.vocab_size)
            })?;
        }
        Ok(cfg)
    }
}

impl RunConfig {
    /// Parses `text` (from `path`, for messages), fills derived defaults and validates.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let cfg = Self::parse(text, path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses `text` and fills derived defaults without validating (for
    /// callers that adjust the config first, then call [`RunConfig::validate`]).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let parse_err = |msg: String| TrainError::ConfigParse {
            path: path.to_path_buf(),
            msg,
        };
        let mut root: Value = text
            .parse::<toml::Table>()
            .map(Value::Table)
            .map_err(|e| parse_err(e.to_string()))?;
        let train = root.get("train");
        if train.is_some_and(|t| t.get("tokens").is_none() && t.get("steps").is_none()) {
            return Err(TrainError::config(
                "train.tokens",
                "give a token budget (`tokens`) or a step count (`steps`)",
            ));
        }
        fill_schedule_steps(&mut root);
        root.try_into().map_err(|e: toml::de::Error| {
            // Deserialising from a Value loses positions; the same error from
            // the text itself shows the line and the offending key.
            match toml::from_str::<RunConfig>(text) {
                Err(direct) if direct.message() == e.message() => parse_err(direct.to_string()),
                _ => parse_err(e.to_string()),
            }
        })
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let cfg = Self::load_unvalidated(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a config file without validating it.
    pub fn load_unvalidated(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Checks every field that can be checked without the dataset.
    pub fn validate(&self) -> Result<()> {
        need(!self.name.trim().is_empty(), "name", || "must not be empty".into())?;
        // A CPT run may leave [model] out: it trains the checkpoint's model.
        let unnamed = self.model.preset.is_none() && self.model.config.is_none();
        let model = if unnamed && self.init.is_some() {
            None
        } else {
            Some(self.model.resolve(None)?)
        };
        let d = &self.data;
        need(!d.dir.as_os_str().is_empty(), "data.dir", || {
            "must name a dataset folder".into()
        })?;
        moe_data::Mixture::new(d.mixture.clone()).map_err(|e| TrainError::config("data.mixture", e.to_string()))?;
        need(d.seq_len >= 1, "data.seq_len", || "must be positive".into())?;
        if let Some(m) = &model {
            need(d.seq_len <= m.max_position_embeddings, "data.seq_len", || {
                format!(
                    "{} exceeds the model's max_position_embeddings = {}",
                    d.seq_len, m.max_position_embeddings
                )
            })?;
        }
        need(d.micro_batch >= 1, "data.micro_batch", || "must be positive".into())?;
        need(d.val_windows >= 1, "data.val_windows", || "must be positive".into())?;
        let t = &self.train;
        need(t.tokens.is_some() || t.steps.is_some(), "train.tokens", || {
            "give a token budget (`tokens`) or a step count (`steps`)".into()
        })?;
        need(t.tokens != Some(0), "train.tokens", || "must be positive".into())?;
        need(t.steps != Some(0), "train.steps", || "must be positive".into())?;
        need(t.grad_accum >= 1, "train.grad_accum", || "must be positive".into())?;
        need(t.clip.is_finite() && t.clip >= 0.0, "train.clip", || {
            format!("must be finite and >= 0 (0 = off), got {}", t.clip)
        })?;
        self.optimizer.validate()?;
        self.schedule.validate()?;
        need(self.eval.batch_size >= 1, "eval.batch_size", || {
            "must be positive".into()
        })?;
        need(self.checkpoint.keep_last >= 1, "checkpoint.keep_last", || {
            "must keep at least the newest checkpoint".into()
        })?;
        Ok(())
    }
}
