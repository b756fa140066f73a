//! The error type of moe-tensor: every variant names the op and what is at fault.

use crate::{DType, Device, Shape};
use std::path::PathBuf;

/// Result alias used across moe-tensor.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in a tensor operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two operands' shapes do not fit the op.
    #[error("{op}: shape mismatch between {lhs:?} and {rhs:?}")]
    ShapeMismatch { op: &'static str, lhs: Shape, rhs: Shape },

    /// Shapes cannot be broadcast together.
    #[error("{op}: cannot broadcast {lhs:?} with {rhs:?}")]
    BroadcastIncompatible { op: &'static str, lhs: Shape, rhs: Shape },

    /// A shape argument is invalid for this tensor (wrong element count, bad rank...).
    #[error("{op}: invalid shape: {msg}")]
    InvalidShape { op: &'static str, msg: String },

    /// A dimension index is out of range for the tensor's rank.
    #[error("{op}: dim {dim} out of range for a tensor of rank {rank}")]
    DimOutOfRange { op: &'static str, dim: isize, rank: usize },

    /// An op got a dtype it does not support.
    #[error("{op}: unsupported dtype {dtype:?}")]
    UnsupportedDType { op: &'static str, dtype: DType },

    /// Operands have different dtypes.
    #[error("{op}: dtype mismatch {lhs:?} vs {rhs:?}")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },

    /// Operands live on different devices.
    #[error("{op}: device mismatch {lhs:?} vs {rhs:?}")]
    DeviceMismatch { op: &'static str, lhs: Device, rhs: Device },

    /// The device is not available in this build or on this machine.
    #[error("device {device:?} is not available: {msg}")]
    DeviceUnavailable { device: Device, msg: String },

    /// The op has no implementation on this device yet (nothing is copied to
    /// the host behind the caller's back: move the tensor with `to_device`).
    #[error("{op}: not implemented on {device:?}")]
    NotImplementedOnDevice { op: &'static str, device: Device },

    /// The CUDA driver, NVRTC or cuBLAS reported an error.
    #[error("{op}: CUDA error: {msg}")]
    Cuda { op: &'static str, msg: String },

    /// An index points outside the indexed dimension.
    #[error("{op}: index {index} out of range for a dimension of size {size}")]
    IndexOutOfRange { op: &'static str, index: i64, size: usize },

    /// A narrow/slice range does not fit the dimension.
    #[error("{op}: range {start}..{end} out of bounds for dim {dim} of size {size}")]
    RangeOutOfBounds {
        op: &'static str,
        dim: usize,
        start: usize,
        end: usize,
        size: usize,
    },

    /// A buffer's length does not match the shape it is given.
    #[error("{op}: {len} elements given for shape {shape:?} ({expected} expected)")]
    ElementCount {
        op: &'static str,
        len: usize,
        shape: Shape,
        expected: usize,
    },

    /// Backward was called on a non-scalar without a seed gradient.
    #[error("backward: output has shape {shape:?}; call backward_with(grad) for a non-scalar")]
    BackwardNonScalar { shape: Shape },

    /// Backward was called on a tensor that does not require gradients.
    #[error("backward: tensor does not require grad (no parameter contributed to it)")]
    BackwardNoGrad,

    /// Autograd consistency error (a backward op returned a wrong gradient shape...).
    #[error("autograd: {msg}")]
    Autograd { msg: String },

    /// A kernel reported an error.
    #[error("{op}: {msg}")]
    Kernel { op: &'static str, msg: String },

    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A malformed or unsupported safetensors file.
    #[error("{path}: {msg}")]
    Safetensors { path: PathBuf, msg: String },
}
