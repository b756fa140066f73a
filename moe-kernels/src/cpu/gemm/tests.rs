//! Unit tests of the internal paths the public API may not reach on this CPU:
//! the portable kernel (shadowed by AVX2 here) and the packed driver on shapes
//! that the public entry point would route elsewhere. The public API itself is
//! tested in `tests/gemm.rs`.

use super::kernel::{self, KernelSpec};
use super::*;

/// Deterministic values in [-1, 1) without a RNG dependency.
fn fill(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Runs the packed driver with `spec` on (m×k, transposed A if `ta`)·(k×n) into a
/// C with row stride `n + 3`, and compares with an f64 triple loop.
fn check_driver<T: Real>(spec: KernelSpec<T>, m: usize, n: usize, k: usize, ta: bool, threads: usize, tol: f64) {
    check_driver_reading(spec, (m, n, k), (ta, false), threads, tol, |x| x);
}

/// [`check_driver`] with B optionally transposed too, and the reference
/// reading each A and B value through `read` (the operand rounding of a
/// reduced-precision kernel).
fn check_driver_reading<T: Real>(
    spec: KernelSpec<T>,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    threads: usize,
    tol: f64,
    read: fn(f64) -> f64,
) {
    let a64 = fill(m * k, 1);
    let b64 = fill(k * n, 2);
    let crs = n + 3;
    let c64 = fill(m * crs, 3);
    let (alpha, beta) = (0.75, -0.5);
    let cast = |v: &[f64]| v.iter().map(|&x| T::from_f64_lossy(x)).collect::<Vec<T>>();
    let (a, b, mut c) = (cast(&a64), cast(&b64), cast(&c64));
    // A stored row-major m×k, or as its transpose (k×m row-major) read with swapped strides.
    let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
    // The reference reads what the kernel multiplies: T's value, through `read`.
    let value = |x: f64| read(T::from_f64_lossy(x).to_f64_lossy());
    let a_val = |i: usize, p: usize| value(a64[i * a_rs + p * a_cs]);
    let b_val = |p: usize, j: usize| value(b64[p * b_rs + j * b_cs]);
    let ra = RawRef {
        ptr: a.as_ptr(),
        rs: a_rs,
        cs: a_cs,
    };
    let rb = RawRef {
        ptr: b.as_ptr(),
        rs: b_rs,
        cs: b_cs,
    };
    let rc = RawMut {
        ptr: c.as_mut_ptr(),
        rs: crs,
        cs: 1,
    };
    // SAFETY: all views lie inside their vectors; C does not overlap itself.
    unsafe {
        driver::gemm_packed(
            &spec,
            m,
            n,
            k,
            T::from_f64_lossy(alpha),
            ra,
            rb,
            T::from_f64_lossy(beta),
            rc,
            threads,
        )
    };
    for i in 0..m {
        for j in 0..crs {
            let want = if j < n {
                let dot: f64 = (0..k).map(|p| a_val(i, p) * b_val(p, j)).sum();
                alpha * dot + beta * c64[i * crs + j]
            } else {
                c64[i * crs + j] // padding columns untouched
            };
            let got = c[i * crs + j].to_f64_lossy();
            assert!(
                (got - want).abs() <= tol * (1.0 + want.abs()),
                "{} ({m},{n},{k}) at ({i},{j}): {got} vs {want}",
                spec.name
            );
        }
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (2, 2, 1),
    (7, 17, 5),
    (13, 31, 29),
    (150, 40, 300),
    (6, 16, 256),
    (61, 97, 520),
    // Large enough for the driver to split C into row bands (m / threads ≥ 96),
    // with a ragged last band; then column bands.
    (389, 23, 70),
    (40, 301, 50),
];

#[test]
fn portable_kernel_matches_reference() {
    for &(m, n, k) in SHAPES {
        for ta in [false, true] {
            check_driver(kernel::portable::<f64>(), m, n, k, ta, 1, 1e-12);
            check_driver(kernel::portable::<f32>(), m, n, k, ta, 2, 1e-4);
        }
    }
}

#[test]
fn selected_kernel_matches_reference_on_threads() {
    for &(m, n, k) in SHAPES {
        for threads in [1, 2, 3] {
            check_driver(kernel::select::<f64>(), m, n, k, threads == 2, threads, 1e-12);
            check_driver(kernel::select::<f32>(), m, n, k, threads == 3, threads, 1e-4);
        }
    }
}

/// Both x86 SIMD kernels, whichever `select` prefers, where this CPU has them;
/// shapes include full 12×32 tiles and ragged edges of both.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_and_avx512_kernels_match_reference() {
    let shapes = [(12, 32, 256), (25, 70, 300), (150, 40, 300), (12, 33, 1)];
    for &(m, n, k) in SHAPES.iter().chain(&shapes) {
        if super::avx512::available() {
            let spec = super::avx512::spec::<f32>().expect("f32 kernel");
            check_driver(spec, m, n, k, false, 1, 1e-4);
            check_driver(spec, m, n, k, true, 2, 1e-4);
        }
        if super::avx2::available() {
            let spec = super::avx2::spec::<f32>().expect("f32 kernel");
            check_driver(spec, m, n, k, false, 1, 1e-4);
            check_driver(spec, m, n, k, true, 2, 1e-4);
        }
    }
}

/// Values for a strided `rows × cols` source with strides (rs, cs).
fn strided_source<T: Real>(rows: usize, cols: usize, rs: usize, cs: usize, seed: u64) -> Vec<T> {
    let len = (rows - 1) * rs + (cols - 1) * cs + 1;
    fill(len, seed).into_iter().map(T::from_f64_lossy).collect()
}

/// Asserts that packed panels of width `w` and depth `kc` hold, at
/// `q·kc·w + p·w + lane`, exactly `want(q, p, lane)` (compared as bits).
fn assert_panels<T: Real>(got: &[T], kc: usize, w: usize, want: impl Fn(usize, usize, usize) -> T, case: &str) {
    let bits = |x: T| x.to_f64_lossy().to_bits();
    let got: Vec<u64> = got.iter().map(|&x| bits(x)).collect();
    assert_slots(
        &got,
        kc,
        w,
        |q, p, lane| bits(want(q, p, lane)),
        &format!("{} {case}", T::NAME),
    );
}

/// Asserts that panels of width `w` and depth `depth` hold, at
/// `q·depth·w + s·w + lane`, exactly `want(q, s, lane)`.
fn assert_slots<G: PartialEq + std::fmt::Debug>(
    got: &[G],
    depth: usize,
    w: usize,
    want: impl Fn(usize, usize, usize) -> G,
    case: &str,
) {
    for (at, g) in got.iter().enumerate() {
        let (q, s, lane) = (at / (depth * w), at / w % depth, at % w);
        assert_eq!(*g, want(q, s, lane), "{case}: panel {q}, slot {s}, lane {lane}");
    }
}

/// The strided layouts both pack tests cover: row-major (padded or not),
/// transposed (padded or not), general strides; f32 (the AVX2 transposing
/// copies where the CPU has AVX2) and f64 (scalar).
fn for_each_layout(
    rows: usize,
    cols: usize,
    check32: fn(usize, usize, usize, usize),
    check64: fn(usize, usize, usize, usize),
) {
    for (rs, cs) in [(cols, 1), (cols + 5, 1), (1, rows), (1, rows + 3), (cols * 2, 3)] {
        check32(rs, cs, rows, cols);
    }
    for (rs, cs) in [(cols, 1), (1, rows)] {
        check64(rs, cs, rows, cols);
    }
}

/// `pack_a` against its definition, element for element: panel `q` holds
/// `A[i0 + q·mr + r, p0 + p]` at `q·kc·mr + p·mr + r`, zero past `mc`; for
/// every kernel's MR, full and ragged panels, and depths around the 8-wide
/// vector step.
#[test]
fn pack_a_matches_its_definition() {
    fn check<T: Real>(rs: usize, cs: usize, rows: usize, cols: usize) {
        let src = strided_source::<T>(rows, cols, rs, cs, 9);
        let a = RawRef {
            ptr: src.as_ptr(),
            rs,
            cs,
        };
        for mr in [12, 6, 4, 8] {
            for (i0, p0) in [(0, 0), (1, 3)] {
                for kc in [1, 7, 8, 9, 16, 23] {
                    for mc in [mr, 2 * mr, 2 * mr + 1, mr - 1] {
                        if i0 + mc > rows || p0 + kc > cols {
                            continue;
                        }
                        let mut got = vec![T::from_f64_lossy(7.0); mc.div_ceil(mr) * kc * mr];
                        // SAFETY: the block lies inside `src`; `got` holds every panel.
                        unsafe { super::pack::pack_a(a, i0, p0, mc, kc, mr, got.as_mut_ptr()) };
                        let want = |q: usize, p: usize, r: usize| {
                            let i = q * mr + r;
                            if i < mc {
                                src[(i0 + i) * rs + (p0 + p) * cs]
                            } else {
                                T::zero()
                            }
                        };
                        assert_panels(
                            &got,
                            kc,
                            mr,
                            want,
                            &format!("A rs {rs} cs {cs} mr {mr} mc {mc} kc {kc}"),
                        );
                    }
                }
            }
        }
    }
    for_each_layout(30, 40, check::<f32>, check::<f64>);
}

/// `pack_b` against its definition: panel `q` holds `B[p0 + p, j0 + q·nr + j]`
/// at `q·kc·nr + p·nr + j`, zero past `nc`, panels outside the requested
/// range untouched; for every kernel's NR.
#[test]
fn pack_b_matches_its_definition() {
    fn check<T: Real>(rs: usize, cs: usize, rows: usize, cols: usize) {
        let src = strided_source::<T>(rows, cols, rs, cs, 11);
        let b = RawRef {
            ptr: src.as_ptr(),
            rs,
            cs,
        };
        let sentinel = T::from_f64_lossy(7.0);
        for nr in [32, 16, 8, 12] {
            for (p0, j0) in [(0, 0), (3, 1)] {
                for kc in [1, 7, 8, 9, 23] {
                    for nc in [nr, 2 * nr, 2 * nr + 1, nr - 1] {
                        if p0 + kc > rows || j0 + nc > cols {
                            continue;
                        }
                        let panels = nc.div_ceil(nr);
                        for range in [0..panels, 1..panels] {
                            let mut got = vec![sentinel; panels * kc * nr];
                            // SAFETY: the block lies inside `src`; `got` holds every panel.
                            unsafe { super::pack::pack_b(b, p0, j0, kc, nc, nr, range.clone(), got.as_mut_ptr()) };
                            let want = |q: usize, p: usize, j: usize| {
                                let col = q * nr + j;
                                if !range.contains(&q) {
                                    sentinel
                                } else if col < nc {
                                    src[(p0 + p) * rs + (j0 + col) * cs]
                                } else {
                                    T::zero()
                                }
                            };
                            let case = format!("B rs {rs} cs {cs} nr {nr} nc {nc} kc {kc} panels {range:?}");
                            assert_panels(&got, kc, nr, want, &case);
                        }
                    }
                }
            }
        }
    }
    for_each_layout(30, 70, check::<f32>, check::<f64>);
}

#[test]
fn overlap_test_is_conservative() {
    assert!(non_overlapping(3, 4, 4, 1));
    assert!(non_overlapping(3, 4, 1, 3));
    assert!(!non_overlapping(3, 4, 3, 1));
    assert!(!non_overlapping(3, 4, 0, 1));
    assert!(non_overlapping(1, 4, 0, 1));
    assert!(non_overlapping(1, 1, 0, 0));
    assert!(!non_overlapping(2, 1, 0, 7));
}

/// The f32 layouts the pair-packing tests cover: row-major (padded or not),
/// transposed (padded or not), general strides.
const PAIR_LAYOUTS: fn(usize, usize) -> [(usize, usize); 5] =
    |rows, cols| [(cols, 1), (cols + 5, 1), (1, rows), (1, rows + 3), (cols * 2, 3)];

/// The word a pair panel holds for k values `x` (even k) and `y` (the next
/// k, if inside the block): bf16 bits of `x` low, of `y` high.
fn pair(x: f32, y: Option<f32>) -> u32 {
    let bits = |v: f32| u32::from(super::bf16::bf16_bits(v));
    bits(x) | y.map_or(0, bits) << 16
}

/// `pack_a_pairs` against its definition: panel `q`, slot `s`, lane `r`
/// holds the pair of `A[i0 + q·mr + r, p0 + 2s]` and `A[.., p0 + 2s + 1]`,
/// zero past `mc` and (high half) past `kc`; odd and even depths, around
/// the 16-wide conversion step.
#[test]
fn pack_a_pairs_matches_its_definition() {
    let (rows, cols) = (40, 50);
    for (rs, cs) in PAIR_LAYOUTS(rows, cols) {
        let src = strided_source::<f32>(rows, cols, rs, cs, 13);
        let a = RawRef {
            ptr: src.as_ptr(),
            rs,
            cs,
        };
        let at = |i: usize, p: usize| src[i * rs + p * cs];
        for (i0, p0) in [(0, 0), (1, 3)] {
            for kc in [1, 2, 7, 16, 31, 32, 33, 45] {
                for mc in [12, 24, 25, 11, 37] {
                    if i0 + mc > rows || p0 + kc > cols {
                        continue;
                    }
                    let depth = kc.div_ceil(2);
                    let mut got = vec![f32::from_bits(0xdead_beef); mc.div_ceil(12) * depth * 12];
                    // SAFETY: the block lies inside `src`; `got` holds every panel.
                    unsafe { super::bf16::pack_a_pairs(a, i0, p0, mc, kc, 12, got.as_mut_ptr()) };
                    let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
                    let want = |q: usize, s: usize, r: usize| {
                        let (i, p) = (i0 + q * 12 + r, p0 + 2 * s);
                        if q * 12 + r >= mc {
                            0
                        } else {
                            pair(at(i, p), (2 * s + 1 < kc).then(|| at(i, p + 1)))
                        }
                    };
                    assert_slots(&got, depth, 12, want, &format!("A rs {rs} cs {cs} mc {mc} kc {kc}"));
                }
            }
        }
    }
}

/// `pack_b_pairs` against its definition: panel `q`, slot `s`, lane `j`
/// holds the pair of `B[p0 + 2s, j0 + q·nr + j]` and `B[p0 + 2s + 1, ..]`,
/// zero past `nc` and (high half) past `kc`; panels outside the requested
/// range untouched.
#[test]
fn pack_b_pairs_matches_its_definition() {
    let (rows, cols) = (50, 80);
    let sentinel = 0xdead_beef_u32;
    for (rs, cs) in PAIR_LAYOUTS(rows, cols) {
        let src = strided_source::<f32>(rows, cols, rs, cs, 17);
        let b = RawRef {
            ptr: src.as_ptr(),
            rs,
            cs,
        };
        let at = |p: usize, j: usize| src[p * rs + j * cs];
        for (p0, j0) in [(0, 0), (3, 1)] {
            for kc in [1, 2, 7, 16, 33, 45] {
                for nc in [32, 64, 65, 31] {
                    if p0 + kc > rows || j0 + nc > cols {
                        continue;
                    }
                    let (depth, panels) = (kc.div_ceil(2), nc.div_ceil(32));
                    for range in [0..panels, 1..panels] {
                        let mut got = vec![f32::from_bits(sentinel); panels * depth * 32];
                        // SAFETY: the block lies inside `src`; `got` holds every panel.
                        unsafe { super::bf16::pack_b_pairs(b, p0, j0, kc, nc, 32, range.clone(), got.as_mut_ptr()) };
                        let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
                        let want = |q: usize, s: usize, j: usize| {
                            let (p, col) = (p0 + 2 * s, q * 32 + j);
                            if !range.contains(&q) {
                                sentinel
                            } else if col >= nc {
                                0
                            } else {
                                pair(at(p, j0 + col), (2 * s + 1 < kc).then(|| at(p + 1, j0 + col)))
                            }
                        };
                        let case = format!("B rs {rs} cs {cs} nc {nc} kc {kc} panels {range:?}");
                        assert_slots(&got, depth, 32, want, &case);
                    }
                }
            }
        }
    }
}

/// Random f32 bit patterns (every class: normal, subnormal, zero, inf, NaN).
fn random_bits(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            f32::from_bits((s >> 32) as u32)
        })
        .collect()
}

