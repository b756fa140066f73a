//! SwiGLU's gating, `y = silu(g) · u = g · σ(g) · u`, and its backward
//! `du = dy · g · σ(g)`, `dg = dy · u · σ(g) · (1 + g · (1 − σ(g)))`, in one
//! pass each (σ computed once per element in the backward, not twice).
//!
//! `f32` takes the vectorisable polynomial `exp` of the softmax kernels
//! (within 2 ulp; libm's scalar `expf` dominated SwiGLU time), compiled
//! with AVX-512 or AVX2 where the CPU has it; `f64` uses `f64::exp`.
//! Chunks of the slices run in parallel on rayon's pool.

use rayon::prelude::*;
use std::any::TypeId;
use std::mem::MaybeUninit;

use super::index::check_len;
use super::softmax::vexp::exp_f32;
use super::write_once::{as_slots, written_once};
use crate::KernelError;
use crate::Real;

/// Output slots, each written once.
type Out<'a, T> = &'a mut [MaybeUninit<T>];

/// Elements per parallel task.
const CHUNK: usize = 1 << 13;

#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[inline(always)]
fn fwd_body_f32(y: Out<'_, f32>, g: &[f32], u: &[f32]) {
    for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
        y.write(g * sigmoid_f32(g) * u);
    }
}

#[inline(always)]
fn bwd_body_f32(dg: Out<'_, f32>, du: Out<'_, f32>, dy: &[f32], g: &[f32], u: &[f32]) {
    for i in 0..dg.len().min(du.len()).min(dy.len()).min(g.len()).min(u.len()) {
        let (x, d) = (g[i], dy[i]);
        let s = sigmoid_f32(x);
        du[i].write(d * x * s);
        dg[i].write(d * u[i] * s * (1.0 + x * (1.0 - s)));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: callers check that the CPU supports AVX-512F first.
unsafe fn fwd_f32_avx512(y: Out<'_, f32>, g: &[f32], u: &[f32]) {
    fwd_body_f32(y, g, u)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: callers check that the CPU supports AVX2 and FMA first.
unsafe fn fwd_f32_avx2(y: Out<'_, f32>, g: &[f32], u: &[f32]) {
    fwd_body_f32(y, g, u)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: callers check that the CPU supports AVX-512F first.
unsafe fn bwd_f32_avx512(dg: Out<'_, f32>, du: Out<'_, f32>, dy: &[f32], g: &[f32], u: &[f32]) {
    bwd_body_f32(dg, du, dy, g, u)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: callers check that the CPU supports AVX2 and FMA first.
unsafe fn bwd_f32_avx2(dg: Out<'_, f32>, du: Out<'_, f32>, dy: &[f32], g: &[f32], u: &[f32]) {
    bwd_body_f32(dg, du, dy, g, u)
}

/// Which SIMD build of the f32 bodies this CPU runs: 2 AVX-512, 1 AVX2, 0 none.
fn simd_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return 2;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return 1;
        }
    }
    0
}

fn fwd_f32(y: Out<'_, f32>, g: &[f32], u: &[f32]) {
    match simd_level() {
        // SAFETY: the level was detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        2 => unsafe { fwd_f32_avx512(y, g, u) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        1 => unsafe { fwd_f32_avx2(y, g, u) },
        _ => fwd_body_f32(y, g, u),
    }
}

fn bwd_f32(dg: Out<'_, f32>, du: Out<'_, f32>, dy: &[f32], g: &[f32], u: &[f32]) {
    match simd_level() {
        // SAFETY: the level was detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        2 => unsafe { bwd_f32_avx512(dg, du, dy, g, u) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        1 => unsafe { bwd_f32_avx2(dg, du, dy, g, u) },
        _ => bwd_body_f32(dg, du, dy, g, u),
    }
}

/// Views a `T` slice as f32 when `T` is f32.
fn f32s<T: Real>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (same TypeId), so layout and validity are identical.
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| unsafe { &*(s as *const [T] as *const [f32]) })
}

/// Output slots of `T` as f32 slots when `T` is f32.
fn f32s_mut<T: Real>(s: Out<'_, T>) -> Option<Out<'_, f32>> {
    // SAFETY: as in `f32s`.
    (TypeId::of::<T>() == TypeId::of::<f32>())
        .then(|| unsafe { &mut *(s as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f32>]) })
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `y = silu(g) · u` on one chunk: the SIMD f32 body, or the generic formula.
fn fwd_chunk<T: Real>(y: Out<'_, T>, g: &[T], u: &[T]) {
    if let (Some(g), Some(u)) = (f32s(g), f32s(u)) {
        return fwd_f32(f32s_mut(y).expect("T is f32"), g, u);
    }
    for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
        y.write(g * sigmoid(g) * u);
    }
}

