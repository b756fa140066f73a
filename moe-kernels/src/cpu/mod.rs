//! CPU kernels: one file per kernel family, each generic over [`crate::Real`].

pub mod attention;
pub mod cross_entropy;
pub mod elementwise;
pub mod gated;
pub mod gemm;
pub mod grouped_gemm;
pub mod index;
pub mod optim;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod sinkhorn;
pub mod softmax;
pub mod strided;
mod write_once;
