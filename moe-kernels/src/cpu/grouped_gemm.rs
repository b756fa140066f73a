//! Grouped GEMM over contiguous row segments, the expert matmuls of an MoE
//! layer, and the weighted row combine that maps expert outputs back to tokens.
//!
//! Token copies sorted by expert form `E` contiguous segments of rows; segment
//! `e` holds `counts[e]` rows (possibly none) starting at `counts[..e].sum()`.
//! [`grouped_gemm`] multiplies each segment by its own matrix (forward and the
//! input gradient); [`grouped_gemm_tn`] forms `segmentᵀ · segment` products
//! (the weight gradient). One call covers every segment: segments run in
//! parallel on rayon's current pool, and each one is a [`gemm_with`] call that may
//! split further when it is large, so a skewed load still uses every thread.
//!
//! [`combine_rows`] / [`combine_rows_backward`] form `out[t] = Σ_k w[t,k] ·
//! y[rows[t,k]]` and its gradients in one pass each.
//!
//! All validate their inputs and return [`KernelError`] instead of panicking.

use std::mem::MaybeUninit;

use super::gemm::{gemm_with, product_into, BatchStrides, MatMut, MatRef, ProductPrecision, PAR_MIN_WORK};
use super::index;
use super::write_once::written_once;
use crate::{KernelError, Real};
use rayon::prelude::*;

/// Elements a `rows`×`cols` view with strides `rs`, `cs` reaches (0 if empty).
fn extent(op: &'static str, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<usize, KernelError> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    (rows - 1)
        .checked_mul(rs)
        .and_then(|r| r.checked_add((cols - 1).checked_mul(cs)?))
        .and_then(|e| e.checked_add(1))
        .ok_or(KernelError::ShapeOverflow {
            op,
            shape: vec![rows, cols],
        })
}

/// Fails unless `len` elements cover what a view needs.
fn check_len(op: &'static str, buffer: &'static str, need: usize, len: usize) -> Result<(), KernelError> {
    if need > len {
        return Err(KernelError::LengthMismatch {
            op,
            buffer,
            expected: need,
            got: len,
        });
    }
    Ok(())
}

/// Total rows `Σ counts`, or an overflow error.
fn total_rows(op: &'static str, counts: &[usize]) -> Result<usize, KernelError> {
    counts.iter().try_fold(0usize, |acc, &c| {
        acc.checked_add(c).ok_or(KernelError::ShapeOverflow {
            op,
            shape: counts.to_vec(),
        })
    })
}

/// Whether `work` multiply-adds are worth forking threads for.
fn parallel(work: usize) -> bool {
    work >= PAR_MIN_WORK && rayon::current_num_threads() > 1
}

/// Grouped product: for each segment `e`,
/// `c[seg e] = alpha · a[seg e] · b[e] + beta · c[seg e]`.
///
/// - `a`: `M × k` (any strides), `M = Σ counts`.
/// - `b`: `E` matrices of `k × n`, matrix `e` at `b[e·b_s.bs..]` with row and
///   column strides `b_s.rs`, `b_s.cs` (a transposed weight is just swapped strides).
/// - `c`: `M × n`, row-major and contiguous (`c.len() == M·n`).
///
/// With `beta == 0` the old contents of `c` are ignored. Empty segments touch
/// nothing. The operands are read at `precision`.
#[allow(clippy::too_many_arguments)]
pub fn grouped_gemm<T: Real>(
    precision: ProductPrecision,
    counts: &[usize],
    k: usize,
    n: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: &[T],
    b_s: BatchStrides,
    beta: T,
    c: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "grouped_gemm";
    let m = check_grouped(OP, counts, k, n, &a, b, b_s)?;
    // m·n did not overflow (checked).
    index::check_len(OP, "c", m * n, c.len())?;
    run_segments(precision, counts, k, n, alpha, &a, b, b_s, Out::Init(c, beta));
    Ok(())
}

