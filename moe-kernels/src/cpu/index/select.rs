//! index_select along an axis, its backward index_add, and the embedding
//! lookup and its backward as the axis-0 special case.

use std::ops::AddAssign;

use rayon::prelude::*;

use super::{check_indices, check_len, Dims3, PAR_MIN_ELEMS};
use crate::error::KernelError;

/// `out[o, j, i] = src[o, idx[j], i]`.
///
/// `src`: `[outer, dim, inner]` (`src_dims`), `idx`: `[n]`, `out`: `[outer, n, inner]`.
/// Every index must lie in `0..dim`.
pub fn index_select<T: Copy + Send + Sync>(
    src: &[T],
    src_dims: Dims3,
    idx: &[i64],
    out: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "index_select";
    check_len(OP, "src", src_dims.numel(OP)?, src.len())?;
    check_len(OP, "out", src_dims.with_dim(idx.len()).numel(OP)?, out.len())?;
    check_indices(OP, idx, src_dims.dim)?;
    let Dims3 { dim, inner, .. } = src_dims;
    if inner == 0 || idx.is_empty() {
        return Ok(());
    }
    let n = idx.len();
    // One output row of `inner` elements per (o, j); rows are independent copies.
    let copy_row = |(r, row): (usize, &mut [T])| {
        let (o, j) = (r / n, r % n);
        // Indices were checked above.
        let s = (o * dim + idx[j] as usize) * inner;
        row.copy_from_slice(&src[s..s + inner]);
    };
    if out.len() >= PAR_MIN_ELEMS {
        let min_rows = (PAR_MIN_ELEMS / 4 / inner).max(1);
        out.par_chunks_mut(inner)
            .with_min_len(min_rows)
            .enumerate()
            .for_each(copy_row);
    } else {
        out.chunks_mut(inner).enumerate().for_each(copy_row);
    }
    Ok(())
}

/// `grad_src[o, idx[j], i] += grad_out[o, j, i]` for every j: the backward of
/// [`index_select`] (torch's `index_add_` along an axis).
///
/// `grad_out`: `[outer, n, inner]`, `idx`: `[n]`, `grad_src`: `[outer, dim, inner]`
/// (`src_dims`), accumulated into. Contributions to one row are added in
/// ascending `j`, and threads split only disjoint rows of `grad_src`, so the
/// result is the same as a serial loop over `j`, bit for bit, on any number of
/// threads. Indices are all checked before anything is written.
pub fn index_add<T: Copy + AddAssign + Send + Sync>(
    grad_out: &[T],
    idx: &[i64],
    src_dims: Dims3,
    grad_src: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "index_add";
    check_len(OP, "grad_src", src_dims.numel(OP)?, grad_src.len())?;
    check_len(OP, "grad_out", src_dims.with_dim(idx.len()).numel(OP)?, grad_out.len())?;
    check_indices(OP, idx, src_dims.dim)?;
    let Dims3 { dim, inner, .. } = src_dims;
    if inner == 0 || idx.is_empty() || dim == 0 {
        return Ok(());
    }
    let n = idx.len();
    let (starts, order) = bucket_by_index(idx, dim);
    // Row r = (o, d) of grad_src sums rows (o, j) of grad_out for the j that
    // point at d, in ascending j (bucket_by_index keeps them sorted).
    let add_row = |(r, row): (usize, &mut [T])| {
        let (o, d) = (r / dim, r % dim);
        for &j in &order[starts[d]..starts[d + 1]] {
            let s = (o * n + j) * inner;
            for (g, &x) in row.iter_mut().zip(&grad_out[s..s + inner]) {
                *g += x;
            }
        }
    };
    if grad_out.len().max(grad_src.len()) >= PAR_MIN_ELEMS {
        let min_rows = (PAR_MIN_ELEMS / 4 / inner).max(1);
        grad_src
            .par_chunks_mut(inner)
            .with_min_len(min_rows)
            .enumerate()
            .for_each(add_row);
    } else {
        grad_src.chunks_mut(inner).enumerate().for_each(add_row);
    }
    Ok(())
}

/// Groups positions `j` by `idx[j]` (a stable counting sort): the positions
/// pointing at row `d` are `order[starts[d]..starts[d + 1]]`, ascending; an
/// index outside `0..dim` is an error. The summation order of [`index_add`],
/// for backends that run it elsewhere (the CUDA kernel adds in this order).
pub fn group_by_index(op: &'static str, idx: &[i64], dim: usize) -> Result<(Vec<usize>, Vec<usize>), KernelError> {
    check_indices(op, idx, dim)?;
    Ok(bucket_by_index(idx, dim))
}

