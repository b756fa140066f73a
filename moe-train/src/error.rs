//! The error type of moe-train's library code: every variant names what is at fault.

/// Result alias used across moe-train.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Everything that can go wrong in the optimiser, schedules and (later) the trainer.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] moe_tensor::Error),

    /// A configuration value is impossible; `field` is its dotted path (`schedule.warmup_steps`).
    #[error("invalid config field `{field}`: {msg}")]
    InvalidConfig { field: String, msg: String },

    /// A run config that is not valid TOML or does not fit the schema (unknown
    /// field, wrong type); the message names the key and line.
    #[error("{path}: {msg}")]
    ConfigParse { path: std::path::PathBuf, msg: String },

    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    /// A model error (config, checkpoint, forward).
    #[error(transparent)]
    Model(#[from] moe_model::Error),

    /// A dataset error.
    #[error(transparent)]
    Data(#[from] moe_data::DataError),

    /// An evaluation error.
    #[error(transparent)]
    Eval(#[from] moe_eval::EvalError),

    /// The run asks for a device this build or machine cannot use (a CUDA
    /// device without the `cuda` feature, the driver or the GPU); `reason` says which.
    #[error("device {device} is not available: {reason}; train on `--device cpu` (`device = \"cpu\"`) or on a machine with that GPU and a build with the `cuda` feature")]
    DeviceUnavailable { device: moe_tensor::Device, reason: String },

    /// The loss or gradient norm became NaN or infinite.
    #[error("step {step}: {what} is {value} (not finite); stopping. The newest checkpoint is the last good state; set `train.on_nan = \"skip\"` to skip such batches")]
    NonFinite { step: u64, what: &'static str, value: f64 },

    /// A checkpoint folder that cannot be used.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: std::path::PathBuf, msg: String },

    /// A saved optimiser state lacks an entry a parameter needs.
    #[error("optimiser state: missing tensor `{name}`")]
    MissingState { name: String },

    /// A saved optimiser state has an entry no parameter owns.
    #[error("optimiser state: unexpected tensor `{name}`")]
    UnexpectedState { name: String },

    /// A saved optimiser state entry does not fit the parameter it belongs to.
    #[error("optimiser state: `{name}` has shape {found:?}, parameter needs {expected:?}")]
    StateShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

impl TrainError {
    /// An [`TrainError::Io`] on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`TrainError::Checkpoint`] about `path`.
    pub fn checkpoint(path: impl Into<std::path::PathBuf>, msg: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// An [`TrainError::InvalidConfig`] for `field`.
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            msg: msg.into(),
        }
    }
}
