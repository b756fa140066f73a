//! AVX-512F micro-kernel: f32 MR×32 (MR rows of two 512-bit vectors).
//!
//! On cores with full-width 512-bit FMA units (Zen 5, Intel server cores) one
//! zmm FMA does the work of two ymm FMAs at the same rate, so this kernel
//! doubles the f32 peak of the AVX2 one (measured on the project's Zen 5 VM:
//! ~267 against ~133 GFLOP/s per core). It keeps MR×2 accumulators, two B
//! vectors and one broadcast A value in the 32 zmm registers; per k step
//! 2·MR FMAs against 2 loads and MR broadcasts.

use std::any::TypeId;
use std::arch::x86_64::*;

use super::kernel::KernelSpec;
use crate::Real;

/// Rows of the f32 tile.
pub(super) const MR: usize = 12;
/// Columns of the f32 tile (two zmm vectors).
pub(super) const NR: usize = 32;

/// Whether this CPU can run the kernels of this file (cached by std).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// The AVX-512 kernel for `T` if there is one (f32 only; f64 keeps AVX2).
///
/// Blocking: kc = 256 keeps a kc×32 panel of B at 32 KiB (L1d is 48 KiB on
/// Zen 5); mc = 144 keeps the packed A block at 144 KiB inside L2.
/// Callers must have checked [`available`].
pub(crate) fn spec<T: Real>() -> Option<KernelSpec<T>> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        Some(KernelSpec::plain(
            (MR, NR),
            (144, 256, 4096),
            entry_f32::<T>,
            "avx512f f32 12x32",
        ))
    } else {
        None
    }
}

/// Type-erasing entry point for the f32 kernel.
///
/// # Safety
/// `T` must be `f32` (guaranteed by [`spec`]), AVX-512F must be available, and
/// the [`super::kernel::MicroKernel`] contract holds.
#[allow(clippy::too_many_arguments)]
unsafe fn entry_f32<T: Real>(
    kc: usize,
    a: *const T,
    b: *const T,
    c: *mut T,
    rs_c: isize,
    cs_c: isize,
    alpha: T,
    beta: T,
) {
    // SAFETY: T is f32, so the pointer casts are identities and the f64 round
    // trip of alpha/beta is exact; the rest is the caller's contract.
    unsafe {
        ukr_f32(
            kc,
            a.cast(),
            b.cast(),
            c.cast(),
            rs_c,
            cs_c,
            alpha.to_f64_lossy() as f32,
            beta.to_f64_lossy() as f32,
        )
    }
}

/// One MR×32 tile: see [`super::kernel::MicroKernel`].
///
/// # Safety
/// AVX-512F must be available; `a`, `b` packed panels of `kc` steps (no
/// alignment needed: unaligned loads); the C tile valid for reads and writes.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr_f32(
    kc: usize,
    mut a: *const f32,
    mut b: *const f32,
    c: *mut f32,
    rs_c: isize,
    cs_c: isize,
    alpha: f32,
    beta: f32,
) {
    const L: usize = 16;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    macro_rules! step {
        () => {
            // SAFETY: the caller guarantees kc steps of MR (A) and NR (B) elements.
            unsafe {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(L));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i));
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
        };
    }
    let mut p = 0;
    while p + 4 <= kc {
        step!();
        step!();
        step!();
        step!();
        p += 4;
    }
    while p < kc {
        step!();
        p += 1;
    }
    // SAFETY: the caller's C tile contract.
    unsafe { store_tile(&acc, c, rs_c, cs_c, alpha, beta) }
}

/// Writes MR×32 f32 accumulators to a C tile: `c = alpha·acc + beta·c`
/// (`beta == 0`: C is write-only). Shared by the f32 and the bf16 kernel.
///
/// # Safety
/// AVX-512F must be available; every `c + i·rs_c + j·cs_c` (i < MR, j < 32)
/// valid for reads and writes.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store_tile(acc: &[[__m512; 2]; MR], c: *mut f32, rs_c: isize, cs_c: isize, alpha: f32, beta: f32) {
    const L: usize = 16;
    let va = _mm512_set1_ps(alpha);
    if cs_c == 1 {
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i of the tile holds NR contiguous elements (cs_c == 1).
            unsafe {
                let dst = c.offset(i as isize * rs_c);
                let r0 = _mm512_mul_ps(row[0], va);
                let r1 = _mm512_mul_ps(row[1], va);
                if beta == 0.0 {
                    _mm512_storeu_ps(dst, r0);
                    _mm512_storeu_ps(dst.add(L), r1);
                } else {
                    let vb = _mm512_set1_ps(beta);
                    _mm512_storeu_ps(dst, _mm512_fmadd_ps(_mm512_loadu_ps(dst), vb, r0));
                    _mm512_storeu_ps(dst.add(L), _mm512_fmadd_ps(_mm512_loadu_ps(dst.add(L)), vb, r1));
                }
            }
        }
    } else {
        let mut tile = [0.0f32; MR * NR];
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: `tile` has MR rows of NR elements.
            unsafe {
                _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
                _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR + L), row[1]);
            }
        }
        for i in 0..MR {
            for j in 0..NR {
                let x = alpha * tile[i * NR + j];
                // SAFETY: (i, j) lies in the tile the caller gave us.
                let dst = unsafe { &mut *c.offset(i as isize * rs_c + j as isize * cs_c) };
                *dst = if beta == 0.0 { x } else { x + beta * *dst };
            }
        }
    }
}
