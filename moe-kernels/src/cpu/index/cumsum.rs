//! Inclusive prefix sums along an axis, forward and reverse (the backward of
//! the forward one).

use std::ops::Add;

use rayon::prelude::*;

use super::{check_len, Dims3, PAR_MIN_ELEMS};
use crate::error::KernelError;

/// `out[o, d, i] = Σ_{e ≤ d} src[o, e, i]` (torch.cumsum along the axis).
///
/// `src` and `out`: `[outer, dim, inner]`. Sums run in ascending `d`, one
/// running sum per (o, i), so the result does not depend on threading. Works
/// on any `Copy + Add` type: floats, and integers for positions from masks.
pub fn cumsum<T: Copy + Add<Output = T> + Send + Sync>(
    src: &[T],
    dims: Dims3,
    out: &mut [T],
) -> Result<(), KernelError> {
    scan(src, dims, out, "cumsum", false)
}

/// `out[o, d, i] = Σ_{e ≥ d} src[o, e, i]`: the suffix sum, which is the
/// backward of [`cumsum`] (grad_src = reverse cumsum of grad_out).
///
/// `src` and `out`: `[outer, dim, inner]`; sums run in descending `d`.
pub fn cumsum_reverse<T: Copy + Add<Output = T> + Send + Sync>(
    src: &[T],
    dims: Dims3,
    out: &mut [T],
) -> Result<(), KernelError> {
    scan(src, dims, out, "cumsum_reverse", true)
}

fn scan<T: Copy + Add<Output = T> + Send + Sync>(
    src: &[T],
    dims: Dims3,
    out: &mut [T],
    op: &'static str,
    reverse: bool,
) -> Result<(), KernelError> {
    let n = dims.numel(op)?;
    check_len(op, "src", n, src.len())?;
    check_len(op, "out", n, out.len())?;
    if n == 0 {
        return Ok(());
    }
    let Dims3 { dim, inner, .. } = dims;
    let slab = dim * inner;
    // Row d of a slab adds the finished row before it (after it, in reverse),
    // a loop over `inner` contiguous elements that vectorises.
    let scan_slab = |(y, x): (&mut [T], &[T])| {
        y.copy_from_slice(x);
        if reverse {
            for d in (0..dim - 1).rev() {
                let (cur, prev) = y[d * inner..].split_at_mut(inner);
                for (c, &p) in cur.iter_mut().zip(&prev[..inner]) {
                    *c = *c + p;
                }
            }
        } else {
            for d in 1..dim {
                let (prev, cur) = y[(d - 1) * inner..].split_at_mut(inner);
                for (c, &p) in cur[..inner].iter_mut().zip(prev.iter()) {
                    *c = *c + p;
                }
            }
        }
    };
    if n >= PAR_MIN_ELEMS && dims.outer > 1 {
        let min_slabs = (PAR_MIN_ELEMS / 4 / slab).max(1);
        out.par_chunks_mut(slab)
            .zip(src.par_chunks(slab))
            .with_min_len(min_slabs)
            .for_each(scan_slab);
    } else {
        out.chunks_mut(slab).zip(src.chunks(slab)).for_each(scan_slab);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::index::test_util::{rand_vec, rng};

    fn ref_scan(x: &[f64], d: Dims3, reverse: bool) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for o in 0..d.outer {
            for i in 0..d.inner {
                let mut acc = 0.0;
                let order: Vec<usize> = if reverse {
                    (0..d.dim).rev().collect()
                } else {
                    (0..d.dim).collect()
                };
                for e in order {
                    let p = (o * d.dim + e) * d.inner + i;
                    acc += x[p];
                    y[p] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn cumsum_matches_reference_on_every_axis() {
        let mut r = rng(21);
        for shape in [[2, 3, 4], [1, 1, 1], [3, 7, 1], [64, 33, 20]] {
            let x = rand_vec(&mut r, shape.iter().product());
            for axis in 0..3 {
                let d = Dims3::from_shape(&shape, axis).unwrap();
                for rev in [false, true] {
                    let mut y = vec![0.0; x.len()];
                    if rev {
                        cumsum_reverse(&x, d, &mut y).unwrap();
                    } else {
                        cumsum(&x, d, &mut y).unwrap();
                    }
                    // 0.0 + x[0] == x[0] exactly, so the same order gives the same bits.
                    assert_eq!(y, ref_scan(&x, d, rev), "{shape:?} axis {axis} rev {rev}");
                }
            }
        }
    }

    #[test]
    fn reverse_cumsum_is_the_adjoint_of_cumsum() {
        let mut r = rng(22);
        let d = Dims3::new(3, 9, 4);
        let x = rand_vec(&mut r, 108);
        let g = rand_vec(&mut r, 108);
        let (mut y, mut gx) = (vec![0.0; 108], vec![0.0; 108]);
        cumsum(&x, d, &mut y).unwrap();
        cumsum_reverse(&g, d, &mut gx).unwrap();
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&gx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12);
    }

    #[test]
    fn integer_cumsum_gives_positions() {
        // Position of each token in its expert's queue: cumsum of a one-hot mask over tokens.
        let mask: [i64; 8] = [1, 0, 0, 1, 1, 0, 0, 1]; // [T=4, E=2]
        let mut pos = [0i64; 8];
        cumsum(&mask, Dims3::new(1, 4, 2), &mut pos).unwrap();
        assert_eq!(pos, [1, 0, 1, 1, 2, 1, 2, 2]);
    }

    #[test]
    fn wrong_lengths_and_empty() {
        let mut y = [0.0f32; 3];
        assert!(matches!(
            cumsum(&[1.0f32; 4], Dims3::new(1, 4, 1), &mut y),
            Err(KernelError::LengthMismatch { buffer: "out", .. })
        ));
        cumsum::<f32>(&[], Dims3::new(2, 0, 3), &mut []).unwrap();
    }
}
