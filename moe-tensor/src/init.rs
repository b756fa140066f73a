//! Seeded random tensors and parameter initialisers.
//!
//! `Rng` wraps ChaCha8 (portable and reproducible across platforms); its state is
//! (seed, word position), so a checkpoint can store it and resume the same stream.

use crate::{DType, Device, Error, Result, Shape, Tensor};
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A seeded random stream for initialisation and sampling.
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    inner: ChaCha8Rng,
}

/// The serialisable position of an [`Rng`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub word_pos: u128,
}

impl Rng {
    /// A stream determined by `seed` alone.
    pub fn seed(seed: u64) -> Self {
        Rng {
            seed,
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Where the stream is, for checkpoints.
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.seed,
            word_pos: self.inner.get_word_pos(),
        }
    }

    /// Restores a stream saved with [`Rng::state`].
    pub fn from_state(state: RngState) -> Self {
        let mut r = Self::seed(state.seed);
        r.inner.set_word_pos(state.word_pos);
        r
    }

    /// A uniform f64 in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.inner.random::<f64>()
    }

    /// A uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.inner.random_range(0..n.max(1))
    }

    /// A standard normal sample.
    pub fn next_normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.inner)
    }

    fn tensor(
        &mut self,
        shape: Shape,
        dtype: DType,
        device: &Device,
        mut f: impl FnMut(&mut Self) -> f64,
    ) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(Error::UnsupportedDType {
                op: "random init",
                dtype,
            });
        }
        let v: Vec<f64> = (0..shape.elem_count()).map(|_| f(self)).collect();
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    /// Normal(mean, std) samples.
    pub fn normal(
        &mut self,
        shape: impl Into<Shape>,
        mean: f64,
        std: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        self.tensor(shape.into(), dtype, device, |r| mean + std * r.next_normal())
    }

    /// Uniform samples in [lo, hi).
    pub fn uniform(
        &mut self,
        shape: impl Into<Shape>,
        lo: f64,
        hi: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        self.tensor(shape.into(), dtype, device, |r| lo + (hi - lo) * r.next_f64())
    }

    /// Normal(mean, std) restricted to [a, b] by resampling (torch's `trunc_normal_`,
    /// whose bounds are absolute values, not multiples of std).
    #[allow(clippy::too_many_arguments)]
    pub fn trunc_normal(
        &mut self,
        shape: impl Into<Shape>,
        mean: f64,
        std: f64,
        a: f64,
        b: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let has_mass = a < b && a <= mean + 6.0 * std && b >= mean - 6.0 * std;
        if !has_mass {
            return Err(Error::InvalidShape {
                op: "trunc_normal",
                msg: format!("bounds [{a}, {b}] leave no mass for N({mean}, {std}²)"),
            });
        }
        self.tensor(shape.into(), dtype, device, |r| loop {
            let v = mean + std * r.next_normal();
            if (a..=b).contains(&v) {
                break v;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_state_resumes() {
        let mut a = Rng::seed(7);
        let x = a
            .normal(100, 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let state = a.state();
        let next = a.next_f64();
        let mut b = Rng::seed(7);
        let y = b
            .normal(100, 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(x, y);
        assert_eq!(Rng::from_state(state).next_f64(), next);
    }

    #[test]
    fn trunc_normal_respects_bounds_and_moments() {
        let mut r = Rng::seed(1);
        let v = r
            .trunc_normal(20_000, 0.0, 1.0, -2.0, 2.0, DType::F64, &Device::Cpu)
            .unwrap()
            .to_vec::<f64>()
            .unwrap();
        assert!(v.iter().all(|x| (-2.0..=2.0).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        // Mean of a symmetric truncation is 0; 5 sigma of the sample mean is ~0.03.
        assert!(mean.abs() < 0.03, "mean {mean}");
        // Variance of N(0,1) truncated to ±2 is 0.7737 (closed form).
        let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        assert!((var - 0.7737).abs() < 0.03, "var {var}");
    }
}
