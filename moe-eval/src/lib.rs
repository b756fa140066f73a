//! moe-eval: per-domain loss, forgetting, routing metrics, reports and plots.
//!
//! - [`loss`]: validation loss and perplexity per domain on fixed windows.

pub mod error;
pub mod loss;

pub use error::{EvalError, Result};
pub use loss::{domain_loss, DomainLoss};