/// The backward of [`fwd_chunk`] on one chunk.
fn bwd_chunk<T: Real>(dg: Out<'_, T>, du: Out<'_, T>, dy: &[T], g: &[T], u: &[T]) {
    if let (Some(dy), Some(g), Some(u)) = (f32s(dy), f32s(g), f32s(u)) {
        let (dg, du) = (f32s_mut(dg).expect("T is f32"), f32s_mut(du).expect("T is f32"));
        return bwd_f32(dg, du, dy, g, u);
    }
    for i in 0..dg.len() {
        let (x, d) = (g[i], dy[i]);
        let s = sigmoid(x);
        du[i].write(d * x * s);
        dg[i].write(d * u[i] * s * (T::one() + x * (T::one() - s)));
    }
}

/// `y = silu(g) · u` elementwise over equally long slices, as a new vector
/// written once (no zeroing pass).
pub fn silu_mul_forward<T: Real>(g: &[T], u: &[T]) -> Result<Vec<T>, KernelError> {
    check_len("silu_mul_forward", "u", g.len(), u.len())?;
    Ok(written_once(g.len(), |y| forward_into(y, g, u)))
}

/// Writes every slot of `y` (as long as `g` and `u`).
fn forward_into<T: Real>(y: Out<'_, T>, g: &[T], u: &[T]) {
    y.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(y, (g, u))| fwd_chunk(y, g, u));
}

/// The backward of [`silu_mul_forward`]: new vectors `(dg, du)`, written
/// once, from the output gradient `dy` and the inputs `g`, `u` (all equally
/// long).
pub fn silu_mul_backward<T: Real>(dy: &[T], g: &[T], u: &[T]) -> Result<(Vec<T>, Vec<T>), KernelError> {
    let n = dy.len();
    for (name, len) in [("g", g.len()), ("u", u.len())] {
        check_len("silu_mul_backward", name, n, len)?;
    }
    let mut du_out = Vec::new();
    let dg_out = written_once(n, |dg| {
        du_out = written_once(n, |du| backward_into(dg, du, dy, g, u));
    });
    Ok((dg_out, du_out))
}

/// Writes every slot of `dg` and `du` (as long as `dy`, `g` and `u`).
fn backward_into<T: Real>(dg: Out<'_, T>, du: Out<'_, T>, dy: &[T], g: &[T], u: &[T]) {
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(dy.par_chunks(CHUNK).zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK))))
        .for_each(|((dg, du), (dy, (g, u)))| bwd_chunk(dg, du, dy, g, u));
}

/// Rows per parallel task for rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (CHUNK / width.max(1)).max(1)
}

/// SwiGLU over a fused gate/up projection: each row of `h` holds `f` gate
/// values then `f` up values, and row `r` of `y` (width `f`) is
/// `silu(gate_r) · up_r`. Reads the halves in place: no narrowed copies.
pub fn silu_mul_packed_forward<T: Real>(y: &mut [T], h: &[T], f: usize) -> Result<(), KernelError> {
    if f == 0 {
        return Ok(());
    }
    let rows = y.len() / f;
    check_len("silu_mul_packed_forward", "y", rows * f, y.len())?;
    check_len("silu_mul_packed_forward", "h", rows * 2 * f, h.len())?;
    let per = rows_per_task(f);
    y.par_chunks_mut(per * f)
        .zip(h.par_chunks(per * 2 * f))
        .for_each(|(y, h)| {
            for (y, h) in y.chunks_mut(f).zip(h.chunks(2 * f)) {
                let (g, u) = h.split_at(f);
                fwd_chunk(as_slots(y), g, u);
            }
        });
    Ok(())
}

