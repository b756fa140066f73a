//! Hugging Face interoperability: every HF name and config mapping lives here.
//!
//! - [`names`]: our parameter names (transformers' in-memory names) and shapes.
//! - [`config`]: `config.json` ↔ [`crate::ModelConfig`] for Llama, Mixtral and
//!   Qwen2-MoE.
//! - [`checkpoint`]: model folders (single or sharded safetensors) to and from a
//!   [`crate::Decoder`], including the per-expert on-disk names.
//! - [`model_dir`]: moe-cpt's model folders (`moe_config.json` + HF files
//!   when an HF class can express the model).

pub mod checkpoint;
pub mod config;
pub mod model_dir;
pub mod names;

pub use checkpoint::{load_hf, read_hf_config, save_hf};
pub use config::{hf_arch_for, parse_hf_config, to_hf_config, HfArch};
pub use model_dir::{load_model_dir, read_model_config, save_model_dir, HF_CONFIG_FILE, MOE_CONFIG_FILE};
