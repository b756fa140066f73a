//! Concatenation along an axis (the data movement behind cat and stack; the
//! backward and split are views in moe-tensor, so they need no kernel).

use rayon::prelude::*;

use super::{check_len, Dims3, PAR_MIN_ELEMS};
use crate::error::KernelError;

/// Concatenates contiguous parts along the axis of `[outer, dim_p, inner]`.
///
/// `parts[p]` is `(data, dim_p)` with `data`: `[outer, dim_p, inner]`; `out`:
/// `[outer, Σ dim_p, inner]`. For each outer slab the parts are copied one
/// after another, each as one contiguous block of `dim_p · inner` elements.
pub fn concat<T: Copy + Send + Sync>(
    parts: &[(&[T], usize)],
    outer: usize,
    inner: usize,
    out: &mut [T],
) -> Result<(), KernelError> {
    const OP: &str = "concat";
    let mut total = 0usize;
    for &(data, d) in parts {
        check_len(OP, "part", Dims3::new(outer, d, inner).numel(OP)?, data.len())?;
        total = total.checked_add(d).ok_or(KernelError::ShapeOverflow {
            op: OP,
            shape: vec![outer, usize::MAX, inner],
        })?;
    }
    let out_dims = Dims3::new(outer, total, inner);
    check_len(OP, "out", out_dims.numel(OP)?, out.len())?;
    let slab = total * inner;
    if slab == 0 {
        return Ok(());
    }
    let fill_slab = |(o, dst): (usize, &mut [T])| {
        let mut at = 0;
        for &(data, d) in parts {
            let w = d * inner;
            dst[at..at + w].copy_from_slice(&data[o * w..(o + 1) * w]);
            at += w;
        }
    };
    if out.len() >= PAR_MIN_ELEMS && outer > 1 {
        let min_slabs = (PAR_MIN_ELEMS / 4 / slab).max(1);
        out.par_chunks_mut(slab)
            .with_min_len(min_slabs)
            .enumerate()
            .for_each(fill_slab);
    } else {
        out.chunks_mut(slab).enumerate().for_each(fill_slab);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::index::test_util::{rand_vec, rng};

    #[test]
    fn concat_matches_reference_on_every_axis() {
        let mut r = rng(41);
        for (outer, inner) in [(1, 1), (3, 4), (200, 50)] {
            let dims = [2usize, 0, 5, 1];
            let parts: Vec<Vec<f64>> = dims.iter().map(|&d| rand_vec(&mut r, outer * d * inner)).collect();
            let refs: Vec<(&[f64], usize)> = parts.iter().map(|p| &p[..]).zip(dims).collect();
            let total: usize = dims.iter().sum();
            let mut out = vec![0.0; outer * total * inner];
            concat(&refs, outer, inner, &mut out).unwrap();
            let mut want = Vec::new();
            for o in 0..outer {
                for (p, &d) in parts.iter().zip(&dims) {
                    for j in 0..d {
                        for i in 0..inner {
                            want.push(p[(o * d + j) * inner + i]);
                        }
                    }
                }
            }
            assert_eq!(out, want, "outer {outer} inner {inner}");
        }
    }

    #[test]
    fn concat_checks_lengths() {
        let a = [1.0f32; 4];
        let mut out = [0.0f32; 6];
        assert!(matches!(
            concat(&[(&a[..], 2), (&a[..3], 1)], 2, 1, &mut out),
            Err(KernelError::LengthMismatch { buffer: "part", .. })
        ));
        assert!(matches!(
            concat(&[(&a[..], 2)], 2, 1, &mut out),
            Err(KernelError::LengthMismatch { buffer: "out", .. })
        ));
    }
}
