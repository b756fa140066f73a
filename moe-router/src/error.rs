//! The error type of moe-router: every variant names what is at fault.

/// Result alias used across moe-router.
pub type Result<T> = std::result::Result<T, RouterError>;

/// Everything that can go wrong while routing.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A tensor op failed (shape, dtype or device problems inside an op).
    #[error(transparent)]
    Tensor(#[from] moe_tensor::Error),

    /// A configuration field holds a value the router cannot use.
    #[error("router config: `{field}` {msg}")]
    Config {
        /// The offending field, as spelled in the config.
        field: &'static str,
        /// What is wrong with it.
        msg: String,
    },

    /// A tensor handed to the router has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The expected shape, in dimension letters (`[N, D]`, `[E, D]`, ...).
        expected: String,
        /// The shape given.
        got: Vec<usize>,
    },

    /// A tensor handed to the router has a dtype it cannot use.
    #[error("{what}: dtype {got:?} not supported ({expected})")]
    DType {
        /// Which argument.
        what: &'static str,
        /// What would be accepted.
        expected: &'static str,
        /// The dtype given.
        got: moe_tensor::DType,
    },

    /// Other inconsistent arguments (ids out of range, mismatched lengths, ...).
    #[error("{what}: {msg}")]
    Invalid {
        /// Which argument or computation.
        what: &'static str,
        /// What is wrong.
        msg: String,
    },
}
