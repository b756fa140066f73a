//! The CUDA backend: device memory, kernels and cuBLAS behind the `cuda`
//! feature, and a stub with the same functions when the feature is off.
//!
//! The op files in `tensor/` call the functions re-exported here when a
//! tensor's device is not the CPU; each takes tensors whose storage is
//! `Storage::Cuda` and returns new device storage, never touching the host
//! except where its doc says so (uploads, downloads, the index checks of
//! embedding and cross-entropy). Ops without a CUDA path fail in
//! `Storage::cpu` with `Error::NotImplementedOnDevice`.
//!
//! Layout: `device.rs` (per-device context, one stream, cuBLAS handle,
//! NVRTC module cache), `memory.rs` (caching allocator, `CudaStorage`,
//! uploads and downloads), `launch.rs` (launch helpers), and one file per op
//! family (`layout.rs`, `elementwise.rs`, `gated.rs`, `reduce.rs`, `scan.rs`,
//! `gemm.rs`, `grouped.rs`, `fused.rs`, `attention.rs`, `index.rs`,
//! `select.rs`, `combine.rs`, `optim.rs`),
//! and `autograd.rs` for ops recorded with CUDA-only backward state.

#[cfg(feature = "cuda")]
mod attention;
#[cfg(feature = "cuda")]
mod autograd;
#[cfg(feature = "cuda")]
mod combine;
#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod dispatch_ops;
#[cfg(feature = "cuda")]
mod elementwise;
#[cfg(feature = "cuda")]
mod fused;
#[cfg(feature = "cuda")]
mod gated;
#[cfg(feature = "cuda")]
mod gemm;
#[cfg(feature = "cuda")]
mod grouped;
#[cfg(feature = "cuda")]
mod grouped_seg;
mod host_reads;
#[cfg(feature = "cuda")]
mod index;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
mod layout;
#[cfg(feature = "cuda")]
mod memory;
#[cfg(feature = "cuda")]
mod optim;
#[cfg(feature = "cuda")]
mod reduce;
#[cfg(feature = "cuda")]
mod route_plan;
#[cfg(feature = "cuda")]
mod scan;
#[cfg(feature = "cuda")]
mod select;
#[cfg(feature = "cuda")]
mod sinkhorn;

#[cfg(feature = "cuda")]
pub(crate) use attention::{attention, attention_backward};
#[cfg(feature = "cuda")]
pub(crate) use autograd::{cross_entropy_op, embedding_op, to_device, topk_op};
#[cfg(feature = "cuda")]
pub(crate) use combine::{expert_combine, expert_combine_backward};
#[cfg(feature = "cuda")]
pub(crate) use device::{check_device, synchronize_all};
#[cfg(feature = "cuda")]
pub use device::{device_info, pool_stats};
#[cfg(feature = "cuda")]
pub(crate) use dispatch_ops::{combine_rows_op, dispatch_rows_op};
#[cfg(feature = "cuda")]
pub(crate) use elementwise::{binary, compare, unary, unary_backward};
#[cfg(feature = "cuda")]
pub(crate) use fused::{rms_norm, rms_norm_backward, rope, softmax, softmax_backward};
#[cfg(feature = "cuda")]
pub(crate) use gated::{gated, gated_backward, gated_packed, gated_packed_backward};
#[cfg(feature = "cuda")]
pub(crate) use gemm::matmul;
#[cfg(feature = "cuda")]
pub(crate) use grouped::{grouped_matmul, grouped_weight_grad};
#[cfg(feature = "cuda")]
pub(crate) use grouped_seg::{grouped_matmul_offsets, grouped_weight_grad_offsets};
pub use host_reads::host_reads;
#[cfg(feature = "cuda")]
pub(crate) use host_reads::note_host_read;
#[cfg(feature = "cuda")]
pub(crate) use layout::{cat, contiguous, pad_narrowed, to_dtype, where_cond};
#[cfg(feature = "cuda")]
pub use memory::CudaStorage;
#[cfg(feature = "cuda")]
pub(crate) use memory::{assign, download, upload};
#[cfg(feature = "cuda")]
pub(crate) use optim::{adamw_update, sum_of_squares};
#[cfg(feature = "cuda")]
pub(crate) use reduce::{max_dim, sum_dims};
#[cfg(feature = "cuda")]
pub(crate) use route_plan::dispatch_plan;
#[cfg(feature = "cuda")]
pub(crate) use scan::cumsum;
#[cfg(feature = "cuda")]
pub(crate) use select::{gather, gather_backward, index_add, index_select, scatter_add};
#[cfg(feature = "cuda")]
pub(crate) use sinkhorn::sinkhorn;

#[cfg(not(feature = "cuda"))]
mod stub;
#[cfg(not(feature = "cuda"))]
pub(crate) use stub::*;
#[cfg(not(feature = "cuda"))]
pub use stub::{device_info, pool_stats};
