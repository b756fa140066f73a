//! gather and scatter_add along an axis (torch semantics), each the other's
//! backward.

use std::ops::AddAssign;

use rayon::prelude::*;

use super::{check_indices, check_len, Dims3, PAR_MIN_ELEMS};
use crate::error::KernelError;

/// `out[o, j, i] = src[o, index[o, j, i], i]` (torch.gather along the axis).
///
/// `src`: `[outer, dim, inner]` (`src_dims`); `index` and `out`:
/// `[outer, k, inner]` with `k` = `index_dim`. torch also accepts an index that
/// is smaller than `src` in the other axes; callers narrow `src` to the index's
/// extent first. Every index must lie in `0..dim`.
pub fn gather<T: Copy + Send + Sync>(
    src: &[T],
    src_dims: Dims3,
    index: &[i64],
    index_dim: usize,
    out: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "gather";
    let idx_numel = src_dims.with_dim(index_dim).numel(OP)?;
    check_len(OP, "src", src_dims.numel(OP)?, src.len())?;
    check_len(OP, "index", idx_numel, index.len())?;
    check_len(OP, "out", idx_numel, out.len())?;
    let Dims3 { dim, inner, .. } = src_dims;
    check_indices(OP, index, dim)?;
    if idx_numel == 0 {
        return Ok(());
    }
    // One outer slab per task: src [dim, inner] → out [k, inner]. Whole slabs
    // keep integer division out of the per-element loop.
    let slab_out = index_dim * inner;
    let gather_slab = |((ys, is), xs): ((&mut [T], &[i64]), &[T])| {
        for (yrow, irow) in ys.chunks_exact_mut(inner).zip(is.chunks_exact(inner)) {
            for (i, (y, &t)) in yrow.iter_mut().zip(irow).enumerate() {
                // Checked above.
                *y = xs[t as usize * inner + i];
            }
        }
    };
    let slab_in = dim * inner;
    // idx_numel > 0 and checked indices imply dim > 0 and inner > 0.
    if idx_numel >= PAR_MIN_ELEMS && src_dims.outer > 1 {
        let min_slabs = (PAR_MIN_ELEMS / 4 / slab_out).max(1);
        out.par_chunks_mut(slab_out)
            .zip(index.par_chunks(slab_out))
            .zip(src.par_chunks(slab_in))
            .with_min_len(min_slabs)
            .for_each(gather_slab);
    } else {
        out.chunks_mut(slab_out)
            .zip(index.chunks(slab_out))
            .zip(src.chunks(slab_in))
            .for_each(gather_slab);
    }
    Ok(())
}

