//! moe-model: dense and MoE decoder language models.
//!
//! Dimension letters used in names and comments: B batch, T tokens (sequence),
//! N = B·T flattened tokens, D model width, F FFN width, H query heads, G
//! key/value heads, K head width or top-k (said where), E experts, V vocabulary,
//! L layers.
//!
//! - [`config`] / [`presets`]: one serde config for dense, Switch and
//!   DeepSeek-style MoEs, validation, parameter counts, FLOP matching.
//! - [`layers`] and [`decoder`]: the model, its forward and training loss.
//! - [`init`]: seeded GPT-NeoX/OLMo-style initialisation.
//! - [`hf`]: transformers' names, config.json and checkpoint layout.
//! - [`generate`]: KV-cached greedy / temperature / top-p generation.
//! - [`upcycle`](mod@upcycle): MoEs from dense checkpoints (naive, Drop-Upcycling, granular).

pub mod config;
pub mod decoder;
mod error;
pub mod generate;
pub mod hf;
pub mod init;
pub mod layers;
pub mod presets;
pub mod upcycle;

pub use config::{ModelConfig, MoeConfig, ParamCount};
pub use decoder::{next_token_targets, Decoder, ForwardOutput, KvCache, LossOutput};
pub use error::{Error, Result};
pub use generate::{generate, Sampling};
pub use hf::{load_model_dir, save_model_dir};
pub use upcycle::{upcycle, UpcycleMethod, UpcycleOptions};
