//! Fused softmax cross-entropy over logits `[N, V]` with integer targets,
//! forward and backward, with torch's `ignore_index` and reductions.
//!
//! Forward saves only the per-row logsumexp; backward rebuilds
//! `softmax = exp(logits − lse)` row by row and writes
//! `dlogits = (softmax − onehot(target)) · scale` in the same pass, so no
//! `[N, V]` probability buffer is ever kept. For training,
//! [`cross_entropy_forward_with_grad`] writes the gradient during forward
//! instead, reading the logits once.
//!
//! Backward's `exp(logits − lse)` carries the rounding of the saved f32
//! `lse` (relative error about `|lse| · 6e-8` per probability), which matters
//! only for logits in the thousands.
//!
//! Reductions follow `torch.nn.functional.cross_entropy`: `Mean` divides by
//! the number of non-ignored rows. When every row is ignored, `Mean` gives a
//! NaN loss (0/0, as torch does) and an all-zero gradient; `Sum` gives 0.

use rayon::prelude::*;

use super::index::{check_index, check_len};
use super::softmax::vexp::{exp_sub_sum, row_max};
use super::softmax::{numel, rows_per_task, PAR_MIN_ELEMS};
use crate::{KernelError, Real};

/// torch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// Rows per block of the loss sum; blocks are added in order (deterministic).
const LOSS_BLOCK_ROWS: usize = 64;

/// How per-row losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Sum over non-ignored rows divided by their count.
    Mean,
    /// Sum over non-ignored rows.
    Sum,
}

/// Result of [`cross_entropy_forward`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropyLoss<T> {
    /// The reduced loss.
    pub loss: T,
    /// Number of rows whose target is not `ignore_index`.
    pub n_valid: usize,
}

