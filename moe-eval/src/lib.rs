//! moe-eval: per-domain loss, forgetting, routing metrics, reports and plots.
//!
//! Dimension letters: N tokens, K experts per token, E experts, T sequence length.
//!
//! - [`loss`]: validation loss and perplexity per domain on fixed windows.
//! - [`routing`]: expert load, Maximum Routing Imbalance, routing change
//!   between checkpoints, vocabulary specialisation, co-activation.
//! - [`checkpoint`] and [`eval`]: what `moe eval` runs (a checkpoint on a
//!   dataset; two checkpoints' routing on identical tokens).
//! - [`runs`], [`forgetting`], [`efficiency`]: run folders' logs read back;
//!   forgetting/adaptation of CPT runs; loss against tokens and FLOPs.
//! - [`report`]: `moe report` as a library call ([`report::write_report`]):
//!   Markdown, JSON beside every table, PNG and SVG plots.

pub mod checkpoint;
pub mod efficiency;
pub mod error;
pub mod eval;
pub mod forgetting;
pub mod io;
pub mod loss;
pub mod report;
pub mod routing;
pub mod runs;

pub use error::{EvalError, Result};
pub use eval::{compare_checkpoints, evaluate_checkpoint, CheckpointEval, EvalOptions, RoutingComparison};
pub use loss::{domain_loss, DomainLoss};
pub use report::{write_report, ReportOptions, ReportSummary};

/// The README's Rust example compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
