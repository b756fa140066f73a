//! Tile primitives of the attention kernels: axpy and transposed tile copies,
//! with an AVX2+FMA build of whole tasks chosen at run time.
//!
//! The task bodies are generic and `#[inline(always)]`; they take a `FMA`
//! const flag that makes [`axpy`] use `mul_add` (a single instruction when the
//! caller is compiled with FMA, a slow libm call otherwise, hence the flag).

use crate::Real;

/// `y += a · x` over equal-length slices.
#[inline(always)]
pub(super) fn axpy<T: Real, const FMA: bool>(y: &mut [T], a: T, x: &[T]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = if FMA { a.mul_add(xv, *yv) } else { *yv + a * xv };
    }
}

/// `out[c] = Σ_d row[d] · tt[d·ld + c]` for `c < out.len()`: one row of
/// `row · tile^T` against a tile stored transposed as `[Dh, ld]`.
#[inline(always)]
pub(super) fn row_times_tt<T: Real, const FMA: bool>(out: &mut [T], row: &[T], tt: &[T], ld: usize) {
    out.iter_mut().for_each(|v| *v = T::zero());
    let w = out.len();
    for (d, &a) in row.iter().enumerate() {
        axpy::<T, FMA>(out, a, &tt[d * ld..d * ld + w]);
    }
}

/// Copies rows `src[r·dh..(r+1)·dh]`, `r < rows`, into `dst` as `[dh, ld]`
/// (transposed), so that products against it become axpy loops.
#[inline(always)]
pub(super) fn transpose_into<T: Real>(dst: &mut [T], src: &[T], rows: usize, dh: usize, ld: usize) {
    for r in 0..rows {
        for (d, &v) in src[r * dh..(r + 1) * dh].iter().enumerate() {
            dst[d * ld + r] = v;
        }
    }
}

/// True when the CPU can run the AVX2+FMA builds.
pub(super) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
