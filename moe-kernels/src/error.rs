//! The error type of the kernels that check their inputs.
//!
//! Kernels that read indices from user data (index_select, embedding, gather,
//! scatter_add, ...) validate every index and the length of every buffer they
//! are given, and report problems here instead of panicking.

use thiserror::Error;

/// Why a kernel refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// An index is negative or not below the size of the dimension it indexes.
    #[error("{op}: index {index} is out of bounds for a dimension of size {size}")]
    IndexOutOfBounds {
        /// The kernel that found it.
        op: &'static str,
        /// The offending index.
        index: i64,
        /// The size of the indexed dimension.
        size: usize,
    },
    /// A buffer does not hold the number of elements its shape needs.
    #[error("{op}: buffer `{buffer}` has {got} elements, expected {expected}")]
    LengthMismatch {
        /// The kernel that found it.
        op: &'static str,
        /// Which argument.
        buffer: &'static str,
        /// Elements the given shape needs.
        expected: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// The element count of a shape does not fit in `usize`.
    #[error("{op}: shape {shape:?} has more elements than fit in usize")]
    ShapeOverflow {
        /// The kernel that found it.
        op: &'static str,
        /// The shape as given.
        shape: Vec<usize>,
    },
    /// `k` is larger than the dimension it selects from.
    #[error("{op}: k = {k} is larger than the dimension size {size}")]
    KTooLarge {
        /// The kernel that found it.
        op: &'static str,
        /// Requested number of elements.
        k: usize,
        /// Size of the dimension.
        size: usize,
    },
    /// A size the kernel does not support (for example more experts than
    /// the Sinkhorn kernel's block has threads).
    #[error("{op}: unsupported size: {msg}")]
    Unsupported {
        /// The kernel that found it.
        op: &'static str,
        /// What is out of range, and the limit.
        msg: String,
    },
    /// A reduction with no identity (argmax, ...) over a dimension of size 0.
    #[error("{op}: cannot reduce over a dimension of size 0")]
    EmptyDim {
        /// The kernel that found it.
        op: &'static str,
    },
}
