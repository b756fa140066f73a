//! The weighted combine of MoE expert outputs into tokens on CUDA
//! (`Tensor::expert_combine`), forward and backward, f32 and f64 (kernels:
//! combine.cu). Row ids arrive checked by the caller; the backward groups the
//! copies by the row they read on the host (the CPU's summation order) and
//! uploads that grouping with the ids.

use super::device::{cuda_err, CudaDev};
use super::launch::{config, float_kernel, long};
use super::memory::{cuda_of, elems, upload_i64, CudaStorage};
use crate::storage::Storage;
use crate::{Result, Tensor};
use cudarc::driver::{CudaView, CudaViewMut, DeviceRepr, PushKernelArg};
use moe_kernels::cpu::index::group_by_index;
use moe_kernels::cuda::launch::Launch1d;
use moe_kernels::cuda::{launch, COMBINE};
use std::sync::Arc;

const OP: &str = "expert_combine";
const BOP: &str = "expert_combine_backward";

/// `out [n, d]` with `out[t] = Σ_j w[t, j] · y[rows[t, j]]` (negative rows
/// skipped) for contiguous `y [m, d]` and `w [n, k]` and the device i64
/// `rows [n, k]`.
pub(crate) fn expert_combine(y: &Tensor, rows: &Tensor, w: &Tensor) -> Result<Storage> {
    float_kernel!(y.dtype(), OP, forward_typed(y, rows, w))
}

fn forward_typed<T: DeviceRepr>(suffix: &str, y: &Tensor, rows: &Tensor, w: &Tensor) -> Result<Storage> {
    let (n, k, d) = (rows.dims()[0], rows.dims()[1], y.dims()[1]);
    let rows = rows.contiguous()?;
    let (ys, rs, ws) = (y.read_storage(), rows.read_storage(), w.read_storage());
    let (yc, rc, wc) = (cuda_of(&ys, OP)?, cuda_of(&rs, OP)?, cuda_of(&ws, OP)?);
    let dev = yc.dev().clone();
    let total = n * d;
    let mut out = CudaStorage::alloc(&dev, y.dtype(), total, OP)?;
    if let Some(l) = launch::elementwise(total) {
        let f = dev.function(&COMBINE, &format!("combine_fwd_{suffix}"))?;
        let (tt, dd, kk) = (long(total, OP)?, long(d, OP)?, long(k, OP)?);
        let rv = elems::<i64>(rc, &rows, OP)?;
        let (wv, yv) = (elems::<T>(wc, w, OP)?, elems::<T>(yc, y, OP)?);
        let mut ov = out.view_mut::<T>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&tt).arg(&dd).arg(&kk).arg(&rv).arg(&wv).arg(&yv).arg(&mut ov);
        // SAFETY: combine_fwd_T(long long total, long long d, long long k,
        // const long long* rows, const T* w, const T* y, T* out): rows and w
        // hold n·k elements, every non-negative row is < m (checked by the
        // caller), y holds m·d, out n·d.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok(Storage::Cuda(out))
}

/// `(dy [m, d], dw [n, k])` of [`expert_combine`] for the contiguous output
/// gradient `g [n, d]`, from the contiguous `y`, `w` and the host copy of
/// the checked row ids `rows` (`n · k`, row-major).
pub(crate) fn expert_combine_backward(
    y: &Tensor,
    w: &Tensor,
    rows: &[i64],
    k: usize,
    g: &Tensor,
) -> Result<(Storage, Storage)> {
    float_kernel!(y.dtype(), BOP, backward_typed(y, w, rows, k, g))
}

/// The kept copies grouped by the row they read, in copy order: the copies of
/// row `r` are `order[starts[r]..starts[r + 1]]` (copy indices into `rows`).
fn copies_by_row(rows: &[i64], m: usize) -> Result<(Vec<i64>, Vec<i64>)> {
    let kept: Vec<usize> = (0..rows.len()).filter(|&j| rows[j] >= 0).collect();
    let kept_rows: Vec<i64> = kept.iter().map(|&j| rows[j]).collect();
    let (starts, order) = group_by_index(BOP, &kept_rows, m).map_err(crate::tensor::kernel_err(BOP))?;
    Ok((
        starts.into_iter().map(|s| s as i64).collect(),
        order.into_iter().map(|p| kept[p] as i64).collect(),
    ))
}