/// `bf16_bits` is round-to-nearest-even as the `half` crate computes it for
/// every normal value, keeps NaNs (quieted, sign kept) and flushes
/// subnormals to a signed zero; the AVX512-BF16 conversions, where the CPU
/// has them, give the same bits.
#[test]
fn bf16_rounding_matches_half_and_the_instruction() {
    use super::bf16::bf16_bits;
    let mut xs = random_bits(1 << 18, 5);
    xs.extend([
        0.0,
        -0.0,
        1.0 + 1.0 / 256.0,           // tie, rounds to even (down)
        1.0 + 3.0 / 256.0,           // tie, rounds to even (up)
        f32::MAX,                    // rounds to infinity
        f32::MIN_POSITIVE,           // smallest normal: kept
        1e-40,                       // subnormal: flushed
        f32::from_bits(0x7fa0_0001), // signalling NaN: quieted
    ]);
    for &x in &xs {
        let got = bf16_bits(x);
        let want = if x.is_nan() {
            assert!(
                half::bf16::from_bits(got).is_nan() && got & 0x40 != 0,
                "{x:e}: {got:#06x}"
            );
            continue;
        } else if x.is_subnormal() {
            (x.to_bits() >> 16) as u16 & 0x8000
        } else {
            half::bf16::from_f32(x).to_bits()
        };
        assert_eq!(got, want, "{x:e} ({:#010x})", x.to_bits());
    }
    #[cfg(target_arch = "x86_64")]
    if super::avx512_bf16::supported() {
        let n = xs.len() / 16 * 16;
        let mut vec16 = vec![0u16; n];
        let mut pairs = vec![0u32; n / 2];
        // SAFETY: n elements and slots; the CPU has the instructions.
        unsafe {
            super::avx512_bf16::convert_contiguous(xs.as_ptr(), n, vec16.as_mut_ptr());
            let (lo, hi) = (xs.as_ptr(), xs.as_ptr().add(n / 2));
            super::avx512_bf16::interleave_contiguous(lo, Some(hi), n / 2, pairs.as_mut_ptr());
        }
        for t in 0..n {
            assert_eq!(
                vec16[t],
                bf16_bits(xs[t]),
                "vector conversion of {:#010x}",
                xs[t].to_bits()
            );
        }
        for t in 0..n / 2 {
            assert_eq!(pairs[t], pair(xs[t], Some(xs[n / 2 + t])), "interleave {t}");
        }
        // Masked tails (a 12-row A panel, odd lengths): every slot below the
        // length written, none after it.
        for len in [1, 12, 15, 17, 37] {
            let mut out16 = vec![0xabcd_u16; len + 3];
            let mut out32 = vec![0xdead_beef_u32; len + 3];
            // SAFETY: len elements read, len + 3 slots; the CPU has the instructions.
            unsafe {
                super::avx512_bf16::convert_contiguous(xs.as_ptr(), len, out16.as_mut_ptr());
                super::avx512_bf16::interleave_contiguous(xs.as_ptr(), None, len, out32.as_mut_ptr());
            }
            for t in 0..len {
                assert_eq!(out16[t], bf16_bits(xs[t]), "tail of {len}: {t}");
                assert_eq!(out32[t], pair(xs[t], None), "interleave tail of {len}: {t}");
            }
            assert!(out16[len..].iter().all(|&x| x == 0xabcd), "wrote past {len}");
            assert!(out32[len..].iter().all(|&x| x == 0xdead_beef), "wrote past {len}");
        }
    } else {
        eprintln!("vector conversions skipped: this CPU has no AVX512-BF16");
    }
}

/// The bf16 pair kernel against the f64 product of the bf16-rounded
/// operands, for every transposition of A and B (the packing's converting
/// and interleaving paths), odd depths, several blocks of k, ragged tiles,
/// on one and two threads.
#[cfg(target_arch = "x86_64")]
#[test]
fn bf16_kernel_matches_the_rounded_reference() {
    let Some(spec) = super::avx512_bf16::supported()
        .then(super::avx512_bf16::spec::<f32>)
        .flatten()
    else {
        eprintln!("skipped: this CPU has no AVX512-BF16");
        return;
    };
    let round = |x: f64| f64::from(super::bf16::round_bf16(x as f32));
    for &(m, n, k) in SHAPES
        .iter()
        .chain(&[(12, 32, 512), (25, 70, 1025), (12, 33, 3), (200, 64, 96)])
    {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            check_driver_reading(spec, (m, n, k), (ta, tb), 1 + usize::from(tb), 1e-4, round);
        }
    }
}
