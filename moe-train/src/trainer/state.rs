//! `trainer_state.json`: everything besides weights and moments that a run
//! needs to continue exactly where a checkpoint was taken.

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use moe_data::SamplerState;
use moe_tensor::init::RngState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name inside a checkpoint folder.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

/// The trainer's position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// moe-cpt version that wrote the state.
    pub version: String,
    /// Optimiser updates done (the schedule's position: the next update is `step + 1`).
    pub step: u64,
    /// Training tokens seen by this run.
    pub tokens: u64,
    /// Training tokens seen per domain.
    pub domain_tokens: BTreeMap<String, u64>,
    /// Cumulative training FLOPs of this run.
    pub flops: f64,
    /// Steps skipped for a non-finite loss (`train.on_nan = "skip"`).
    pub skipped_steps: u64,
    /// The data sampler's exact position.
    pub sampler: SamplerState,
    /// The run's random generator (model initialisation; nothing else in a
    /// step draws random numbers, the data order lives in `sampler`).
    pub rng: RngState,
    /// The aux-loss-free routers' selection biases, per MoE layer (empty otherwise).
    pub expert_bias: Vec<Vec<f32>>,
    /// The resolved run config.
    pub config: RunConfig,
}

impl TrainerState {
    /// Reads `dir/trainer_state.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(TRAINER_STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::checkpoint(&path, e.to_string()))
    }
}

/// `run.json`: who the run is, for reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The config's name.
    pub name: String,
    /// The checkpoint a CPT run started from.
    pub init_from: Option<PathBuf>,
    /// Tokens the starting checkpoint had seen (its own and its ancestors'):
    /// add to this run's `tokens` to place it after its parent.
    pub cpt_start_tokens: u64,
    /// moe-cpt version.
    pub version: String,
}

/// The version written into states and run files.
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
