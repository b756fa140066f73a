//! Optimisation: AdamW with parameter groups, global-norm gradient clipping.
//!
//! Gradient accumulation needs no code here: moe-tensor's `backward()` adds into
//! each parameter's gradient until `zero_grad()`, so k micro-batches whose losses are
//! scaled by 1/k leave the gradient of the full batch's mean loss
//! (`tests/optim_accumulation.rs` checks it).

mod adamw;
mod clip;
mod config;

pub use adamw::AdamW;
pub use clip::{clip_coefficient, clip_grad_norm};
pub use config::{AdamWConfig, PAPER_BETAS, PAPER_CLIP_NORM, PAPER_WEIGHT_DECAY};