fn backward_typed<T: DeviceRepr>(
    suffix: &str,
    y: &Tensor,
    w: &Tensor,
    rows: &[i64],
    k: usize,
    g: &Tensor,
) -> Result<(Storage, Storage)> {
    let (m, d) = (y.dims()[0], y.dims()[1]);
    let (starts, order) = copies_by_row(rows, m)?;
    let dev = {
        let ys = y.read_storage();
        cuda_of(&ys, BOP)?.dev().clone()
    };
    let (starts, order, ids) = (
        upload_i64(&dev, &starts)?,
        upload_i64(&dev, &order)?,
        upload_i64(&dev, rows)?,
    );
    let iv = ids.view::<i64>(0..ids.len(), BOP)?;
    let dy_kernel = |wv: &CudaView<'_, T>, gv: &CudaView<'_, T>, dyv: &mut CudaViewMut<'_, T>, l: Launch1d| {
        let f = dev.function(&COMBINE, &format!("combine_bwd_rows_{suffix}"))?;
        let (total, dd, kk) = (long(m * d, BOP)?, long(d, BOP)?, long(k, BOP)?);
        let (sv, ov) = (
            starts.view::<i64>(0..starts.len(), BOP)?,
            order.view::<i64>(0..order.len(), BOP)?,
        );
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&total)
            .arg(&dd)
            .arg(&kk)
            .arg(&sv)
            .arg(&ov)
            .arg(wv)
            .arg(gv)
            .arg(dyv);
        // SAFETY: combine_bwd_rows_T(long long total, long long d, long long k,
        // const long long* starts, const long long* order, const T* w,
        // const T* g, T* dy): starts holds m + 1 offsets into order, whose
        // copy indices are < n·k; g holds n·d elements, dy m·d.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(BOP))?;
        Ok(())
    };
    combine_grads::<T>(suffix, (y, w, g, k), &iv, dy_kernel)
}

