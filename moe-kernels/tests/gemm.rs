//! GEMM against a naive f64 reference.
//!
//! Tolerance: for each element the reference also accumulates
//! `bound = |alpha|·Σ_p |a_ip|·|b_pj| + |beta|·|c_ij|` in f64, and the result must
//! satisfy `|got − want| ≤ (k + 2)·ε·bound + tiny`, the classic worst-case
//! rounding bound for a length-k dot product in any summation order (ε is the
//! unit roundoff of the element type). Inputs are rounded to the element type
//! before the reference sees them, so only the kernel's arithmetic is judged.

use moe_kernels::cpu::gemm::{gemm, gemm_batched, BatchStrides, MatMut, MatRef, ProductPrecision};
use moe_kernels::Real;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A matrix stored in a buffer with a given layout, values kept as f64 too.
struct Stored<T> {
    data: Vec<T>,
    rs: usize,
    cs: usize,
}

/// How an operand is laid out in memory.
#[derive(Clone, Copy, Debug)]
enum Layout {
    RowMajor,
    ColMajor,
    /// Row-major with padded rows and every other column (cs = 2).
    Strided,
}

fn store<T: Real>(rows: usize, cols: usize, layout: Layout, rng: &mut ChaCha8Rng) -> Stored<T> {
    let (rs, cs, len) = match layout {
        Layout::RowMajor => (cols, 1, rows * cols),
        Layout::ColMajor => (1, rows, rows * cols),
        Layout::Strided => (2 * cols + 3, 2, rows * (2 * cols + 3)),
    };
    let data = (0..len)
        .map(|_| T::from_f64_lossy(rng.random_range(-1.0..1.0)))
        .collect();
    Stored { data, rs, cs }
}

impl<T: Real> Stored<T> {
    fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.rs + j * self.cs].to_f64_lossy()
    }
    fn view(&self) -> MatRef<'_, T> {
        MatRef {
            data: &self.data,
            rs: self.rs,
            cs: self.cs,
        }
    }
}

/// Reference value and error bound of element (i, j).
fn reference<T: Real>(
    k: usize,
    alpha: f64,
    a: &Stored<T>,
    b: &Stored<T>,
    beta: f64,
    c: &Stored<T>,
    (i, j): (usize, usize),
) -> (f64, f64) {
    let (mut dot, mut mag) = (0.0, 0.0);
    for p in 0..k {
        let x = a.get(i, p) * b.get(p, j);
        dot += x;
        mag += x.abs();
    }
    let c0 = c.get(i, j);
    let (want, cmag) = if beta == 0.0 {
        (alpha * dot, 0.0)
    } else {
        (alpha * dot + beta * c0, (beta * c0).abs())
    };
    (want, alpha.abs() * mag + cmag)
}

fn eps<T: Real>() -> f64 {
    T::epsilon().to_f64_lossy() / 2.0
}

/// One random product; checks every element of C, and that C's padding is untouched.
#[allow(clippy::too_many_arguments)]
fn check_case<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    la: Layout,
    lb: Layout,
    lc: Layout,
    alpha: f64,
    beta: f64,
    rng: &mut ChaCha8Rng,
) {
    let a = store::<T>(m, k, la, rng);
    let b = store::<T>(k, n, lb, rng);
    let c0 = store::<T>(m, n, lc, rng);
    let mut c = Stored {
        data: c0.data.clone(),
        rs: c0.rs,
        cs: c0.cs,
    };
    let (ta, tb) = (T::from_f64_lossy(alpha), T::from_f64_lossy(beta));
    gemm(
        m,
        n,
        k,
        ta,
        a.view(),
        b.view(),
        tb,
        MatMut {
            data: &mut c.data,
            rs: c.rs,
            cs: c.cs,
        },
    );
    let mut touched = vec![false; c.data.len()];
    for i in 0..m {
        for j in 0..n {
            touched[i * c.rs + j * c.cs] = true;
            let (want, bound) = reference(k, alpha, &a, &b, beta, &c0, (i, j));
            let got = c.get(i, j);
            let tol = (k as f64 + 2.0) * eps::<T>() * bound + 1e-300;
            assert!(
                (got - want).abs() <= tol,
                "{} m={m} n={n} k={k} {la:?}/{lb:?}/{lc:?} alpha={alpha} beta={beta} at ({i},{j}): got {got}, want {want}, tol {tol}",
                T::NAME
            );
        }
    }
    for (idx, t) in touched.iter().enumerate() {
        if !t {
            assert_eq!(
                c.data[idx].to_f64_lossy().to_bits(),
                c0.data[idx].to_f64_lossy().to_bits(),
                "padding at {idx} changed"
            );
        }
    }
}

const DIMS: &[usize] = &[0, 1, 2, 3, 5, 7, 13, 16, 17, 31, 64, 97, 131, 257];
const LAYOUTS: [Layout; 3] = [Layout::RowMajor, Layout::ColMajor, Layout::Strided];

