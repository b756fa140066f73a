//! Learning-rate schedules: each a pure function of the optimiser step.
//!
//! Step convention: `lr_at(s)` is the learning rate of the `s`-th optimiser update,
//! counted from 1 (the first update is step 1, as in GPT-NeoX's `AnnealingLR`).
//! `lr_at(0)` is the value before any update (0 during a warmup from 0). Linear warmup
//! reaches the maximum exactly at `s = warmup_steps`; decays reach their end value at
//! their last step and stay there beyond it.

mod shape;
mod validate;

pub use shape::DecayShape;

use serde::{Deserialize, Serialize};

/// The paper's peak learning rate.
pub const PAPER_MAX_LR: f64 = 3e-4;
/// The paper's final learning rate.
pub const PAPER_MIN_LR: f64 = 3e-5;
/// The paper's constant-phase learning rate of the infinite schedule.
pub const PAPER_CONSTANT_LR: f64 = 1.65e-4;
/// The paper's warmup: 1% of the steps.
pub const PAPER_WARMUP_FRACTION: f64 = 0.01;

/// A learning-rate schedule, as written in a run's TOML (`kind = "cosine"`, ...).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// `lr` throughout, after an optional linear warmup from 0.
    Constant {
        lr: f64,
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Linear warmup from 0 to `max_lr`, then cosine decay to `min_lr` at `total_steps`.
    Cosine {
        max_lr: f64,
        min_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
    },
    /// Continual pre-training: re-warm linearly from `start_lr` (where the previous run's
    /// decay ended) to a new `max_lr`, then cosine re-decay to `min_lr` at `total_steps`.
    /// Steps count from the start of the new run.
    Rewarm {
        start_lr: f64,
        max_lr: f64,
        min_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
    },
    /// Warmup–stable–decay: warmup to `max_lr`, hold it, then decay to `min_lr` over the
    /// last `decay_steps` of `total_steps`.
    Wsd {
        max_lr: f64,
        min_lr: f64,
        warmup_steps: u64,
        decay_steps: u64,
        total_steps: u64,
        #[serde(default)]
        decay_shape: DecayShape,
    },
    /// The "infinite" schedule (Ibrahim et al. 2024; Singh et al. 2025): warmup to
    /// `max_lr`, cosine cooldown to `constant_lr` over `cooldown_steps`, a constant phase
    /// of any length, and (if `anneal_start` is set) an anneal to `min_lr` over
    /// `anneal_steps` starting after update `anneal_start`. Pre-training stops in the
    /// constant phase; CPT resumes there without re-warming, either by continuing the
    /// step count or with `warmup_steps = cooldown_steps = 0`, which starts at
    /// `constant_lr`.
    Infinite {
        max_lr: f64,
        constant_lr: f64,
        min_lr: f64,
        warmup_steps: u64,
        cooldown_steps: u64,
        #[serde(default)]
        anneal_start: Option<u64>,
        #[serde(default)]
        anneal_steps: u64,
        #[serde(default)]
        anneal_shape: DecayShape,
    },
}

/// `ceil(fraction · total)`: the paper's warmup length for a run of `total` steps.
pub fn warmup_steps_for(total_steps: u64) -> u64 {
    (total_steps as f64 * PAPER_WARMUP_FRACTION).ceil() as u64
}

impl ScheduleConfig {
    /// The paper's pre-training schedule: warmup 1%, cosine from 3e-4 to 3e-5.
    pub fn paper_cosine(total_steps: u64) -> Self {
        Self::Cosine {
            max_lr: PAPER_MAX_LR,
            min_lr: PAPER_MIN_LR,
            warmup_steps: warmup_steps_for(total_steps),
            total_steps,
        }
    }

    /// The paper's CPT schedule: re-warm from 3e-5 to 3e-4 over 1%, re-decay to 3e-5.
    pub fn paper_rewarm(total_steps: u64) -> Self {
        Self::Rewarm {
            start_lr: PAPER_MIN_LR,
            max_lr: PAPER_MAX_LR,
            min_lr: PAPER_MIN_LR,
            warmup_steps: warmup_steps_for(total_steps),
            total_steps,
        }
    }

    /// The paper's infinite schedule without an anneal (pre-training that stops in the
    /// constant phase at 1.65e-4): warmup 1% of `total_steps`, cosine cooldown over
    /// `cooldown_steps`.
    pub fn paper_infinite(total_steps: u64, cooldown_steps: u64) -> Self {
        Self::Infinite {
            max_lr: PAPER_MAX_LR,
            constant_lr: PAPER_CONSTANT_LR,
            min_lr: PAPER_MIN_LR,
            warmup_steps: warmup_steps_for(total_steps),
            cooldown_steps,
            anneal_start: None,
            anneal_steps: 0,
            anneal_shape: DecayShape::Linear,
        }
    }

    /// The learning rate of update `step` (1-based; see the module docs).
    pub fn lr_at(&self, step: u64) -> f64 {
        match *self {
            Self::Constant { lr, warmup_steps } => warmup(0.0, lr, warmup_steps, step).unwrap_or(lr),
            Self::Cosine {
                max_lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => warmup_decay(0.0, max_lr, min_lr, warmup_steps, total_steps, step),
            Self::Rewarm {
                start_lr,
                max_lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => warmup_decay(start_lr, max_lr, min_lr, warmup_steps, total_steps, step),
            Self::Wsd {
                max_lr,
                min_lr,
                warmup_steps,
                decay_steps,
                total_steps,
                decay_shape,
            } => {
                if let Some(lr) = warmup(0.0, max_lr, warmup_steps, step) {
                    return lr;
                }
                let decay_start = total_steps.saturating_sub(decay_steps);
                phase(max_lr, min_lr, decay_start, decay_steps, step, decay_shape)
            }
            Self::Infinite {
                max_lr,
                constant_lr,
                min_lr,
                warmup_steps,
                cooldown_steps,
                anneal_start,
                anneal_steps,
                anneal_shape,
            } => {
                if let Some(lr) = warmup(0.0, max_lr, warmup_steps, step) {
                    return lr;
                }
                match anneal_start {
                    Some(start) if step > start => phase(constant_lr, min_lr, start, anneal_steps, step, anneal_shape),
                    _ => phase(
                        max_lr,
                        constant_lr,
                        warmup_steps,
                        cooldown_steps,
                        step,
                        DecayShape::Cosine,
                    ),
                }
            }
        }
    }
}

/// Linear warmup from `from` to `to`: `Some(lr)` while `step <= steps` (and `steps > 0`).
fn warmup(from: f64, to: f64, steps: u64, step: u64) -> Option<f64> {
    (steps > 0 && step <= steps).then(|| from + (to - from) * step as f64 / steps as f64)
}

/// `from` until `start`, then `shape` from `from` to `to` over `len` steps, then `to`.
fn phase(from: f64, to: f64, start: u64, len: u64, step: u64, shape: DecayShape) -> f64 {
    // End first: a zero-length phase is already at `to` on its start step.
    if step >= start + len {
        to
    } else if step <= start {
        from
    } else {
        shape.interpolate(from, to, (step - start) as f64 / len as f64)
    }
}

/// Warmup from `start` to `max` over `w` steps, then cosine to `min` at step `total`.
fn warmup_decay(start: f64, max: f64, min: f64, w: u64, total: u64, step: u64) -> f64 {
    warmup(start, max, w, step).unwrap_or_else(|| phase(max, min, w, total.saturating_sub(w), step, DecayShape::Cosine))
}
