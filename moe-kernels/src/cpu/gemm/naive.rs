//! Direct triple loop: used for tiny products (where packing costs more than it
//! saves) and for a C view that overlaps itself (where only the sequential
//! element order is well defined).

use super::{MatMut, MatRef};
use crate::Real;

/// `c = alpha·a·b + beta·c`, element by element in row-major order of C.
///
/// Slices must already have been checked to cover the views.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_naive<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: &mut MatMut<'_, T>,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::zero();
            for p in 0..k {
                acc += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            let dst = &mut c.data[i * c.rs + j * c.cs];
            *dst = if beta == T::zero() {
                alpha * acc
            } else {
                alpha * acc + beta * *dst
            };
        }
    }
}

/// `c = beta·c` (`beta == 0` writes zeros, ignoring NaNs), for `k == 0` or `alpha == 0`.
pub(crate) fn scale<T: Real>(m: usize, n: usize, beta: T, c: &mut MatMut<'_, T>) {
    if beta == T::one() {
        return;
    }
    for i in 0..m {
        for j in 0..n {
            let dst = &mut c.data[i * c.rs + j * c.cs];
            *dst = if beta == T::zero() { T::zero() } else { beta * *dst };
        }
    }
}
