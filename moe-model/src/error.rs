//! The error type of moe-model: every variant names the field, file or tensor at fault.

use std::path::PathBuf;

/// Result alias used across moe-model.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong building, loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field holds an invalid value.
    #[error("config field `{field}`: {msg}")]
    Config { field: String, msg: String },

    /// An error from the tensor library.
    #[error(transparent)]
    Tensor(#[from] moe_tensor::Error),

    /// An error from the router library.
    #[error(transparent)]
    Router(#[from] moe_router::RouterError),

    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A JSON file that does not parse or lacks a field.
    #[error("{path}: {msg}")]
    Json { path: PathBuf, msg: String },

    /// A `config.json` whose architecture this crate cannot load.
    #[error("{path}: unsupported architecture {arch:?} (supported: LlamaForCausalLM, MixtralForCausalLM, Qwen2MoeForCausalLM)")]
    UnsupportedArchitecture { path: PathBuf, arch: String },

    /// A checkpoint lacks a tensor the model needs.
    #[error("{path}: missing tensor {name:?}")]
    MissingTensor { path: PathBuf, name: String },

    /// A checkpoint tensor has the wrong shape.
    #[error("{path}: tensor {name:?} has shape {got:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// A checkpoint holds a tensor the model does not use.
    #[error("{path}: unexpected tensor {name:?}")]
    UnexpectedTensor { path: PathBuf, name: String },

    /// A token id outside the vocabulary.
    #[error("token id {id} at position {pos} is out of range for a vocabulary of {vocab}")]
    TokenOutOfRange { id: i64, pos: usize, vocab: usize },

    /// An input of the wrong shape or content (empty batch, ragged rows...).
    #[error("{what}: {msg}")]
    BadInput { what: &'static str, msg: String },

    /// Upcycling: the dense source does not fit the target MoE config, or an
    /// option is out of range; `field` names the config field or option.
    #[error("upcycle: `{field}`: {msg}")]
    Upcycle { field: String, msg: String },
}

impl Error {
    /// A [`Error::Config`] naming `field`.
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            msg: msg.into(),
        }
    }
}
