//! topk along the last axis and argmax along any axis.
//!
//! Both rank elements by one strict total order, so their results are unique
//! and reproducible: larger values first; NaN ranks above every number (as in
//! torch's sort and argmax); equal values (and NaNs among themselves) rank by
//! lower index first. torch leaves topk's tie order unspecified; ours is fixed.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::{check_len, Dims3, PAR_MIN_ELEMS};
use crate::error::KernelError;
use crate::Real;

/// Up to this `k` topk keeps a sorted buffer and inserts into it; above it,
/// it keeps a heap of the best `k` (O(n log k) worst case, and on typical data
/// one comparison per rejected element either way).
const INSERTION_MAX_K: usize = 16;

/// Whether `(a, ia)` ranks strictly before `(b, ib)` in the order above.
#[inline]
fn before<T: Real>(a: T, ia: usize, b: T, ib: usize) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => ia < ib,
        (true, false) => true,
        (false, true) => false,
        (false, false) => a > b || (a == b && ia < ib),
    }
}

/// The `k` largest entries of each row, largest first, with their positions.
///
/// `src`: `[rows, n]`; `values`: `[rows, k]`; `indices`: `[rows, k]` as `i64`.
/// Order and ties as in the module docs: equal values come out in ascending
/// index order. `k` may be 0; `k > n` is an error.
pub fn topk<T: Real>(
    src: &[T],
    rows: usize,
    n: usize,
    k: usize,
    values: &mut [T],
    indices: &mut [i64],
) -> Result<(), KernelError> {
    const OP: &str = "topk";
    if k > n {
        return Err(KernelError::KTooLarge { op: OP, k, size: n });
    }
    let dims = Dims3::new(rows, n, 1);
    check_len(OP, "src", dims.numel(OP)?, src.len())?;
    let out_len = dims.with_dim(k).numel(OP)?;
    check_len(OP, "values", out_len, values.len())?;
    check_len(OP, "indices", out_len, indices.len())?;
    if out_len == 0 {
        return Ok(());
    }
    let row_topk = |((v, ix), x): ((&mut [T], &mut [i64]), &[T])| {
        if k <= INSERTION_MAX_K {
            topk_insertion(x, v, ix);
        } else {
            topk_heap(x, v, ix);
        }
    };
    if src.len() >= PAR_MIN_ELEMS {
        let min_rows = (PAR_MIN_ELEMS / 4 / n).max(1);
        values
            .par_chunks_mut(k)
            .zip(indices.par_chunks_mut(k))
            .zip(src.par_chunks(n))
            .with_min_len(min_rows)
            .for_each(row_topk);
    } else {
        values
            .chunks_mut(k)
            .zip(indices.chunks_mut(k))
            .zip(src.chunks(n))
            .for_each(row_topk);
    }
    Ok(())
}

/// One pass keeping the best `k` seen so far sorted in `v` / `ix`.
///
/// Position `p` is larger than every kept index, so for a non-NaN `a`
/// "ranks before `(b, i)`" is just `a > b` (a tie goes to the kept entry, and
/// `a > NaN` is false as it should be); only a NaN needs the full order.
fn topk_insertion<T: Real>(x: &[T], v: &mut [T], ix: &mut [i64]) {
    let k = v.len();
    let mut len = 0;
    for (p, &a) in x.iter().enumerate() {
        let ranks_before = |b: T, i: i64| if a.is_nan() { before(a, p, b, i as usize) } else { a > b };
        let mut s = if len < k {
            len += 1;
            len - 1
        } else if ranks_before(v[k - 1], ix[k - 1]) {
            k - 1
        } else {
            continue;
        };
        // Shift worse entries down until `a` sits after everything that ranks before it.
        while s > 0 && ranks_before(v[s - 1], ix[s - 1]) {
            v[s] = v[s - 1];
            ix[s] = ix[s - 1];
            s -= 1;
        }
        v[s] = a;
        ix[s] = p as i64;
    }
}

