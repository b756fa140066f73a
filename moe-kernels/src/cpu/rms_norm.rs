//! RMSNorm over the last dimension, forward and backward.
//!
//! `y = (x · rstd) · w` with `rstd = 1 / sqrt(mean(x²) + eps)`, the Llama /
//! Hugging Face `LlamaRMSNorm` order of operations. Rows run in parallel when
//! the work is large; the weight gradient is summed per fixed block of rows
//! and the blocks are added in order, so it is bitwise the same for any
//! number of threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::index::check_len;
use super::softmax::vexp::dot;
use super::softmax::{check_rows, rows_per_task, PAR_MIN_ELEMS};
use super::write_once::written_once;
use crate::{KernelError, Real};

/// Most row blocks the weight gradient is split into (one partial `dw` each).
const MAX_DW_BLOCKS: usize = 64;

/// RMSNorm forward.
///
/// ```text
/// x:    [N, D]  input
/// w:    [D]     weight
/// returns (y, rstd):
/// y:    [N, D]  x[n] · rstd[n] · w, a new vector written once (no zeroing pass)
/// rstd: [N]     1 / sqrt(mean_d x[n, d]² + eps), saved for backward
/// ```
/// Errors if a buffer length does not match the dims.
pub fn rms_norm_forward<T: Real>(
    x: &[T],
    w: &[T],
    n: usize,
    d: usize,
    eps: T,
) -> Result<(Vec<T>, Vec<T>), KernelError> {
    const OP: &str = "rms_norm";
    check_rows(OP, n, d, &[("x", x)])?;
    check_len(OP, "w", d, w.len())?;
    let mut rstd = vec![T::zero(); n];
    let y = written_once(x.len(), |y| forward_into(y, &mut rstd, x, w, n, d, eps));
    Ok((y, rstd))
}

/// Writes every slot of `y` and every `rstd` (lengths checked).
fn forward_into<T: Real>(y: &mut [MaybeUninit<T>], rstd: &mut [T], x: &[T], w: &[T], n: usize, d: usize, eps: T) {
    if n == 0 || d == 0 {
        // The mean over an empty row is 0/0 = NaN, as in torch; y is empty anyway.
        rstd.iter_mut().for_each(|r| *r = T::nan());
        return;
    }
    let inv_d = T::one() / T::from_f64_lossy(d as f64);
    let row = |(yr, r): (&mut [MaybeUninit<T>], &mut T), xr: &[T]| {
        let ms = dot(xr, xr) * inv_d;
        let rs = T::one() / (ms + eps).sqrt();
        *r = rs;
        for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
            o.write((v * rs) * wv);
        }
    };
    if n * d >= PAR_MIN_ELEMS {
        y.par_chunks_mut(d)
            .zip(rstd.par_iter_mut())
            .zip(x.par_chunks(d))
            .with_min_len(rows_per_task(d))
            .for_each(|(a, xr)| row(a, xr));
    } else {
        for (a, xr) in y.chunks_mut(d).zip(rstd.iter_mut()).zip(x.chunks(d)) {
            row(a, xr);
        }
    }
}

/// RMSNorm backward.
///
/// ```text
/// dy:   [N, D]  gradient of y
/// x:    [N, D]  saved input
/// w:    [D]     weight
/// rstd: [N]     saved from forward
/// dx:   [N, D]  written: rstd·(w⊙dy) − x · rstd³/D · Σ_d (w⊙dy⊙x)
/// dw:   [D]     accumulated (+=): Σ_n dy[n] ⊙ x[n] · rstd[n]
/// ```
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward<T: Real>(
    dx: &mut [T],
    dw: &mut [T],
    dy: &[T],
    x: &[T],
    w: &[T],
    rstd: &[T],
    n: usize,
    d: usize,
) -> Result<(), KernelError> {
    const OP: &str = "rms_norm_backward";
    check_rows(OP, n, d, &[("dx", &*dx), ("dy", dy), ("x", x)])?;
    check_len(OP, "dw", d, dw.len())?;
    check_len(OP, "w", d, w.len())?;
    check_len(OP, "rstd", n, rstd.len())?;
    if n == 0 || d == 0 {
        return Ok(());
    }
    let inv_d = T::one() / T::from_f64_lossy(d as f64);
    // Fixed row blocks (a function of N only) keep the dw sum order fixed.
    let block_rows = n.div_ceil(MAX_DW_BLOCKS).max(rows_per_task(d));
    #[allow(clippy::type_complexity)]
    let block = |(dxb, (dyb, (xb, rb))): (&mut [T], (&[T], (&[T], &[T])))| -> Vec<T> {
        let mut dwp = vec![T::zero(); d];
        for (((dxr, dyr), xr), &r) in dxb.chunks_mut(d).zip(dyb.chunks(d)).zip(xb.chunks(d)).zip(rb) {
            // dx holds w·dy first; Σ_d w·dy·x (the projection of the upstream
            // gradient on x) is then a lane-parallel dot.
            for ((o, &g), &wv) in dxr.iter_mut().zip(dyr).zip(w) {
                *o = wv * g;
            }
            let c = r * r * dot(dxr, xr) * inv_d;
            for (((o, &g), &v), p) in dxr.iter_mut().zip(dyr).zip(xr).zip(dwp.iter_mut()) {
                *o = r * (*o - v * c);
                *p += g * v * r;
            }
        }
        dwp
    };
    let bd = block_rows * d;
    let partials: Vec<Vec<T>> = if n * d >= PAR_MIN_ELEMS {
        dx.par_chunks_mut(bd)
            .zip(dy.par_chunks(bd).zip(x.par_chunks(bd).zip(rstd.par_chunks(block_rows))))
            .map(block)
            .collect()
    } else {
        dx.chunks_mut(bd)
            .zip(dy.chunks(bd).zip(x.chunks(bd).zip(rstd.chunks(block_rows))))
            .map(block)
            .collect()
    };
    for p in &partials {
        for (a, &b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    Ok(())
}
