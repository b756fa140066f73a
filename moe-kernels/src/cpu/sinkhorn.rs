//! Sinkhorn–Knopp balancing of router logits (Megatron-LM's
//! `moe_utils.sinkhorn`), with the exact arithmetic of `sinkhorn.cu`, so the
//! CPU and a GPU reach the same iteration count and, in f32, the same bits:
//!
//! ```text
//! cost[r, e] = T(exp(f64(x[r, e] − max_e x[r, ·])))        (row shift: exp cannot overflow)
//! d1 = 1, d0 = 1; repeat up to max_iters:
//!     d0[r]  = T((1/N) / (Σ_e cost[r, e]·d1[e] + eps))       (f64 sum over e in order)
//!     col[e] = Σ_r cost[r, e]·d0[r]                          (f64; the fixed order below)
//!     d1'[e] = T((1/E) / (col[e] + eps))
//!     err    = Σ_e |d1'[e] − d1[e]| / E;  d1 = d1'            (f64, e in order)
//!     stop when err ≤ tolerance
//! out[r, e] = T(T(cost[r, e]·d1[e])·d0[r])
//! ```
//!
//! The column sums follow the GPU kernel's single block of
//! [`SINKHORN_THREADS`] threads: `G = SINKHORN_THREADS / E` groups, group g
//! summing rows g, g + G, … in order, then a pairwise tree over the groups
//! (stride = half the next power of two of G, halving; g += g + stride when
//! g + stride < G). Products of f32 values are exact in f64, so fused or
//! separate multiply-adds agree.

use crate::{KernelError, Real};

/// Threads of the GPU kernel's one block; fixes the column-sum order.
pub const SINKHORN_THREADS: usize = 1024;

/// Megatron-LM's guard against division by zero.
pub const SINKHORN_EPS: f64 = 1e-8;

/// Column-sum groups for `experts` experts (the block's threads per expert).
pub fn sinkhorn_groups(experts: usize) -> usize {
    SINKHORN_THREADS / experts.max(1)
}

/// Balances `x` (`[n, e]`, row-major) into `out`; returns the iterations
/// run. Errors on buffer lengths that do not match, or more experts than
/// the GPU block has threads.
pub fn sinkhorn<T: Real>(
    out: &mut [T],
    x: &[T],
    n: usize,
    e: usize,
    tolerance: f64,
    max_iters: usize,
) -> Result<usize, KernelError> {
    const OP: &str = "sinkhorn";
    super::index::check_len(OP, "x", n * e, x.len())?;
    super::index::check_len(OP, "out", n * e, out.len())?;
    if e > SINKHORN_THREADS {
        return Err(KernelError::Unsupported {
            op: OP,
            msg: format!("{e} experts; at most {SINKHORN_THREADS}"),
        });
    }
    if n == 0 || e == 0 {
        return Ok(0);
    }
    for (o, row) in out.chunks_exact_mut(e).zip(x.chunks_exact(e)) {
        let m = row.iter().copied().fold(row[0], |m, v| if v > m { v } else { m });
        for (o, &v) in o.iter_mut().zip(row) {
            *o = T::from_f64_lossy((v - m).to_f64_lossy().exp());
        }
    }
    let cost = &*out;
    let (inv_n, inv_e) = (1.0 / n as f64, 1.0 / e as f64);
    let groups = sinkhorn_groups(e);
    let mut d0 = vec![T::one(); n];
    let mut d1 = vec![T::one(); e];
    let mut partial = vec![0.0f64; groups * e];
    let mut iters = 0;
    while iters < max_iters {
        iters += 1;
        for (d, row) in d0.iter_mut().zip(cost.chunks_exact(e)) {
            let s = row
                .iter()
                .zip(&d1)
                .fold(0.0f64, |acc, (&c, &w)| acc + c.to_f64_lossy() * w.to_f64_lossy());
            *d = T::from_f64_lossy(inv_n / (s + SINKHORN_EPS));
        }
        partial.fill(0.0);
        for (r, (row, &d)) in cost.chunks_exact(e).zip(&d0).enumerate() {
            let p = &mut partial[(r % groups) * e..][..e];
            for (acc, &c) in p.iter_mut().zip(row) {
                *acc += c.to_f64_lossy() * d.to_f64_lossy();
            }
        }
        let mut stride = groups.next_power_of_two() / 2;
        while stride > 0 {
            for g in 0..stride.min(groups.saturating_sub(stride)) {
                for k in 0..e {
                    partial[g * e + k] += partial[(g + stride) * e + k];
                }
            }
            stride /= 2;
        }
        let mut err = 0.0f64;
        for (d, &col) in d1.iter_mut().zip(&partial[..e]) {
            let new = T::from_f64_lossy(inv_e / (col + SINKHORN_EPS));
            err += (new.to_f64_lossy() - d.to_f64_lossy()).abs();
            *d = new;
        }
        if err / e as f64 <= tolerance {
            break;
        }
    }
    for (row, &d) in out.chunks_exact_mut(e).zip(&d0) {
        for (o, &w) in row.iter_mut().zip(&d1) {
            *o = (*o * w) * d;
        }
    }
    Ok(iters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_rows_and_columns_after_convergence() {
        let (n, e) = (40, 5);
        let x: Vec<f64> = (0..n * e).map(|i| ((i * 7919) % 17) as f64 / 4.0 - 2.0).collect();
        let mut out = vec![0.0; n * e];
        // The eps guard shrinks d1 by about eps·E each step, so the change
        // never falls below ~5e-8 here: 1e-6 is reachable, 1e-8 is not.
        let iters = sinkhorn(&mut out, &x, n, e, 1e-6, 10_000).unwrap();
        assert!(iters > 1 && iters < 10_000, "{iters}");
        for row in out.chunks(e) {
            let s: f64 = row.iter().sum();
            assert!((s * n as f64 - 1.0).abs() < 1e-5, "row sum {s}");
        }
        for k in 0..e {
            let s: f64 = out.iter().skip(k).step_by(e).sum();
            assert!((s * e as f64 - 1.0).abs() < 1e-5, "column sum {s}");
        }
    }

    #[test]
    fn the_group_tree_adds_every_row_once() {
        // Uniform logits: one step balances them, up to the eps guard's
        // relative 1e-5 at most, whatever the grouping (E = 3 gives 341
        // groups: not a power of two); a row added twice or missed would be
        // off by 1/n ≥ 1e-3.
        for (n, e) in [(1000, 3), (5, 1024), (7, 1)] {
            let x = vec![0.0f32; n * e];
            let mut out = vec![0.0f32; n * e];
            let iters = sinkhorn(&mut out, &x, n, e, 1.0, 50).unwrap();
            assert_eq!(iters, 1);
            let want = 1.0 / (n * e) as f64;
            for &v in &out {
                assert!((v as f64 - want).abs() < 1e-4 * want, "{v} vs {want}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut out = vec![0.0f32; 4];
        assert!(sinkhorn(&mut out, &[0.0f32; 3], 2, 2, 1e-4, 10).is_err());
        let mut wide = vec![0.0f32; 1025];
        assert!(sinkhorn(&mut wide, &vec![0.0f32; 1025], 1, 1025, 1e-4, 10).is_err());
    }
}