/// [`grouped_gemm`] with `beta = 0` into a new `rows × n` buffer, `rows ≥ Σ
/// counts`: the segments' products, then zero rows (a dispatch plan's
/// dropped copies). The products are written once into the allocation, not
/// after zeroing it (see `gemm_batched_new`); the values are the same, bit
/// for bit.
#[allow(clippy::too_many_arguments)]
pub fn grouped_gemm_new<T: Real>(
    precision: ProductPrecision,
    counts: &[usize],
    rows: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: &[T],
    b_s: BatchStrides,
) -> Result<Vec<T>, KernelError> {
    const OP: &str = "grouped_gemm_new";
    let m = check_grouped(OP, counts, k, n, &a, b, b_s)?;
    if rows < m {
        return Err(KernelError::LengthMismatch {
            op: OP,
            buffer: "rows",
            expected: m,
            got: rows,
        });
    }
    let len = rows.checked_mul(n).ok_or(KernelError::ShapeOverflow {
        op: OP,
        shape: vec![rows, n],
    })?;
    // The segments tile the first m rows, each written by run_segments; the rest is zeroed.
    Ok(written_once(len, |out| {
        let (segs, rest) = out.split_at_mut(m * n);
        run_segments(precision, counts, k, n, alpha, &a, b, b_s, Out::Fresh(segs));
        rest.fill(MaybeUninit::new(T::zero()));
    }))
}

/// Checks a grouped product's operands (see [`grouped_gemm`]) and returns
/// `M = Σ counts`, with `M·n` known not to overflow.
#[allow(clippy::too_many_arguments)]
fn check_grouped<T>(
    op: &'static str,
    counts: &[usize],
    k: usize,
    n: usize,
    a: &MatRef<'_, T>,
    b: &[T],
    b_s: BatchStrides,
) -> Result<usize, KernelError> {
    let m = total_rows(op, counts)?;
    m.checked_mul(n)
        .ok_or(KernelError::ShapeOverflow { op, shape: vec![m, n] })?;
    if m > 0 && n > 0 && k > 0 {
        check_len(op, "a", extent(op, m, k, a.rs, a.cs)?, a.data.len())?;
        let last = counts.len().saturating_sub(1);
        let b_need = last
            .checked_mul(b_s.bs)
            .and_then(|s| s.checked_add(extent(op, k, n, b_s.rs, b_s.cs).ok()?))
            .ok_or(KernelError::ShapeOverflow {
                op,
                shape: vec![counts.len(), k, n],
            })?;
        check_len(op, "b", b_need, b.len())?;
    }
    Ok(m)
}