fn random_cases<T: Real>(seed: u64, cases: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scalars = [0.0, 1.0, -0.5, 1.75];
    for _ in 0..cases {
        let pick = |rng: &mut ChaCha8Rng| DIMS[rng.random_range(0..DIMS.len())];
        let (m, n, k) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
        let l = |rng: &mut ChaCha8Rng| LAYOUTS[rng.random_range(0..3)];
        let (la, lb, lc) = (l(&mut rng), l(&mut rng), l(&mut rng));
        let alpha = if rng.random_bool(0.9) {
            scalars[rng.random_range(1..4)]
        } else {
            0.0
        };
        let beta = scalars[rng.random_range(0..4)];
        check_case::<T>(m, n, k, la, lb, lc, alpha, beta, &mut rng);
    }
}

#[test]
fn random_shapes_f32() {
    random_cases::<f32>(1, 300);
}

#[test]
fn random_shapes_f64() {
    random_cases::<f64>(2, 300);
}

/// Shapes large enough for several cache blocks in every dimension and for
/// multithreading, on every layout pair, on pools of 1, 2 and 3 threads.
#[test]
fn blocked_shapes_on_thread_pools() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            for (la, lb) in [
                (Layout::RowMajor, Layout::RowMajor),
                (Layout::ColMajor, Layout::RowMajor),
                (Layout::RowMajor, Layout::ColMajor),
            ] {
                check_case::<f32>(301, 263, 530, la, lb, Layout::RowMajor, 1.0, 0.0, &mut rng);
                check_case::<f64>(149, 311, 270, la, lb, Layout::ColMajor, -0.5, 1.0, &mut rng);
            }
            check_case::<f32>(
                1,
                4099,
                600,
                Layout::RowMajor,
                Layout::RowMajor,
                Layout::RowMajor,
                1.0,
                1.0,
                &mut rng,
            );
            check_case::<f32>(
                4099,
                1,
                600,
                Layout::RowMajor,
                Layout::RowMajor,
                Layout::Strided,
                1.0,
                0.0,
                &mut rng,
            );
            check_case::<f64>(
                2000,
                1,
                300,
                Layout::ColMajor,
                Layout::Strided,
                Layout::RowMajor,
                2.0,
                -1.0,
                &mut rng,
            );
        });
    }
}

/// Training must be bit-for-bit reproducible on CPU whatever the thread count:
/// the same product on pools of 1, 2 and 3 threads, and inside a batch, gives
/// identical bits (shapes with ragged edge tiles and a beta that rounds).
#[test]
fn bitwise_identical_across_thread_counts() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for &(m, n, k) in &[(301, 263, 530), (1000, 70, 300), (7, 900, 1000)] {
        let a = store::<f32>(m, k, Layout::RowMajor, &mut rng);
        let b = store::<f32>(k, n, Layout::ColMajor, &mut rng);
        let c0 = store::<f32>(m, n, Layout::RowMajor, &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let mut c = c0.data.clone();
            pool.install(|| {
                gemm(
                    m,
                    n,
                    k,
                    0.7,
                    a.view(),
                    b.view(),
                    0.3,
                    MatMut {
                        data: &mut c,
                        rs: n,
                        cs: 1,
                    },
                )
            });
            c
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(
                one.iter().zip(run(threads)).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}×{n}×{k} on {threads} threads"
            );
        }
        // The same product as both entries of a batch (parallel across the batch).
        let mut cc = [c0.data.clone(), c0.data.clone()].concat();
        let a_s = BatchStrides {
            bs: 0,
            rs: a.rs,
            cs: a.cs,
        };
        let b_s = BatchStrides {
            bs: 0,
            rs: b.rs,
            cs: b.cs,
        };
        gemm_batched(
            ProductPrecision::Full,
            2,
            m,
            n,
            k,
            0.7,
            &a.data,
            a_s,
            &b.data,
            b_s,
            0.3,
            &mut cc,
            BatchStrides {
                bs: m * n,
                rs: n,
                cs: 1,
            },
        );
        assert!(cc
            .chunks(m * n)
            .all(|c| c.iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits())));
    }
}

#[test]
fn beta_zero_ignores_nan_in_c() {
    let (m, n, k) = (37, 41, 19);
    for kk in [k, 0] {
        let a = vec![1.0f32; m * kk];
        let b = vec![2.0f32; kk * n];
        let mut c = vec![f32::NAN; m * n];
        let cv = MatMut {
            data: &mut c,
            rs: n,
            cs: 1,
        };
        gemm(
            m,
            n,
            kk,
            1.0,
            MatRef {
                data: &a,
                rs: kk,
                cs: 1,
            },
            MatRef { data: &b, rs: n, cs: 1 },
            0.0,
            cv,
        );
        assert!(c.iter().all(|&x| x == 2.0 * kk as f32), "k={kk}");
    }
}