/// `(dy, dw)` of a combine: `dy_kernel` launches the dy kernel of its kind
/// (given w, g, dy and the elementwise launch over dy), then every copy's
/// weight gradient comes from the device row ids `rows`.
fn combine_grads<T: DeviceRepr>(
    suffix: &str,
    (y, w, g, k): (&Tensor, &Tensor, &Tensor, usize),
    rows: &CudaView<'_, i64>,
    dy_kernel: impl FnOnce(&CudaView<'_, T>, &CudaView<'_, T>, &mut CudaViewMut<'_, T>, Launch1d) -> Result<()>,
) -> Result<(Storage, Storage)> {
    let (m, d, copies) = (y.dims()[0], y.dims()[1], w.elem_count());
    let (ys, ws, gs) = (y.read_storage(), w.read_storage(), g.read_storage());
    let (yc, wc, gc) = (cuda_of(&ys, BOP)?, cuda_of(&ws, BOP)?, cuda_of(&gs, BOP)?);
    let dev = yc.dev().clone();
    let mut dy = CudaStorage::alloc(&dev, y.dtype(), m * d, BOP)?;
    let mut dw = CudaStorage::alloc(&dev, y.dtype(), copies, BOP)?;
    let (yv, wv, gv) = (
        elems::<T>(yc, y, BOP)?,
        elems::<T>(wc, w, BOP)?,
        elems::<T>(gc, g, BOP)?,
    );
    if let Some(l) = launch::elementwise(m * d) {
        dy_kernel(&wv, &gv, &mut dy.view_mut::<T>(BOP)?, l)?;
    }
    weights_grad::<T>(suffix, &dev, (rows, copies, k, d), (&gv, &yv), &mut dw)?;
    Ok((Storage::Cuda(dy), Storage::Cuda(dw)))
}

/// `dw [n·k]`, `dw[j] = <g[j / k], y[rows[j]]>` (zero for a dropped copy),
/// from device row ids: one warp per copy.
fn weights_grad<T: DeviceRepr>(
    suffix: &str,
    dev: &Arc<CudaDev>,
    (rows, copies, k, d): (&CudaView<'_, i64>, usize, usize, usize),
    (g, y): (&CudaView<'_, T>, &CudaView<'_, T>),
    dw: &mut CudaStorage,
) -> Result<()> {
    let Some(l) = launch::warps(copies) else {
        return Ok(());
    };
    let f = dev.function(&COMBINE, &format!("combine_bwd_weights_{suffix}"))?;
    let (n_copies, dd, kk) = (long(copies, BOP)?, long(d, BOP)?, long(k, BOP)?);
    let mut dwv = dw.view_mut::<T>(BOP)?;
    let mut b = dev.stream.launch_builder(&f);
    b.arg(&n_copies).arg(&dd).arg(&kk).arg(rows).arg(g).arg(y).arg(&mut dwv);
    // SAFETY: combine_bwd_weights_T(long long copies, long long d,
    // long long k, const long long* rows, const T* g, const T* y, T* dw):
    // one warp per copy (blocks of whole warps); rows are < m (checked by
    // the caller, or a dispatch plan's) or negative (skipped).
    unsafe { b.launch(config(l)) }.map_err(cuda_err(BOP))?;
    Ok(())
}

/// [`expert_combine_backward`] for a dispatch plan (each row read by at
/// most one copy): the device `rows [n, k]` and `copy_of_row [m]` are used
/// as they are, so nothing is read back or grouped on the host.
pub(crate) fn expert_combine_backward_planned(
    y: &Tensor,
    w: &Tensor,
    rows: &Tensor,
    copy_of_row: &Tensor,
    g: &Tensor,
) -> Result<(Storage, Storage)> {
    float_kernel!(y.dtype(), BOP, planned_backward_typed(y, w, rows, copy_of_row, g))
}

fn planned_backward_typed<T: DeviceRepr>(
    suffix: &str,
    y: &Tensor,
    w: &Tensor,
    rows: &Tensor,
    copy_of_row: &Tensor,
    g: &Tensor,
) -> Result<(Storage, Storage)> {
    let (m, d, k) = (y.dims()[0], y.dims()[1], rows.dims()[1]);
    let (rows, copy_of_row) = (rows.contiguous()?, copy_of_row.contiguous()?);
    let (rs, cs) = (rows.read_storage(), copy_of_row.read_storage());
    let (rc, cc) = (cuda_of(&rs, BOP)?, cuda_of(&cs, BOP)?);
    let dev = rc.dev().clone();
    let (rv, cv) = (elems::<i64>(rc, &rows, BOP)?, elems::<i64>(cc, &copy_of_row, BOP)?);
    let dy_kernel = |wv: &CudaView<'_, T>, gv: &CudaView<'_, T>, dyv: &mut CudaViewMut<'_, T>, l: Launch1d| {
        let f = dev.function(&COMBINE, &format!("combine_bwd_rows_planned_{suffix}"))?;
        let (total, dd, kk) = (long(m * d, BOP)?, long(d, BOP)?, long(k, BOP)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&total).arg(&dd).arg(&kk).arg(&cv).arg(wv).arg(gv).arg(dyv);
        // SAFETY: combine_bwd_rows_planned_T(long long total, long long d,
        // long long k, const long long* copy_of_row, const T* w, const T* g,
        // T* dy): copy_of_row holds m entries, each a copy < n·k (w holds
        // n·k, g n·d) or negative (skipped); dy holds m·d.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(BOP))?;
        Ok(())
    };
    combine_grads::<T>(suffix, (y, w, g, k), &rv, dy_kernel)
}
