//! Causal grouped-query attention on CUDA (`Tensor::causal_attention`),
//! forward and backward, f32 and f64 (kernels: attention.cu; launch shapes:
//! moe-kernels' `cuda::attention_launch`). f32 calls under
//! [`MatmulPrecision::Bf16`] with head size 64 or 128 on sm_80+ run the
//! bf16 tensor-core kernels of attention_tc.cu instead (`cuda::attention_tc_launch`),
//! reading the precision setting of the calling thread, as matmul does.
//! Every tensor argument is contiguous (the caller makes it so). The
//! backward is deterministic: dq and dk/dv come from separate kernels, each
//! gradient element written by one thread.

use super::device::{cuda_err, CudaDev};
use super::launch::{float_kernel, long};
use super::memory::{cuda_of, elems, CudaStorage};
use crate::precision::{matmul_precision, MatmulPrecision};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg};
use moe_kernels::cpu::attention::AttnDims;
use moe_kernels::cuda::attention_launch::{self as shapes, AttentionKernel, AttentionLaunch};
use moe_kernels::cuda::attention_tc_launch as tc_shapes;
use moe_kernels::cuda::{launch, KernelSource, ATTENTION, ATTENTION_TC};
use moe_kernels::Real;
use std::sync::Arc;

const OP: &str = "causal_attention";
const BOP: &str = "causal_attention_backward";

/// `(o [B, Hq, Tq, Dh], lse [B, Hq, Tq])` for contiguous `q`, `k`, `v`.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, dims: AttnDims, scale: f64) -> Result<(Storage, Storage)> {
    float_kernel!(q.dtype(), OP, forward_typed(q, k, v, dims, scale))
}

/// `(dq, dk, dv)` from the contiguous output gradient `g` and the saved
/// inputs, output and logsumexp.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    g: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    dims: AttnDims,
    scale: f64,
) -> Result<(Storage, Storage, Storage)> {
    float_kernel!(q.dtype(), BOP, backward_typed(g, q, k, v, o, lse, dims, scale))
}

/// Which kernels run a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernels<'a> {
    /// attention.cu's instance for the element type (`suffix`, `elem_bytes`).
    Simt { suffix: &'a str, elem_bytes: usize },
    /// attention_tc.cu (f32 only).
    TensorCore,
}

/// The tensor-core kernels compute what `MatmulPrecision::Bf16` asks of f32
/// products (bf16 operands, f32 accumulation); they exist for head sizes 64
/// and 128 and need sm_80's bf16 mma. Everything else (f64, Highest
/// precision, other head sizes, older GPUs) keeps the SIMT kernels.
fn uses_tensor_cores(dtype: DType, precision: MatmulPrecision, dh: usize, sm_major: i32) -> bool {
    dtype == DType::F32 && precision == MatmulPrecision::Bf16 && tc_shapes::supports(dh) && sm_major >= 8
}

fn choose<'a>(
    dev: &CudaDev,
    dtype: DType,
    suffix: &'a str,
    elem_bytes: usize,
    dh: usize,
    op: &'static str,
) -> Result<Kernels<'a>> {
    let (major, _) = dev.ctx.compute_capability().map_err(cuda_err(op))?;
    Ok(if uses_tensor_cores(dtype, matmul_precision(), dh, major) {
        Kernels::TensorCore
    } else {
        Kernels::Simt { suffix, elem_bytes }
    })
}

