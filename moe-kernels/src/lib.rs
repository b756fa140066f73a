//! Raw compute kernels for moe-cpt.
//!
//! Pure functions on slices (and, behind the `cuda` feature, device buffers).
//! This crate knows nothing about `Tensor`: shapes arrive as plain integers and
//! strides, every buffer's layout is documented on the function that takes it.
//!
//! Dimension letters used in docs: B batch, T tokens, D model width, F FFN
//! width, H heads, E experts, K top-k, V vocabulary, N rows.

pub mod cpu;
pub mod cuda;
pub mod error;
mod real;

pub use error::KernelError;
pub use real::Real;
