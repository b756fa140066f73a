//! The demo's runs: the study in miniature on the built-in corpus
//! (domain A = English, domain B = German).
//!
//! 1. `pre-{family}`: each of the five families pre-trained on A, same tokens;
//! 2. `cpt-{family}-replay0` / `-replay40`: each continued on B with a
//!    re-warm/re-decay schedule, without replay and with 40% replay of A (the
//!    paper's German setting);
//! 3. `union-dense`, `union-granular-aux-z`: trained from scratch on A ∪ B for
//!    the pre-training + CPT tokens, the re-training baseline.

use crate::config::{
    CheckpointConfig, DataConfig, EvalConfig, Family, InitConfig, ModelSpec, RunConfig, TrainConfig, FAMILIES,
};
use crate::optim::AdamWConfig;
use crate::schedule::ScheduleConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Domain A (pre-training).
pub const DOMAIN_A: &str = "english";
/// Domain B (continual pre-training).
pub const DOMAIN_B: &str = "german";
/// Replay share of A in the replay CPT runs.
pub const REPLAY: f64 = 0.4;

/// Sizes of a demo.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoSize {
    /// Pre-training tokens per model.
    pub pretrain_tokens: u64,
    /// CPT tokens per model.
    pub cpt_tokens: u64,
    /// Sequence length.
    pub seq_len: usize,
    /// Sequences per step.
    pub micro_batch: usize,
    /// Validation windows per domain.
    pub val_windows: usize,
    /// Evaluations per run (plus the one at its start).
    pub evals_per_run: u64,
    /// Built-in documents per domain.
    pub docs_per_domain: u64,
}

impl DemoSize {
    /// The default demo (about 10 minutes on 2 cores), scaled by `scale`.
    pub fn standard(scale: f64) -> Self {
        let s = |n: f64| (n * scale).round().max(1.0) as u64;
        Self {
            pretrain_tokens: s(393_216.0),
            cpt_tokens: s(196_608.0),
            seq_len: 128,
            micro_batch: 8,
            val_windows: 32,
            evals_per_run: 8,
            docs_per_domain: s(8_000.0).max(2_000),
        }
    }

    /// `--quick`: under two minutes, for tests.
    pub fn quick() -> Self {
        Self {
            pretrain_tokens: 24_576,
            cpt_tokens: 12_288,
            seq_len: 64,
            micro_batch: 8,
            val_windows: 8,
            evals_per_run: 3,
            docs_per_domain: 1_000,
        }
    }
}

/// One run of the demo.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    /// Folder name under `OUT/runs/`.
    pub name: String,
    /// The family trained.
    pub family: Family,
    /// Its config (the `init.from` of a CPT run points at its parent's final checkpoint).
    pub config: RunConfig,
    /// The run it continues, for CPT runs.
    pub parent: Option<String>,
}

fn mixture(entries: &[(&str, f64)]) -> BTreeMap<String, f64> {
    entries.iter().map(|(n, w)| (n.to_string(), *w)).collect()
}

fn base_config(
    name: &str,
    data: &Path,
    size: &DemoSize,
    tokens: u64,
    mix: BTreeMap<String, f64>,
    seed: u64,
) -> RunConfig {
    let per_step = (size.seq_len * size.micro_batch) as u64;
    let steps = tokens.div_ceil(per_step).max(1);
    RunConfig {
        name: name.to_string(),
        seed,
        device: moe_tensor::Device::Cpu,
        model: ModelSpec::default(),
        data: DataConfig {
            dir: data.to_path_buf(),
            mixture: mix,
            seq_len: size.seq_len,
            micro_batch: size.micro_batch,
            val_domains: vec![DOMAIN_A.into(), DOMAIN_B.into()],
            val_windows: size.val_windows,
        },
        train: TrainConfig {
            tokens: None,
            steps: Some(steps),
            grad_accum: 1,
            clip: crate::optim::PAPER_CLIP_NORM,
            on_nan: Default::default(),
            precision: Default::default(),
        },
        optimizer: AdamWConfig::default(),
        // Tiny models need 10x the paper's learning rates to learn in a demo's budget.
        schedule: ScheduleConfig::Cosine {
            max_lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: crate::schedule::warmup_steps_for(steps),
            total_steps: steps,
        },
        eval: EvalConfig {
            interval: (steps / size.evals_per_run.max(1)).max(1),
            batch_size: 8,
            at_start: true,
        },
        checkpoint: CheckpointConfig {
            interval: 0,
            keep_last: 1,
            keep_every: 0,
        },
        init: None,
    }
}

/// Every run of the demo, parents before children; `runs` is `OUT/runs`.
pub fn plan(data: &Path, runs: &Path, size: &DemoSize, families: &[Family]) -> Vec<PlannedRun> {
    let mut out = Vec::new();
    // A run of `family` from random initialisation.
    let scratch = |prefix: &str, family: Family, tokens: u64, mix: BTreeMap<String, f64>| {
        let name = format!("{prefix}-{}", family.name());
        let mut config = base_config(&name, data, size, tokens, mix, 0);
        config.model.preset = Some(format!("tiny-{}", family.name()));
        PlannedRun {
            name,
            family,
            config,
            parent: None,
        }
    };
    for &family in families {
        out.push(scratch(
            "pre",
            family,
            size.pretrain_tokens,
            mixture(&[(DOMAIN_A, 1.0)]),
        ));
    }
    for &family in families {
        let parent = format!("pre-{}", family.name());
        for (tag, mix) in [
            ("replay0", mixture(&[(DOMAIN_B, 1.0)])),
            ("replay40", mixture(&[(DOMAIN_B, 1.0 - REPLAY), (DOMAIN_A, REPLAY)])),
        ] {
            let name = format!("cpt-{}-{tag}", family.name());
            let mut c = base_config(&name, data, size, size.cpt_tokens, mix, 1);
            let steps = c.total_steps();
            c.schedule = ScheduleConfig::Rewarm {
                start_lr: 3e-4,
                max_lr: 3e-3,
                min_lr: 3e-4,
                warmup_steps: crate::schedule::warmup_steps_for(steps),
                total_steps: steps,
            };
            // Filled in with the parent's final checkpoint when the run starts.
            c.init = Some(InitConfig {
                from: runs.join(&parent),
                keep_optimizer: false,
            });
            out.push(PlannedRun {
                name,
                family,
                config: c,
                parent: Some(parent.clone()),
            });
        }
    }
    for family in [Family::Dense, Family::GranularAuxZ] {
        if !families.contains(&family) {
            continue;
        }
        let tokens = size.pretrain_tokens + size.cpt_tokens;
        out.push(scratch(
            "union",
            family,
            tokens,
            mixture(&[(DOMAIN_A, 0.5), (DOMAIN_B, 0.5)]),
        ));
    }
    out
}

/// Every family, for the default demo.
pub fn all_families() -> Vec<Family> {
    FAMILIES.to_vec()
}

/// The folder of run `name`.
pub fn run_dir(runs: &Path, name: &str) -> PathBuf {
    runs.join(name)
}
