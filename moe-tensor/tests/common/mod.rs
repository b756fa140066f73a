//! Helpers shared by the integration tests.
#![allow(dead_code)]

use moe_tensor::init::Rng;
use moe_tensor::{DType, Device, Tensor};

/// A seeded f64 tensor with N(0, 1) entries.
pub fn randn(rng: &mut Rng, dims: &[usize]) -> Tensor {
    rng.normal(dims.to_vec(), 0.0, 1.0, DType::F64, &Device::Cpu).unwrap()
}

/// A seeded f64 tensor with entries uniform in [lo, hi).
pub fn uniform(rng: &mut Rng, dims: &[usize], lo: f64, hi: f64) -> Tensor {
    rng.uniform(dims.to_vec(), lo, hi, DType::F64, &Device::Cpu).unwrap()
}

/// A random shape of the given rank with dims in 1..=max.
pub fn random_dims(rng: &mut Rng, rank: usize, max: u64) -> Vec<usize> {
    (0..rank).map(|_| 1 + rng.below(max) as usize).collect()
}
