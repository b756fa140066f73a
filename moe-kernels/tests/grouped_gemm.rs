//! Grouped GEMM and the weighted row combine against plain loops: empty and
//! skewed segments, the parallel path, transposed products, and typed errors
//! for short buffers and bad rows.

use moe_kernels::cpu::gemm::{BatchStrides, MatRef, ProductPrecision};
use moe_kernels::cpu::grouped_gemm::{
    combine_rows, combine_rows_backward, grouped_gemm, grouped_gemm_new, grouped_gemm_tn, grouped_gemm_tn_new,
};
use moe_kernels::KernelError;

/// Reference: the segment products written as plain loops.
fn reference(counts: &[usize], k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let m: usize = counts.iter().sum();
    let mut c = vec![0.0; m * n];
    let mut row = 0;
    for (e, &r) in counts.iter().enumerate() {
        for i in row..row + r {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[e * k * n + p * n + j]).sum();
            }
        }
        row += r;
    }
    c
}

fn data(len: usize, seed: u64) -> Vec<f64> {
    (0..len)
        .map(|i| (((i as u64 + 1) * 2654435761 + seed * 97) % 1000) as f64 / 500.0 - 1.0)
        .collect()
}

#[test]
fn segments_use_their_own_matrix_and_empty_ones_are_skipped() {
    let (k, n) = (5, 3);
    let counts = [2, 0, 3, 1];
    let m: usize = counts.iter().sum();
    let a = data(m * k, 1);
    let b = data(counts.len() * k * n, 2);
    let mut c = vec![f64::NAN; m * n];
    let bs = BatchStrides {
        bs: k * n,
        rs: n,
        cs: 1,
    };
    grouped_gemm(
        ProductPrecision::Full,
        &counts,
        k,
        n,
        1.0,
        MatRef { data: &a, rs: k, cs: 1 },
        &b,
        bs,
        0.0,
        &mut c,
    )
    .unwrap();
    let want = reference(&counts, k, n, &a, &b);
    for (x, y) in c.iter().zip(&want) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
}

#[test]
fn large_skewed_segments_take_the_parallel_path_and_match() {
    // 4M multiply-adds: above PAR_MIN_WORK, so segments fork when threads exist.
    let (k, n) = (64, 128);
    let counts = [300, 0, 200, 1];
    let m: usize = counts.iter().sum();
    let a = data(m * k, 5);
    let b = data(counts.len() * k * n, 6);
    let want = reference(&counts, k, n, &a, &b);
    let mut c = vec![0.0; m * n];
    let bs = BatchStrides {
        bs: k * n,
        rs: n,
        cs: 1,
    };
    grouped_gemm(
        ProductPrecision::Full,
        &counts,
        k,
        n,
        1.0,
        MatRef { data: &a, rs: k, cs: 1 },
        &b,
        bs,
        0.0,
        &mut c,
    )
    .unwrap();
    let err = c.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(err < 1e-10, "max error {err}");
    let mut g = vec![0.0; counts.len() * k * n];
    let (ar, cr) = (MatRef { data: &a, rs: k, cs: 1 }, MatRef { data: &c, rs: n, cs: 1 });
    grouped_gemm_tn(ProductPrecision::Full, &counts, k, n, 1.0, ar, cr, 0.0, &mut g).unwrap();
    assert!(g[k * n..2 * k * n].iter().all(|&x| x == 0.0));
    let (i, j, e, start) = (7, 9, 3, 500);
    assert!((g[e * k * n + i * n + j] - a[start * k + i] * c[start * n + j]).abs() < 1e-10);
}

