//! moe-tensor: n-dimensional tensors with views and reverse-mode autograd.
//!
//! ```
//! use moe_tensor::{Device, Tensor};
//! # fn main() -> moe_tensor::Result<()> {
//! let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], (2, 2), &Device::Cpu)?.to_param();
//! let x = Tensor::from_vec(vec![1.0f32, -1.0], (1, 2), &Device::Cpu)?;
//! let loss = x.matmul(&w)?.silu()?.sum_all()?;
//! loss.backward()?;
//! assert_eq!(w.grad().unwrap().dims(), &[2, 2]);
//! # Ok(())
//! # }
//! ```
//!
//! Layout of the crate: `shape`/`layout` describe views, `storage` is the only
//! place that matches on devices, `tensor/` holds the ops by family (forward and
//! backward together), `backprop/` the graph walk, `optim` the optimiser's in-place
//! update and gradient norm on any device, `testing` the finite-difference
//! gradient checker every op is tested with.

pub mod backprop;
pub mod cuda_backend;
mod device;
pub mod device_check;
pub mod dtype;
mod error;
mod host_alloc;
pub mod init;
mod layout;
pub mod optim;
mod params;
pub mod precision;
pub mod profile;
pub mod safetensors;
mod shape;
pub mod storage;
mod tensor;
pub mod testing;

pub use backprop::{is_grad_enabled, no_grad, BackwardOp, NoGradGuard};
pub use device::{Device, ParseDeviceError};
pub use dtype::{DType, WithDType};
pub use error::{Error, Result};
pub use layout::Layout;
pub use params::Params;
pub use precision::{
    cpu_bf16_native, cpu_matmul_kernel, matmul_precision, set_matmul_precision, with_matmul_precision, MatmulPrecision,
};
pub use shape::Shape;
pub use tensor::{CopyLimit, DispatchPlan, Reduction, Rope, Segments, Tensor, TensorId, UnaryOp, DEFAULT_IGNORE_INDEX};
