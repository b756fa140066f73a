//! moe-model: dense and MoE decoder language models.
//!
//! Not implemented yet: this crate is filled by the model/router issue.
