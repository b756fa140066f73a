//! Rotary position embeddings, Hugging Face `rotate_half` convention.
//!
//! For a head vector `x` of even size `Dh` with halves `x1 = x[..Dh/2]`,
//! `x2 = x[Dh/2..]` and angle `a_i = pos · theta^(−2i/Dh)`:
//!
//! ```text
//! y[i]        = x1[i]·cos a_i − x2[i]·sin a_i
//! y[i + Dh/2] = x2[i]·cos a_i + x1[i]·sin a_i
//! ```
//!
//! which is `x·cos + rotate_half(x)·sin` of transformers' Llama
//! `apply_rotary_pos_emb`. Backward is the inverse rotation (angle `−a`).
//! Tables are computed in f64 and then cast; transformers computes them in
//! f32, which differs by about `pos · 6e-8` radians.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::index::{check_index, check_len};
use super::softmax::{numel, rows_per_task, PAR_MIN_ELEMS};
use super::write_once::written_once;
use crate::{KernelError, Real};

/// Fills the cos/sin tables for positions `0..n_pos`.
///
/// ```text
/// cos, sin: [P, Dh/2]  cos[p, i] = cos(p · theta^(−2i/Dh)), likewise sin
/// ```
/// Errors if a table has the wrong length. Panics if `head_dim` is odd
/// (callers validate the configuration).
pub fn rope_tables<T: Real>(
    cos: &mut [T],
    sin: &mut [T],
    n_pos: usize,
    head_dim: usize,
    theta: f64,
) -> Result<(), KernelError> {
    assert!(head_dim.is_multiple_of(2), "rope: head_dim {head_dim} must be even");
    let half = head_dim / 2;
    let want = numel("rope_tables", &[n_pos, half])?;
    check_len("rope_tables", "cos", want, cos.len())?;
    check_len("rope_tables", "sin", want, sin.len())?;
    if half == 0 {
        return Ok(());
    }
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| theta.powf(-((2 * i) as f64) / head_dim as f64))
        .collect();
    for (p, (cr, sr)) in cos.chunks_mut(half).zip(sin.chunks_mut(half)).enumerate() {
        for ((c, s), &f) in cr.iter_mut().zip(sr.iter_mut()).zip(&inv_freq) {
            let a = p as f64 * f;
            *c = T::from_f64_lossy(a.cos());
            *s = T::from_f64_lossy(a.sin());
        }
    }
    Ok(())
}