/// [`group_by_index`] for indices already checked to lie in `0..dim`.
fn bucket_by_index(idx: &[i64], dim: usize) -> (Vec<usize>, Vec<usize>) {
    let mut starts = vec![0usize; dim + 1];
    for &i in idx {
        starts[i as usize + 1] += 1;
    }
    for d in 0..dim {
        starts[d + 1] += starts[d];
    }
    let mut next = starts.clone();
    let mut order = vec![0usize; idx.len()];
    for (j, &i) in idx.iter().enumerate() {
        let slot = &mut next[i as usize];
        order[*slot] = j;
        *slot += 1;
    }
    (starts, order)
}

/// Embedding lookup: `out[n, :] = weight[ids[n], :]`.
///
/// `weight`: `[vocab, width]`, `ids`: `[N]` (any id shape, flattened),
/// `out`: `[N, width]`. Every id must lie in `0..vocab`.
pub fn embedding<T: Copy + Send + Sync>(
    weight: &[T],
    vocab: usize,
    width: usize,
    ids: &[i64],
    out: &mut [T],
) -> Result<(), KernelError> {
    index_select(weight, Dims3::new(1, vocab, width), ids, out).map_err(|e| rename(e, "embedding"))
}

/// Backward of [`embedding`]: `grad_weight[ids[n], :] += grad_out[n, :]`.
///
/// `grad_out`: `[N, width]`, `ids`: `[N]`, `grad_weight`: `[vocab, width]`,
/// accumulated into. Deterministic as [`index_add`]: each vocabulary row sums
/// the rows that look it up in ascending `n`, and threads own disjoint rows.
pub fn embedding_backward<T: Copy + AddAssign + Send + Sync>(
    grad_out: &[T],
    ids: &[i64],
    vocab: usize,
    width: usize,
    grad_weight: &mut [T],
) -> Result<(), KernelError> {
    index_add(grad_out, ids, Dims3::new(1, vocab, width), grad_weight).map_err(|e| rename(e, "embedding_backward"))
}

