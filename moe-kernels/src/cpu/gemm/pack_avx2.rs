//! AVX2 transposing copies for GEMM packing: panels of row-major f32 A (every
//! `x·W`-shaped product) and of transposed f32 B (`x·Wᵀ` with a small K, as
//! attention's `Q·Kᵀ`).
//!
//! A panel of MR rows is stored `[p][i]`, so row-major A (unit column stride)
//! must be transposed on the way in, and likewise B panels `[p][j]` from
//! columns contiguous along p. The scalar loop does one load and one
//! store per element, about a cycle each; for the model's D = 256 products
//! that was ~1/8 of the micro-kernel's time on the same data (a packed
//! element feeds only N = 256 multiply-adds). Here eight columns of a group
//! of 8, 4 or 2 rows are loaded as vectors, transposed in registers and
//! stored as eight MR-strided pieces.

use std::any::TypeId;
use std::arch::x86_64::*;

use crate::Real;

/// Packs one full panel of `W` lines that each run contiguously along p
/// (rows of row-major A, or columns of transposed B) into `[p][line]` order,
/// if this module can: T is f32, W one of 32, 16, 12, 8, 6 or 4, and the CPU
/// has AVX2. Returns false otherwise and touches nothing.
///
/// # Safety
/// Line `l` has `kc` readable elements from `src + l·stride`; `out` holds kc·W elements.
#[inline]
pub(crate) unsafe fn transpose_panel<T: Real, const W: usize>(
    src: *const T,
    stride: usize,
    kc: usize,
    out: *mut T,
) -> bool {
    if TypeId::of::<T>() != TypeId::of::<f32>() || groups(W).is_empty() || !has_avx2() {
        return false;
    }
    // SAFETY: T is f32 (checked), AVX2 is present (checked); the rest is the
    // caller's contract.
    unsafe { panel_f32::<W>(src.cast(), stride, kc, out.cast()) };
    true
}

/// Whether AVX2 is available (std caches the CPUID probe).
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Line groups of a W-line panel: (first line, lines) with lines 8, 4 or 2;
/// empty for widths this module does not handle.
const fn groups(w: usize) -> &'static [(usize, usize)] {
    match w {
        32 => &[(0, 8), (8, 8), (16, 8), (24, 8)],
        16 => &[(0, 8), (8, 8)],
        12 => &[(0, 8), (8, 4)],
        8 => &[(0, 8)],
        6 => &[(0, 4), (4, 2)],
        4 => &[(0, 4)],
        _ => &[],
    }
}

/// # Safety
/// AVX2; `src` points at (line 0, p 0) of MR lines with line stride `rs`
/// and kc readable elements each; `out` holds kc·MR floats.
#[target_feature(enable = "avx2")]
unsafe fn panel_f32<const MR: usize>(src: *const f32, rs: usize, kc: usize, out: *mut f32) {
    let full = kc / 8 * 8;
    // SAFETY (whole body): reads stay in the MR rows' kc columns, writes in
    // the panel's kc·MR slots.
    unsafe {
        for p in (0..full).step_by(8) {
            for &(row0, rows) in groups(MR) {
                let s = src.add(row0 * rs + p);
                let o = out.add(p * MR + row0);
                match rows {
                    8 => rows8::<MR>(s, rs, o),
                    4 => rows4::<MR>(s, rs, o),
                    2 => rows2::<MR>(s, rs, o),
                    _ => {}
                }
            }
        }
        for p in full..kc {
            for r in 0..MR {
                *out.add(p * MR + r) = *src.add(r * rs + p);
            }
        }
    }
}

/// 8 rows × 8 columns: column q (the 8 rows' values) to `out + q·MR`.
#[target_feature(enable = "avx2")]
unsafe fn rows8<const MR: usize>(s: *const f32, rs: usize, out: *mut f32) {
    // SAFETY: the caller guarantees 8 readable floats in each of 8 rows and
    // 8 writable floats at each out + q·MR.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * rs)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        // Per 128-bit lane: columns 0/4, 1/5, 2/6, 3/7 of rows 0-3 and 4-7.
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let cols = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (q, c) in cols.into_iter().enumerate() {
            _mm256_storeu_ps(out.add(q * MR), c);
        }
    }
}

/// 4 rows × 8 columns: column q (4 values) to `out + q·MR`.
#[target_feature(enable = "avx2")]
unsafe fn rows4<const MR: usize>(s: *const f32, rs: usize, out: *mut f32) {
    // SAFETY: as for `rows8`, with 4 rows and 4 floats per column.
    unsafe {
        let r: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * rs)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        // Low lane column q, high lane column q + 4.
        let u = [
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        ];
        for (q, v) in u.into_iter().enumerate() {
            _mm_storeu_ps(out.add(q * MR), _mm256_castps256_ps128(v));
            _mm_storeu_ps(out.add((q + 4) * MR), _mm256_extractf128_ps::<1>(v));
        }
    }
}

/// 2 rows × 8 columns: column q (2 values) to `out + q·MR`.
#[target_feature(enable = "avx2")]
unsafe fn rows2<const MR: usize>(s: *const f32, rs: usize, out: *mut f32) {
    // SAFETY: as for `rows8`, with 2 rows and 2 floats per column.
    unsafe {
        let (r0, r1) = (_mm256_loadu_ps(s), _mm256_loadu_ps(s.add(rs)));
        // Pairs (r0[c], r1[c]) for columns 0 1 | 4 5, then 2 3 | 6 7.
        let lo = _mm256_castps_si256(_mm256_unpacklo_ps(r0, r1));
        let hi = _mm256_castps_si256(_mm256_unpackhi_ps(r0, r1));
        for (v, q0) in [(lo, 0), (hi, 2)] {
            let (a, b) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            // Unaligned 8-byte writes: a panel row need not be 8-byte aligned.
            let put = |q: usize, bits: i64| out.add(q * MR).cast::<i64>().write_unaligned(bits);
            put(q0, _mm_cvtsi128_si64(a));
            put(q0 + 1, _mm_extract_epi64::<1>(a));
            put(q0 + 4, _mm_cvtsi128_si64(b));
            put(q0 + 5, _mm_extract_epi64::<1>(b));
        }
    }
}
