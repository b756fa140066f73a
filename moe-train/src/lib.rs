//! moe-train: optimiser, schedules, training loop, checkpoints and the `moe` binary.
//!
//! Not implemented yet: this crate is filled by the train issue.
