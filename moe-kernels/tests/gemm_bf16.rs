//! GEMM in bf16 precision (`ProductPrecision::Bf16`) through the public API:
//! every path (direct loop, matrix-vector, packed driver with the bf16 pair
//! kernel where the CPU has AVX512-BF16, batched, grouped) must multiply the
//! operands rounded to bf16 and accumulate in f32.

use moe_kernels::cpu::gemm::{gemm, gemm_batched, gemm_with, BatchStrides, MatMut, MatRef, ProductPrecision};
use moe_kernels::cpu::grouped_gemm::{grouped_gemm, grouped_gemm_tn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Row and column strides of an `rows × cols` operand stored row-major,
/// column-major or with padded rows and every other column.
fn strides(layout: usize, rows: usize, cols: usize) -> (usize, usize, usize) {
    match layout {
        0 => (cols, 1, rows * cols),
        1 => (1, rows, rows * cols),
        _ => (2 * cols + 3, 2, rows * (2 * cols + 3)),
    }
}

/// Integers ±1..=16 (`exact`) and the same values plus 2^-10 (`perturbed`),
/// which bf16's 8 significant bits round back to the integers.
fn integers(len: usize, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<f32>) {
    let exact: Vec<f32> = (0..len)
        .map(|_| {
            let v = rng.random_range(1..=16) as f32;
            if rng.random_bool(0.5) {
                -v
            } else {
                v
            }
        })
        .collect();
    let perturbed = exact.iter().map(|&v| v + v.signum() / 1024.0).collect();
    (exact, perturbed)
}

/// `c = a·b` (alpha 1, beta 1 on `c0`) at `precision` on a pool of `threads`.
#[allow(clippy::too_many_arguments)]
fn product(
    precision: ProductPrecision,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    c0: &[f32],
    (c_rs, c_cs): (usize, usize),
    threads: usize,
) -> Vec<f32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let mut c = c0.to_vec();
    pool.install(|| {
        gemm_with(
            precision,
            m,
            n,
            k,
            1.0,
            MatRef {
                data: a,
                rs: a_rs,
                cs: a_cs,
            },
            MatRef {
                data: b,
                rs: b_rs,
                cs: b_cs,
            },
            1.0,
            MatMut {
                data: &mut c,
                rs: c_rs,
                cs: c_cs,
            },
        )
    });
    c
}

/// Shapes for the direct loop (tiny), matrix-vector (m or n = 1), the packed
/// driver with ragged tiles, several blocks of k, odd depths, and row and
/// column bands on two threads.
const SHAPES: &[(usize, usize, usize)] = &[
    (3, 4, 5),
    (1, 300, 77),
    (300, 1, 77),
    (13, 40, 9),
    (50, 70, 1025),
    (300, 200, 600),
    (40, 500, 96),
];

/// Sums of integer products stay below 2^24, so every order of f32 sums
/// is exact: the bf16 product of the perturbed operands must equal the
/// full-precision product of the integers bit for bit, on every path,
/// layout and thread count, with row- and column-major C.
#[test]
fn bf16_products_of_integers_are_exact_on_every_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(m, n, k) in SHAPES {
        for (la, lb, col_c) in [(0, 0, false), (1, 0, false), (0, 1, true), (1, 1, false), (2, 2, true)] {
            let (a_rs, a_cs, a_len) = strides(la, m, k);
            let (b_rs, b_cs, b_len) = strides(lb, k, n);
            let (a, a_bf) = integers(a_len, &mut rng);
            let (b, b_bf) = integers(b_len, &mut rng);
            let (c0, _) = integers(m * n, &mut rng);
            let c_s = if col_c { (1, m) } else { (n, 1) };
            let dims = (m, n, k);
            let want = product(
                ProductPrecision::Full,
                dims,
                &a,
                (a_rs, a_cs),
                &b,
                (b_rs, b_cs),
                &c0,
                c_s,
                1,
            );
            for threads in [1, 2] {
                let got = product(
                    ProductPrecision::Bf16,
                    dims,
                    &a_bf,
                    (a_rs, a_cs),
                    &b_bf,
                    (b_rs, b_cs),
                    &c0,
                    c_s,
                    threads,
                );
                assert_eq!(
                    got, want,
                    "{m}×{n}×{k}, layouts {la} {lb}, column-major C {col_c}, {threads} threads"
                );
            }
            // Full precision sees the perturbation: the test could fail.
            let full = product(
                ProductPrecision::Full,
                dims,
                &a_bf,
                (a_rs, a_cs),
                &b_bf,
                (b_rs, b_cs),
                &c0,
                c_s,
                1,
            );
            assert_ne!(full, want, "{m}×{n}×{k}: perturbation too small to notice");
        }
    }
}

