//! Optimiser kernels on host slices: the AdamW update of a parameter and its
//! moments, and the deterministic sum of squares behind global-norm clipping.
//!
//! `cuda/optim.cu` does the same arithmetic on the device: the AdamW kernel
//! rounds every operation separately in this order, so an element's update
//! is the same bits on both.

use crate::KernelError;
use rayon::prelude::*;

/// The scalars of one AdamW update, rounded to f32 as PyTorch does for f32
/// tensors (its Python-float hyper-parameters become f32 constants).
///
/// Per element with gradient g: g ← g·grad_scale; θ ← θ·decay;
/// m ← m + w1·(g − m); v ← v·b2 + c2·g·g;
/// θ ← θ + (−step_size·m) / (√v·inv_bc2_sqrt + eps).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWScalars {
    /// `1 − lr·weight_decay` (decoupled weight decay).
    pub decay: f32,
    /// `1 − β1`.
    pub w1: f32,
    /// `β2`.
    pub b2: f32,
    /// `1 − β2`.
    pub c2: f32,
    /// `lr / (1 − β1ᵗ)` (first-moment bias correction folded in).
    pub step_size: f32,
    /// `1 / √(1 − β2ᵗ)` (second-moment bias correction).
    pub inv_bc2_sqrt: f32,
    /// Added to the denominator after the bias-corrected square root.
    pub eps: f32,
    /// The gradient's factor: 1, or global-norm clipping's coefficient,
    /// which the update then applies on its way through the gradient
    /// instead of a separate pass writing scaled gradients. `g·1` is `g`, and
    /// `g·s` is what scaling the gradient tensor by `s` gives.
    pub grad_scale: f32,
}

impl AdamWScalars {
    /// The scalars of the `t`-th update (t ≥ 1) of a parameter with learning
    /// rate `lr` and weight decay `weight_decay`.
    pub fn for_step(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64, t: u64) -> Self {
        let t = t as f64;
        Self {
            decay: (1.0 - lr * weight_decay) as f32,
            w1: (1.0 - beta1) as f32,
            b2: beta2 as f32,
            c2: (1.0 - beta2) as f32,
            step_size: (lr / (1.0 - beta1.powf(t))) as f32,
            // PyTorch's CPU division by a scalar multiplies by its f32 reciprocal.
            inv_bc2_sqrt: 1.0 / ((1.0 - beta2.powf(t)).sqrt()) as f32,
            eps: eps as f32,
            grad_scale: 1.0,
        }
    }

    /// The same update reading the gradient scaled by `scale` (rounded to
    /// f32, as a scaled f32 tensor's factor is).
    pub fn with_grad_scale(self, scale: f64) -> Self {
        Self {
            grad_scale: scale as f32,
            ..self
        }
    }
}

/// Elements per parallel chunk of the AdamW update: large enough that
/// scheduling is negligible.
const ADAMW_CHUNK: usize = 1 << 14;

/// One AdamW update of every element of `theta`, `m` (first moment) and `v`
/// (second moment) from the gradient `g`, in parallel chunks. Each element's
/// arithmetic is the same whatever the chunking, so results are bit-identical
/// for any thread count. All four buffers must have one length.
pub fn adamw_update(
    theta: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    k: &AdamWScalars,
) -> Result<(), KernelError> {
    const OP: &str = "adamw_update";
    for (buffer, got) in [("exp_avg", m.len()), ("exp_avg_sq", v.len()), ("grad", g.len())] {
        if got != theta.len() {
            return Err(KernelError::LengthMismatch {
                op: OP,
                buffer,
                expected: theta.len(),
                got,
            });
        }
    }
    theta
        .par_chunks_mut(ADAMW_CHUNK)
        .zip(m.par_chunks_mut(ADAMW_CHUNK))
        .zip(v.par_chunks_mut(ADAMW_CHUNK))
        .zip(g.par_chunks(ADAMW_CHUNK))
        .for_each(|(((theta, m), v), g)| {
            // Zipped iterators (no bounds checks) let the loop vectorise;
            // IEEE sqrt and division give the same bits in SIMD lanes.
            for (((theta, m), v), &g) in theta.iter_mut().zip(m).zip(v).zip(g) {
                let g = g * k.grad_scale;
                *theta *= k.decay;
                *m += k.w1 * (g - *m);
                *v = *v * k.b2 + k.c2 * g * g;
                let denom = v.sqrt() * k.inv_bc2_sqrt + k.eps;
                // addcdiv evaluates (value · m) / denom, in that order.
                *theta += (-k.step_size * *m) / denom;
            }
        });
    Ok(())
}

/// Elements per partial sum of [`sum_sq_f64`]: fixed, so the sum does not
/// depend on the thread count.
const SUM_SQ_CHUNK: usize = 1 << 13;

