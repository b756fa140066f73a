//! Softmax and log-softmax over the last dimension of a row-major `[N, C]`
//! buffer, forward and backward.
//!
//! Forward subtracts the row maximum before `exp` (numerically stable, like
//! torch). Backward takes the saved forward output `y`, never the input:
//! - softmax:     `dx = y ⊙ (dy − Σ_c dy ⊙ y)`
//! - log_softmax: `dx = dy − exp(y) ⊙ Σ_c dy`
//!
//! A row of all `-inf` gives NaN, as in torch. Rows run in parallel (rayon)
//! once a call has at least [`PAR_MIN_ELEMS`] elements; every row is computed
//! the same way either way, so results do not depend on the thread count.

pub(crate) mod vexp;

use rayon::prelude::*;

use super::index::check_len;
use crate::{KernelError, Real};
use vexp::{dot, exp_sub_sum, row_max, sum};

/// Below this many elements per call the row loop stays on the calling thread.
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// Rows per rayon task so that each task has about `PAR_MIN_ELEMS / 4` elements.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (PAR_MIN_ELEMS / 4 / row_len.max(1)).max(1)
}

/// Runs `f(out_row, in_row_a, in_row_b)` over matching rows of three `[N, C]`
/// buffers, in parallel when the work is large.
pub(crate) fn for_rows3<T: Real>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    c: usize,
    f: impl Fn(&mut [T], &[T], &[T]) + Sync + Send,
) {
    if c == 0 || out.is_empty() {
        return;
    }
    if out.len() >= PAR_MIN_ELEMS {
        out.par_chunks_mut(c)
            .zip(a.par_chunks(c))
            .zip(b.par_chunks(c))
            .with_min_len(rows_per_task(c))
            .for_each(|((o, a), b)| f(o, a, b));
    } else {
        for ((o, a), b) in out.chunks_mut(c).zip(a.chunks(c)).zip(b.chunks(c)) {
            f(o, a, b);
        }
    }
}

/// `Π dims`, or `ShapeOverflow` naming `op`.
pub(crate) fn numel(op: &'static str, dims: &[usize]) -> Result<usize, KernelError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| KernelError::ShapeOverflow {
            op,
            shape: dims.to_vec(),
        })
}

/// Checks that each named buffer holds `n · c` elements.
pub(crate) fn check_rows<T>(
    op: &'static str,
    n: usize,
    c: usize,
    bufs: &[(&'static str, &[T])],
) -> Result<(), KernelError> {
    let want = numel(op, &[n, c])?;
    bufs.iter().try_for_each(|(name, b)| check_len(op, name, want, b.len()))
}

/// Softmax over the last dim.
///
/// ```text
/// x: [N, C]  input
/// y: [N, C]  output, y[n, c] = exp(x[n, c] − max_c x[n]) / Σ_c' exp(x[n, c'] − max_c x[n])
/// ```
/// Errors if a buffer length does not match `[N, C]`.
pub fn softmax_forward<T: Real>(y: &mut [T], x: &[T], n: usize, c: usize) -> Result<(), KernelError> {
    check_rows("softmax", n, c, &[("y", &*y), ("x", x)])?;
    for_rows3(y, x, x, c, |yr, xr, _| {
        let m = row_max(xr);
        let s = exp_sub_sum(yr, xr, m);
        let inv = T::one() / s;
        yr.iter_mut().for_each(|v| *v *= inv);
    });
    Ok(())
}

/// Backward of [`softmax_forward`] from its saved output.
///
/// ```text
/// dy: [N, C]  gradient of the output
/// y:  [N, C]  saved softmax output
/// dx: [N, C]  written: y ⊙ (dy − Σ_c dy ⊙ y)
/// ```
pub fn softmax_backward<T: Real>(dx: &mut [T], dy: &[T], y: &[T], n: usize, c: usize) -> Result<(), KernelError> {
    check_rows("softmax_backward", n, c, &[("dx", &*dx), ("dy", dy), ("y", y)])?;
    for_rows3(dx, dy, y, c, |dxr, dyr, yr| {
        let s = dot(dyr, yr);
        for ((d, &g), &p) in dxr.iter_mut().zip(dyr).zip(yr) {
            *d = p * (g - s);
        }
    });
    Ok(())
}

/// Log-softmax over the last dim.
///
/// ```text
/// x: [N, C]  input
/// y: [N, C]  output, y[n, c] = x[n, c] − max − ln Σ_c' exp(x[n, c'] − max)
/// ```
pub fn log_softmax_forward<T: Real>(y: &mut [T], x: &[T], n: usize, c: usize) -> Result<(), KernelError> {
    check_rows("log_softmax", n, c, &[("y", &*y), ("x", x)])?;
    for_rows3(y, x, x, c, |yr, xr, _| {
        let m = row_max(xr);
        // y is scratch for the exps, then overwritten with the result.
        let s = exp_sub_sum(yr, xr, m);
        // (x − m) − ln s, in this order: exact for the max entry, as in torch.
        let ls = s.ln();
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (v - m) - ls;
        }
    });
    Ok(())
}

/// Backward of [`log_softmax_forward`] from its saved output.
///
/// ```text
/// dy: [N, C]  gradient of the output
/// y:  [N, C]  saved log-softmax output
/// dx: [N, C]  written: dy − exp(y) ⊙ Σ_c dy
/// ```
pub fn log_softmax_backward<T: Real>(dx: &mut [T], dy: &[T], y: &[T], n: usize, c: usize) -> Result<(), KernelError> {
    check_rows("log_softmax_backward", n, c, &[("dx", &*dx), ("dy", dy), ("y", y)])?;
    for_rows3(dx, dy, y, c, |dxr, dyr, yr| {
        let s = sum(dyr);
        // dx holds exp(y) first (the vectorised exp), then the gradient.
        exp_sub_sum(dxr, yr, T::zero());
        for (d, &g) in dxr.iter_mut().zip(dyr) {
            *d = g - *d * s;
        }
    });
    Ok(())
}