/// Random operands: the bf16 product equals the full-precision product of
/// copies rounded by the `half` crate, within the f32 summation bound
/// `(k + 2)·ε·Σ|a||b|`, and is bit-for-bit the same on 1, 2 and 3 threads.
#[test]
fn bf16_products_match_full_products_of_rounded_copies() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let round = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect() };
    for &(m, n, k) in SHAPES {
        for (la, lb) in [(0, 0), (1, 0), (0, 1), (2, 2)] {
            let (a_rs, a_cs, a_len) = strides(la, m, k);
            let (b_rs, b_cs, b_len) = strides(lb, k, n);
            let a: Vec<f32> = (0..a_len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..b_len).map(|_| rng.random_range(-1.0..1.0)).collect();
            let c0 = vec![0.0f32; m * n];
            let (ra, rb) = (round(&a), round(&b));
            let dims = (m, n, k);
            let want = product(
                ProductPrecision::Full,
                dims,
                &ra,
                (a_rs, a_cs),
                &rb,
                (b_rs, b_cs),
                &c0,
                (n, 1),
                1,
            );
            let bf16_on = |threads| {
                product(
                    ProductPrecision::Bf16,
                    dims,
                    &a,
                    (a_rs, a_cs),
                    &b,
                    (b_rs, b_cs),
                    &c0,
                    (n, 1),
                    threads,
                )
            };
            let got = bf16_on(1);
            for i in 0..m {
                for j in 0..n {
                    let bound: f64 = (0..k)
                        .map(|p| f64::from((ra[i * a_rs + p * a_cs] * rb[p * b_rs + j * b_cs]).abs()))
                        .sum();
                    let tol = 2.0 * (k + 2) as f64 * f64::from(f32::EPSILON) * bound + 1e-30;
                    let (g, w) = (got[i * n + j], want[i * n + j]);
                    assert!(f64::from(g - w).abs() <= tol, "{m}×{n}×{k} ({i},{j}): {g} vs {w}");
                }
            }
            for threads in [2, 3] {
                let again = bf16_on(threads);
                assert!(
                    again.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}×{n}×{k} on {threads} threads"
                );
            }
        }
    }
}

/// The batched and grouped entry points pass the precision down: integer
/// operands perturbed below bf16's resolution give the integers' exact
/// products.
#[test]
fn batched_and_grouped_products_read_bf16_operands() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (m, n, k, batch) = (40, 48, 64, 3);
    let (a, a_bf) = integers(batch * m * k, &mut rng);
    let (b, b_bf) = integers(batch * k * n, &mut rng);
    let a_s = BatchStrides {
        bs: m * k,
        rs: k,
        cs: 1,
    };
    let b_s = BatchStrides {
        bs: k * n,
        rs: 1,
        cs: k,
    };
    let c_s = BatchStrides {
        bs: m * n,
        rs: n,
        cs: 1,
    };
    let batched = |precision, a: &[f32], b: &[f32]| {
        let mut c = vec![0.0f32; batch * m * n];
        gemm_batched(precision, batch, m, n, k, 1.0, a, a_s, b, b_s, 0.0, &mut c, c_s);
        c
    };
    assert_eq!(
        batched(ProductPrecision::Bf16, &a_bf, &b_bf),
        batched(ProductPrecision::Full, &a, &b)
    );

    // Grouped: segments of 30, 0 and 90 rows against the batch's B matrices.
    let counts = [30, 0, 90];
    let rows: usize = counts.iter().sum();
    fn rows_of(v: &[f32], rows: usize, cols: usize) -> MatRef<'_, f32> {
        MatRef {
            data: &v[..rows * cols],
            rs: cols,
            cs: 1,
        }
    }
    let grouped = |precision, a: &[f32], b: &[f32]| {
        let mut c = vec![0.0f32; rows * n];
        grouped_gemm(precision, &counts, k, n, 1.0, rows_of(a, rows, k), b, b_s, 0.0, &mut c).expect("grouped");
        c
    };
    assert_eq!(
        grouped(ProductPrecision::Bf16, &a_bf, &b_bf),
        grouped(ProductPrecision::Full, &a, &b)
    );
    let grouped_tn = |precision, a: &[f32], b: &[f32]| {
        let mut c = vec![0.0f32; counts.len() * k * n];
        grouped_gemm_tn(
            precision,
            &counts,
            k,
            n,
            1.0,
            rows_of(a, rows, k),
            rows_of(b, rows, n),
            0.0,
            &mut c,
        )
        .expect("grouped_tn");
        c
    };
    assert_eq!(
        grouped_tn(ProductPrecision::Bf16, &a_bf, &b_bf),
        grouped_tn(ProductPrecision::Full, &a, &b)
    );
}

/// f64 products ignore the setting.
#[test]
fn f64_products_ignore_bf16() {
    let a = [1.0f64 + 1.0 / 1024.0; 64];
    let b = [3.0f64; 64];
    let mut low = [0.0f64; 64];
    let mut full = [0.0f64; 64];
    fn mat(d: &[f64]) -> MatRef<'_, f64> {
        MatRef { data: d, rs: 8, cs: 1 }
    }
    gemm_with(
        ProductPrecision::Bf16,
        8,
        8,
        8,
        1.0,
        mat(&a),
        mat(&b),
        0.0,
        MatMut {
            data: &mut low,
            rs: 8,
            cs: 1,
        },
    );
    gemm(
        8,
        8,
        8,
        1.0,
        mat(&a),
        mat(&b),
        0.0,
        MatMut {
            data: &mut full,
            rs: 8,
            cs: 1,
        },
    );
    assert_eq!(low, full);
}
