//! Matrix × vector (`n == 1`; `m == 1` arrives transposed), which packing would
//! waste: it is memory-bound, so it streams A once in its stored order.
//!
//! Rows of A contiguous → one dot product per row; columns contiguous → axpy
//! per column into C. The loops are compiled twice, plain and with AVX2, and
//! the AVX2 copy is picked at runtime.

use rayon::prelude::*;

use super::driver::RawMut;
use super::pack::RawRef;
use crate::Real;

/// Rows per parallel task below which splitting is not worth it.
const MIN_ROWS_PER_TASK: usize = 64;

/// `c[i] = alpha · Σ_p a[i, p]·x[p] + beta · c[i]` for `i < m`.
///
/// `x` is read as `x.ptr + p·x.rs`, `c` written as `c.ptr + i·c.rs`.
///
/// # Safety
/// m, k ≥ 1, the views lie in live buffers, `c` does not overlap itself or `a`/`x`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemv<T: Real>(
    m: usize,
    k: usize,
    alpha: T,
    a: RawRef<T>,
    x: RawRef<T>,
    beta: T,
    c: RawMut<T>,
    threads: usize,
) {
    let tasks = threads.min(m / MIN_ROWS_PER_TASK).max(1);
    let run = |t: usize| {
        let rows = (m * t / tasks)..(m * (t + 1) / tasks);
        #[cfg(target_arch = "x86_64")]
        if super::avx2::available() {
            // SAFETY: AVX2+FMA checked; the caller's contract covers the views.
            return unsafe { rows_avx2(rows, k, alpha, a, x, beta, c) };
        }
        // SAFETY: the caller's contract covers the views.
        unsafe { rows_body(rows, k, alpha, a, x, beta, c) }
    };
    if tasks > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// [`rows_body`] compiled with AVX2+FMA.
///
/// # Safety
/// AVX2+FMA available; as [`rows_body`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<T: Real>(
    rows: std::ops::Range<usize>,
    k: usize,
    alpha: T,
    a: RawRef<T>,
    x: RawRef<T>,
    beta: T,
    c: RawMut<T>,
) {
    // SAFETY: forwarded contract.
    unsafe { rows_body(rows, k, alpha, a, x, beta, c) }
}

/// Computes `rows` of the product.
///
/// # Safety
/// As [`gemv`], for the rows given.
#[inline(always)]
unsafe fn rows_body<T: Real>(
    rows: std::ops::Range<usize>,
    k: usize,
    alpha: T,
    a: RawRef<T>,
    x: RawRef<T>,
    beta: T,
    c: RawMut<T>,
) {
    let store = |i: usize, acc: T| {
        // SAFETY: i < m and c is ours for these rows.
        let dst = unsafe { &mut *c.ptr.add(i * c.rs) };
        *dst = if beta == T::zero() {
            alpha * acc
        } else {
            alpha * acc + beta * *dst
        };
    };
    if a.cs == 1 && x.rs == 1 {
        // SAFETY: x covers k contiguous elements.
        let xs = unsafe { std::slice::from_raw_parts(x.ptr, k) };
        for i in rows {
            // SAFETY: row i of A is k contiguous elements.
            let row = unsafe { std::slice::from_raw_parts(a.at(i, 0), k) };
            store(i, dot(row, xs));
        }
    } else if a.rs == 1 && c.rs == 1 {
        let len = rows.len();
        // SAFETY: c is contiguous over these rows and belongs to this task.
        let out = unsafe { std::slice::from_raw_parts_mut(c.ptr.add(rows.start), len) };
        for o in out.iter_mut() {
            *o = if beta == T::zero() { T::zero() } else { beta * *o };
        }
        for p in 0..k {
            // SAFETY: p < k; column p of A is contiguous over these rows.
            let (s, col) = unsafe {
                (
                    alpha * *x.at(p, 0),
                    std::slice::from_raw_parts(a.at(rows.start, p), len),
                )
            };
            for (o, &v) in out.iter_mut().zip(col) {
                *o += s * v;
            }
        }
    } else {
        for i in rows {
            let mut acc = T::zero();
            for p in 0..k {
                // SAFETY: (i, p) and (p, 0) are inside A and x.
                acc += unsafe { *a.at(i, p) * *x.at(p, 0) };
            }
            store(i, acc);
        }
    }
}

/// Dot product with 16 independent partial sums so the loop vectorises.
#[inline(always)]
fn dot<T: Real>(x: &[T], y: &[T]) -> T {
    const L: usize = 16;
    let mut acc = [T::zero(); L];
    let (xc, yc) = (x.chunks_exact(L), y.chunks_exact(L));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for l in 0..L {
            acc[l] += xs[l] * ys[l];
        }
    }
    let mut tail = T::zero();
    for (&a, &b) in xr.iter().zip(yr) {
        tail += a * b;
    }
    acc.iter().fold(tail, |s, &v| s + v)
}
