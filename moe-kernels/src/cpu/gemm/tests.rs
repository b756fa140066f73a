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
    let a64 = fill(m * k, 1);
    let b64 = fill(k * n, 2);
    let crs = n + 3;
    let c64 = fill(m * crs, 3);
    let (alpha, beta) = (0.75, -0.5);
    let cast = |v: &[f64]| v.iter().map(|&x| T::from_f64_lossy(x)).collect::<Vec<T>>();
    let (a, b, mut c) = (cast(&a64), cast(&b64), cast(&c64));
    // A stored row-major m×k, or as its transpose (k×m row-major) read with swapped strides.
    let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
    let a_val = |i: usize, p: usize| a64[i * a_rs + p * a_cs];
    let ra = RawRef {
        ptr: a.as_ptr(),
        rs: a_rs,
        cs: a_cs,
    };
    let rb = RawRef {
        ptr: b.as_ptr(),
        rs: n,
        cs: 1,
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
                let dot: f64 = (0..k).map(|p| a_val(i, p) * b64[p * n + j]).sum();
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
    for (at, &g) in got.iter().enumerate() {
        let (q, p, lane) = (at / (kc * w), at / w % kc, at % w);
        let want = want(q, p, lane);
        assert_eq!(
            g.to_f64_lossy().to_bits(),
            want.to_f64_lossy().to_bits(),
            "{} {case}: panel {q}, step {p}, lane {lane}",
            T::NAME
        );
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
