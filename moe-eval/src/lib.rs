//! moe-eval: per-domain loss, forgetting, routing metrics, reports and plots.
//!
//! Not implemented yet: this crate is filled by the eval issue.
