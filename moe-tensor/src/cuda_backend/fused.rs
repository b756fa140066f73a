//! Row-fused ops on CUDA: softmax / log-softmax, RMSNorm, RoPE and softmax
//! cross-entropy, forward and backward (kernels: softmax.cu, rms_norm.cu,
//! rope.cu, cross_entropy.cu). Every tensor argument is contiguous f32 (the
//! callers in `tensor/` make it so), except integer targets and positions.

use super::device::{cuda_err, CudaDev};
use super::elementwise::check_f32;
use super::launch::{config, int, long};
use super::memory::{cuda_of, elems, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::PushKernelArg;
use moe_kernels::cuda::{launch, CROSS_ENTROPY, RMS_NORM, ROPE, SOFTMAX};
use std::sync::Arc;

/// The `[rows, cols]` split of a tensor by its last dim.
fn rows_cols(t: &Tensor) -> (usize, usize) {
    let d = t.dims();
    let c = d.last().copied().unwrap_or(1);
    (d[..d.len().saturating_sub(1)].iter().product(), c)
}

/// A device-side bad-index report: `[flag, index]`, zeroed, from the pool.
pub(crate) fn bad_index_flag(dev: &Arc<CudaDev>, op: &'static str) -> Result<CudaStorage> {
    let mut f = CudaStorage::alloc(dev, DType::I64, 2, op)?;
    dev.stream
        .memset_zeros(&mut f.view_mut::<i64>(op)?)
        .map_err(cuda_err(op))?;
    Ok(f)
}

/// Reads a bad-index report back (waits for the stream): the offending
/// index if a kernel set the flag.
pub(crate) fn bad_index(dev: &Arc<CudaDev>, f: &CudaStorage, op: &'static str) -> Result<Option<i64>> {
    let mut host = [0i64; 2];
    super::note_host_read();
    dev.stream
        .memcpy_dtoh(&f.view::<i64>(0..2, op)?, &mut host)
        .map_err(cuda_err(op))?;
    Ok((host[0] != 0).then_some(host[1]))
}

/// Softmax (`log = false`) or log-softmax over the last dim of `x`.
pub(crate) fn softmax(x: &Tensor, log: bool) -> Result<Storage> {
    const OP: &str = "softmax";
    check_f32(OP, x.dtype())?;
    let (rows, cols) = rows_cols(x);
    let guard = x.read_storage();
    let xs = cuda_of(&guard, OP)?;
    let dev = xs.dev().clone();
    let mut out = CudaStorage::alloc(&dev, DType::F32, x.elem_count(), OP)?;
    if let Some(l) = launch::rows(rows, cols) {
        let f = dev.function(&SOFTMAX, "softmax_fwd_f32")?;
        let (r, c, lg) = (int(rows, OP, "rows")?, int(cols, OP, "row length")?, log as i32);
        let xv = elems::<f32>(xs, x, OP)?;
        let mut yv = out.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&c).arg(&lg).arg(&xv).arg(&mut yv);
        // SAFETY: softmax_fwd_f32(int rows, int cols, int log, const float* x,
        // float* y), both rows*cols elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// Gradient of softmax / log-softmax from its output `y` and `g`.
pub(crate) fn softmax_backward(y: &Tensor, g: &Tensor, log: bool) -> Result<Storage> {
    const OP: &str = "softmax_backward";
    check_f32(OP, y.dtype())?;
    let (rows, cols) = rows_cols(y);
    let (ys, gs) = (y.read_storage(), g.read_storage());
    let (yc, gc) = (cuda_of(&ys, OP)?, cuda_of(&gs, OP)?);
    let dev = yc.dev().clone();
    let mut out = CudaStorage::alloc(&dev, DType::F32, y.elem_count(), OP)?;
    if let Some(l) = launch::rows(rows, cols) {
        let f = dev.function(&SOFTMAX, "softmax_bwd_f32")?;
        let (r, c, lg) = (int(rows, OP, "rows")?, int(cols, OP, "row length")?, log as i32);
        let (yv, gv) = (elems::<f32>(yc, y, OP)?, elems::<f32>(gc, g, OP)?);
        let mut dv = out.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&c).arg(&lg).arg(&yv).arg(&gv).arg(&mut dv);
        // SAFETY: softmax_bwd_f32(int rows, int cols, int log, const float* y,
        // const float* dy, float* dx), all rows*cols elements.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// RMSNorm forward: `(y [rows, d], rstd [rows])` for `x [.., d]`, `w [d]`.
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<(Storage, Storage)> {
    const OP: &str = "rms_norm";
    check_f32(OP, x.dtype())?;
    let (rows, cols) = rows_cols(x);
    let (xs, ws) = (x.read_storage(), w.read_storage());
    let (xc, wc) = (cuda_of(&xs, OP)?, cuda_of(&ws, OP)?);
    let dev = xc.dev().clone();
    let mut y = CudaStorage::alloc(&dev, DType::F32, x.elem_count(), OP)?;
    let mut rstd = CudaStorage::alloc(&dev, DType::F32, rows, OP)?;
    if let Some(l) = launch::rows(rows, cols) {
        let f = dev.function(&RMS_NORM, "rms_norm_fwd_f32")?;
        let (r, c, e) = (int(rows, OP, "rows")?, int(cols, OP, "row length")?, eps as f32);
        let (xv, wv) = (elems::<f32>(xc, x, OP)?, elems::<f32>(wc, w, OP)?);
        let mut yv = y.view_mut::<f32>(OP)?;
        let mut rv = rstd.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&c).arg(&e).arg(&xv).arg(&wv).arg(&mut yv).arg(&mut rv);
        // SAFETY: rms_norm_fwd_f32(int rows, int cols, float eps, const float* x,
        // const float* w, float* y, float* rstd): x, y rows*cols; w cols; rstd rows.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok((Storage::Cuda(y), Storage::Cuda(rstd)))
}

/// RMSNorm backward: `(dx [rows, d], dw [d])` from `g`, `x`, `w`, `rstd`.
pub(crate) fn rms_norm_backward(g: &Tensor, x: &Tensor, w: &Tensor, rstd: &Tensor) -> Result<(Storage, Storage)> {
    const OP: &str = "rms_norm_backward";
    check_f32(OP, x.dtype())?;
    let (rows, cols) = rows_cols(x);
    let (gs, xs, ws, rs) = (
        g.read_storage(),
        x.read_storage(),
        w.read_storage(),
        rstd.read_storage(),
    );
    let (gc, xc, wc, rc) = (
        cuda_of(&gs, OP)?,
        cuda_of(&xs, OP)?,
        cuda_of(&ws, OP)?,
        cuda_of(&rs, OP)?,
    );
    let dev = xc.dev().clone();
    let mut dx = CudaStorage::alloc(&dev, DType::F32, x.elem_count(), OP)?;
    let mut dw = CudaStorage::alloc(&dev, DType::F32, cols, OP)?;
    let (r, c) = (int(rows, OP, "rows")?, int(cols, OP, "row length")?);
    let (gv, xv) = (elems::<f32>(gc, g, OP)?, elems::<f32>(xc, x, OP)?);
    let (wv, rv) = (elems::<f32>(wc, w, OP)?, elems::<f32>(rc, rstd, OP)?);
    if let Some(l) = launch::rows(rows, cols) {
        let f = dev.function(&RMS_NORM, "rms_norm_bwd_dx_f32")?;
        let mut dxv = dx.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&c).arg(&gv).arg(&xv).arg(&wv).arg(&rv).arg(&mut dxv);
        // SAFETY: rms_norm_bwd_dx_f32(int rows, int cols, const float* dy,
        // const float* x, const float* w, const float* rstd, float* dx).
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    if let Some(l) = launch::elementwise(cols) {
        let f = dev.function(&RMS_NORM, "rms_norm_bwd_dw_f32")?;
        let mut dwv = dw.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&c).arg(&gv).arg(&xv).arg(&rv).arg(&mut dwv);
        // SAFETY: rms_norm_bwd_dw_f32(int rows, int cols, const float* dy,
        // const float* x, const float* rstd, float* dw): one thread per column.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok((Storage::Cuda(dx), Storage::Cuda(dw)))
}

/// Rotates contiguous `x [outer, t, dh]` by the angles of `positions`
/// (`[groups, t]`, leading row `o` using row `o / (outer / groups)`) in the
/// tables `cos`, `sin` `[max_pos, dh/2]`; `sign` = 1 forward, −1 backward.
/// The positions are checked against the tables and uploaded (8 bytes each).
pub(crate) fn rope(
    x: &Tensor,
    positions: &[i64],
    groups: usize,
    cos: &Tensor,
    sin: &Tensor,
    sign: f32,
) -> Result<Storage> {
    const OP: &str = "rope";
    check_f32(OP, x.dtype())?;
    let (rows, dh) = rows_cols(x);
    let max_pos = cos.dims().first().copied().unwrap_or(0);
    if let Some(&p) = positions.iter().find(|&&p| p < 0 || p as u64 >= max_pos as u64) {
        return Err(Error::IndexOutOfRange {
            op: OP,
            index: p,
            size: max_pos,
        });
    }
    let t = positions.len() / groups.max(1);
    if rows > 0 && (t == 0 || groups == 0 || rows % t != 0 || !(rows / t).is_multiple_of(groups) || dh % 2 != 0) {
        return Err(Error::InvalidShape {
            op: OP,
            msg: format!(
                "{:?} does not split into [outer, {t}, even head dim] with {groups} position rows",
                x.shape()
            ),
        });
    }
    let (outer, half) = (rows / t.max(1), dh / 2);
    let rows_per_group = (outer / groups.max(1)).max(1);
    let (xs, cs, ss) = (x.read_storage(), cos.read_storage(), sin.read_storage());
    let (xc, cc, sc) = (cuda_of(&xs, OP)?, cuda_of(&cs, OP)?, cuda_of(&ss, OP)?);
    let dev = xc.dev().clone();
    let pos = match super::memory::upload(&crate::storage::CpuStorage::I64(positions.to_vec()), dev.ordinal)? {
        Storage::Cuda(p) => p,
        Storage::Cpu(_) => return Err(super::memory::internal(OP)),
    };
    let mut out = CudaStorage::alloc(&dev, DType::F32, x.elem_count(), OP)?;
    if let Some(l) = launch::elementwise(outer * t * half) {
        let f = dev.function(&ROPE, "rope_f32")?;
        let (o, tt, h) = (
            long(outer, OP)?,
            int(t, OP, "positions")?,
            int(half, OP, "half head dim")?,
        );
        let rpg = long(rows_per_group, OP)?;
        let pv = pos.view::<i64>(0..positions.len(), OP)?;
        let (cv, sv, xv) = (
            elems::<f32>(cc, cos, OP)?,
            elems::<f32>(sc, sin, OP)?,
            elems::<f32>(xc, x, OP)?,
        );
        let mut yv = out.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&o)
            .arg(&tt)
            .arg(&h)
            .arg(&rpg)
            .arg(&sign)
            .arg(&pv)
            .arg(&cv)
            .arg(&sv)
            .arg(&xv)
            .arg(&mut yv);
        // SAFETY: rope_f32(long long outer, int t, int half,
        // long long rows_per_group, float sign, const long long* pos, const float* cos, const float* sin,
        // const float* x, float* y); positions index rows of the tables.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// What the cross-entropy backward needs from its forward.
pub(crate) struct CrossEntropySaved {
    /// `[rows]` logsumexp per row.
    pub(crate) lse: Tensor,
    /// `[2]`: the reduced loss and the number of non-ignored rows (f32).
    pub(crate) stats: Tensor,
}

/// Fused softmax cross-entropy of contiguous `logits [rows, v]` and i64
/// `targets [rows]` on the same device: the loss as a `[1]` storage and
/// what backward needs. A target neither in `[0, v)` nor `ignore` is an
/// `IndexOutOfRange` error (found on the device, read back: one sync).
pub(crate) fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    ignore: i64,
    mean: bool,
) -> Result<(Storage, CrossEntropySaved)> {
    const OP: &str = "cross_entropy";
    check_f32(OP, logits.dtype())?;
    let (rows, v) = rows_cols(logits);
    let targets = targets.contiguous()?;
    let (xs, ts) = (logits.read_storage(), targets.read_storage());
    let (xc, tc) = (cuda_of(&xs, OP)?, cuda_of(&ts, OP)?);
    let dev = xc.dev().clone();
    let mut lse = CudaStorage::alloc(&dev, DType::F32, rows, OP)?;
    let mut loss_row = CudaStorage::alloc(&dev, DType::F32, rows, OP)?;
    let mut stats = CudaStorage::alloc(&dev, DType::F32, 2, OP)?;
    let mut bad = bad_index_flag(&dev, OP)?;
    let (r, vv, m) = (int(rows, OP, "rows")?, int(v, OP, "vocabulary")?, mean as i32);
    let tv = elems::<i64>(tc, &targets, OP)?;
    if let Some(l) = launch::rows(rows, v) {
        let f = dev.function(&CROSS_ENTROPY, "ce_fwd_rows_f32")?;
        let xv = elems::<f32>(xc, logits, OP)?;
        let (mut lv, mut rv, mut bv) = (
            lse.view_mut::<f32>(OP)?,
            loss_row.view_mut::<f32>(OP)?,
            bad.view_mut::<i64>(OP)?,
        );
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r)
            .arg(&vv)
            .arg(&ignore)
            .arg(&xv)
            .arg(&tv)
            .arg(&mut lv)
            .arg(&mut rv)
            .arg(&mut bv);
        // SAFETY: ce_fwd_rows_f32(int rows, int v, long long ignore,
        // const float* logits, const long long* targets, float* lse,
        // float* loss_row, long long* bad): logits rows*v, the rest rows (bad 2).
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    {
        let f = dev.function(&CROSS_ENTROPY, "ce_reduce_f32")?;
        let rv = loss_row.view::<f32>(0..rows, OP)?;
        let mut sv = stats.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&ignore).arg(&m).arg(&rv).arg(&tv).arg(&mut sv);
        // SAFETY: ce_reduce_f32(int rows, long long ignore, int mean,
        // const float* loss_row, const long long* targets, float* out[2]);
        // one block striding over the rows.
        unsafe { b.launch(config(launch::single_block(rows))) }.map_err(cuda_err(OP))?;
    }
    if let Some(index) = bad_index(&dev, &bad, OP)? {
        return Err(Error::IndexOutOfRange { op: OP, index, size: v });
    }
    // The loss is stats[0]: a one-element copy keeps `stats` for backward.
    let mut loss = CudaStorage::alloc(&dev, DType::F32, 1, OP)?;
    dev.stream
        .memcpy_dtod(&stats.view::<f32>(0..1, OP)?, &mut loss.view_mut::<f32>(OP)?)
        .map_err(cuda_err(OP))?;
    Ok((
        Storage::Cuda(loss),
        CrossEntropySaved {
            lse: Tensor::from_storage(Storage::Cuda(lse), crate::Shape::from(vec![rows])),
            stats: Tensor::from_storage(Storage::Cuda(stats), crate::Shape::from(vec![2])),
        },
    ))
}

/// `dlogits = (softmax − onehot) · dloss / (mean ? n_valid : 1)`, zero on
/// ignored rows; `dloss` a one-element f32 tensor on the device.
pub(crate) fn cross_entropy_backward(
    logits: &Tensor,
    targets: &Tensor,
    saved: &CrossEntropySaved,
    dloss: &Tensor,
    ignore: i64,
    mean: bool,
) -> Result<Storage> {
    const OP: &str = "cross_entropy_backward";
    let (rows, v) = rows_cols(logits);
    let (targets, dloss) = (targets.contiguous()?, dloss.contiguous()?);
    let (xs, ts, ds) = (logits.read_storage(), targets.read_storage(), dloss.read_storage());
    let (xc, tc, dc) = (cuda_of(&xs, OP)?, cuda_of(&ts, OP)?, cuda_of(&ds, OP)?);
    let (ls, ss) = (saved.lse.read_storage(), saved.stats.read_storage());
    let (lc, sc) = (cuda_of(&ls, OP)?, cuda_of(&ss, OP)?);
    let dev = xc.dev().clone();
    let mut out = CudaStorage::alloc(&dev, DType::F32, logits.elem_count(), OP)?;
    if let Some(l) = launch::elementwise(rows * v) {
        let f = dev.function(&CROSS_ENTROPY, "ce_bwd_f32")?;
        let (r, vv, m) = (long(rows, OP)?, int(v, OP, "vocabulary")?, mean as i32);
        let (xv, tv) = (elems::<f32>(xc, logits, OP)?, elems::<i64>(tc, &targets, OP)?);
        let (lv, sv, dv) = (
            lc.view::<f32>(0..rows, OP)?,
            sc.view::<f32>(0..2, OP)?,
            elems::<f32>(dc, &dloss, OP)?,
        );
        let mut ov = out.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r)
            .arg(&vv)
            .arg(&ignore)
            .arg(&m)
            .arg(&xv)
            .arg(&tv)
            .arg(&lv)
            .arg(&sv)
            .arg(&dv)
            .arg(&mut ov);
        // SAFETY: ce_bwd_f32(long long rows, int v, long long ignore, int mean,
        // const float* logits, const long long* targets, const float* lse,
        // const float* stats, const float* dloss, float* dlogits).
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}
