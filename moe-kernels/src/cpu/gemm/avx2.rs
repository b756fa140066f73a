//! AVX2+FMA micro-kernels: f32 6×16 and f64 6×8.
//!
//! Both keep a 6×2 grid of 256-bit accumulators (12 registers) plus two B
//! vectors and one broadcast A value, 15 of the 16 ymm registers. Per k step
//! that is 12 FMAs against 2 loads and 6 broadcasts, so the two FMA pipes of
//! Zen 3 / Skylake stay the bottleneck rather than the two load ports.

use std::any::TypeId;
use std::arch::x86_64::*;

use super::kernel::KernelSpec;
use crate::Real;

/// Whether this CPU can run the kernels of this file (cached by std).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// The AVX2 kernel for `T` if there is one (f32 and f64 only).
///
/// Blocking: kc = 256 keeps a kc×NR panel of B at 16 KiB (half of L1d);
/// mc = 144 keeps the packed A block (144 KiB f32, 288 KiB f64) inside a
/// 512 KiB L2; nc bounds the packed B panel to 4 MiB, well inside L3.
/// Callers must have checked [`available`].
pub(crate) fn spec<T: Real>() -> Option<KernelSpec<T>> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        Some(KernelSpec::plain(
            (6, 16),
            (144, 256, 4096),
            entry_f32::<T>,
            "avx2-fma f32 6x16",
        ))
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        Some(KernelSpec::plain(
            (6, 8),
            (144, 256, 2048),
            entry_f64::<T>,
            "avx2-fma f64 6x8",
        ))
    } else {
        None
    }
}

/// Type-erasing entry point for the f32 kernel.
///
/// # Safety
/// `T` must be `f32` (guaranteed by [`spec`]), AVX2+FMA must be available, and
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

/// Type-erasing entry point for the f64 kernel.
///
/// # Safety
/// As [`entry_f32`], with `T` = `f64`.
#[allow(clippy::too_many_arguments)]
unsafe fn entry_f64<T: Real>(
    kc: usize,
    a: *const T,
    b: *const T,
    c: *mut T,
    rs_c: isize,
    cs_c: isize,
    alpha: T,
    beta: T,
) {
    // SAFETY: T is f64, so the casts are identities; the rest is the caller's contract.
    unsafe {
        ukr_f64(
            kc,
            a.cast(),
            b.cast(),
            c.cast(),
            rs_c,
            cs_c,
            alpha.to_f64_lossy(),
            beta.to_f64_lossy(),
        )
    }
}

/// Defines a 6×(2·LANES) kernel for one element type.
macro_rules! define_ukr {
    ($name:ident, $t:ty, $lanes:expr, $zero:ident, $load:ident, $loadu:ident,
     $storeu:ident, $bcast:ident, $set1:ident, $fmadd:ident, $mul:ident) => {
        /// One 6×(2·lanes) tile: see [`super::kernel::MicroKernel`].
        ///
        /// # Safety
        /// AVX2+FMA must be available; `a`, `b` 32-byte aligned packed panels of
        /// `kc` steps; the C tile valid for reads and writes.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            kc: usize,
            mut a: *const $t,
            mut b: *const $t,
            c: *mut $t,
            rs_c: isize,
            cs_c: isize,
            alpha: $t,
            beta: $t,
        ) {
            const MR: usize = 6;
            const L: usize = $lanes;
            let mut acc = [[$zero(); 2]; MR];
            if cs_c == 1 {
                for i in 0..MR {
                    // SAFETY: prefetch never faults; the address is the tile's row i.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(c.offset(i as isize * rs_c).cast()) };
                }
            }
            macro_rules! step {
                () => {
                    // SAFETY: the caller guarantees kc steps of MR (A) and 2·L (B)
                    // elements, B aligned to 32 bytes (each row is 64 bytes).
                    unsafe {
                        let b0 = $load(b);
                        let b1 = $load(b.add(L));
                        for (i, row) in acc.iter_mut().enumerate() {
                            let ai = $bcast(&*a.add(i));
                            row[0] = $fmadd(ai, b0, row[0]);
                            row[1] = $fmadd(ai, b1, row[1]);
                        }
                        a = a.add(MR);
                        b = b.add(2 * L);
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
            let va = $set1(alpha);
            if cs_c == 1 {
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: row i of the tile holds 2·L contiguous elements (cs_c == 1).
                    unsafe {
                        let dst = c.offset(i as isize * rs_c);
                        let r0 = $mul(row[0], va);
                        let r1 = $mul(row[1], va);
                        if beta == 0.0 {
                            $storeu(dst, r0);
                            $storeu(dst.add(L), r1);
                        } else {
                            let vb = $set1(beta);
                            $storeu(dst, $fmadd($loadu(dst), vb, r0));
                            $storeu(dst.add(L), $fmadd($loadu(dst.add(L)), vb, r1));
                        }
                    }
                }
            } else {
                let mut tile = [0.0 as $t; MR * 2 * L];
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: `tile` has MR rows of 2·L elements.
                    unsafe {
                        $storeu(tile.as_mut_ptr().add(i * 2 * L), row[0]);
                        $storeu(tile.as_mut_ptr().add(i * 2 * L + L), row[1]);
                    }
                }
                for i in 0..MR {
                    for j in 0..2 * L {
                        let x = alpha * tile[i * 2 * L + j];
                        // SAFETY: (i, j) lies in the tile the caller gave us.
                        let dst = unsafe { &mut *c.offset(i as isize * rs_c + j as isize * cs_c) };
                        *dst = if beta == 0.0 { x } else { x + beta * *dst };
                    }
                }
            }
        }
    };
}

define_ukr!(
    ukr_f32,
    f32,
    8,
    _mm256_setzero_ps,
    _mm256_load_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_broadcast_ss,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps
);

define_ukr!(
    ukr_f64,
    f64,
    4,
    _mm256_setzero_pd,
    _mm256_load_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_broadcast_sd,
    _mm256_set1_pd,
    _mm256_fmadd_pd,
    _mm256_mul_pd
);
