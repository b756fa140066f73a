//! Reductions over one dim of a contiguous array seen as [outer, dim, inner].
//!
//! Accumulation runs in the element type in a fixed order (dim index
//! ascending), so results are deterministic whatever the thread count.

use crate::Real;
use rayon::prelude::*;

use super::elementwise::PAR_THRESHOLD;

/// `out[o, i] = Σ_d x[o, d, i]`; x: [outer, dim, inner], out: [outer, inner].
pub fn sum_dim<T: Real>(x: &[T], outer: usize, dim: usize, inner: usize) -> Vec<T> {
    let mut out = vec![T::zero(); outer * inner];
    if inner == 0 {
        return out;
    }
    let body = |(o, dst): (usize, &mut [T])| {
        let base = &x[o * dim * inner..(o + 1) * dim * inner];
        if inner == 1 {
            dst[0] = base.iter().copied().sum();
        } else {
            for row in base.chunks_exact(inner) {
                dst.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
            }
        }
    };
    if x.len() >= PAR_THRESHOLD && outer > 1 {
        out.par_chunks_mut(inner).enumerate().for_each(body);
    } else {
        out.chunks_mut(inner).enumerate().for_each(body);
    }
    out
}

/// Max over `dim` with the index of the first maximum; NaN propagates (a NaN is the max).
/// x: [outer, dim, inner] with dim ≥ 1; returns (values, indices), each [outer, inner].
pub fn max_dim<T: Real>(x: &[T], outer: usize, dim: usize, inner: usize) -> (Vec<T>, Vec<i64>) {
    assert!(dim > 0, "max_dim over an empty dim");
    let mut vals = vec![T::zero(); outer * inner];
    let mut idx = vec![0i64; outer * inner];
    for o in 0..outer {
        for i in 0..inner {
            let mut best = x[o * dim * inner + i];
            let mut arg = 0usize;
            for d in 1..dim {
                let v = x[(o * dim + d) * inner + i];
                if !best.is_nan() && (v > best || v.is_nan()) {
                    best = v;
                    arg = d;
                }
            }
            vals[o * inner + i] = best;
            idx[o * inner + i] = arg as i64;
        }
    }
    (vals, idx)
}

/// Scatters `g` [outer, inner] into zeros [outer, dim, inner] at `idx` along dim
/// (the backward of `max_dim`). Indices come from `max_dim`, so are in range.
pub fn scatter_dim<T: Real>(g: &[T], idx: &[i64], outer: usize, dim: usize, inner: usize) -> Vec<T> {
    let mut out = vec![T::zero(); outer * dim * inner];
    for o in 0..outer {
        for i in 0..inner {
            let d = idx[o * inner + i] as usize;
            out[(o * dim + d) * inner + i] = g[o * inner + i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_over_middle_dim() {
        // x: [2, 3, 2]
        let x: Vec<f64> = (0..12).map(|v| v as f64).collect();
        assert_eq!(sum_dim(&x, 2, 3, 2), vec![6.0, 9.0, 24.0, 27.0]);
        assert_eq!(sum_dim(&x, 1, 12, 1), vec![66.0]);
    }

    #[test]
    fn max_takes_first_maximum_and_scatter_inverts() {
        let x = vec![1.0f32, 5.0, 5.0, 2.0];
        let (v, i) = max_dim(&x, 1, 4, 1);
        assert_eq!((v[0], i[0]), (5.0, 1));
        assert_eq!(scatter_dim(&[3.0f32], &i, 1, 4, 1), vec![0.0, 3.0, 0.0, 0.0]);
        let (v, _) = max_dim(&[1.0f32, f32::NAN, 3.0], 1, 3, 1);
        assert!(v[0].is_nan());
    }
}
