//! AVX512-BF16 micro-kernel for f32 products in bf16 precision: MR×32
//! tiles from pair-packed panels (`bf16.rs`), one `VDPBF16PS` per 16
//! columns and pair of k.
//!
//! `VDPBF16PS` multiplies bf16 pairs exactly and adds both products into
//! f32 accumulators, so per instruction it does twice the multiply-adds of
//! an f32 FMA at the same rate (measured on the project's Zen 4 VM with
//! `examples/fma_peak.rs`: 233 against 116 GFLOP/s per core): the bf16 path's kernel runs at up to
//! twice the f32 kernel's speed. Like the instruction, results flush
//! subnormal f32 values to zero. The tile and the register use are those
//! of the f32 AVX-512 kernel (`avx512.rs`), whose store it shares.

use std::any::TypeId;
use std::arch::x86_64::*;

use super::avx512::{store_tile, MR, NR};
use super::bf16::{pack_a_pairs, pack_b_pairs};
use super::kernel::KernelSpec;
use crate::Real;

/// Whether this CPU has AVX-512F/BW/VL and AVX512-BF16 (checked once; every
/// CPU with the last has the others).
pub(crate) fn supported() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bf16")
    })
}

/// Whether bf16 products use this kernel: [`supported`], and
/// `MOE_GEMM_NO_BF16` unset (read once; it makes bf16 products multiply
/// rounded copies of their operands with the f32 kernels instead, e.g. to
/// compare the two).
pub(crate) fn available() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| supported() && std::env::var_os("MOE_GEMM_NO_BF16").is_none())
}

/// The bf16 pair kernel for `T` (f32 only). Blocking as the f32 AVX-512
/// kernel's in bytes: kc = 512 k values are 256 pair slots, so a kc×32
/// panel of B is still 32 KiB and an mc = 144 block of A 144 KiB.
/// Callers must have checked [`available`].
pub(crate) fn spec<T: Real>() -> Option<KernelSpec<T>> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then_some(KernelSpec {
        mr: MR,
        nr: NR,
        mc: 144,
        kc: 512,
        nc: 4096,
        kpack: 2,
        ukr: entry::<T>,
        pack_a: pack_a_pairs::<T>,
        pack_b: pack_b_pairs::<T>,
        name: "avx512-bf16 bf16x2 12x32",
    })
}

/// Type-erasing entry point.
///
/// # Safety
/// `T` must be `f32` (guaranteed by [`spec`]), the CPU must have
/// AVX512-BF16, and the [`super::kernel::MicroKernel`] contract holds with
/// `ceil(kc/2)` pair slots per panel row.
#[allow(clippy::too_many_arguments)]
unsafe fn entry<T: Real>(kc: usize, a: *const T, b: *const T, c: *mut T, rs_c: isize, cs_c: isize, alpha: T, beta: T) {
    // SAFETY: T is f32, so the casts are identities and alpha/beta exact.
    unsafe {
        ukr(
            kc.div_ceil(2),
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

/// One MR×32 tile over `kq` pair slots.
///
/// # Safety
/// AVX-512F and AVX512-BF16 available; `a` holds kq·MR and `b` kq·NR pair
/// words; the C tile valid for reads and writes.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr(
    kq: usize,
    mut a: *const u32,
    mut b: *const u32,
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
            // SAFETY: the caller guarantees kq slots of MR (A) and NR (B) pairs.
            unsafe {
                let b0 = pairs(_mm512_loadu_si512(b.cast()));
                let b1 = pairs(_mm512_loadu_si512(b.add(L).cast()));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = pairs(_mm512_set1_epi32(*a.add(i) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
        };
    }
    let mut q = 0;
    while q + 4 <= kq {
        step!();
        step!();
        step!();
        step!();
        q += 4;
    }
    while q < kq {
        step!();
        q += 1;
    }
    // SAFETY: the caller's C tile contract.
    unsafe { store_tile(&acc, c, rs_c, cs_c, alpha, beta) }
}

/// 32 bf16 values (16 pairs) from their bits.
#[inline(always)]
fn pairs(x: __m512i) -> __m512bh {
    // SAFETY: both are 512 bits of plain data.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(x) }
}

/// Lane mask of the first `n` (≤ 16) lanes.
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// [`super::bf16::bf16_bits`] of `src[..len]` into `dst`, 16 at a time and
/// a masked tail (no access past `len`).
///
/// # Safety
/// AVX-512F/BW/VL and AVX512-BF16 available; `len` elements at `src` and
/// `len` slots at `dst`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
pub(super) unsafe fn convert_contiguous(src: *const f32, len: usize, dst: *mut u16) {
    let mut t = 0;
    while t < len {
        let m = first((len - t).min(16));
        // SAFETY: the mask covers only lanes below len.
        unsafe {
            let v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src.add(t)));
            _mm256_mask_storeu_epi16(dst.add(t).cast(), m, std::mem::transmute::<__m256bh, __m256i>(v));
        }
        t += 16;
    }
}

/// Pairs `bf16(lo[t]) | bf16(hi[t]) << 16` of contiguous runs into `dst`
/// (`hi` None: zero high halves), 16 at a time and a masked tail.
///
/// # Safety
/// AVX-512F/BW/VL and AVX512-BF16 available; `len` elements at `lo` (and
/// `hi`) and `len` words at `dst`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
pub(super) unsafe fn interleave_contiguous(lo: *const f32, hi: Option<*const f32>, len: usize, dst: *mut u32) {
    let widen = |x: __m256bh| _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(x));
    let mut t = 0;
    while t < len {
        let m = first((len - t).min(16));
        // SAFETY: the mask covers only lanes below len.
        unsafe {
            let mut w = widen(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, lo.add(t))));
            if let Some(h) = hi {
                let high = widen(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, h.add(t))));
                w = _mm512_or_si512(w, _mm512_slli_epi32::<16>(high));
            }
            _mm512_mask_storeu_epi32(dst.add(t).cast(), m, w);
        }
        t += 16;
    }
}

/// Pairs `lo[t] | hi[t] << 16` of bf16 bits into `dst` (`hi` None: zero
/// high halves), 16 at a time and a masked tail.
///
/// # Safety
/// AVX-512F/BW available; `len` values at `lo` (and `hi`) and `len` words at `dst`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn interleave_bf16(lo: *const u16, hi: Option<*const u16>, len: usize, dst: *mut u32) {
    let mut t = 0;
    while t < len {
        let m = first((len - t).min(16));
        // SAFETY: the mask covers only lanes below len.
        unsafe {
            let mut w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, lo.add(t).cast()));
            if let Some(h) = hi {
                let high = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, h.add(t).cast()));
                w = _mm512_or_si512(w, _mm512_slli_epi32::<16>(high));
            }
            _mm512_mask_storeu_epi32(dst.add(t).cast(), m, w);
        }
        t += 16;
    }
}
