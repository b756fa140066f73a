//! Embedding gather and its scatter-add backward, and top-k along rows with
//! its scatter backward, on CUDA (embedding.cu, topk.cu).

use super::device::cuda_err;
use super::elementwise::check_f32;
use super::fused::{bad_index, bad_index_flag};
use super::launch::{config, int, long};
use super::memory::{cuda_of, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::PushKernelArg;
use moe_kernels::cuda::{launch, EMBEDDING, TOPK};

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

/// The `k` largest entries of each row of contiguous f32 `x [rows, n]`:
/// `(values [rows, k], indices [rows, k] i64)`, best first (CPU ranking).
pub(crate) fn topk(x: &Tensor, rows: usize, n: usize, k: usize) -> Result<(Storage, Storage)> {
    const TOP: &str = "topk";
    check_f32(TOP, x.dtype())?;
    let guard = x.read_storage();
    let xc = cuda_of(&guard, TOP)?;
    let dev = xc.dev().clone();
    let mut vals = CudaStorage::alloc(&dev, DType::F32, rows * k, TOP)?;
    let mut idx = CudaStorage::alloc(&dev, DType::I64, rows * k, TOP)?;
    if let (Some(l), true) = (launch::elementwise(rows), k > 0) {
        let f = dev.function(&TOPK, "topk_rows_f32")?;
        let (r, nn, kk) = (long(rows, TOP)?, int(n, TOP, "row length")?, int(k, TOP, "k")?);
        let off = x.layout().offset();
        let xv = xc.view::<f32>(off..off + rows * n, TOP)?;
        let (mut vv, mut iv) = (vals.view_mut::<f32>(TOP)?, idx.view_mut::<i64>(TOP)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&nn).arg(&kk).arg(&xv).arg(&mut vv).arg(&mut iv);
        // SAFETY: topk_rows_f32(long long rows, int n, int k, const float* x,
        // float* vals, long long* idx): x rows*n, vals and idx rows*k; k <= n
        // (checked by the caller).
        unsafe { b.launch(config(l)) }.map_err(cuda_err(TOP))?;
    }
    Ok((Storage::Cuda(vals), Storage::Cuda(idx)))
}

/// `dx [rows, n]`, zero except `dx[r, idx[r, j]] = g[r, j]`; `g` and `idx`
/// contiguous `[rows, k]`.
pub(crate) fn topk_backward(g: &Tensor, idx: &Tensor, rows: usize, n: usize, k: usize) -> Result<Storage> {
    const TOP: &str = "topk_backward";
    check_f32(TOP, g.dtype())?;
    let (gs, is) = (g.read_storage(), idx.read_storage());
    let (gc, ic) = (cuda_of(&gs, TOP)?, cuda_of(&is, TOP)?);
    let dev = gc.dev().clone();
    let mut dx = CudaStorage::alloc(&dev, DType::F32, rows * n, TOP)?;
    dx.zero(TOP)?;
    if let Some(l) = launch::elementwise(rows * k) {
        let f = dev.function(&TOPK, "topk_bwd_f32")?;
        let (r, nn, kk) = (long(rows, TOP)?, int(n, TOP, "row length")?, int(k, TOP, "k")?);
        let (go, io) = (g.layout().offset(), idx.layout().offset());
        let gv = gc.view::<f32>(go..go + rows * k, TOP)?;
        let iv = ic.view::<i64>(io..io + rows * k, TOP)?;
        let mut dv = dx.view_mut::<f32>(TOP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&nn).arg(&kk).arg(&gv).arg(&iv).arg(&mut dv);
        // SAFETY: topk_bwd_f32(long long rows, int n, int k, const float* g,
        // const long long* idx, float* dx): g, idx rows*k; indices checked
        // against n in the kernel.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(TOP))?;
    }
    Ok(Storage::Cuda(dx))
}
