//! Embedding gather and its scatter-add backward on CUDA (embedding.cu).

use super::device::cuda_err;
use super::elementwise::check_f32;
use super::fused::{bad_index, bad_index_flag};
use super::launch::{config, int, long};
use super::memory::{cuda_of, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::PushKernelArg;
use moe_kernels::cuda::{launch, EMBEDDING};

const OP: &str = "embedding";

/// Rows `ids` (i64, any shape, on the device) of contiguous `w [v, d]`,
/// as `[n_ids, d]`. An id outside `[0, v)` is an `IndexOutOfRange` error
/// (flagged on the device and read back: one sync per call).
pub(crate) fn embedding(w: &Tensor, ids: &Tensor) -> Result<Storage> {
    check_f32(OP, w.dtype())?;
    let (v, d) = (w.dims()[0], w.dims()[1]);
    let ids = ids.contiguous()?;
    let n = ids.elem_count();
    let (ws, is) = (w.read_storage(), ids.read_storage());
    let (wc, ic) = (cuda_of(&ws, OP)?, cuda_of(&is, OP)?);
    let dev = wc.dev().clone();
    let mut out = CudaStorage::alloc(&dev, DType::F32, n * d, OP)?;
    let mut bad = bad_index_flag(&dev, OP)?;
    if let Some(l) = launch::elementwise(n * d) {
        let f = dev.function(&EMBEDDING, "embedding_fwd_f32")?;
        let (nn, dd, vv) = (long(n, OP)?, int(d, OP, "embedding width")?, long(v, OP)?);
        let io = ids.layout().offset();
        let iv = ic.view::<i64>(io..io + n, OP)?;
        let wo = w.layout().offset();
        let wv = wc.view::<f32>(wo..wo + v * d, OP)?;
        let (mut ov, mut bv) = (out.view_mut::<f32>(OP)?, bad.view_mut::<i64>(OP)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&dd).arg(&vv).arg(&iv).arg(&wv).arg(&mut ov).arg(&mut bv);
        // SAFETY: embedding_fwd_f32(long long n_ids, int dim, long long vocab,
        // const long long* ids, const float* w, float* y, long long* bad); ids are
        // bounds-checked in the kernel before indexing w.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    if let Some(index) = bad_index(&dev, &bad, OP)? {
        return Err(Error::IndexOutOfRange { op: OP, index, size: v });
    }
    Ok(Storage::Cuda(out))
}

/// `dw [v, d]` with `dw[ids[k]] += g[k]` for contiguous `g [n_ids, d]`.
/// Uses atomics: repeated ids are summed in no fixed order.
pub(crate) fn embedding_backward(ids: &Tensor, g: &Tensor, v: usize, d: usize) -> Result<Storage> {
    const BOP: &str = "embedding_backward";
    check_f32(BOP, g.dtype())?;
    let ids = ids.contiguous()?;
    let n = ids.elem_count();
    let (gs, is) = (g.read_storage(), ids.read_storage());
    let (gc, ic) = (cuda_of(&gs, BOP)?, cuda_of(&is, BOP)?);
    let dev = gc.dev().clone();
    let mut dw = CudaStorage::alloc(&dev, DType::F32, v * d, BOP)?;
    dev.stream
        .memset_zeros(&mut dw.view_mut::<f32>(BOP)?)
        .map_err(cuda_err(BOP))?;
    if let Some(l) = launch::elementwise(n * d) {
        let f = dev.function(&EMBEDDING, "embedding_bwd_f32")?;
        let (nn, dd, vv) = (long(n, BOP)?, int(d, BOP, "embedding width")?, long(v, BOP)?);
        let io = ids.layout().offset();
        let iv = ic.view::<i64>(io..io + n, BOP)?;
        let go = g.layout().offset();
        let gv = gc.view::<f32>(go..go + n * d, BOP)?;
        let mut dv = dw.view_mut::<f32>(BOP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn).arg(&dd).arg(&vv).arg(&iv).arg(&gv).arg(&mut dv);
        // SAFETY: embedding_bwd_f32(long long n_ids, int dim, long long vocab,
        // const long long* ids, const float* g, float* dw); ids checked.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(BOP))?;
    }
    Ok(Storage::Cuda(dw))
}
