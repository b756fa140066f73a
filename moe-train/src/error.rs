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
    /// An [`TrainError::InvalidConfig`] for `field`.
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            msg: msg.into(),
        }
    }
}
