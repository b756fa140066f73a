//! moe-train: run configs, optimiser, schedules, the training loop with
//! checkpoints and exact resume, and the `moe` binary.

pub mod config;
pub mod demo;
pub mod error;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use config::RunConfig;
pub use error::{Result, TrainError};
pub use trainer::{Event, Trainer};
