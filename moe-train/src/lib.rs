//! moe-train: optimiser, schedules, training loop, checkpoints and the `moe` binary.

pub mod error;
pub mod optim;
pub mod schedule;

pub use error::{Result, TrainError};