/// `out[o, index[o, j, i], i] += src[o, j, i]` (torch.scatter_add_ along the
/// axis): the backward of [`gather`].
///
/// `out`: `[outer, dim, inner]` (`out_dims`), accumulated into; `index` and
/// `src`: `[outer, k, inner]` with `k` = `src_dim`. Contributions to one element
/// are added in ascending `j`; threads split only disjoint `outer` slabs, so the
/// result is bit-identical to a serial loop on any number of threads. Indices
/// are all checked before anything is written.
pub fn scatter_add<T: Copy + AddAssign + Send + Sync>(
    out: &mut [T],
    out_dims: Dims3,
    index: &[i64],
    src: &[T],
    src_dim: usize,
) -> Result<(), KernelError> {
    const OP: &str = "scatter_add";
    let src_numel = out_dims.with_dim(src_dim).numel(OP)?;
    check_len(OP, "out", out_dims.numel(OP)?, out.len())?;
    check_len(OP, "index", src_numel, index.len())?;
    check_len(OP, "src", src_numel, src.len())?;
    let Dims3 { dim, inner, .. } = out_dims;
    // Validate everything first so a bad index leaves `out` untouched.
    check_indices(OP, index, dim)?;
    if src_numel == 0 {
        return Ok(());
    }
    let slab_in = src_dim * inner;
    let scatter_slab = |(slab, (isl, ssl)): (&mut [T], (&[i64], &[T]))| {
        for (irow, srow) in isl.chunks_exact(inner).zip(ssl.chunks_exact(inner)) {
            for (i, (&t, &x)) in irow.iter().zip(srow).enumerate() {
                // Checked above.
                slab[t as usize * inner + i] += x;
            }
        }
    };
    let slabs = out
        .chunks_mut(dim * inner)
        .zip(index.chunks(slab_in).zip(src.chunks(slab_in)));
    if src_numel >= PAR_MIN_ELEMS && out_dims.outer > 1 {
        let min_slabs = (PAR_MIN_ELEMS / 4 / slab_in).max(1);
        out.par_chunks_mut(dim * inner)
            .zip(index.par_chunks(slab_in).zip(src.par_chunks(slab_in)))
            .with_min_len(min_slabs)
            .for_each(scatter_slab);
    } else {
        slabs.for_each(scatter_slab);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::index::test_util::{rand_idx, rand_vec, rng};

    fn ref_gather(src: &[f64], d: Dims3, index: &[i64], k: usize) -> Vec<f64> {
        let mut out = vec![0.0; d.outer * k * d.inner];
        for o in 0..d.outer {
            for j in 0..k {
                for i in 0..d.inner {
                    let p = (o * k + j) * d.inner + i;
                    out[p] = src[(o * d.dim + index[p] as usize) * d.inner + i];
                }
            }
        }
        out
    }

    fn ref_scatter(out: &mut [f64], d: Dims3, index: &[i64], src: &[f64], k: usize) {
        for o in 0..d.outer {
            for j in 0..k {
                for i in 0..d.inner {
                    let p = (o * k + j) * d.inner + i;
                    out[(o * d.dim + index[p] as usize) * d.inner + i] += src[p];
                }
            }
        }
    }

    #[test]
    fn gather_matches_reference_on_every_axis_and_size() {
        let mut r = rng(11);
        for shape in [[2, 3, 4], [5, 1, 7], [40, 30, 40]] {
            let src = rand_vec(&mut r, shape.iter().product());
            for axis in 0..3 {
                let d = Dims3::from_shape(&shape, axis).unwrap();
                for k in [1, d.dim, d.dim + 2] {
                    let index = rand_idx(&mut r, d.outer * k * d.inner, d.dim);
                    let mut out = vec![0.0; index.len()];
                    gather(&src, d, &index, k, &mut out).unwrap();
                    assert_eq!(out, ref_gather(&src, d, &index, k), "{shape:?} axis {axis} k {k}");
                }
            }
        }
    }

    #[test]
    fn scatter_add_matches_reference_bit_for_bit() {
        let mut r = rng(12);
        for shape in [[2, 3, 4], [1, 6, 5], [50, 20, 40]] {
            for axis in 0..3 {
                let d = Dims3::from_shape(&shape, axis).unwrap();
                let k = d.dim + 3;
                let index = rand_idx(&mut r, d.outer * k * d.inner, d.dim);
                let src = rand_vec(&mut r, index.len());
                let init = rand_vec(&mut r, d.numel("t").unwrap());
                let mut got = init.clone();
                scatter_add(&mut got, d, &index, &src, k).unwrap();
                let mut want = init;
                ref_scatter(&mut want, d, &index, &src, k);
                assert_eq!(got, want, "{shape:?} axis {axis}");
            }
        }
    }

    #[test]
    fn scatter_add_is_the_adjoint_of_gather() {
        let mut r = rng(13);
        let d = Dims3::new(3, 4, 5);
        let k = 6;
        let index = rand_idx(&mut r, 3 * k * 5, d.dim);
        let x = rand_vec(&mut r, d.numel("t").unwrap());
        let g = rand_vec(&mut r, index.len());
        let mut y = vec![0.0; index.len()];
        gather(&x, d, &index, k, &mut y).unwrap();
        let mut gx = vec![0.0; x.len()];
        scatter_add(&mut gx, d, &index, &g, k).unwrap();
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&gx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
    }

    #[test]
    fn scatter_add_counts_with_integers() {
        // tokens per expert: scatter ones at the chosen expert ids.
        let ids = [2i64, 0, 2, 2, 1];
        let mut counts = [0i64; 4];
        scatter_add(&mut counts, Dims3::new(1, 4, 1), &ids, &[1; 5], 5).unwrap();
        assert_eq!(counts, [1, 1, 3, 0]);
    }

    #[test]
    fn bad_input_is_an_error() {
        let src = [1.0f32; 6];
        let mut out = [0.0f32; 2];
        let d = Dims3::new(2, 3, 1);
        let e = gather(&src, d, &[0, 3], 1, &mut out).unwrap_err();
        assert_eq!(
            e,
            KernelError::IndexOutOfBounds {
                op: "gather",
                index: 3,
                size: 3
            }
        );
        assert!(gather(&src, d, &[0, -2], 1, &mut out).is_err());
        assert!(matches!(
            gather(&src, d, &[0], 1, &mut out),
            Err(KernelError::LengthMismatch { buffer: "index", .. })
        ));
        let mut acc = [0.0f32; 6];
        assert!(scatter_add(&mut acc, d, &[1, 5], &[1.0, 1.0], 1).is_err());
        assert_eq!(acc, [0.0; 6], "nothing written on error");
        assert!(matches!(
            scatter_add(&mut acc, d, &[1, 1], &[1.0], 1),
            Err(KernelError::LengthMismatch { buffer: "src", .. })
        ));
    }
}
