//! Drop-Upcycling (Nakamura et al., ICLR 2025, arXiv 2502.19261): naive
//! copies, then per expert a random share r of the intermediate dimension is
//! re-initialised.
//!
//! - Index sets. The paper's text draws one set of ⌊r·F⌋ intermediate indices
//!   per expert and re-initialises those rows of `gate_proj` and `up_proj` and
//!   those columns of `down_proj` (the neurons are dropped whole). The
//!   reference implementation (`conversions/drop_upcycling.py`) draws a
//!   separate `randperm(F)[:int(F·r)]` for each of the three matrices. The
//!   default (`per_matrix = false`) follows the paper; `per_matrix = true`
//!   follows the code. Sets are drawn without replacement, uniformly, and
//!   independently per layer and expert. (The reference code also permutes
//!   the intermediate dimension of each expert before dropping; a permutation
//!   applied to gate, up and down alike does not change the function, so it
//!   is left out here and kept neurons stay at their dense positions.)
//! - Statistics. The new values are Normal(μ, σ²) where μ and σ are the mean
//!   and standard deviation of the weights being replaced, per matrix: the
//!   selected rows (columns for `down_proj`) of that dense matrix, not the
//!   whole matrix — the reference code's `init_part.mean()` / `init_part.std()`
//!   with `init_part = W[idx]`. σ is the unbiased (n − 1) estimate, as torch's
//!   `std()`; with fewer than two values σ = 0. The statistics are computed in
//!   f64 and the samples drawn in f64 then rounded to f32 (the reference code
//!   rounds to bf16).
//! - Order of random draws (one seed → one model): per MoE layer, the router
//!   `[E, D]`, then per expert: the index set(s) and values for gate, up, down.

use super::{naive, HostFfn, MoeLayer, UpcycleOptions};
use crate::MoeConfig;
use moe_tensor::init::Rng;

/// ⌊r·n⌋ computed in f64, as the reference code's `int(n * r)`.
pub fn drop_count(n: usize, ratio: f64) -> usize {
    ((n as f64) * ratio).floor().clamp(0.0, n as f64) as usize
}

/// `k` distinct indices drawn uniformly from `0..n` (a partial Fisher–Yates
/// shuffle), in ascending order.
pub fn choose_indices(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = i + rng.below((n - i) as u64) as usize;
        all.swap(i, j);
    }
    let mut idx = all[..k].to_vec();
    idx.sort_unstable();
    idx
}

/// Mean and unbiased std of `values` (σ = 0 below two values).
pub fn mean_std(values: impl Iterator<Item = f32> + Clone) -> (f64, f64) {
    let n = values.clone().count();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.clone().map(f64::from).sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = values.map(|v| (f64::from(v) - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// Re-initialises rows `idx` of the row-major `[rows, cols]` matrix `m`.
fn reinit_rows(m: &mut [f32], cols: usize, idx: &[usize], rng: &mut Rng) {
    let picked = idx.iter().flat_map(|&r| m[r * cols..(r + 1) * cols].iter().copied());
    let (mean, std) = mean_std(picked);
    for &r in idx {
        for v in &mut m[r * cols..(r + 1) * cols] {
            *v = (mean + std * rng.next_normal()) as f32;
        }
    }
}

/// Re-initialises columns `idx` of the row-major `[rows, cols]` matrix `m`.
fn reinit_cols(m: &mut [f32], cols: usize, idx: &[usize], rng: &mut Rng) {
    let rows = m.len() / cols.max(1);
    let picked = (0..rows)
        .flat_map(|r| idx.iter().map(move |&c| (r, c)))
        .map(|(r, c)| m[r * cols + c]);
    let (mean, std) = mean_std(picked);
    for r in 0..rows {
        for &c in idx {
            m[r * cols + c] = (mean + std * rng.next_normal()) as f32;
        }
    }
}

/// Drops ⌊r·F⌋ neurons of one expert (see the module docs).
pub fn drop_expert(ffn: &mut HostFfn, ratio: f64, per_matrix: bool, rng: &mut Rng) {
    let (f, d) = (ffn.f, ffn.d);
    let k = drop_count(f, ratio);
    if k == 0 {
        return;
    }
    let shared = (!per_matrix).then(|| choose_indices(rng, f, k));
    let pick = |rng: &mut Rng| shared.clone().unwrap_or_else(|| choose_indices(rng, f, k));
    let idx = pick(rng);
    reinit_rows(&mut ffn.gate, d, &idx, rng);
    let idx = pick(rng);
    reinit_rows(&mut ffn.up, d, &idx, rng);
    let idx = pick(rng);
    reinit_cols(&mut ffn.down, f, &idx, rng);
}

/// One MoE layer: a naive layer, then each expert drops its share.
pub(crate) fn layer(
    ffn: &HostFfn,
    m: &MoeConfig,
    ratio: f64,
    per_matrix: bool,
    opts: &UpcycleOptions,
    rng: &mut Rng,
) -> MoeLayer {
    let mut l = naive::layer(ffn, m, opts, rng);
    for e in &mut l.experts {
        drop_expert(e, ratio, per_matrix, rng);
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_indices() {
        assert_eq!(drop_count(64, 0.5), 32);
        assert_eq!(drop_count(10, 0.3), 3);
        assert_eq!(drop_count(10, 1.0), 10);
        assert_eq!(drop_count(10, 0.0), 0);
        let mut rng = Rng::seed(3);
        let idx = choose_indices(&mut rng, 20, 7);
        assert_eq!(idx.len(), 7);
        assert!(idx.windows(2).all(|w| w[0] < w[1]) && idx[6] < 20);
        assert_eq!(choose_indices(&mut rng, 5, 5), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn mean_std_by_hand() {
        // 1, 2, 3, 4: mean 2.5, unbiased variance (2.25+0.25+0.25+2.25)/3 = 5/3.
        let (m, s) = mean_std([1.0f32, 2.0, 3.0, 4.0].into_iter());
        assert_eq!(m, 2.5);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std([7.0f32].into_iter()), (7.0, 0.0));
    }
}