#[test]
fn alpha_zero_does_not_read_a_or_b() {
    let (m, n, k) = (20, 30, 40);
    let a = vec![f64::NAN; m * k];
    let b = vec![f64::INFINITY; k * n];
    let mut c: Vec<f64> = (0..m * n).map(|x| x as f64).collect();
    let cv = MatMut {
        data: &mut c,
        rs: n,
        cs: 1,
    };
    gemm(
        m,
        n,
        k,
        0.0,
        MatRef { data: &a, rs: k, cs: 1 },
        MatRef { data: &b, rs: n, cs: 1 },
        0.5,
        cv,
    );
    assert!(c.iter().enumerate().all(|(i, &x)| x == i as f64 * 0.5));
}

#[test]
#[should_panic(expected = "needs")]
fn short_slice_panics_with_message() {
    let a = vec![0.0f32; 5];
    let b = vec![0.0f32; 6];
    let mut c = vec![0.0f32; 4];
    gemm(
        2,
        2,
        3,
        1.0,
        MatRef { data: &a, rs: 3, cs: 1 },
        MatRef { data: &b, rs: 2, cs: 1 },
        0.0,
        MatMut {
            data: &mut c,
            rs: 2,
            cs: 1,
        },
    );
}

/// Batched products, including broadcast A or B (batch stride 0), small
/// (parallel across the batch) and large (parallel inside each product).
#[test]
fn batched_matches_per_entry_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for &(batch, m, n, k, a_bcast, b_bcast) in &[
        (5usize, 7usize, 9usize, 11usize, false, false),
        (32, 64, 64, 32, false, false),
        (6, 33, 17, 8, true, false),
        (4, 12, 70, 25, false, true),
        (3, 300, 200, 280, false, false),
        (3, 0, 4, 5, false, false),
        (2, 4, 4, 0, false, false),
    ] {
        let a_all = store::<f64>(batch * m, k, Layout::RowMajor, &mut rng);
        let b_all = store::<f64>(k, batch * n, Layout::RowMajor, &mut rng);
        let c_all = store::<f64>(batch * m, n, Layout::RowMajor, &mut rng);
        // A entries stacked by rows; B entries side by side in columns (rs = batch·n).
        let a_s = BatchStrides {
            bs: if a_bcast { 0 } else { m * k },
            rs: k,
            cs: 1,
        };
        let b_s = BatchStrides {
            bs: if b_bcast { 0 } else { n },
            rs: batch * n,
            cs: 1,
        };
        let c_s = BatchStrides {
            bs: m * n,
            rs: n,
            cs: 1,
        };
        let mut c = c_all.data.clone();
        gemm_batched(
            ProductPrecision::Full,
            batch,
            m,
            n,
            k,
            1.5,
            &a_all.data,
            a_s,
            &b_all.data,
            b_s,
            -1.0,
            &mut c,
            c_s,
        );
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let (mut want, mut bound) = (
                        -c_all.data[bi * m * n + i * n + j],
                        c_all.data[bi * m * n + i * n + j].abs(),
                    );
                    for p in 0..k {
                        let x = a_all.data[bi * a_s.bs + i * k + p] * b_all.data[p * b_s.rs + bi * b_s.bs + j];
                        want += 1.5 * x;
                        bound += 1.5 * x.abs();
                    }
                    let got = c[bi * m * n + i * n + j];
                    assert!(
                        (got - want).abs() <= (k as f64 + 2.0) * eps::<f64>() * bound,
                        "batch {batch}×{m}×{n}×{k} entry {bi} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// A C batch stride of 0 accumulates every entry into one matrix, in order.
#[test]
fn batched_shared_c_accumulates_sequentially() {
    let (batch, m, n, k) = (4, 3, 5, 2);
    let a: Vec<f32> = (0..batch * m * k).map(|x| x as f32 * 0.25).collect();
    let b: Vec<f32> = (0..k * n).map(|x| x as f32 - 3.0).collect();
    let mut c = vec![1.0f32; m * n];
    let a_s = BatchStrides {
        bs: m * k,
        rs: k,
        cs: 1,
    };
    let b_s = BatchStrides { bs: 0, rs: n, cs: 1 };
    gemm_batched(
        ProductPrecision::Full,
        batch,
        m,
        n,
        k,
        1.0,
        &a,
        a_s,
        &b,
        b_s,
        0.5,
        &mut c,
        BatchStrides { bs: 0, rs: n, cs: 1 },
    );
    let mut want = vec![1.0f64; m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| a[bi * m * k + i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
                want[i * n + j] = dot + 0.5 * want[i * n + j];
            }
        }
    }
    for (g, w) in c.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
    }
}