/// The output rows of a grouped product.
enum Out<'a, T> {
    /// Initialised rows, combined as `alpha·a·b + beta·c`.
    Init(&'a mut [T], T),
    /// Rows to write once (`beta = 0`), possibly uninitialised.
    Fresh(&'a mut [MaybeUninit<T>]),
}

impl<'a, T> Out<'a, T> {
    /// The first `mid` elements and the rest.
    fn split_at(self, mid: usize) -> (Self, Self)
    where
        T: Copy,
    {
        match self {
            Out::Init(c, beta) => {
                let (l, r) = c.split_at_mut(mid);
                (Out::Init(l, beta), Out::Init(r, beta))
            }
            Out::Fresh(c) => {
                let (l, r) = c.split_at_mut(mid);
                (Out::Fresh(l), Out::Fresh(r))
            }
        }
    }
    /// These `m × n` rows (row-major) as the output of `alpha · a · b`:
    /// combined with `beta`, or written once.
    #[allow(clippy::too_many_arguments)]
    fn product(
        self,
        precision: ProductPrecision,
        m: usize,
        n: usize,
        k: usize,
        alpha: T,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
    ) where
        T: Real,
    {
        match self {
            Out::Init(data, beta) => gemm_with(precision, m, n, k, alpha, a, b, beta, MatMut { data, rs: n, cs: 1 }),
            Out::Fresh(data) => {
                let threads = rayon::current_num_threads();
                product_into(threads, precision, m, n, k, alpha, &a, &b, data, None);
            }
        }
    }
}

/// Runs every non-empty segment's product into its rows of `c` (checked
/// operands; `c` holds exactly `Σ counts · n` elements), one task per
/// segment, in parallel when the work is large.
#[allow(clippy::too_many_arguments)]
fn run_segments<T: Real>(
    precision: ProductPrecision,
    counts: &[usize],
    k: usize,
    n: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &[T],
    b_s: BatchStrides,
    c: Out<'_, T>,
) {
    let m: usize = counts.iter().sum();
    if m == 0 || n == 0 {
        return;
    }
    // One task per non-empty segment, each owning its rows of C.
    let mut tasks = Vec::with_capacity(counts.len());
    let (mut rest, mut row) = (c, 0usize);
    for (e, &rows) in counts.iter().enumerate() {
        let (seg, tail) = rest.split_at(rows * n);
        rest = tail;
        if rows > 0 {
            tasks.push((e, row, rows, seg));
        }
        row += rows;
    }
    let run = |(e, row, rows, seg): (usize, usize, usize, Out<'_, T>)| {
        // With k == 0, gemm reads neither A nor B, which may then be empty.
        let a_e = MatRef {
            data: a.data.get(row * a.rs..).unwrap_or(&[]),
            rs: a.rs,
            cs: a.cs,
        };
        let b_e = MatRef {
            data: b.get(e * b_s.bs..).unwrap_or(&[]),
            rs: b_s.rs,
            cs: b_s.cs,
        };
        seg.product(precision, rows, n, k, alpha, a_e, b_e);
    };
    if tasks.len() > 1 && parallel(m.saturating_mul(n).saturating_mul(k)) {
        tasks.into_par_iter().for_each(run);
    } else {
        tasks.into_iter().for_each(run);
    }
}

/// Grouped transposed product (the weight gradient of [`grouped_gemm`]): for
/// each segment `e`, `c[e] = alpha · a[seg e]ᵀ · b[seg e] + beta · c[e]`.
///
/// - `a`: `M × m` (any strides), `b`: `M × n` (any strides), `M = Σ counts`.
/// - `c`: `E` row-major `m × n` matrices back to back (`c.len() == E·m·n`).
///
/// An empty segment gives `c[e] = beta · c[e]`: zero when `beta == 0`, so an
/// expert that received no rows gets a zero gradient. The operands are read
/// at `precision`.
#[allow(clippy::too_many_arguments)]
pub fn grouped_gemm_tn<T: Real>(
    precision: ProductPrecision,
    counts: &[usize],
    m: usize,
    n: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "grouped_gemm_tn";
    let len = check_grouped_tn(OP, counts, m, n, &a, &b)?;
    index::check_len(OP, "c", len, c.len())?;
    run_experts_tn(precision, counts, m, n, alpha, &a, &b, Out::Init(c, beta));
    Ok(())
}

/// [`grouped_gemm_tn`] with `beta = 0` into a new buffer of `E` matrices,
/// each written once (an empty segment's with zeros), not after zeroing the
/// whole buffer; the same bits.
#[allow(clippy::too_many_arguments)]
pub fn grouped_gemm_tn_new<T: Real>(
    precision: ProductPrecision,
    counts: &[usize],
    m: usize,
    n: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) -> Result<Vec<T>, KernelError> {
    let len = check_grouped_tn("grouped_gemm_tn_new", counts, m, n, &a, &b)?;
    // Each expert's m·n matrix is written by run_experts_tn; they tile the output.
    Ok(written_once(len, |out| {
        run_experts_tn(precision, counts, m, n, alpha, &a, &b, Out::Fresh(out))
    }))
}

/// Checks a grouped transposed product's operands (see
/// [`grouped_gemm_tn`]) and returns the output's length `E·m·n`.
fn check_grouped_tn<T>(
    op: &'static str,
    counts: &[usize],
    m: usize,
    n: usize,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
) -> Result<usize, KernelError> {
    let rows = total_rows(op, counts)?;
    let per = m
        .checked_mul(n)
        .ok_or(KernelError::ShapeOverflow { op, shape: vec![m, n] })?;
    let len = per.checked_mul(counts.len()).ok_or(KernelError::ShapeOverflow {
        op,
        shape: vec![counts.len(), m, n],
    })?;
    if per > 0 {
        check_len(op, "a", extent(op, rows, m, a.rs, a.cs)?, a.data.len())?;
        check_len(op, "b", extent(op, rows, n, b.rs, b.cs)?, b.data.len())?;
    }
    Ok(len)
}

/// Runs every expert's `a[seg e]ᵀ · b[seg e]` into its `m × n` matrix of
/// `c` (checked operands; `c` holds exactly `E·m·n` elements), one task
/// per expert, in parallel when the work is large.
#[allow(clippy::too_many_arguments)]
fn run_experts_tn<T: Real>(
    precision: ProductPrecision,
    counts: &[usize],
    m: usize,
    n: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: Out<'_, T>,
) {
    let per = m * n;
    if per == 0 {
        return;
    }
    let mut tasks = Vec::with_capacity(counts.len());
    let (mut rest, mut start) = (c, 0usize);
    for &r in counts {
        let (c_e, tail) = rest.split_at(per);
        rest = tail;
        tasks.push((c_e, r, start));
        start += r;
    }
    let run = |(c_e, r, start): (Out<'_, T>, usize, usize)| {
        // Rows of segment e as the k dimension: aᵀ is m × r with swapped strides.
        let at = MatRef {
            data: if r > 0 { &a.data[start * a.rs..] } else { &[] },
            rs: a.cs,
            cs: a.rs,
        };
        let b_e = MatRef {
            data: if r > 0 { &b.data[start * b.rs..] } else { &[] },
            rs: b.rs,
            cs: b.cs,
        };
        c_e.product(precision, m, n, r, alpha, at, b_e);
    };
    let work = start.saturating_mul(per);
    if counts.len() > 1 && parallel(work) {
        tasks.into_par_iter().for_each(run);
    } else {
        tasks.into_iter().for_each(run);
    }
}

/// Rows of `y` (`y.len() / d` of them) that `rows` may name, checked: a
/// negative entry means "no row" (a dropped copy), others must be below it.
fn check_rows(op: &'static str, rows: &[i64], m: usize) -> Result<(), KernelError> {
    match rows.iter().find(|&&r| r >= 0 && r as u64 >= m as u64) {
        Some(&r) => Err(KernelError::IndexOutOfBounds { op, index: r, size: m }),
        None => Ok(()),
    }
}

/// Checks `y` (M×d), `rows`/`w` (N·K) and a token-sized buffer (N×d); returns (M, N).
fn check_combine<T>(
    op: &'static str,
    y: &[T],
    d: usize,
    rows: &[i64],
    w: &[T],
    k: usize,
    tok: (&'static str, usize),
) -> Result<(usize, usize), KernelError> {
    if d == 0 || !y.len().is_multiple_of(d) {
        return Err(KernelError::LengthMismatch {
            op,
            buffer: "y",
            expected: if d == 0 { 0 } else { y.len().div_ceil(d) * d },
            got: y.len(),
        });
    }
    if k == 0 || !rows.len().is_multiple_of(k) {
        return Err(KernelError::LengthMismatch {
            op,
            buffer: "rows",
            expected: if k == 0 { 0 } else { rows.len().div_ceil(k) * k },
            got: rows.len(),
        });
    }
    let (m, n) = (y.len() / d, rows.len() / k);
    if w.len() != rows.len() {
        return Err(KernelError::LengthMismatch {
            op,
            buffer: "w",
            expected: rows.len(),
            got: w.len(),
        });
    }
    if tok.1 != n * d {
        return Err(KernelError::LengthMismatch {
            op,
            buffer: tok.0,
            expected: n * d,
            got: tok.1,
        });
    }
    check_rows(op, rows, m)?;
    Ok((m, n))
}

/// Weighted combine of expert output rows into tokens:
/// `out[t] = Σ_k w[t·K + k] · y[rows[t·K + k]]`, skipping negative rows.
///
/// `y`: M×d row-major; `rows`, `w`: N·K (row-major `[N, K]`); `out`: N×d,
/// overwritten. Parallel over tokens for large inputs.
pub fn combine_rows<T: Real>(
    y: &[T],
    d: usize,
    rows: &[i64],
    w: &[T],
    k: usize,
    out: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "combine_rows";
    check_combine(OP, y, d, rows, w, k, ("out", out.len()))?;
    let token = |(t, o): (usize, &mut [T])| {
        o.iter_mut().for_each(|v| *v = T::zero());
        for j in t * k..(t + 1) * k {
            if rows[j] >= 0 {
                let (src, wj) = (&y[rows[j] as usize * d..][..d], w[j]);
                o.iter_mut().zip(src).for_each(|(v, &s)| *v += wj * s);
            }
        }
    };
    if parallel(rows.len().saturating_mul(d) * 64) {
        out.par_chunks_mut(d).enumerate().for_each(token);
    } else {
        out.chunks_mut(d).enumerate().for_each(token);
    }
    Ok(())
}

/// Gradients of [`combine_rows`] for the output gradient `g` (N×d):
/// `dy[r] = Σ_{copies j with rows[j] = r} w[j] · g[token(j)]` (rows no copy
/// names get zero) and `dw[j] = ⟨g[token(j)], y[rows[j]]⟩` (zero for skipped
/// copies). `dy` (M×d) and `dw` (N·K) are overwritten. Each `dy` row adds its
/// copies in copy order, so results are deterministic; parallel over rows.
#[allow(clippy::too_many_arguments)]
pub fn combine_rows_backward<T: Real>(
    y: &[T],
    d: usize,
    rows: &[i64],
    w: &[T],
    k: usize,
    g: &[T],
    dy: &mut [T],
    dw: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "combine_rows_backward";
    let (m, _) = check_combine(OP, y, d, rows, w, k, ("g", g.len()))?;
    check_len(OP, "dy", y.len(), dy.len())?;
    check_len(OP, "dw", w.len(), dw.len())?;
    // Copies grouped by the row they read (CSR), in copy order.
    let mut start = vec![0usize; m + 1];
    rows.iter()
        .filter(|&&r| r >= 0)
        .for_each(|&r| start[r as usize + 1] += 1);
    for i in 0..m {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut copies = vec![0usize; start[m]];
    for (j, &r) in rows.iter().enumerate() {
        if r >= 0 {
            copies[fill[r as usize]] = j;
            fill[r as usize] += 1;
        }
    }
    let row_grad = |(r, out): (usize, &mut [T])| {
        out.iter_mut().for_each(|v| *v = T::zero());
        for &j in &copies[start[r]..start[r + 1]] {
            let (src, wj) = (&g[(j / k) * d..][..d], w[j]);
            out.iter_mut().zip(src).for_each(|(v, &s)| *v += wj * s);
        }
    };
    let weight_grad = |(j, out): (usize, &mut T)| {
        *out = if rows[j] >= 0 {
            let (gt, yr) = (&g[(j / k) * d..][..d], &y[rows[j] as usize * d..][..d]);
            gt.iter().zip(yr).fold(T::zero(), |acc, (&a, &b)| acc + a * b)
        } else {
            T::zero()
        };
    };
    if parallel(rows.len().saturating_mul(d) * 64) {
        dy[..y.len()].par_chunks_mut(d).enumerate().for_each(row_grad);
        dw[..w.len()].par_iter_mut().enumerate().for_each(weight_grad);
    } else {
        dy[..y.len()].chunks_mut(d).enumerate().for_each(row_grad);
        dw[..w.len()].iter_mut().enumerate().for_each(weight_grad);
    }
    Ok(())
}
