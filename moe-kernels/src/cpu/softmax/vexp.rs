//! Row primitives shared by the softmax family (softmax, cross-entropy,
//! attention): max, `exp(x - m)` with its sum, and scaling.
//!
//! `f32` rows take a branch-free polynomial `exp` that the compiler
//! vectorises (libm's `expf` is a scalar call and dominated softmax time);
//! on x86-64 the same body is compiled again for AVX2 (with FMA) and for
//! AVX-512F and the widest the CPU has is chosen at run time. Every build
//! runs the same operations in the same order (the fused multiply-adds are
//! explicit `mul_add`s, nothing is contracted implicitly), so they give
//! identical bits. `f64` rows use `f64::exp`:
//! they exist for gradient checks, where accuracy matters more than speed.

use std::any::TypeId;

use crate::Real;

/// Lanes of the independent accumulators; 8 f32 lanes fill one AVX2 register.
const LANES: usize = 8;

/// Elements per step of the exp loops: written as one fixed-size block, the
/// AVX-512 build keeps two independent polynomial chains in flight (a plain
/// map loop ran at 0.8 ns per element with AVX2, this at 0.5 with AVX-512,
/// on the 2-core Zen 4 VM).
const UNROLL: usize = 4 * LANES;

/// `exp(x)` for f32, within 2 ulp on [-87.3, 88.3]; 0 below, +inf above, NaN for NaN.
///
/// Cephes `expf`: `x = n·ln2 + r`, a degree-6 polynomial for `exp(r)`, and
/// `2^n` built in the exponent bits. Rounding to `n` uses the 1.5·2²³ trick
/// so that no `floor`/`round` call blocks vectorisation. Every multiply-add
/// is fused (`mul_add`, rounded once): about a third fewer instructions than
/// separate multiplies and adds, and the same bits in every build, as a
/// fused multiply-add has one exact result (CPUs without FMA get it from
/// libm, slowly).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LO: f32 = -87.336_55; // ≈ -126·ln2: smallest normal result
    const HI: f32 = 88.376_26; // ≈ 127.5·ln2: keeps n ≤ 127
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23
    let xc = x.clamp(LO, HI); // NaN stays NaN
    let t = xc.mul_add(LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let z = r * r;
    let p = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let p = p.mul_add(z, r) + 1.0;
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
pub(crate) fn as_f32<T: Real>(s: &[T]) -> Option<&[f32]> {
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

/// Defines `fn $name(args) -> R` running `$body` compiled for AVX-512F,
/// AVX2 with FMA or the baseline target, the widest the CPU has. The body
/// is the same scalar code each time, so every build runs the same
/// operations in the same order and gives the same bits; only the vector
/// width differs.
macro_rules! widest_simd {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$attr])*
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                // SAFETY: called only once AVX-512F is detected below.
                unsafe fn avx512($($arg: $ty),*) -> $ret $body
                #[target_feature(enable = "avx2,fma")]
                // SAFETY: called only once AVX2 and FMA are detected below.
                unsafe fn avx2($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F support was just detected.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: AVX2 and FMA support were just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
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
    let mut oc = out.chunks_exact_mut(UNROLL);
    let mut xc = x.chunks_exact(UNROLL);
    for (o, xs) in (&mut oc).zip(&mut xc) {
        for l in 0..UNROLL {
            o[l] = exp(xs[l] - m);
        }
    }
    for (o, &xv) in oc.into_remainder().iter_mut().zip(xc.remainder()) {
        *o = exp(xv - m);
    }
    sum(out)
}

widest_simd! {
    fn exp_sub_sum_f32(out: &mut [f32], x: &[f32], m: f32) -> f32 {
        exp_sub_sum_body(out, x, m, exp_f32)
    }
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
    let mut bc = buf.chunks_exact_mut(UNROLL);
    for b in &mut bc {
        for v in b.iter_mut() {
            *v = exp(*v - m);
        }
    }
    for v in bc.into_remainder() {
        *v = exp(*v - m);
    }
    sum(buf)
}

widest_simd! {
    fn exp_sub_sum_inplace_f32(buf: &mut [f32], m: f32) -> f32 {
        exp_sub_sum_inplace_body(buf, m, exp_f32)
    }
}

/// In-place `buf = exp(buf - m)`, returning `Σ buf`.
pub(crate) fn exp_sub_sum_inplace<T: Real>(buf: &mut [T], m: T) -> T {
    if let Some(bf) = as_f32_mut(buf) {
        let mf = m.to_f64_lossy() as f32;
        return T::from_f64_lossy(exp_sub_sum_inplace_f32(bf, mf) as f64);
    }
    exp_sub_sum_inplace_body(buf, m, |v: T| v.exp())
}

/// Attention backward's row step in one pass: `p = exp(s − lse)` in place
/// of the scores and `ds = p · (ds − delta) · scale` in place of `dP`
/// (`p.len() == ds.len()`), the same operations in the same order as
/// [`exp_sub_sum_inplace`] and the separate product would do.
pub(crate) fn probs_and_score_grads<T: Real>(p: &mut [T], ds: &mut [T], lse: T, delta: T, scale: T) {
    debug_assert_eq!(p.len(), ds.len());
    if let (Some(pf), Some(df)) = (as_f32_mut(p), as_f32_mut(ds)) {
        let f = |x: T| x.to_f64_lossy() as f32;
        return probs_and_score_grads_f32(pf, df, f(lse), f(delta), f(scale));
    }
    probs_and_score_grads_body(p, ds, lse, delta, scale, |v: T| v.exp());
}

#[inline(always)]
fn probs_and_score_grads_body<T: Real>(p: &mut [T], ds: &mut [T], lse: T, delta: T, scale: T, exp: impl Fn(T) -> T) {
    for (pv, dv) in p.iter_mut().zip(ds.iter_mut()) {
        let e = exp(*pv - lse);
        *pv = e;
        *dv = e * (*dv - delta) * scale;
    }
}

widest_simd! {
    fn probs_and_score_grads_f32(p: &mut [f32], ds: &mut [f32], lse: f32, delta: f32, scale: f32) -> () {
        probs_and_score_grads_body(p, ds, lse, delta, scale, exp_f32)
    }
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
    fn every_simd_build_gives_the_baseline_bits() {
        // Lengths around the unrolled block and its vector widths; values
        // spanning underflow, overflow, signed zeros, infinities and NaN.
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            -87.4,
            -87.3,
            88.3,
            88.4,
            -200.0,
        ];
        for len in [0, 1, 7, 15, 16, 17, 31, 32, 33, 64, 100, 511] {
            let x: Vec<f32> = (0..len)
                .map(|i| {
                    if i % 13 == 5 {
                        specials[(i / 13) % specials.len()]
                    } else {
                        ((i * 7919) % 4001) as f32 / 20.0 - 100.0
                    }
                })
                .collect();
            for m in [0.0f32, 3.5, -50.0] {
                let (mut base, mut widest) = (vec![0.0f32; len], vec![0.0f32; len]);
                let s_base = exp_sub_sum_body(&mut base, &x, m, exp_f32);
                let s_widest = exp_sub_sum_f32(&mut widest, &x, m);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&base), bits(&widest), "len {len}, m {m}");
                assert_eq!(s_base.to_bits(), s_widest.to_bits(), "sum, len {len}, m {m}");
                let mut inplace = x.clone();
                let s_inplace = exp_sub_sum_inplace_f32(&mut inplace, m);
                assert_eq!(bits(&base), bits(&inplace), "in place, len {len}, m {m}");
                assert_eq!(s_base.to_bits(), s_inplace.to_bits(), "in-place sum, len {len}, m {m}");
            }
        }
    }

    #[test]
    fn probs_and_score_grads_match_the_separate_steps() {
        for len in [1, 15, 16, 17, 100] {
            let s: Vec<f32> = (0..len).map(|i| ((i * 37) % 23) as f32 * 0.4 - 4.0).collect();
            let dp: Vec<f32> = (0..len).map(|i| ((i * 11) % 7) as f32 * 0.3 - 1.0).collect();
            let (lse, delta, scale) = (2.5f32, 0.25f32, 0.125f32);
            // The separate steps attention's backward ran before.
            let mut want_p = s.clone();
            exp_sub_sum_inplace(&mut want_p, lse);
            let want_ds: Vec<f32> = dp.iter().zip(&want_p).map(|(&d, &p)| p * (d - delta) * scale).collect();
            let (mut p, mut ds) = (s.clone(), dp.clone());
            probs_and_score_grads(&mut p, &mut ds, lse, delta, scale);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&p), bits(&want_p), "p, len {len}");
            assert_eq!(bits(&ds), bits(&want_ds), "ds, len {len}");
        }
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