/// Cross-entropy forward.
///
/// ```text
/// logits:  [N, V]  unnormalised scores
/// targets: [N]     class index in [0, V) or ignore_index
/// lse:     [N]     written: logsumexp of each row (every row, ignored or not)
/// ```
/// Returns the reduced loss (summed in f64) and the number of non-ignored rows.
/// Errors on a buffer length that does not match the dims or on the first
/// target (lowest row) that is neither in `[0, V)` nor `ignore_index`.
pub fn cross_entropy_forward<T: Real>(
    lse: &mut [T],
    logits: &[T],
    targets: &[i64],
    n: usize,
    v: usize,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<CrossEntropyLoss<T>, KernelError> {
    forward_impl(
        "cross_entropy",
        lse,
        None,
        logits,
        targets,
        n,
        v,
        ignore_index,
        reduction,
    )
}

/// [`cross_entropy_forward`] that also writes the gradient of the reduced
/// loss (for an upstream gradient of 1) in the same pass over the logits:
///
/// ```text
/// dlogits: [N, V]  written: (softmax(logits) − onehot(target)) · grad_scale(reduction, n_valid, 1),
///                  zero on ignored rows
/// ```
/// Training reads the logits once this way instead of twice (forward, then
/// backward rebuilding the softmax); the softmax is `exp(x − max) / Σ`, so
/// it carries no rounding of a saved logsumexp. Scale it by the upstream
/// gradient when that is not 1. Errors as [`cross_entropy_forward`], and on
/// a `dlogits` of the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_forward_with_grad<T: Real>(
    lse: &mut [T],
    dlogits: &mut [T],
    logits: &[T],
    targets: &[i64],
    n: usize,
    v: usize,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<CrossEntropyLoss<T>, KernelError> {
    const OP: &str = "cross_entropy_with_grad";
    check_len(OP, "dlogits", numel(OP, &[n, v])?, dlogits.len())?;
    forward_impl(OP, lse, Some(dlogits), logits, targets, n, v, ignore_index, reduction)
}

#[allow(clippy::too_many_arguments)]
fn forward_impl<T: Real>(
    op: &'static str,
    lse: &mut [T],
    grad: Option<&mut [T]>,
    logits: &[T],
    targets: &[i64],
    n: usize,
    v: usize,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<CrossEntropyLoss<T>, KernelError> {
    check_len(op, "logits", numel(op, &[n, v])?, logits.len())?;
    check_len(op, "targets", n, targets.len())?;
    check_len(op, "lse", n, lse.len())?;
    for &t in targets.iter().filter(|&&t| t != ignore_index) {
        check_index(op, t, v)?;
    }
    let n_valid = targets.iter().filter(|&&t| t != ignore_index).count();
    if v == 0 {
        // Every target was ignored (no class exists); an empty logsumexp is -inf.
        lse.iter_mut().for_each(|l| *l = T::neg_infinity());
        let loss = match reduction {
            Reduction::Sum => T::zero(),
            Reduction::Mean => T::nan(),
        };
        return Ok(CrossEntropyLoss { loss, n_valid });
    }
    let rows = Rows {
        v,
        ignore_index,
        scale: grad_scale(reduction, n_valid, T::one()),
    };
    let bn = LOSS_BLOCK_ROWS;
    let par = n * v >= PAR_MIN_ELEMS;
    let lse_blocks = lse.chunks_mut(bn).zip(logits.chunks(bn * v).zip(targets.chunks(bn)));
    let parts: Vec<f64> = match (grad, par) {
        (None, false) => lse_blocks.map(|(l, (x, t))| rows.block(l, x, t, None)).collect(),
        (Some(g), false) => lse_blocks
            .zip(g.chunks_mut(bn * v))
            .map(|((l, (x, t)), g)| rows.block(l, x, t, Some(g)))
            .collect(),
        (None, true) => lse
            .par_chunks_mut(bn)
            .zip(logits.par_chunks(bn * v).zip(targets.par_chunks(bn)))
            .map(|(l, (x, t))| rows.block(l, x, t, None))
            .collect(),
        (Some(g), true) => lse
            .par_chunks_mut(bn)
            .zip(logits.par_chunks(bn * v).zip(targets.par_chunks(bn)))
            .zip(g.par_chunks_mut(bn * v))
            .map(|((l, (x, t)), g)| rows.block(l, x, t, Some(g)))
            .collect(),
    };
    let total: f64 = parts.iter().sum();
    let loss = match reduction {
        Reduction::Sum => total,
        // 0/0 = NaN when every row is ignored, matching torch.
        Reduction::Mean => total / n_valid as f64,
    };
    Ok(CrossEntropyLoss {
        loss: T::from_f64_lossy(loss),
        n_valid,
    })
}

/// What every block of rows shares in forward.
struct Rows<T> {
    v: usize,
    ignore_index: i64,
    /// The gradient's factor for an upstream gradient of 1.
    scale: T,
}

impl<T: Real> Rows<T> {
    /// One block of rows: writes their `lse` (and gradient rows when `grad`
    /// is given) and returns their loss sum in f64.
    fn block(&self, lse: &mut [T], logits: &[T], targets: &[i64], mut grad: Option<&mut [T]>) -> f64 {
        let v = self.v;
        let with_grad = grad.is_some();
        // Without a gradient, exp(x − m) goes to a scratch row.
        let mut scratch = if with_grad { Vec::new() } else { vec![T::zero(); v] };
        let mut acc = 0.0f64;
        for (r, ((l, xr), &t)) in lse.iter_mut().zip(logits.chunks(v)).zip(targets).enumerate() {
            let out = match grad.as_deref_mut() {
                Some(g) => &mut g[r * v..(r + 1) * v],
                None => &mut scratch[..],
            };
            let m = row_max(xr);
            let s = exp_sub_sum(out, xr, m);
            let ln_s = s.ln();
            *l = m + ln_s;
            if t == self.ignore_index {
                if with_grad {
                    out.iter_mut().for_each(|g| *g = T::zero());
                }
                continue;
            }
            // (m − x_t) + ln s, not lse − x_t: exact when x_t is the max,
            // as torch's log_softmax is, even for logits in the thousands.
            acc += ((m - xr[t as usize]) + ln_s).to_f64_lossy();
            if with_grad {
                let f = self.scale / s;
                out.iter_mut().for_each(|g| *g *= f);
                out[t as usize] -= self.scale;
            }
        }
        acc
    }
}

/// The factor each row's `softmax − onehot` is multiplied by in backward:
/// `dloss / n_valid` for `Mean` (0 when no row is valid, so the gradient is
/// zero as in torch), `dloss` for `Sum`.
pub fn grad_scale<T: Real>(reduction: Reduction, n_valid: usize, dloss: T) -> T {
    match reduction {
        Reduction::Sum => dloss,
        Reduction::Mean if n_valid == 0 => T::zero(),
        Reduction::Mean => dloss / T::from_f64_lossy(n_valid as f64),
    }
}

/// Cross-entropy backward.
///
/// ```text
/// logits:  [N, V]  saved input
/// targets: [N]     as in forward (already checked there)
/// lse:     [N]     saved from forward
/// dlogits: [N, V]  written: (exp(logits − lse) − onehot(target)) · scale,
///                  zero on ignored rows
/// ```
/// `scale` comes from [`grad_scale`]. Errors on a length mismatch or a target
/// out of range, like forward.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_backward<T: Real>(
    dlogits: &mut [T],
    logits: &[T],
    lse: &[T],
    targets: &[i64],
    n: usize,
    v: usize,
    ignore_index: i64,
    scale: T,
) -> Result<(), KernelError> {
    const OP: &str = "cross_entropy_backward";
    let len = numel(OP, &[n, v])?;
    check_len(OP, "logits", len, logits.len())?;
    check_len(OP, "dlogits", len, dlogits.len())?;
    check_len(OP, "targets", n, targets.len())?;
    check_len(OP, "lse", n, lse.len())?;
    for &t in targets.iter().filter(|&&t| t != ignore_index) {
        check_index(OP, t, v)?;
    }
    if n == 0 || v == 0 {
        return Ok(());
    }
    let row = |(i, (dr, xr)): (usize, (&mut [T], &[T]))| {
        let t = targets[i];
        if t == ignore_index {
            dr.iter_mut().for_each(|g| *g = T::zero());
            return;
        }
        exp_sub_sum(dr, xr, lse[i]);
        dr.iter_mut().for_each(|g| *g *= scale);
        dr[t as usize] -= scale;
    };
    if n * v >= PAR_MIN_ELEMS {
        dlogits
            .par_chunks_mut(v)
            .zip(logits.par_chunks(v))
            .enumerate()
            .with_min_len(rows_per_task(v))
            .for_each(row);
    } else {
        dlogits.chunks_mut(v).zip(logits.chunks(v)).enumerate().for_each(row);
    }
    Ok(())
}