/// Reports an error under the public op's name rather than the helper's.
fn rename(e: KernelError, op: &'static str) -> KernelError {
    match e {
        KernelError::IndexOutOfBounds { index, size, .. } => KernelError::IndexOutOfBounds { op, index, size },
        KernelError::LengthMismatch {
            buffer, expected, got, ..
        } => KernelError::LengthMismatch {
            op,
            buffer,
            expected,
            got,
        },
        KernelError::ShapeOverflow { shape, .. } => KernelError::ShapeOverflow { op, shape },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::index::test_util::{rand_idx, rand_vec, rng};

    /// Reference index_select: the definition as nested loops.
    fn ref_select(src: &[f64], d: Dims3, idx: &[i64]) -> Vec<f64> {
        let mut out = Vec::new();
        for o in 0..d.outer {
            for &j in idx {
                for i in 0..d.inner {
                    out.push(src[(o * d.dim + j as usize) * d.inner + i]);
                }
            }
        }
        out
    }

    /// Reference index_add: one scalar add per (o, j, i), j ascending.
    fn ref_add(g: &[f64], idx: &[i64], d: Dims3, acc: &mut [f64]) {
        let n = idx.len();
        for o in 0..d.outer {
            for (j, &t) in idx.iter().enumerate() {
                for i in 0..d.inner {
                    acc[(o * d.dim + t as usize) * d.inner + i] += g[(o * n + j) * d.inner + i];
                }
            }
        }
    }

    #[test]
    fn index_select_matches_reference_on_every_axis() {
        let mut r = rng(1);
        let shape = [3, 5, 4];
        let src = rand_vec(&mut r, 60);
        for axis in 0..3 {
            let d = Dims3::from_shape(&shape, axis).unwrap();
            let idx = rand_idx(&mut r, 7, d.dim);
            let mut out = vec![0.0; d.outer * 7 * d.inner];
            index_select(&src, d, &idx, &mut out).unwrap();
            assert_eq!(out, ref_select(&src, d, &idx), "axis {axis}");
        }
    }

    #[test]
    fn index_select_large_runs_parallel_path_and_matches() {
        let mut r = rng(2);
        let d = Dims3::new(3, 50, 300);
        let src = rand_vec(&mut r, d.numel("t").unwrap());
        let idx = rand_idx(&mut r, 80, d.dim);
        let mut out = vec![0.0; 3 * 80 * 300];
        index_select(&src, d, &idx, &mut out).unwrap();
        assert_eq!(out, ref_select(&src, d, &idx));
    }

    #[test]
    fn index_add_matches_reference_and_accumulates() {
        let mut r = rng(3);
        for (d, n) in [(Dims3::new(2, 5, 3), 9), (Dims3::new(4, 40, 300), 200)] {
            let idx = rand_idx(&mut r, n, d.dim);
            let g = rand_vec(&mut r, d.outer * n * d.inner);
            let init = rand_vec(&mut r, d.numel("t").unwrap());
            let mut got = init.clone();
            index_add(&g, &idx, d, &mut got).unwrap();
            let mut want = init;
            ref_add(&g, &idx, d, &mut want);
            // Same additions in the same order: bit-identical, not just close.
            assert_eq!(got, want);
        }
    }

    #[test]
    fn index_add_is_the_adjoint_of_index_select() {
        // <select(x), g> == <x, index_add(g)> for every x, g.
        let mut r = rng(4);
        let d = Dims3::new(3, 6, 5);
        let idx = rand_idx(&mut r, 11, d.dim);
        let x = rand_vec(&mut r, d.numel("t").unwrap());
        let g = rand_vec(&mut r, 3 * 11 * 5);
        let mut y = vec![0.0; g.len()];
        index_select(&x, d, &idx, &mut y).unwrap();
        let mut gx = vec![0.0; x.len()];
        index_add(&g, &idx, d, &mut gx).unwrap();
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&gx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
    }

    #[test]
    fn group_by_index_lists_each_rows_positions_in_order() {
        let (starts, order) = group_by_index("t", &[2, 0, 2, 1, 2], 4).unwrap();
        assert_eq!(starts, [0, 1, 2, 5, 5]);
        assert_eq!(order, [1, 3, 0, 2, 4]);
        let e = group_by_index("t", &[0, 4], 4).unwrap_err();
        assert_eq!(
            e,
            KernelError::IndexOutOfBounds {
                op: "t",
                index: 4,
                size: 4
            }
        );
        assert!(group_by_index("t", &[-1], 4).is_err());
    }

    #[test]
    fn embedding_round_trip_and_repeated_ids() {
        let (v, w) = (4, 3);
        let weight: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let ids = [2, 0, 2];
        let mut out = vec![0.0f32; 9];
        embedding(&weight, v, w, &ids, &mut out).unwrap();
        assert_eq!(out, [6., 7., 8., 0., 1., 2., 6., 7., 8.]);
        let g: Vec<f32> = (1..=9).map(|x| x as f32).collect();
        let mut gw = vec![0.0f32; 12];
        embedding_backward(&g, &ids, v, w, &mut gw).unwrap();
        // Row 2 receives rows 0 and 2 of g; row 0 receives row 1; others stay zero.
        assert_eq!(gw, [4., 5., 6., 0., 0., 0., 1. + 7., 2. + 8., 3. + 9., 0., 0., 0.]);
    }

    #[test]
    fn embedding_backward_bit_identical_across_thread_counts() {
        let mut r = rng(5);
        let (v, w, n) = (300, 128, 2000);
        let ids = rand_idx(&mut r, n, v);
        let g: Vec<f32> = rand_vec(&mut r, n * w).into_iter().map(|x| x as f32).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut gw = vec![0.0f32; v * w];
            pool.install(|| embedding_backward(&g, &ids, v, w, &mut gw).unwrap());
            gw
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn bad_indices_and_lengths_are_errors_and_write_nothing() {
        let w = [1.0f32; 6];
        let mut out = [0.0f32; 4];
        let e = embedding(&w, 3, 2, &[1, 3], &mut out).unwrap_err();
        assert_eq!(
            e,
            KernelError::IndexOutOfBounds {
                op: "embedding",
                index: 3,
                size: 3
            }
        );
        assert!(embedding(&w, 3, 2, &[-1, 0], &mut out).is_err());
        assert_eq!(out, [0.0; 4]);
        let e = embedding(&w, 3, 2, &[0], &mut out).unwrap_err();
        assert!(matches!(e, KernelError::LengthMismatch { buffer: "out", .. }));
        let mut gw = [0.0f32; 6];
        assert!(embedding_backward(&[1.0; 4], &[0, 9], 3, 2, &mut gw).is_err());
        assert_eq!(gw, [0.0; 6]);
    }

    #[test]
    fn empty_inputs_are_fine() {
        let mut out: [f32; 0] = [];
        index_select(&[1.0f32, 2.0], Dims3::new(1, 2, 1), &[], &mut out).unwrap();
        let mut g = [0.0f32; 2];
        index_add(&[], &[], Dims3::new(1, 2, 1), &mut g).unwrap();
        // An index into an empty axis is still out of bounds.
        assert!(index_select(&[] as &[f32], Dims3::new(1, 0, 1), &[0], &mut [0.0]).is_err());
    }
}
