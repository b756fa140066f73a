//! A training run's configuration: one TOML file naming the model, the data
//! mixture, the optimiser, the schedule, the token budget, evaluation and
//! checkpoint intervals and the seed.
//!
//! [`RunConfig::from_toml`] parses, fills the defaults that depend on other
//! fields (the schedule's `total_steps` and `warmup_steps` from the token
//! budget) and validates everything before any work starts; every error names
//! the field at fault (`data.seq_len`, `model.moe.router.top_k`). The resolved
//! config (every default written out) is saved beside the run as `config.toml`.

mod families;
mod load;
mod sections;

pub use families::{family_config, preset_config, Family, Scale, FAMILIES, SCALES};
pub use sections::{
    CheckpointConfig, DataConfig, EvalConfig, InitConfig, ModelSpec, NanPolicy, Precision, TrainConfig,
};

use crate::optim::AdamWConfig;
use crate::schedule::ScheduleConfig;
use moe_tensor::Device;
use serde::{Deserialize, Serialize};

/// Everything `moe train` needs to know about a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A name for logs and reports.
    #[serde(default = "default_name")]
    pub name: String,
    /// Seeds model initialisation and the data order.
    #[serde(default)]
    pub seed: u64,
    /// Where the model, its gradients and the optimiser state live: `"cpu"`
    /// (default), `"cuda"` or `"cuda:N"`. Not part of the run's identity: a
    /// run may be resumed on another device (`moe train --resume --device`).
    #[serde(default)]
    pub device: Device,
    /// The model: a preset name or an inline config (a CPT run may leave it out).
    #[serde(default)]
    pub model: ModelSpec,
    /// Dataset folder, mixture, batch shape and validation domains.
    pub data: DataConfig,
    /// Budget, accumulation, clipping, NaN handling.
    pub train: TrainConfig,
    /// AdamW hyper-parameters (defaults: the paper's).
    #[serde(default)]
    pub optimizer: AdamWConfig,
    /// The learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Validation interval and batch size.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Checkpoint interval and retention.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Continual pre-training: start from a checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitConfig>,
}

fn default_name() -> String {
    "run".into()
}

impl RunConfig {
    /// Tokens trained on per optimiser step: micro-batch · accumulation · sequence length.
    pub fn tokens_per_step(&self) -> u64 {
        (self.data.micro_batch * self.train.grad_accum * self.data.seq_len) as u64
    }

    /// Optimiser steps of the run (the token budget rounded up to whole steps).
    pub fn total_steps(&self) -> u64 {
        match (self.train.steps, self.train.tokens) {
            (Some(s), _) => s,
            (None, Some(t)) => t.div_ceil(self.tokens_per_step().max(1)),
            (None, None) => 0,
        }
    }

    /// Whether `other` describes the same run: equal in everything but the
    /// device it trains on.
    pub fn same_run(&self, other: &RunConfig) -> bool {
        let mut other = other.clone();
        other.device = self.device;
        *self == other
    }

    /// The resolved config as TOML (what `config.toml` of a run holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not serialise the config: {e}\n"))
    }
}