/// The function and launch configuration of one attention kernel, with the
/// shared-memory opt-in set when the tiles need more than the default 48 KiB.
fn prepare(
    dev: &Arc<CudaDev>,
    kernel: AttentionKernel,
    dims: AttnDims,
    kernels: Kernels,
    op: &'static str,
) -> Result<Option<(CudaFunction, LaunchConfig)>> {
    let (plan, source): (_, &KernelSource) = match kernels {
        Kernels::Simt { suffix, elem_bytes } => (shapes::attention(kernel, dims, suffix, elem_bytes), &ATTENTION),
        Kernels::TensorCore => (tc_shapes::attention_tc(kernel, dims), &ATTENTION_TC),
    };
    let plan = plan.map_err(|e| Error::InvalidShape { op, msg: e.to_string() })?;
    let Some(AttentionLaunch {
        function,
        grid,
        block,
        shared_bytes,
    }) = plan
    else {
        return Ok(None);
    };
    let f = dev.function(source, &function)?;
    if shared_bytes > shapes::DEFAULT_SHARED_LIMIT {
        f.set_attribute(
            CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            shared_bytes as i32,
        )
        .map_err(cuda_err(op))?;
    }
    let cfg = LaunchConfig {
        grid_dim: (grid.0, grid.1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: shared_bytes,
    };
    Ok(Some((f, cfg)))
}

/// The kernels' leading `int hq, int hkv, int tq, int tk, int dh` (each
/// fits: the launch plan bounded the row counts and the head size).
fn int_dims(dims: AttnDims, op: &'static str) -> Result<[i32; 5]> {
    let as_int = |n: usize| super::launch::int(n, op, "attention size");
    Ok([
        as_int(dims.hq)?,
        as_int(dims.hkv)?,
        as_int(dims.tq)?,
        as_int(dims.tk)?,
        as_int(dims.dh)?,
    ])
}

fn forward_typed<T: DeviceRepr + Real>(
    suffix: &str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    dims: AttnDims,
    scale: f64,
) -> Result<(Storage, Storage)> {
    let (qs, ks, vs) = (q.read_storage(), k.read_storage(), v.read_storage());
    let (qc, kc, vc) = (cuda_of(&qs, OP)?, cuda_of(&ks, OP)?, cuda_of(&vs, OP)?);
    let dev = qc.dev().clone();
    let mut o = CudaStorage::alloc(&dev, q.dtype(), q.elem_count(), OP)?;
    let mut lse = CudaStorage::alloc(&dev, q.dtype(), dims.b * dims.hq * dims.tq, OP)?;
    let kernels = choose(&dev, q.dtype(), suffix, size_of::<T>(), dims.dh, OP)?;
    if let Some((f, cfg)) = prepare(&dev, AttentionKernel::Forward, dims, kernels, OP)? {
        let [hq, hkv, tq, tk, dh] = int_dims(dims, OP)?;
        let scale = T::from_f64_lossy(scale);
        let (qv, kv, vv) = (elems::<T>(qc, q, OP)?, elems::<T>(kc, k, OP)?, elems::<T>(vc, v, OP)?);
        let (mut ov, mut lv) = (o.view_mut::<T>(OP)?, lse.view_mut::<T>(OP)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&hq).arg(&hkv).arg(&tq).arg(&tk).arg(&dh).arg(&scale);
        b.arg(&qv).arg(&kv).arg(&vv).arg(&mut ov).arg(&mut lv);
        // SAFETY: attn_fwd_T_dC and attn_tc_fwd_dC (T = f32, C = Dh) take
        // (int hq, int hkv, int tq, int tk, int dh, T scale, const T* q,
        // const T* k, const T* v, T* o, T* lse): q and o
        // hold B·Hq·Tq·Dh, k and v B·Hkv·Tk·Dh, lse B·Hq·Tq elements; Hq is a
        // multiple of Hkv, Tq ≤ Tk and Dh ≤ C (checked by the caller and the
        // launch plan); the shared memory is the plan's.
        unsafe { b.launch(cfg) }.map_err(cuda_err(OP))?;
    }
    Ok((Storage::Cuda(o), Storage::Cuda(lse)))
}

#[allow(clippy::too_many_arguments)]
fn backward_typed<T: DeviceRepr + Real>(
    suffix: &str,
    g: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    dims: AttnDims,
    scale: f64,
) -> Result<(Storage, Storage, Storage)> {
    let guards = [g, q, k, v, o, lse].map(|t| t.read_storage());
    let [gc, qc, kc, vc, oc, lc] = [0, 1, 2, 3, 4, 5].map(|i| cuda_of(&guards[i], BOP));
    let (gc, qc, kc, vc, oc, lc) = (gc?, qc?, kc?, vc?, oc?, lc?);
    let dev = qc.dev().clone();
    let rows = dims.b * dims.hq * dims.tq;
    let mut delta = CudaStorage::alloc(&dev, q.dtype(), rows, BOP)?;
    let mut dq = CudaStorage::alloc(&dev, q.dtype(), q.elem_count(), BOP)?;
    let mut dk = CudaStorage::alloc(&dev, q.dtype(), k.elem_count(), BOP)?;
    let mut dv = CudaStorage::alloc(&dev, q.dtype(), v.elem_count(), BOP)?;
    let [hq, hkv, tq, tk, dh] = int_dims(dims, BOP)?;
    let scale = T::from_f64_lossy(scale);
    let (gv, qv, kv, vv) = (
        elems::<T>(gc, g, BOP)?,
        elems::<T>(qc, q, BOP)?,
        elems::<T>(kc, k, BOP)?,
        elems::<T>(vc, v, BOP)?,
    );
    let (ov, lv) = (elems::<T>(oc, o, BOP)?, elems::<T>(lc, lse, BOP)?);
    if let Some(l) = launch::warps(rows) {
        let f = dev.function(&ATTENTION, &format!("attn_delta_{suffix}"))?;
        let n = long(rows, BOP)?;
        let mut dl = delta.view_mut::<T>(BOP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&n).arg(&dh).arg(&gv).arg(&ov).arg(&mut dl);
        // SAFETY: attn_delta_T(long long rows, int dh, const T* d_o,
        // const T* o, T* delta): d_o and o hold rows·Dh, delta rows elements.
        unsafe { b.launch(super::launch::config(l)) }.map_err(cuda_err(BOP))?;
    }
    let dl = delta.view::<T>(0..rows, BOP)?;
    let kernels = choose(&dev, q.dtype(), suffix, size_of::<T>(), dims.dh, BOP)?;
    if let Some((f, cfg)) = prepare(&dev, AttentionKernel::Dq, dims, kernels, BOP)? {
        let mut dqv = dq.view_mut::<T>(BOP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&hq).arg(&hkv).arg(&tq).arg(&tk).arg(&dh).arg(&scale);
        b.arg(&qv).arg(&kv).arg(&vv).arg(&gv).arg(&lv).arg(&dl).arg(&mut dqv);
        // SAFETY: attn_bwd_dq_T_dC and attn_tc_bwd_dq_dC take (int hq,
        // int hkv, int tq, int tk, int dh, T scale, const T* q, const T* k, const T* v, const T* d_o,
        // const T* lse, const T* delta, T* dq): sizes as forward, d_o and dq
        // like q, delta like lse.
        unsafe { b.launch(cfg) }.map_err(cuda_err(BOP))?;
    }
    if let Some((f, cfg)) = prepare(&dev, AttentionKernel::Dkv, dims, kernels, BOP)? {
        let (mut dkv, mut dvv) = (dk.view_mut::<T>(BOP)?, dv.view_mut::<T>(BOP)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&hq).arg(&hkv).arg(&tq).arg(&tk).arg(&dh).arg(&scale);
        b.arg(&qv)
            .arg(&kv)
            .arg(&vv)
            .arg(&gv)
            .arg(&lv)
            .arg(&dl)
            .arg(&mut dkv)
            .arg(&mut dvv);
        // SAFETY: attn_bwd_dkv_T_dC and attn_tc_bwd_dkv_dC take (..., same
        // as dq ..., T* dk, T* dv): dk and dv like k. Keys no query sees (none when Tq ≤ Tk) get zeros.
        unsafe { b.launch(cfg) }.map_err(cuda_err(BOP))?;
    }
    Ok((Storage::Cuda(dq), Storage::Cuda(dk), Storage::Cuda(dv)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_cores_only_for_f32_under_bf16_precision_at_64_or_128_on_sm80() {
        let (bf16, highest) = (MatmulPrecision::Bf16, MatmulPrecision::Highest);
        assert!(uses_tensor_cores(DType::F32, bf16, 64, 8));
        assert!(uses_tensor_cores(DType::F32, bf16, 128, 9));
        assert!(!uses_tensor_cores(DType::F64, bf16, 64, 9), "f64 keeps SIMT");
        assert!(
            !uses_tensor_cores(DType::F32, highest, 64, 9),
            "full f32 precision keeps SIMT"
        );
        assert!(!uses_tensor_cores(DType::F32, bf16, 96, 9), "no instance for 96");
        assert!(!uses_tensor_cores(DType::F32, bf16, 256, 9), "no instance for 256");
        assert!(!uses_tensor_cores(DType::F32, bf16, 64, 7), "no bf16 mma before sm_80");
    }
}