/// `Σ x²` in f64, as ordered partial sums over fixed chunks (each with four
/// interleaved accumulators) added in chunk order: deterministic, parallel,
/// and not one long serial chain of dependent additions.
pub fn sum_sq_f64<T: Copy + Into<f64> + Sync>(x: &[T]) -> f64 {
    let partial: Vec<f64> = x
        .par_chunks(SUM_SQ_CHUNK)
        .map(|c| {
            let mut acc = [0.0f64; 4];
            let mut quads = c.chunks_exact(4);
            for q in &mut quads {
                for (a, &v) in acc.iter_mut().zip(q) {
                    let v: f64 = v.into();
                    *a += v * v;
                }
            }
            let tail: f64 = quads.remainder().iter().map(|&v| v.into() * v.into()).sum();
            (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
        })
        .collect();
    partial.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_update_follows_the_formula_step_by_step() {
        let k = AdamWScalars::for_step(1e-2, 0.9, 0.95, 1e-8, 0.1, 1);
        assert_eq!(k.decay, (1.0 - 1e-3f64) as f32);
        assert_eq!(k.step_size, (1e-2 / (1.0 - 0.9f64)) as f32);
        let (mut th, mut m, mut v) = (vec![0.5f32], vec![0.0f32], vec![0.0f32]);
        adamw_update(&mut th, &mut m, &mut v, &[2.0], &k).unwrap();
        let m1 = k.w1 * 2.0;
        let v1 = k.c2 * 2.0 * 2.0;
        let expected = 0.5 * k.decay + (-k.step_size * m1) / (v1.sqrt() * k.inv_bc2_sqrt + k.eps);
        assert_eq!((th[0], m[0], v[0]), (expected, m1, v1));
        // The first bias-corrected step moves θ by about lr·sign(g).
        assert!((0.5 * k.decay - th[0] - 1e-2).abs() < 1e-6);
    }

    #[test]
    fn chunking_does_not_change_any_bit_and_lengths_are_checked() {
        let n = 3 * ADAMW_CHUNK + 17;
        let g: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3).collect();
        let k = AdamWScalars::for_step(3e-4, 0.9, 0.95, 1e-8, 0.1, 7);
        let (mut th, mut m, mut v) = (vec![0.25f32; n], vec![0.01f32; n], vec![1e-4f32; n]);
        adamw_update(&mut th, &mut m, &mut v, &g, &k).unwrap();
        for i in [0, 1, ADAMW_CHUNK, n - 1] {
            let (mut t1, mut m1, mut v1) = ([0.25f32], [0.01f32], [1e-4f32]);
            adamw_update(&mut t1, &mut m1, &mut v1, &g[i..i + 1], &k).unwrap();
            assert_eq!((th[i], m[i], v[i]), (t1[0], m1[0], v1[0]), "element {i}");
        }
        let err = adamw_update(&mut th, &mut m, &mut v[..1], &g, &k).unwrap_err();
        assert!(
            matches!(
                err,
                KernelError::LengthMismatch {
                    buffer: "exp_avg_sq",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_grad_scale_gives_the_bits_of_scaling_the_gradient_first() {
        let n = 2 * ADAMW_CHUNK + 5;
        let g: Vec<f32> = (0..n).map(|i| ((i * 53 % 211) as f32 - 105.0) * 3e-3).collect();
        // A clipping coefficient in f64, as clip computes it.
        let coef = 1.0 / (7.3 + 1e-6);
        let k = AdamWScalars::for_step(3e-4, 0.9, 0.95, 1e-8, 0.1, 3);
        let fresh = || (vec![0.25f32; n], vec![0.01f32; n], vec![1e-4f32; n]);
        let (mut th, mut m, mut v) = fresh();
        adamw_update(&mut th, &mut m, &mut v, &g, &k.with_grad_scale(coef)).unwrap();
        // The gradient tensor scaled by coef (an f32 tensor's factor is f32).
        let scaled: Vec<f32> = g.iter().map(|&x| x * coef as f32).collect();
        let (mut th2, mut m2, mut v2) = fresh();
        adamw_update(&mut th2, &mut m2, &mut v2, &scaled, &k).unwrap();
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&th), bits(&th2));
        assert_eq!(bits(&m), bits(&m2));
        assert_eq!(bits(&v), bits(&v2));
        // And it is not the unscaled update.
        let (mut th3, mut m3, mut v3) = fresh();
        adamw_update(&mut th3, &mut m3, &mut v3, &g, &k).unwrap();
        assert_ne!(bits(&m), bits(&m3));
        assert_ne!(bits(&th), bits(&th3));
    }

    #[test]
    fn sum_of_squares_is_exact_on_integers_and_independent_of_threads() {
        let x: Vec<f32> = (0..3 * SUM_SQ_CHUNK + 5).map(|i| (i % 7) as f32).collect();
        let exact: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert_eq!(sum_sq_f64(&x), exact);
        assert_eq!(sum_sq_f64::<f32>(&[]), 0.0);
        let y: Vec<f64> = (0..SUM_SQ_CHUNK + 3).map(|i| (i as f64).sin()).collect();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(one.install(|| sum_sq_f64(&y)), sum_sq_f64(&y));
    }
}
