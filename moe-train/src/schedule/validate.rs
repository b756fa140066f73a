//! Validation of a [`ScheduleConfig`]: every error names the offending field.

use super::ScheduleConfig;
use crate::error::{Result, TrainError};

fn lr(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(TrainError::config(
            format!("schedule.{field}"),
            format!("must be a finite number >= 0, got {value}"),
        ))
    }
}

/// `value <= bound` (learning rates or step counts), else an error naming both.
fn le<T: PartialOrd + std::fmt::Display>(field: &str, value: T, bound_name: &str, bound: T) -> Result<()> {
    if value <= bound {
        Ok(())
    } else {
        Err(TrainError::config(
            format!("schedule.{field}"),
            format!("{value} is larger than {bound_name} = {bound}"),
        ))
    }
}

fn positive(field: &str, value: u64) -> Result<()> {
    if value > 0 {
        Ok(())
    } else {
        Err(TrainError::config(format!("schedule.{field}"), "must be > 0"))
    }
}

impl ScheduleConfig {
    /// Checks that every value is possible: learning rates finite and non-negative,
    /// the minimum not above the maximum, phases that fit in the run.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Constant { lr: v, .. } => lr("lr", v),
            Self::Cosine {
                max_lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => {
                lr("max_lr", max_lr)?;
                lr("min_lr", min_lr)?;
                le("min_lr", min_lr, "max_lr", max_lr)?;
                positive("total_steps", total_steps)?;
                le("warmup_steps", warmup_steps, "total_steps", total_steps)
            }
            Self::Rewarm {
                start_lr,
                max_lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => {
                lr("start_lr", start_lr)?;
                lr("max_lr", max_lr)?;
                lr("min_lr", min_lr)?;
                le("start_lr", start_lr, "max_lr", max_lr)?;
                le("min_lr", min_lr, "max_lr", max_lr)?;
                positive("total_steps", total_steps)?;
                le("warmup_steps", warmup_steps, "total_steps", total_steps)
            }
            Self::Wsd {
                max_lr,
                min_lr,
                warmup_steps,
                decay_steps,
                total_steps,
                ..
            } => {
                lr("max_lr", max_lr)?;
                lr("min_lr", min_lr)?;
                le("min_lr", min_lr, "max_lr", max_lr)?;
                positive("total_steps", total_steps)?;
                let room = total_steps.saturating_sub(warmup_steps);
                le("warmup_steps", warmup_steps, "total_steps", total_steps)?;
                le("decay_steps", decay_steps, "total_steps - warmup_steps", room)
            }
            Self::Infinite {
                max_lr,
                constant_lr,
                min_lr,
                warmup_steps,
                cooldown_steps,
                anneal_start,
                ..
            } => {
                lr("max_lr", max_lr)?;
                lr("constant_lr", constant_lr)?;
                lr("min_lr", min_lr)?;
                le("constant_lr", constant_lr, "max_lr", max_lr)?;
                le("min_lr", min_lr, "constant_lr", constant_lr)?;
                match anneal_start {
                    Some(start) => {
                        let end = warmup_steps.saturating_add(cooldown_steps);
                        if start < end {
                            return Err(TrainError::config(
                                "schedule.anneal_start",
                                format!("{start} is before the end of warmup + cooldown ({end})"),
                            ));
                        }
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
        }
    }
}