/// The backward of [`silu_mul_packed_forward`]: `dh` (rows of `2f`: the
/// gate's gradient, then the up's) from `dy` (rows of `f`) and `h`.
pub fn silu_mul_packed_backward<T: Real>(dh: &mut [T], dy: &[T], h: &[T], f: usize) -> Result<(), KernelError> {
    if f == 0 {
        return Ok(());
    }
    let rows = dy.len() / f;
    check_len("silu_mul_packed_backward", "dy", rows * f, dy.len())?;
    check_len("silu_mul_packed_backward", "dh", rows * 2 * f, dh.len())?;
    check_len("silu_mul_packed_backward", "h", rows * 2 * f, h.len())?;
    let per = rows_per_task(f);
    dh.par_chunks_mut(per * 2 * f)
        .zip(dy.par_chunks(per * f).zip(h.par_chunks(per * 2 * f)))
        .for_each(|(dh, (dy, h))| {
            for ((dh, dy), h) in dh.chunks_mut(2 * f).zip(dy.chunks(f)).zip(h.chunks(2 * f)) {
                let (dg, du) = dh.split_at_mut(f);
                let (g, u) = h.split_at(f);
                bwd_chunk(as_slots(dg), as_slots(du), dy, g, u);
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_and_f64_agree_with_the_formulas() {
        let n = 20_000;
        let g: Vec<f64> = (0..n).map(|i| ((i * 37) % 1001) as f64 / 50.0 - 10.0).collect();
        let u: Vec<f64> = (0..n).map(|i| ((i * 11) % 97) as f64 / 40.0 - 1.2).collect();
        let dy: Vec<f64> = (0..n).map(|i| ((i * 7) % 13) as f64 / 6.0 - 1.0).collect();
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let (g32, u32_, dy32) = (to32(&g), to32(&u), to32(&dy));
        let y32 = silu_mul_forward(&g32, &u32_).unwrap();
        let (dg32, du32) = silu_mul_backward(&dy32, &g32, &u32_).unwrap();
        let y64 = silu_mul_forward(&g, &u).unwrap();
        for i in 0..n {
            // The reference in f64 from the f32-rounded inputs.
            let (x, uu, d) = (g32[i] as f64, u32_[i] as f64, dy32[i] as f64);
            let want_y = x * s(x) * uu;
            let want_du = d * x * s(x);
            let want_dg = d * uu * s(x) * (1.0 + x * (1.0 - s(x)));
            let close = |a: f32, b: f64| ((a as f64) - b).abs() <= 1e-5 * (1.0 + b.abs());
            assert!(close(y32[i], want_y), "y at {i}: {} vs {want_y}", y32[i]);
            assert!(close(du32[i], want_du), "du at {i}: {} vs {want_du}", du32[i]);
            assert!(close(dg32[i], want_dg), "dg at {i}: {} vs {want_dg}", dg32[i]);
            assert!((y64[i] - g[i] * s(g[i]) * u[i]).abs() <= 1e-15 * (1.0 + y64[i].abs()));
        }
    }

    #[test]
    fn extremes_and_bad_lengths() {
        let g = [-200.0f32, -90.0, 0.0, 90.0, 200.0];
        let u = [1.0f32; 5];
        let y = silu_mul_forward(&g, &u).unwrap();
        assert_eq!(y[..3], [0.0, 0.0, 0.0]);
        assert_eq!(y[3..], [90.0, 200.0]);
        let err = silu_mul_forward(&g, &u[..4]).unwrap_err();
        assert!(matches!(err, KernelError::LengthMismatch { buffer: "u", .. }), "{err}");
        let err = silu_mul_backward(&u, &g[1..], &u).unwrap_err();
        assert!(matches!(err, KernelError::LengthMismatch { buffer: "g", .. }), "{err}");
    }

    #[test]
    fn packed_rows_equal_the_flat_kernels_on_the_halves() {
        let (rows, f) = (37, 300);
        let h: Vec<f32> = (0..rows * 2 * f)
            .map(|i| ((i * 31) % 997) as f32 / 80.0 - 6.0)
            .collect();
        let dy: Vec<f32> = (0..rows * f).map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0).collect();
        let half = |k: usize| -> Vec<f32> { h.chunks(2 * f).flat_map(|r| r[k * f..(k + 1) * f].to_vec()).collect() };
        let (g, u) = (half(0), half(1));
        let mut y = vec![0f32; rows * f];
        silu_mul_packed_forward(&mut y, &h, f).unwrap();
        assert_eq!(y, silu_mul_forward(&g, &u).unwrap());
        let mut dh = vec![0f32; rows * 2 * f];
        silu_mul_packed_backward(&mut dh, &dy, &h, f).unwrap();
        let (dg, du) = silu_mul_backward(&dy, &g, &u).unwrap();
        let packed: Vec<f32> = dg
            .chunks(f)
            .zip(du.chunks(f))
            .flat_map(|(a, b)| [a, b].concat())
            .collect();
        assert_eq!(dh, packed);
        assert!(silu_mul_packed_forward(&mut y[1..], &h, f).is_err());
        assert!(silu_mul_packed_backward(&mut dh[1..], &dy, &h, f).is_err());
    }
}
