//! The training loop: micro-batches with gradient accumulation, clipping,
//! AdamW under a schedule, per-step metrics, periodic validation and
//! checkpoints, exact resume and continual pre-training from a checkpoint.

mod checkpoint;
mod flops;
mod metrics;
mod setup;
mod state;
mod step;

pub use checkpoint::{latest_checkpoint, list_checkpoints, step_dir_name, CHECKPOINTS, OPTIMIZER_FILE};
pub use flops::training_flops_per_token;
pub use metrics::{read_records, LayerLoad, MetricsLog, Record, TrainRecord, ValRecord, METRICS_FILE};
pub use setup::check_device;
pub use state::{RunInfo, TrainerState, TRAINER_STATE_FILE};

use crate::config::RunConfig;
use crate::error::Result;
use crate::optim::AdamW;
use moe_data::{Dataset, Sampler, ValWindows};
use moe_model::Decoder;
use moe_tensor::init::Rng;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The resolved config of a run.
pub const CONFIG_FILE: &str = "config.toml";
/// The run's identity file.
pub const RUN_FILE: &str = "run.json";
/// Provenance of a folder written by `moe upcycle` (`source`: the dense model).
pub const UPCYCLE_FILE: &str = "upcycle.json";

/// What the loop reports as it goes (for progress displays).
#[derive(Debug)]
pub enum Event<'a> {
    /// A step finished (`total` steps in the run).
    Step { record: &'a TrainRecord, total: u64 },
    /// A domain was evaluated.
    Val(&'a ValRecord),
    /// A checkpoint was written.
    Checkpoint(&'a Path),
}

/// A run in progress.
pub struct Trainer {
    cfg: RunConfig,
    run_dir: PathBuf,
    dataset: Arc<Dataset>,
    model: Decoder,
    optimizer: AdamW,
    sampler: Sampler,
    val: Vec<ValWindows>,
    log: MetricsLog,
    rng: Rng,
    step: u64,
    tokens: u64,
    flops: f64,
    skipped: u64,
    domain_tokens: std::collections::BTreeMap<String, u64>,
    flops_per_token: f64,
}

impl Trainer {
    /// The resolved config.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// The model being trained.
    pub fn model(&self) -> &Decoder {
        &self.model
    }

    /// Optimiser steps done.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Trains until the budget is spent, evaluating and checkpointing on the
    /// way; returns the final checkpoint.
    pub fn run(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> Result<PathBuf> {
        let precision = self.cfg.train.precision.matmul();
        moe_tensor::with_matmul_precision(precision, || self.run_steps(on_event))
    }

    fn run_steps(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> Result<PathBuf> {
        let total = self.cfg.total_steps();
        if self.step == 0 && self.cfg.eval.at_start {
            self.evaluate(on_event)?;
        }
        let mut last = None;
        while self.step < total {
            let record = self.train_step()?;
            self.log.write(&Record::Train(record.clone()))?;
            on_event(Event::Step { record: &record, total });
            let step = self.step;
            let at = |interval: u64| step == total || (interval > 0 && step.is_multiple_of(interval));
            if at(self.cfg.eval.interval) {
                self.evaluate(on_event)?;
            }
            if at(self.cfg.checkpoint.interval) {
                let dir = self.save()?;
                on_event(Event::Checkpoint(&dir));
                last = Some(dir);
            }
        }
        match last {
            Some(dir) => Ok(dir),
            // Resumed from the final checkpoint: nothing left to do.
            None => latest_checkpoint(&self.run_dir)?.ok_or_else(|| {
                crate::error::TrainError::checkpoint(&self.run_dir, "the run has no steps and no checkpoint")
            }),
        }
    }

    /// Validation loss on every configured domain, logged.
    pub fn evaluate(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> Result<Vec<ValRecord>> {
        let precision = self.cfg.train.precision.matmul();
        moe_tensor::with_matmul_precision(precision, || self.evaluate_domains(on_event))
    }

    fn evaluate_domains(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> Result<Vec<ValRecord>> {
        let mut out = Vec::with_capacity(self.val.len());
        for w in &self.val {
            let l = moe_eval::domain_loss(&self.model, w, self.cfg.eval.batch_size)?;
            let r = ValRecord {
                step: self.step,
                tokens: self.tokens,
                domain: l.domain,
                loss: l.loss,
                ppl: l.ppl,
                val_tokens: l.tokens,
            };
            self.log.write(&Record::Val(r.clone()))?;
            on_event(Event::Val(&r));
            out.push(r);
        }
        Ok(out)
    }

    /// The state a checkpoint of the current position holds.
    fn state(&self) -> TrainerState {
        TrainerState {
            version: state::version(),
            step: self.step,
            tokens: self.tokens,
            domain_tokens: self.domain_tokens.clone(),
            flops: self.flops,
            skipped_steps: self.skipped,
            sampler: self.sampler.state(),
            rng: self.rng.state(),
            expert_bias: setup::expert_biases(&self.model),
            config: self.cfg.clone(),
        }
    }

    /// Writes a checkpoint now and applies the retention policy.
    pub fn save(&self) -> Result<PathBuf> {
        let tokenizer = self.dataset.dir().join(moe_data::manifest::TOKENIZER_FILE);
        let dir = checkpoint::save_checkpoint(&self.run_dir, &self.model, &self.optimizer, &self.state(), &tokenizer)?;
        checkpoint::prune(
            &self.run_dir,
            self.cfg.checkpoint.keep_last,
            self.cfg.checkpoint.keep_every,
        )?;
        Ok(dir)
    }
}
