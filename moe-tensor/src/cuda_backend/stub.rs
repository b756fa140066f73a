//! The CUDA backend's functions in a build without the `cuda` feature: the
//! same signatures, each failing with `DeviceUnavailable`. No tensor can be
//! on a CUDA device in such a build (`check_device` refuses), so only
//! `check_device` and `device_info` are reached in practice.

#![allow(clippy::too_many_arguments)]

use crate::storage::{CpuStorage, Storage};
use crate::{DType, Device, Error, Layout, Result, Shape, Tensor, UnaryOp};
use moe_kernels::cpu::attention::AttnDims;
use moe_kernels::cpu::index::Dims3;
use moe_kernels::cuda::pool::PoolStats;

fn off<T>(ordinal: usize) -> Result<T> {
    Err(Error::DeviceUnavailable {
        device: Device::Cuda(ordinal),
        msg: "this build has no CUDA backend (enable the `cuda` feature)".into(),
    })
}

/// Nothing is ever queued without the feature.
pub(crate) fn synchronize_all() -> Result<()> {
    Ok(())
}
pub(crate) fn check_device(ordinal: usize) -> Result<()> {
    off(ordinal)
}
/// Name and compute capability of CUDA device `ordinal`; always an error
/// without the `cuda` feature.
pub fn device_info(ordinal: usize) -> Result<String> {
    off(ordinal)
}
/// The caching allocator's counters; always an error without the feature.
pub fn pool_stats(ordinal: usize) -> Result<PoolStats> {
    off(ordinal)
}
pub(crate) fn upload(_: &CpuStorage, ordinal: usize) -> Result<Storage> {
    off(ordinal)
}
pub(crate) fn to_device(_: &Tensor, device: &Device) -> Result<Tensor> {
    match device {
        Device::Cuda(i) => off(*i),
        Device::Cpu => off(0),
    }
}
pub(crate) fn download(_: &Tensor) -> Result<CpuStorage> {
    off(0)
}
pub(crate) fn assign(_: &Tensor, _: std::ops::Range<usize>, _: &Tensor) -> Result<()> {
    off(0)
}
pub(crate) fn contiguous(_: &Tensor) -> Result<Storage> {
    off(0)
}
pub(crate) fn to_dtype(_: &Tensor, _: DType) -> Result<Storage> {
    off(0)
}
pub(crate) fn unary(_: &Tensor, _: UnaryOp) -> Result<Storage> {
    off(0)
}
pub(crate) fn unary_backward(_: &Tensor, _: &Tensor, _: &Tensor, _: UnaryOp) -> Result<Storage> {
    off(0)
}
pub(crate) fn binary(_: &Tensor, _: &Layout, _: &Tensor, _: &Layout, _: i32) -> Result<Storage> {
    off(0)
}
pub(crate) fn matmul(
    _: &Tensor,
    _: &Layout,
    _: &Tensor,
    _: &Layout,
    _: &[usize],
    _: usize,
    _: usize,
    _: usize,
) -> Result<Storage> {
    off(0)
}
pub(crate) fn gated(_: &Tensor, _: &Tensor, _: UnaryOp) -> Result<Storage> {
    off(0)
}
pub(crate) fn gated_backward(_: &Tensor, _: &Tensor, _: &Tensor, _: UnaryOp) -> Result<(Storage, Storage)> {
    off(0)
}
pub(crate) fn gated_packed(_: &Tensor, _: UnaryOp) -> Result<Storage> {
    off(0)
}
pub(crate) fn gated_packed_backward(_: &Tensor, _: &Tensor, _: UnaryOp) -> Result<Storage> {
    off(0)
}
pub(crate) fn index_select(_: &Tensor, _: Dims3, _: &Tensor) -> Result<Storage> {
    off(0)
}
pub(crate) fn index_add(_: &Tensor, _: &[i64], _: Dims3) -> Result<Storage> {
    off(0)
}
pub(crate) fn gather(_: &Tensor, _: Dims3, _: &Tensor, _: usize) -> Result<Storage> {
    off(0)
}
pub(crate) fn gather_backward(_: &Tensor, _: &[i64], _: Dims3, _: usize) -> Result<Storage> {
    off(0)
}
pub(crate) fn scatter_add(
    _: Option<&Tensor>,
    _: Dims3,
    _: &Tensor,
    _: &Tensor,
    _: usize,
    _: &'static str,
) -> Result<Storage> {
    off(0)
}
pub(crate) fn expert_combine(_: &Tensor, _: &Tensor, _: &Tensor) -> Result<Storage> {
    off(0)
}
pub(crate) fn expert_combine_backward(
    _: &Tensor,
    _: &Tensor,
    _: &[i64],
    _: usize,
    _: &Tensor,
) -> Result<(Storage, Storage)> {
    off(0)
}
pub(crate) fn grouped_matmul(_: &Tensor, _: &Tensor, _: &[usize]) -> Result<Storage> {
    off(0)
}
pub(crate) fn grouped_weight_grad(_: &Tensor, _: &Tensor, _: &[usize]) -> Result<Storage> {
    off(0)
}
pub(crate) fn compare(_: &Tensor, _: &Layout, _: &Tensor, _: &Layout, _: i32) -> Result<Storage> {
    off(0)
}
pub(crate) fn pad_narrowed(_: &Tensor, _: &Shape, _: &Layout) -> Result<Storage> {
    off(0)
}
pub(crate) fn where_cond(_: (&Tensor, &Layout), _: (&Tensor, &Layout), _: (&Tensor, &Layout)) -> Result<Storage> {
    off(0)
}
pub(crate) fn cat(_: &[&Tensor], _: usize, _: &Shape) -> Result<Storage> {
    off(0)
}
pub(crate) fn sum_dims(_: &Tensor, _: &[usize]) -> Result<(Storage, Shape)> {
    off(0)
}
pub(crate) fn max_dim(_: &Tensor, _: usize, _: &'static str) -> Result<(Storage, Storage)> {
    off(0)
}
pub(crate) fn cumsum(_: &Tensor, _: usize, _: bool, _: &'static str) -> Result<Storage> {
    off(0)
}
pub(crate) fn softmax(_: &Tensor, _: bool) -> Result<Storage> {
    off(0)
}
pub(crate) fn softmax_backward(_: &Tensor, _: &Tensor, _: bool) -> Result<Storage> {
    off(0)
}
pub(crate) fn attention(_: &Tensor, _: &Tensor, _: &Tensor, _: AttnDims, _: f64) -> Result<(Storage, Storage)> {
    off(0)
}
pub(crate) fn attention_backward(
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: AttnDims,
    _: f64,
) -> Result<(Storage, Storage, Storage)> {
    off(0)
}
pub(crate) fn rms_norm(_: &Tensor, _: &Tensor, _: f64) -> Result<(Storage, Storage)> {
    off(0)
}
pub(crate) fn rms_norm_backward(_: &Tensor, _: &Tensor, _: &Tensor, _: &Tensor) -> Result<(Storage, Storage)> {
    off(0)
}
pub(crate) fn rope(_: &Tensor, _: &[i64], _: usize, _: &Tensor, _: &Tensor, _: f32) -> Result<Storage> {
    off(0)
}
pub(crate) fn cross_entropy_op(_: &Tensor, _: &Tensor, _: i64, _: bool) -> Result<Tensor> {
    off(0)
}
pub(crate) fn topk_op(_: &Tensor, _: usize) -> Result<(Tensor, Tensor)> {
    off(0)
}
pub(crate) fn adamw_update(
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: &crate::optim::AdamWScalars,
) -> Result<()> {
    off(0)
}
pub(crate) fn sum_of_squares(_: &[Tensor]) -> Result<f64> {
    off(0)
}
pub(crate) fn embedding_op(_: &Tensor, _: &Tensor) -> Result<Tensor> {
    off(0)
}
pub(crate) fn dispatch_plan(_: &Tensor, _: usize, _: crate::tensor::CopyLimit<'_>) -> Result<[Storage; 8]> {
    off(0)
}
pub(crate) fn sinkhorn(_: &Tensor, _: f64, _: usize) -> Result<(Storage, Storage)> {
    off(0)
}
pub(crate) fn grouped_matmul_offsets(_: &Tensor, _: &Tensor, _: &Tensor) -> Result<Storage> {
    off(0)
}
pub(crate) fn grouped_weight_grad_offsets(_: &Tensor, _: &Tensor, _: &Tensor) -> Result<Storage> {
    off(0)
}
pub(crate) fn dispatch_rows_op(_: &Tensor, _: &crate::DispatchPlan) -> Result<Tensor> {
    off(0)
}
pub(crate) fn combine_rows_op(_: &Tensor, _: &crate::DispatchPlan, _: &Tensor) -> Result<Tensor> {
    off(0)
}
