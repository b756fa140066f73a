//! The floating-point element types the CPU kernels compute in.

use std::fmt::Debug;
use std::iter::Sum;

/// A float type the kernels are generic over: `f32` for training, `f64` for
/// gradient checks against finite differences.
pub trait Real:
    num_traits::Float + num_traits::FromPrimitive + num_traits::NumAssign + Sum + Default + Debug + Send + Sync + 'static
{
    /// Short name used in error messages and benchmark labels.
    const NAME: &'static str;

    /// Lossy conversion from f64 (exact for f64).
    fn from_f64_lossy(x: f64) -> Self;
    /// Widening conversion to f64.
    fn to_f64_lossy(self) -> f64;
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    fn from_f64_lossy(x: f64) -> Self {
        x as f32
    }
    fn to_f64_lossy(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    fn from_f64_lossy(x: f64) -> Self {
        x
    }
    fn to_f64_lossy(self) -> f64 {
        self
    }
}
