//! Indexing and data-movement kernels: index_select / index_add, embedding,
//! gather / scatter_add, concat, cumsum, topk and argmax.
//!
//! Every buffer is contiguous and row-major. An operation "along a dimension"
//! views its buffer as `[outer, dim, inner]` ([`Dims3`]): `outer` is the product
//! of the sizes before the axis, `inner` the product of those after it, so the
//! same kernel serves every axis.
//!
//! Indices are `i64` (the dtype of index tensors); each is checked against the
//! size of the dimension it indexes, and negative indices are out of bounds, as
//! in torch. Buffer lengths are checked too. Problems come back as
//! [`KernelError`]; nothing here panics on bad data.
//!
//! Accumulating kernels (index_add, embedding_backward, scatter_add) add
//! contributions in a fixed order (ascending source position) and split work
//! only over disjoint output rows, so results are bit-identical from run to run
//! and for any number of threads.

mod concat;
mod cumsum;
mod gather;
mod select;
mod topk;

pub use concat::concat;
pub use cumsum::{cumsum, cumsum_reverse};
pub use gather::{gather, scatter_add};
pub use select::{embedding, embedding_backward, group_by_index, index_add, index_select};
pub use topk::{argmax, topk};

use crate::error::KernelError;

/// Below this many elements of work a kernel runs on the calling thread:
/// rayon's fork/join costs more than it saves on tiny buffers.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// A contiguous row-major buffer viewed as `[outer, dim, inner]` around one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims3 {
    /// Product of the sizes before the axis.
    pub outer: usize,
    /// Size of the axis itself.
    pub dim: usize,
    /// Product of the sizes after the axis.
    pub inner: usize,
}

impl Dims3 {
    /// Builds the view from its three sizes.
    pub fn new(outer: usize, dim: usize, inner: usize) -> Self {
        Self { outer, dim, inner }
    }

    /// Views `shape` around `axis`; `None` if `axis >= shape.len()`.
    pub fn from_shape(shape: &[usize], axis: usize) -> Option<Self> {
        if axis >= shape.len() {
            return None;
        }
        let outer = shape[..axis].iter().product();
        let inner = shape[axis + 1..].iter().product();
        Some(Self::new(outer, shape[axis], inner))
    }

    /// The same view with the axis resized to `dim` (the shape of an output
    /// that selects `dim` entries along the axis).
    pub fn with_dim(self, dim: usize) -> Self {
        Self { dim, ..self }
    }

    /// `outer · dim · inner`, or an error naming `op` if it overflows.
    pub fn numel(self, op: &'static str) -> Result<usize, KernelError> {
        self.outer
            .checked_mul(self.dim)
            .and_then(|n| n.checked_mul(self.inner))
            .ok_or(KernelError::ShapeOverflow {
                op,
                shape: vec![self.outer, self.dim, self.inner],
            })
    }
}

/// Checks that `buffer` holds exactly `expected` elements.
pub(crate) fn check_len(
    op: &'static str,
    buffer: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), KernelError> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::LengthMismatch {
            op,
            buffer,
            expected,
            got,
        })
    }
}

/// Converts an index into a position in a dimension of `size`, rejecting
/// negative and too-large values.
#[inline]
pub(crate) fn check_index(op: &'static str, index: i64, size: usize) -> Result<usize, KernelError> {
    match usize::try_from(index) {
        Ok(i) if i < size => Ok(i),
        _ => Err(KernelError::IndexOutOfBounds { op, index, size }),
    }
}

/// Checks every index in `idx` against `size` (done up front so a kernel never
/// writes half its output before failing); the first bad one is the error.
/// Public for backends that check indices on the host and run elsewhere.
pub fn check_indices(op: &'static str, idx: &[i64], size: usize) -> Result<(), KernelError> {
    match idx.iter().find(|&&i| check_index(op, i, size).is_err()) {
        Some(&index) => Err(KernelError::IndexOutOfBounds { op, index, size }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A seeded RNG so failures reproduce.
    pub fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    /// `n` values uniform in [-1, 1).
    pub fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// `n` indices uniform in [0, size).
    pub fn rand_idx(rng: &mut ChaCha8Rng, n: usize, size: usize) -> Vec<i64> {
        (0..n).map(|_| rng.random_range(0..size as i64)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims3_from_shape_covers_every_axis() {
        let s = [2, 3, 4, 5];
        assert_eq!(Dims3::from_shape(&s, 0), Some(Dims3::new(1, 2, 60)));
        assert_eq!(Dims3::from_shape(&s, 2), Some(Dims3::new(6, 4, 5)));
        assert_eq!(Dims3::from_shape(&s, 3), Some(Dims3::new(24, 5, 1)));
        assert_eq!(Dims3::from_shape(&s, 4), None);
    }

    #[test]
    fn numel_reports_overflow() {
        let d = Dims3::new(usize::MAX, 2, 1);
        assert!(matches!(d.numel("t"), Err(KernelError::ShapeOverflow { .. })));
    }

    #[test]
    fn check_index_rejects_negative_and_too_large() {
        assert_eq!(check_index("t", 2, 3), Ok(2));
        assert!(check_index("t", 3, 3).is_err());
        assert!(check_index("t", -1, 3).is_err());
        assert!(check_index("t", 0, 0).is_err());
    }
}
