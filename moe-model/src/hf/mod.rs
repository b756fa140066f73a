//! Hugging Face interoperability: every HF name and config mapping lives here.
//!
//! - [`names`]: our parameter names (transformers' in-memory names) and shapes.
//! - [`config`]: `config.json` ↔ [`crate::ModelConfig`] for Llama, Mixtral and
//!   Qwen2-MoE.
//! - [`checkpoint`]: model folders (single or sharded safetensors) to and from a
//!   [`crate::Decoder`], including the per-expert on-disk names.

pub mod checkpoint;
pub mod config;
pub mod names;

pub use checkpoint::{load_hf, read_hf_config, save_hf};
pub use config::{hf_arch_for, parse_hf_config, to_hf_config, HfArch};
