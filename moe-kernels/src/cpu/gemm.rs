//! General matrix multiply on strided slices.
//!
//! `C = alpha · A · B + beta · C` where A is m×k, B is k×n and C is m×n, each
//! given by a slice starting at element (0, 0) and a row stride and column
//! stride in elements. Transposed operands are just swapped strides, so no
//! caller ever copies to transpose.
//!
//! This first version is a plain reference loop; the optimised kernel replaces
//! the body while keeping the signature.

use crate::Real;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

/// A mutable strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rs: usize,
    pub cs: usize,
}

/// `c = alpha · a · b + beta · c` for `a`: m×k, `b`: k×n, `c`: m×n.
///
/// When `beta == 0` the old contents of `c` are ignored (NaNs included), as BLAS does.
/// Panics if a slice is too short for its dims and strides (callers check shapes).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::zero();
            for p in 0..k {
                acc += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            let dst = &mut c.data[i * c.rs + j * c.cs];
            *dst = if beta == T::zero() { alpha * acc } else { alpha * acc + beta * *dst };
        }
    }
}

/// Strides of one operand across the batch: element (b, i, j) is
/// `data[b * bs + i * rs + j * cs]`. A batch stride of 0 broadcasts the operand.
#[derive(Clone, Copy, Debug)]
pub struct BatchStrides {
    pub bs: usize,
    pub rs: usize,
    pub cs: usize,
}

/// Batched `c[b] = alpha · a[b] · b[b] + beta · c[b]` for `batch` independent products.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched<T: Real>(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    a_s: BatchStrides,
    b: &[T],
    b_s: BatchStrides,
    beta: T,
    c: &mut [T],
    c_s: BatchStrides,
) {
    for bi in 0..batch {
        let c_view = MatMut { data: &mut c[bi * c_s.bs..], rs: c_s.rs, cs: c_s.cs };
        gemm(
            m,
            n,
            k,
            alpha,
            MatRef { data: &a[bi * a_s.bs..], rs: a_s.rs, cs: a_s.cs },
            MatRef { data: &b[bi * b_s.bs..], rs: b_s.rs, cs: b_s.cs },
            beta,
            c_view,
        );
    }
}
