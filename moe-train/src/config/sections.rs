//! The sections of a run config other than the optimiser and schedule, with
//! their defaults.

use moe_model::ModelConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The model of a run: a preset name (see [`super::family_config`] and
/// `moe_model::presets`) or an inline `[model.config]`; one of the two. A
/// preset takes the dataset's vocabulary size; an inline config must match it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `tiny-granular-sinkhorn`, `small-dense`, `paper-switch-aux-z`, `debug-dense`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// An inline model config (filled in from the preset in a resolved config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ModelConfig>,
}

/// Where the tokens come from and in which batch shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A prepared dataset folder (`moe prepare`, `moe data builtin`).
    pub dir: PathBuf,
    /// Domain weights of the training mixture, e.g. `{ german = 0.6, english = 0.4 }`.
    pub mixture: BTreeMap<String, f64>,
    /// Tokens per sequence (T).
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub micro_batch: usize,
    /// Domains evaluated at every validation (default: every domain of the dataset).
    #[serde(default)]
    pub val_domains: Vec<String>,
    /// Validation windows of `seq_len + 1` tokens per domain (fixed, from the validation split).
    #[serde(default = "default_val_windows")]
    pub val_windows: usize,
}

fn default_val_windows() -> usize {
    32
}

/// What to do with a step whose loss or gradient norm is not finite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// Stop with an error naming the step; the last checkpoint stays the newest.
    #[default]
    Stop,
    /// Discard the step's gradients, log it, and go on with the next batch.
    Skip,
}

/// The arithmetic of the matrix products (everything else is f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands.
    #[default]
    F32,
    /// Mixed precision: operands rounded to bf16, f32 accumulation, f32
    /// master weights, gradients and optimiser state (bf16 tensor cores on
    /// a GPU; `moe_tensor::precision`).
    Bf16,
}

impl Precision {
    /// The tensor library's setting for this precision.
    pub fn matmul(self) -> moe_tensor::MatmulPrecision {
        match self {
            Precision::F32 => moe_tensor::MatmulPrecision::Highest,
            Precision::Bf16 => moe_tensor::MatmulPrecision::Bf16,
        }
    }

    fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// A note for a run that asks for bf16 on a CPU without a bf16 GEMM
    /// kernel, where it is slower than f32; None otherwise.
    pub fn slow_on(self, device: &moe_tensor::Device) -> Option<&'static str> {
        (self == Precision::Bf16 && device.is_cpu() && !moe_tensor::cpu_bf16_native()).then_some(
            "note: no bf16 GEMM kernel on this CPU (it needs AVX512-BF16; MOE_GEMM_NO_BF16 turns it off): bf16 \
             matrix products multiply rounded copies with the f32 kernels, slower than precision = \"f32\"",
        )
    }
}

/// The budget and the step's mechanics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Token budget (rounded up to whole optimiser steps); or give `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Optimiser steps; overrides `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Micro-batches per optimiser step (their mean gradient is the step's).
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Global gradient-norm clip; 0 turns clipping off.
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Non-finite loss handling.
    #[serde(default)]
    pub on_nan: NanPolicy,
    /// Matrix-product precision: `"f32"` (default) or `"bf16"` (mixed).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

fn one() -> usize {
    1
}
fn default_clip() -> f64 {
    crate::optim::PAPER_CLIP_NORM
}

/// Periodic validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many steps (0: only at the end; the end is always evaluated).
    pub interval: u64,
    /// Windows per evaluation batch.
    pub batch_size: usize,
    /// Also evaluate before the first step (the CPT starting point).
    pub at_start: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            interval: 0,
            batch_size: 8,
            at_start: true,
        }
    }
}

/// Checkpoint interval and retention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save every this many steps (0: only at the end; the end is always saved).
    pub interval: u64,
    /// Keep the newest N checkpoints...
    pub keep_last: usize,
    /// ...and every checkpoint whose step is a multiple of this (0: none extra).
    pub keep_every: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: 0,
            keep_last: 2,
            keep_every: 0,
        }
    }
}

/// Continual pre-training: the run starts from a checkpoint's weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// A checkpoint folder (`RUN/checkpoints/step-…`) or any model folder.
    pub from: PathBuf,
    /// Keep the checkpoint's AdamW moments (needs `optimizer.safetensors` there);
    /// false starts them from zero.
    #[serde(default)]
    pub keep_optimizer: bool,
}