/// Keeps the best `k` in a binary heap whose root is the worst kept entry, then
/// sorts them.
fn topk_heap<T: Real>(x: &[T], v: &mut [T], ix: &mut [i64]) {
    let k = v.len();
    // `worse(a, b)`: a ranks after b, so the heap root is the entry to evict.
    let worse = |a: &(T, usize), b: &(T, usize)| before(b.0, b.1, a.0, a.1);
    let mut heap: Vec<(T, usize)> = Vec::with_capacity(k);
    for (p, &a) in x.iter().enumerate() {
        if heap.len() < k {
            heap.push((a, p));
            let mut c = heap.len() - 1;
            while c > 0 && worse(&heap[c], &heap[(c - 1) / 2]) {
                heap.swap(c, (c - 1) / 2);
                c = (c - 1) / 2;
            }
        } else if before(a, p, heap[0].0, heap[0].1) {
            heap[0] = (a, p);
            let mut c = 0;
            loop {
                let (l, r) = (2 * c + 1, 2 * c + 2);
                let mut w = c;
                if l < k && worse(&heap[l], &heap[w]) {
                    w = l;
                }
                if r < k && worse(&heap[r], &heap[w]) {
                    w = r;
                }
                if w == c {
                    break;
                }
                heap.swap(c, w);
                c = w;
            }
        }
    }
    heap.sort_unstable_by(|a, b| {
        if a.1 == b.1 {
            Ordering::Equal
        } else if before(a.0, a.1, b.0, b.1) {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    });
    for ((vo, io), &(a, p)) in v.iter_mut().zip(ix.iter_mut()).zip(&heap) {
        *vo = a;
        *io = p as i64;
    }
}

/// Position of the largest entry along the axis: `out[o, i] = argmax_d src[o, d, i]`.
///
/// `src`: `[outer, dim, inner]`; `out`: `[outer, inner]` as `i64`. The first
/// maximum wins on ties; a NaN counts as the maximum (as in torch). An empty
/// axis is an error.
pub fn argmax<T: Real>(src: &[T], dims: Dims3, out: &mut [i64]) -> Result<(), KernelError> {
    const OP: &str = "argmax";
    check_len(OP, "src", dims.numel(OP)?, src.len())?;
    check_len(OP, "out", dims.with_dim(1).numel(OP)?, out.len())?;
    if dims.dim == 0 {
        return Err(KernelError::EmptyDim { op: OP });
    }
    let Dims3 { dim, inner, .. } = dims;
    if inner == 0 || dims.outer == 0 {
        return Ok(());
    }
    // One slab [dim, inner] → one output row [inner]; keep the best so far per column.
    let slab_argmax = |(y, x): (&mut [i64], &[T])| {
        y.fill(0);
        let mut best: Vec<T> = x[..inner].to_vec();
        for d in 1..dim {
            let row = &x[d * inner..(d + 1) * inner];
            for ((b, yi), &a) in best.iter_mut().zip(y.iter_mut()).zip(row) {
                if before(a, d, *b, *yi as usize) {
                    *b = a;
                    *yi = d as i64;
                }
            }
        }
    };
    if src.len() >= PAR_MIN_ELEMS && dims.outer > 1 {
        let min_slabs = (PAR_MIN_ELEMS / 4 / (dim * inner)).max(1);
        out.par_chunks_mut(inner)
            .zip(src.par_chunks(dim * inner))
            .with_min_len(min_slabs)
            .for_each(slab_argmax);
    } else {
        out.chunks_mut(inner).zip(src.chunks(dim * inner)).for_each(slab_argmax);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::index::test_util::{rand_vec, rng};

    /// Reference: stable sort of the whole row by descending value, NaN first.
    fn ref_topk(x: &[f64], k: usize) -> (Vec<f64>, Vec<i64>) {
        let mut p: Vec<usize> = (0..x.len()).collect();
        p.sort_by(|&a, &b| match (x[a].is_nan(), x[b].is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => x[b].partial_cmp(&x[a]).unwrap(),
        });
        p.truncate(k);
        (p.iter().map(|&i| x[i]).collect(), p.iter().map(|&i| i as i64).collect())
    }

    fn check_rows(x: &[f64], rows: usize, n: usize, k: usize) {
        let mut v = vec![0.0; rows * k];
        let mut ix = vec![0; rows * k];
        topk(x, rows, n, k, &mut v, &mut ix).unwrap();
        for r in 0..rows {
            let (wv, wi) = ref_topk(&x[r * n..(r + 1) * n], k);
            // Compare bits so NaN == NaN.
            let bits = |s: &[f64]| s.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v[r * k..(r + 1) * k]), bits(&wv), "row {r} n {n} k {k}");
            assert_eq!(&ix[r * k..(r + 1) * k], &wi[..], "row {r} n {n} k {k}");
        }
    }

    #[test]
    fn topk_matches_stable_sort_for_small_and_large_k() {
        let mut r = rng(31);
        for (rows, n) in [(3, 1), (5, 8), (4, 64), (200, 300)] {
            let x = rand_vec(&mut r, rows * n);
            for k in [0, 1, 2.min(n), n / 2, n.min(17), n] {
                check_rows(&x, rows, n, k);
            }
        }
    }

    #[test]
    fn topk_breaks_ties_by_lower_index_and_ranks_nan_first() {
        let nan = f64::NAN;
        // Many ties (values from a small set) exercise both code paths.
        let mut r = rng(32);
        let x: Vec<f64> = rand_vec(&mut r, 6 * 50)
            .into_iter()
            .map(|a| (a * 3.0).round())
            .collect();
        for k in [1, 3, 16, 17, 40, 50] {
            check_rows(&x, 6, 50, k);
        }
        let x = [1.0, nan, 2.0, 2.0, nan, 1.0];
        for k in [3, 6] {
            check_rows(&x, 1, 6, k);
        }
        let mut v = [0.0; 4];
        let mut ix = [0; 4];
        topk(&x, 1, 6, 4, &mut v, &mut ix).unwrap();
        assert_eq!(ix, [1, 4, 2, 3]);
    }

    #[test]
    fn topk_on_ascending_input_worst_case_for_insertion() {
        let x: Vec<f64> = (0..100).map(|a| a as f64).collect();
        check_rows(&x, 1, 100, 16);
        check_rows(&x, 1, 100, 30);
    }

    #[test]
    fn topk_bad_k_and_lengths() {
        let mut v = [0.0f32; 4];
        let mut ix = [0i64; 4];
        assert_eq!(
            topk(&[1.0f32; 3], 1, 3, 4, &mut v, &mut ix).unwrap_err(),
            KernelError::KTooLarge {
                op: "topk",
                k: 4,
                size: 3
            }
        );
        assert!(matches!(
            topk(&[1.0f32; 4], 1, 4, 2, &mut v, &mut ix),
            Err(KernelError::LengthMismatch { buffer: "values", .. })
        ));
    }

    #[test]
    fn argmax_matches_reference_on_every_axis() {
        let mut r = rng(33);
        for shape in [[2, 3, 4], [1, 1, 1], [40, 50, 30]] {
            // Rounded values give ties, so the first-maximum rule is tested.
            let x: Vec<f64> = rand_vec(&mut r, shape.iter().product())
                .into_iter()
                .map(|a| (a * 4.0).round())
                .collect();
            for axis in 0..3 {
                let d = Dims3::from_shape(&shape, axis).unwrap();
                let mut got = vec![-1; d.outer * d.inner];
                argmax(&x, d, &mut got).unwrap();
                for o in 0..d.outer {
                    for i in 0..d.inner {
                        let at = |e: usize| x[(o * d.dim + e) * d.inner + i];
                        let mut best = 0;
                        for e in 1..d.dim {
                            if at(e) > at(best) {
                                best = e;
                            }
                        }
                        assert_eq!(got[o * d.inner + i], best as i64, "{shape:?} axis {axis}");
                    }
                }
            }
        }
    }

    #[test]
    fn argmax_nan_and_empty() {
        let mut y = [0i64; 1];
        argmax(&[1.0, f32::NAN, 5.0, f32::NAN], Dims3::new(1, 4, 1), &mut y).unwrap();
        assert_eq!(y, [1]);
        assert_eq!(
            argmax::<f32>(&[], Dims3::new(1, 0, 1), &mut y).unwrap_err(),
            KernelError::EmptyDim { op: "argmax" }
        );
    }
}
