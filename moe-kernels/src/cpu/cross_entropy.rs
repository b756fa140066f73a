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

use super::gemm::{bf16_bits, to_bf16_bits};
use super::index::{check_index, check_len};
use super::softmax::vexp::{as_f32, exp_sub_sum, row_max};
use super::softmax::{numel, rows_per_task, PAR_MIN_ELEMS};
use crate::{KernelError, Real};

/// torch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// Rows per block of the loss sum; blocks are added in order (deterministic).
/// A caller of [`cross_entropy_rows`] that splits a batch into chunks of a
/// multiple of this many rows sums the same blocks in the same order.
pub const LOSS_BLOCK_ROWS: usize = 64;

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
    let grad = match grad {
        Some(g) => GradOut::Full(g),
        None => GradOut::None,
    };
    let parts = rows.block_sums(lse, logits, targets, grad);
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
    /// Every block of [`LOSS_BLOCK_ROWS`] rows (in parallel when large):
    /// their `lse` and gradient rows written, their loss sums returned in
    /// order.
    fn block_sums(&self, lse: &mut [T], logits: &[T], targets: &[i64], grad: GradOut<'_, T>) -> Vec<f64> {
        let (bn, v) = (LOSS_BLOCK_ROWS, self.v);
        let blocks = targets.len().div_ceil(bn);
        let sinks: Vec<GradOut<'_, T>> = match grad {
            GradOut::None => (0..blocks).map(|_| GradOut::None).collect(),
            GradOut::Full(g) => g.chunks_mut(bn * v).map(GradOut::Full).collect(),
            GradOut::Bf16(g) => g.chunks_mut(bn * v).map(GradOut::Bf16).collect(),
        };
        let work = lse
            .chunks_mut(bn)
            .zip(logits.chunks(bn * v))
            .zip(targets.chunks(bn))
            .zip(sinks)
            .map(|(((l, x), t), g)| Block {
                lse: l,
                logits: x,
                targets: t,
                grad: g,
            });
        if targets.len() * v >= PAR_MIN_ELEMS {
            work.collect::<Vec<_>>()
                .into_par_iter()
                .map(|b| self.block(b))
                .collect()
        } else {
            work.map(|b| self.block(b)).collect()
        }
    }

    /// One block of rows: writes their `lse` (and gradient rows when `grad`
    /// is given) and returns their loss sum in f64.
    fn block(&self, blk: Block<'_, T>) -> f64 {
        let Block {
            lse,
            logits,
            targets,
            grad,
        } = blk;
        let v = self.v;
        let with_grad = !matches!(grad, GradOut::None);
        let (mut full, mut bf16) = match grad {
            GradOut::None => (None, None),
            GradOut::Full(g) => (Some(g), None),
            GradOut::Bf16(g) => (None, Some(g)),
        };
        // exp(x − m) goes to the gradient row when that is T, else to a scratch row.
        let mut scratch = if full.is_some() { Vec::new() } else { vec![T::zero(); v] };
        let mut acc = 0.0f64;
        for (r, ((l, xr), &t)) in lse.iter_mut().zip(logits.chunks(v)).zip(targets).enumerate() {
            let out = match full.as_deref_mut() {
                Some(g) => &mut g[r * v..(r + 1) * v],
                None => &mut scratch[..],
            };
            let m = row_max(xr);
            let s = exp_sub_sum(out, xr, m);
            let ln_s = s.ln();
            *l = m + ln_s;
            let valid = t != self.ignore_index;
            if valid {
                // (m − x_t) + ln s, not lse − x_t: exact when x_t is the max,
                // as torch's log_softmax is, even for logits in the thousands.
                acc += ((m - xr[t as usize]) + ln_s).to_f64_lossy();
            }
            if !with_grad {
                continue;
            }
            if valid {
                let f = self.scale / s;
                out.iter_mut().for_each(|g| *g *= f);
                out[t as usize] -= self.scale;
            } else {
                out.iter_mut().for_each(|g| *g = T::zero());
            }
            if let Some(g) = bf16.as_deref_mut() {
                // The rounding the bf16 GEMM kernels apply to an f32 operand
                // (`Bf16` is built only for T = f32).
                let dst = &mut g[r * v..(r + 1) * v];
                match as_f32(out) {
                    Some(src) => to_bf16_bits(src, dst),
                    None => dst
                        .iter_mut()
                        .zip(out.iter())
                        .for_each(|(d, &x)| *d = bf16_bits(x.to_f64_lossy() as f32)),
                }
            }
        }
        acc
    }
}

/// One block of rows and where its outputs go.
struct Block<'a, T> {
    lse: &'a mut [T],
    logits: &'a [T],
    targets: &'a [i64],
    grad: GradOut<'a, T>,
}

/// Where [`cross_entropy_rows`] writes the gradient rows.
pub enum GradOut<'a, T> {
    /// Nowhere (the loss alone).
    None,
    /// In `T`.
    Full(&'a mut [T]),
    /// As bf16 bits, rounded like the bf16 GEMM kernels round their f32
    /// operands (what a bf16-precision product of the `T` gradient reads).
    Bf16(&'a mut [u16]),
}

/// The cross-entropy rows of one chunk of a larger batch, for a caller that
/// produces the logits chunk by chunk (the fused LM-head loss):
///
/// ```text
/// logits:  [N, V]  this chunk's scores
/// targets: [N]     class index in [0, V) or ignore_index
/// grad:            written unless GradOut::None: (softmax − onehot(target)) · scale,
///                  zero on ignored rows
/// ```
/// `scale` is the whole batch's ([`grad_scale`] with its valid-row count).
/// Returns the loss sum of each block of [`LOSS_BLOCK_ROWS`] rows, in order;
/// summed in order over the chunks of a batch split at multiples of
/// [`LOSS_BLOCK_ROWS`], they give [`cross_entropy_forward`]'s sum to the bit.
/// Errors on a length mismatch or a target out of range.
pub fn cross_entropy_rows<T: Real>(
    logits: &[T],
    targets: &[i64],
    v: usize,
    ignore_index: i64,
    scale: T,
    grad: GradOut<'_, T>,
) -> Result<Vec<f64>, KernelError> {
    const OP: &str = "cross_entropy_rows";
    let n = targets.len();
    let len = numel(OP, &[n, v])?;
    check_len(OP, "logits", len, logits.len())?;
    match &grad {
        GradOut::None => {}
        GradOut::Full(g) => check_len(OP, "grad", len, g.len())?,
        GradOut::Bf16(g) => check_len(OP, "grad", len, g.len())?,
    }
    for &t in targets.iter().filter(|&&t| t != ignore_index) {
        check_index(OP, t, v)?;
    }
    if v == 0 {
        return Ok(vec![0.0; n.div_ceil(LOSS_BLOCK_ROWS)]);
    }
    let rows = Rows { v, ignore_index, scale };
    let mut lse = vec![T::zero(); n];
    Ok(rows.block_sums(&mut lse, logits, targets, grad))
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