/// Every `Dh` vector of `x` (at `x_rows[i]`, or contiguous) rotated by its
/// position's angle (the inverse rotation when `inverse`), into a new
/// `[O, T, Dh]` vector written once; the inputs are checked first.
fn rotated<T: Real>(
    x: &[T],
    x_rows: Option<&[usize]>,
    cos: &[T],
    sin: &[T],
    positions: &[i64],
    [outer, t, dh]: [usize; 3],
    inverse: bool,
) -> Result<Vec<T>, KernelError> {
    assert!(dh.is_multiple_of(2), "rope: head_dim {dh} must be even");
    let op = if inverse { "rope_backward" } else { "rope" };
    let len = numel(op, &[outer, t, dh])?;
    match x_rows {
        None => check_len(op, "x", len, x.len())?,
        Some(rows) => {
            check_len(op, "x_rows", outer * t, rows.len())?;
            if let Some(&bad) = rows
                .iter()
                .find(|&&r| r.checked_add(dh).is_none_or(|end| end > x.len()))
            {
                return Err(KernelError::LengthMismatch {
                    op,
                    buffer: "x",
                    expected: bad.saturating_add(dh),
                    got: x.len(),
                });
            }
        }
    }
    let half = dh / 2;
    check_len(op, "sin", cos.len(), sin.len())?;
    let n_pos = cos.len().checked_div(half).unwrap_or(0);
    check_len(op, "cos", n_pos * half, cos.len())?;
    if len == 0 {
        return Ok(Vec::new());
    }
    // positions must be [G, T] with G dividing O.
    let groups = positions.len() / t;
    if !positions.len().is_multiple_of(t) || groups == 0 || !outer.is_multiple_of(groups) {
        return Err(KernelError::LengthMismatch {
            op,
            buffer: "positions",
            expected: t,
            got: positions.len(),
        });
    }
    for &p in positions {
        check_index(op, p, n_pos)?;
    }
    let per_group = outer / groups;
    // One item is one [Dh] vector; its index gives (o, t).
    let vec = |idx: usize, yr: &mut [MaybeUninit<T>]| {
        let start = x_rows.map_or(idx * dh, |r| r[idx]);
        let xr = &x[start..start + dh];
        let o = idx / t;
        let ti = idx % t;
        let p = positions[(o / per_group) * t + ti] as usize;
        let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        let (y1, y2) = yr.split_at_mut(half);
        let (x1, x2) = xr.split_at(half);
        for i in 0..half {
            let sn = if inverse { -s[i] } else { s[i] };
            y1[i].write(x1[i] * c[i] - x2[i] * sn);
            y2[i].write(x2[i] * c[i] + x1[i] * sn);
        }
    };
    Ok(written_once(len, |y| {
        if len >= PAR_MIN_ELEMS {
            y.par_chunks_mut(dh)
                .enumerate()
                .with_min_len(rows_per_task(dh))
                .for_each(|(i, yr)| vec(i, yr));
        } else {
            for (i, yr) in y.chunks_mut(dh).enumerate() {
                vec(i, yr);
            }
        }
    }))
}

/// RoPE forward, into a new vector written once (no zeroing first).
///
/// ```text
/// x:         [O, T, Dh]  input, e.g. O = B·H for [B, H, T, Dh]
/// cos, sin:  [P, Dh/2]   tables from [`rope_tables`]
/// positions: [G, T]      position of each token; G divides O and row-group
///                        o uses positions[o / (O/G)] (G = 1: shared; G = B
///                        with O = B·H: one row per sequence)
/// returns:   [O, T, Dh]
/// ```
/// Errors on mismatched lengths or a position outside `[0, P)`; panics on an
/// odd `Dh` (callers validate the configuration).
#[allow(clippy::too_many_arguments)]
pub fn rope_forward<T: Real>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    positions: &[i64],
    outer: usize,
    t: usize,
    dh: usize,
) -> Result<Vec<T>, KernelError> {
    rotated(x, None, cos, sin, positions, [outer, t, dh], false)
}

/// [`rope_forward`] on an `x` whose `[O, T]` rows lie anywhere in its
/// buffer: row `i` (of `O·T`, row-major) is `x[x_rows[i]..x_rows[i] + Dh]`
/// (a strided view such as the projections' `[B, T, H, Dh]` read as
/// `[B, H, T, Dh]`, without copying it first). The result is contiguous.
/// Errors as [`rope_forward`], and on a row that reaches past `x`.
#[allow(clippy::too_many_arguments)]
pub fn rope_forward_rows<T: Real>(
    x: &[T],
    x_rows: &[usize],
    cos: &[T],
    sin: &[T],
    positions: &[i64],
    outer: usize,
    t: usize,
    dh: usize,
) -> Result<Vec<T>, KernelError> {
    rotated(x, Some(x_rows), cos, sin, positions, [outer, t, dh], false)
}

/// RoPE backward: the inverse rotation of `dy: [O, T, Dh]` (the gradient
/// of y), as a new `[O, T, Dh]` vector. Other arguments as in
/// [`rope_forward`].
#[allow(clippy::too_many_arguments)]
pub fn rope_backward<T: Real>(
    dy: &[T],
    cos: &[T],
    sin: &[T],
    positions: &[i64],
    outer: usize,
    t: usize,
    dh: usize,
) -> Result<Vec<T>, KernelError> {
    rotated(dy, None, cos, sin, positions, [outer, t, dh], true)
}
