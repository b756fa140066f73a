//! Row primitives shared by the softmax family (softmax, cross-entropy,
//! attention): max, `exp(x - m)` with its sum, and scaling.
//!
//! `f32` rows take a branch-free polynomial `exp` that the compiler
//! vectorises (libm's `expf` is a scalar call and dominated softmax time);
//! on x86-64 the same body is compiled a second time with AVX2 enabled and
//! chosen at run time. Both builds run the same operations in the same order
//! (no FMA contraction), so they give identical bits. `f64` rows use `f64::exp`:
//! they exist for gradient checks, where accuracy matters more than speed.

use std::any::TypeId;

use crate::Real;

/// Lanes of the independent accumulators; 8 f32 lanes fill one AVX2 register.
const LANES: usize = 8;

/// `exp(x)` for f32, within 2 ulp on [-87.3, 88.3]; 0 below, +inf above, NaN for NaN.
///
/// Cephes `expf`: `x = n·ln2 + r`, a degree-6 polynomial for `exp(r)`, and
/// `2^n` built in the exponent bits. Rounding to `n` uses the 1.5·2²³ trick
/// so that no `floor`/`round` call blocks vectorisation.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LO: f32 = -87.336_55; // ≈ -126·ln2: smallest normal result
    const HI: f32 = 88.376_26; // ≈ 127.5·ln2: keeps n ≤ 127
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23
    let xc = x.clamp(LO, HI); // NaN stays NaN
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * z + r + 1.0;
    // The low mantissa bits of t hold n (two's complement, |n| ≤ 127).
    let n_int = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let pow2 = f32::from_bits(((n_int + 127) << 23) as u32);
    let y = p * pow2;
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

/// Reinterprets a slice of `T` as `f32` when `T` is `f32`.
#[inline(always)]
fn as_f32<T: Real>(s: &[T]) -> Option<&[f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32 (same TypeId), so layout and validity are identical.
        Some(unsafe { &*(s as *const [T] as *const [f32]) })
    } else {
        None
    }
}

/// Mutable counterpart of [`as_f32`].
#[inline(always)]
fn as_f32_mut<T: Real>(s: &mut [T]) -> Option<&mut [f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32 (same TypeId), so layout and validity are identical.
        Some(unsafe { &mut *(s as *mut [T] as *mut [f32]) })
    } else {
        None
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Sums 8 lanes in a fixed tree order.
#[inline(always)]
fn sum_lanes<T: Real>(a: [T; LANES]) -> T {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Maximum of a row (NaNs are skipped; `-inf` for an empty row).
pub(crate) fn row_max<T: Real>(x: &[T]) -> T {
    let mut acc = [T::neg_infinity(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = T::neg_infinity();
    for &v in acc.iter().chain(chunks.remainder()) {
        m = if v > m { v } else { m };
    }
    m
}

/// `out = exp(x - m)`, returning `Σ out`. Generic body; `exp` picks the precision.
///
/// The exp pass is a plain map loop and the sum a second pass: written as one
/// loop with 8 manual lanes, the compiler left the f32 exp scalar (it did
/// not if-convert the clamps across lanes); as a map it vectorises.
#[inline(always)]
fn exp_sub_sum_body<T: Real>(out: &mut [T], x: &[T], m: T, exp: impl Fn(T) -> T) -> T {
    for (o, &xv) in out.iter_mut().zip(x) {
        *o = exp(xv - m);
    }
    sum(out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
// SAFETY: callers check that the CPU supports AVX2 first.
unsafe fn exp_sub_sum_f32_avx2(out: &mut [f32], x: &[f32], m: f32) -> f32 {
    exp_sub_sum_body(out, x, m, exp_f32)
}

fn exp_sub_sum_f32(out: &mut [f32], x: &[f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 support was just detected.
        return unsafe { exp_sub_sum_f32_avx2(out, x, m) };
    }
    exp_sub_sum_body(out, x, m, exp_f32)
}

/// `out = exp(x - m)` elementwise, returning `Σ out`. `out.len() == x.len()`.
pub(crate) fn exp_sub_sum<T: Real>(out: &mut [T], x: &[T], m: T) -> T {
    debug_assert_eq!(out.len(), x.len());
    if let Some(xf) = as_f32(x) {
        let mf = m.to_f64_lossy() as f32;
        let of = as_f32_mut(out).expect("T is f32");
        return T::from_f64_lossy(exp_sub_sum_f32(of, xf, mf) as f64);
    }
    exp_sub_sum_body(out, x, m, |v: T| v.exp())
}

/// In-place `buf = exp(buf - m)`, returning the sum (same structure as above).
#[inline(always)]
fn exp_sub_sum_inplace_body<T: Real>(buf: &mut [T], m: T, exp: impl Fn(T) -> T) -> T {
    for b in buf.iter_mut() {
        *b = exp(*b - m);
    }
    sum(buf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
// SAFETY: callers check that the CPU supports AVX2 first.
unsafe fn exp_sub_sum_inplace_f32_avx2(buf: &mut [f32], m: f32) -> f32 {
    exp_sub_sum_inplace_body(buf, m, exp_f32)
}

/// In-place `buf = exp(buf - m)`, returning `Σ buf`.
pub(crate) fn exp_sub_sum_inplace<T: Real>(buf: &mut [T], m: T) -> T {
    if let Some(bf) = as_f32_mut(buf) {
        let mf = m.to_f64_lossy() as f32;
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: AVX2 support was just detected.
            let s = unsafe { exp_sub_sum_inplace_f32_avx2(bf, mf) };
            return T::from_f64_lossy(s as f64);
        }
        return T::from_f64_lossy(exp_sub_sum_inplace_body(bf, mf, exp_f32) as f64);
    }
    exp_sub_sum_inplace_body(buf, m, |v: T| v.exp())
}

/// `Σ a ⊙ b` with 8 independent accumulators (vectorisable, fixed order).
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [T::zero(); LANES];
    let mut ac = a.chunks_exact(LANES);
    let mut bc = b.chunks_exact(LANES);
    for (x, y) in (&mut ac).zip(&mut bc) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = sum_lanes(acc);
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        s += x * y;
    }
    s
}

/// `Σ x` with 8 independent accumulators.
#[inline(always)]
pub(crate) fn sum<T: Real>(x: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let mut xc = x.chunks_exact(LANES);
    for c in &mut xc {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut s = sum_lanes(acc);
    for &v in xc.remainder() {
        s += v;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_matches_f64_exp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        // 2 ulp of f32 is about 2.4e-7 relative.
        assert!(worst < 2.5e-7, "worst relative error {worst}");
    }

    #[test]
    fn exp_f32_edge_cases() {
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_sub_sum_f32_and_f64_agree() {
        let x: Vec<f64> = (0..37).map(|i| (i as f64 * 0.731).sin() * 5.0).collect();
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut o64 = vec![0.0; 37];
        let mut o32 = vec![0.0f32; 37];
        let s64 = exp_sub_sum(&mut o64, &x, 1.5);
        let s32 = exp_sub_sum(&mut o32, &xf, 1.5f32);
        assert!((s64 - s32 as f64).abs() < 1e-5 * s64);
        for (a, b) in o64.iter().zip(&o32) {
            assert!((a - *b as f64).abs() < 1e-6 * a.max(1.0));
        }
        let mut inplace = xf.clone();
        let s_in = exp_sub_sum_inplace(&mut inplace, 1.5f32);
        assert_eq!(s_in, s32);
        assert_eq!(inplace, o32);
    }
}
