//! The error type of moe-eval: every variant names the file, field, domain or
//! checkpoint at fault.

use std::path::PathBuf;

/// Result alias used across moe-eval.
pub type Result<T> = std::result::Result<T, EvalError>;

/// Everything that can go wrong evaluating checkpoints or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A model error (loading, forward pass).
    #[error(transparent)]
    Model(#[from] moe_model::Error),

    /// A tensor error.
    #[error(transparent)]
    Tensor(#[from] moe_tensor::Error),

    /// A data error (dataset, validation windows, tokenizer).
    #[error(transparent)]
    Data(#[from] moe_data::DataError),

    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A JSON file (or a line of a JSON-lines file) that does not parse.
    #[error("{path}{}: {msg}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line for JSON-lines files.
        line: Option<usize>,
        /// What is wrong.
        msg: String,
    },

    /// The checkpoint's tokenizer differs from the dataset's.
    #[error(
        "checkpoint {ckpt} and dataset {data} use different tokenizers \
         (checkpoint {ckpt_hash}, dataset {data_hash}); evaluate on data prepared with the checkpoint's tokenizer"
    )]
    TokenizerMismatch {
        /// The checkpoint folder.
        ckpt: PathBuf,
        /// The dataset folder.
        data: PathBuf,
        /// Hex hash of the checkpoint's tokenizer.
        ckpt_hash: String,
        /// Hex hash of the dataset's tokenizer.
        data_hash: String,
    },

    /// Routing metrics were asked of a model without MoE layers.
    #[error("{what}: the model is dense (no MoE layers), so it has no routing to measure")]
    DenseModel {
        /// The checkpoint (or a description of the model).
        what: String,
    },

    /// A domain that the dataset or the run does not have.
    #[error("domain `{name}` not found in {place} (it has: {known})")]
    MissingDomain {
        /// The domain asked for.
        name: String,
        /// The dataset or run folder.
        place: String,
        /// Comma-separated domains that exist.
        known: String,
    },

    /// Two routings (or models) that cannot be compared.
    #[error("cannot compare: {0}")]
    Incompatible(String),

    /// Input of the wrong shape or content.
    #[error("{what}: {msg}")]
    BadInput {
        /// The argument or data at fault.
        what: String,
        /// What is wrong.
        msg: String,
    },

    /// Drawing a plot failed.
    #[error("plot {path}: {msg}")]
    Plot {
        /// The image being written.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
}

impl EvalError {
    /// An [`EvalError::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`EvalError::BadInput`].
    pub fn bad(what: impl Into<String>, msg: impl Into<String>) -> Self {
        EvalError::BadInput {
            what: what.into(),
            msg: msg.into(),
        }
    }
}