/// The fresh-buffer variant gives grouped_gemm's bits into a zeroed C, with
/// zero rows after the segments: empty and large (parallel, packed)
/// segments, a transposed weight, k = 0, f32 and bf16 precision.
#[test]
fn fresh_output_matches_grouped_gemm_into_zeros() {
    let cases: [(&[usize], usize, usize, usize); 4] = [
        (&[3, 0, 5, 1], 2, 7, 6),
        (&[0, 300, 17, 0, 90], 64, 96, 70),
        (&[4, 4], 0, 5, 0),
        (&[0, 0], 3, 4, 5),
    ];
    for (counts, extra, k, n) in cases {
        let m: usize = counts.iter().sum();
        let e = counts.len();
        let a: Vec<f32> = data(m * k, 11).iter().map(|&x| x as f32).collect();
        let b: Vec<f32> = data(e * k * n, 12).iter().map(|&x| x as f32).collect();
        // Each expert's matrix stored transposed (n × k), read with swapped strides.
        let b_s = BatchStrides {
            bs: k * n,
            rs: 1,
            cs: k,
        };
        let a_v = MatRef { data: &a, rs: k, cs: 1 };
        for precision in [ProductPrecision::Full, ProductPrecision::Bf16] {
            let mut want = vec![0.0f32; (m + extra) * n];
            grouped_gemm(precision, counts, k, n, 1.5, a_v, &b, b_s, 0.0, &mut want[..m * n]).unwrap();
            let got = grouped_gemm_new(precision, counts, m + extra, k, n, 1.5, a_v, &b, b_s).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{counts:?} k {k} n {n} {precision:?}");
        }
    }
    // Fewer rows than the segments hold is an error naming them.
    let err = grouped_gemm_new(
        ProductPrecision::Full,
        &[2, 2],
        3,
        1,
        1,
        1.0f32,
        MatRef {
            data: &[0.0; 4],
            rs: 1,
            cs: 1,
        },
        &[0.0; 2],
        BatchStrides { bs: 1, rs: 1, cs: 1 },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::LengthMismatch {
                buffer: "rows",
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
}

/// The transposed product's fresh-buffer variant gives grouped_gemm_tn's
/// bits into a zeroed C: empty segments (zero matrices), large ones, f32
/// and bf16 precision.
#[test]
fn fresh_transposed_output_matches_grouped_gemm_tn_into_zeros() {
    let cases: [(&[usize], usize, usize); 3] = [(&[3, 0, 5, 1], 7, 6), (&[0, 300, 17, 0, 90], 96, 70), (&[0, 0], 4, 5)];
    for (counts, m, n) in cases {
        let rows: usize = counts.iter().sum();
        let a: Vec<f32> = data(rows * m, 13).iter().map(|&x| x as f32).collect();
        let b: Vec<f32> = data(rows * n, 14).iter().map(|&x| x as f32).collect();
        let (a_v, b_v) = (MatRef { data: &a, rs: m, cs: 1 }, MatRef { data: &b, rs: n, cs: 1 });
        for precision in [ProductPrecision::Full, ProductPrecision::Bf16] {
            let mut want = vec![0.0f32; counts.len() * m * n];
            grouped_gemm_tn(precision, counts, m, n, 0.5, a_v, b_v, 0.0, &mut want).unwrap();
            let got = grouped_gemm_tn_new(precision, counts, m, n, 0.5, a_v, b_v).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{counts:?} m {m} n {n} {precision:?}");
        }
    }
}

#[test]
fn transposed_product_gives_zero_for_empty_segments() {
    let (m, n) = (3, 4);
    let counts = [0, 2, 3];
    let rows: usize = counts.iter().sum();
    let a = data(rows * m, 3);
    let b = data(rows * n, 4);
    let mut c = vec![f64::NAN; counts.len() * m * n];
    let (ar, br) = (MatRef { data: &a, rs: m, cs: 1 }, MatRef { data: &b, rs: n, cs: 1 });
    grouped_gemm_tn(ProductPrecision::Full, &counts, m, n, 1.0, ar, br, 0.0, &mut c).unwrap();
    assert!(c[..m * n].iter().all(|&x| x == 0.0));
    let mut start = 0;
    for (e, &r) in counts.iter().enumerate() {
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (start..start + r).map(|t| a[t * m + i] * b[t * n + j]).sum();
                assert!((c[e * m * n + i * n + j] - want).abs() < 1e-12);
            }
        }
        start += r;
    }
}

#[test]
fn short_buffers_are_errors_not_panics() {
    let counts = [2, 2];
    let a = vec![0.0f32; 7]; // needs 4 × 2 = 8
    let b = vec![0.0f32; 2 * 2 * 3];
    let mut c = vec![0.0f32; 4 * 3];
    let bs = BatchStrides { bs: 6, rs: 3, cs: 1 };
    let err = grouped_gemm(
        ProductPrecision::Full,
        &counts,
        2,
        3,
        1.0,
        MatRef { data: &a, rs: 2, cs: 1 },
        &b,
        bs,
        0.0,
        &mut c,
    );
    assert!(matches!(err, Err(KernelError::LengthMismatch { buffer: "a", .. })));
    let mut short_c = vec![0.0f32; 11];
    let a = vec![0.0f32; 8];
    let err = grouped_gemm(
        ProductPrecision::Full,
        &counts,
        2,
        3,
        1.0,
        MatRef { data: &a, rs: 2, cs: 1 },
        &b,
        bs,
        0.0,
        &mut short_c,
    );
    assert!(matches!(err, Err(KernelError::LengthMismatch { buffer: "c", .. })));
    let err = grouped_gemm(
        ProductPrecision::Full,
        &counts,
        2,
        3,
        1.0,
        MatRef { data: &a, rs: 2, cs: 1 },
        &b[..11],
        bs,
        0.0,
        &mut c,
    );
    assert!(matches!(err, Err(KernelError::LengthMismatch { buffer: "b", .. })));
}

#[test]
fn combine_rows_and_its_gradients_match_loops() {
    // 3 tokens, K = 2, 4 expert rows of width 2; copy (2, 1) is dropped.
    let y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let rows = [3i64, 0, 1, 2, -1, -1];
    let w = [0.5, 2.0, 1.0, -1.0, 3.0, 4.0];
    let mut out = [f64::NAN; 6];
    combine_rows(&y, 2, &rows, &w, 2, &mut out).unwrap();
    assert_eq!(out, [0.5 * 7.0 + 2.0, 0.5 * 8.0 + 4.0, 3.0 - 5.0, 4.0 - 6.0, 0.0, 0.0]);
    let g = [1.0, -1.0, 2.0, 0.5, 9.0, 9.0];
    let (mut dy, mut dw) = ([f64::NAN; 8], [f64::NAN; 6]);
    combine_rows_backward(&y, 2, &rows, &w, 2, &g, &mut dy, &mut dw).unwrap();
    assert_eq!(dy, [2.0, -2.0, 2.0, 0.5, -2.0, -0.5, 0.5, -0.5]);
    assert_eq!(dw, [7.0 - 8.0, 1.0 - 2.0, 6.0 + 2.0, 10.0 + 3.0, 0.0, 0.0]);
    let bad = combine_rows(&y, 2, &[4, 0, 1, 2, 0, 0], &w, 2, &mut out);
    assert!(matches!(
        bad,
        Err(KernelError::IndexOutOfBounds { index: 4, size: 4, .. })
    ));
    assert!(combine_rows(&y, 2, &rows, &w[..5], 2, &mut out).is_err());
    assert!(combine_rows(&y, 2, &rows, &w, 2, &mut out[..4]).is_err());
}
