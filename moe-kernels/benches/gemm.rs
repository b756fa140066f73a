//! GEMM throughput. Throughput is reported as "elements" = 2·m·n·k, so
//! criterion's "elem/s" reads as FLOP/s.
//!
//! Threads come from rayon's global pool: `RAYON_NUM_THREADS=1 cargo bench -p
//! moe-kernels --bench gemm` for one thread; every id carries the thread count.
//! The `backends` group times the `gemm` and `matrixmultiply` crates on the
//! same problems (matrixmultiply sizes its own pool from `MATMUL_NUM_THREADS`,
//! default: physical cores).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use moe_kernels::cpu::gemm::{gemm, gemm_batched, BatchStrides, MatMut, MatRef, ProductPrecision};
use moe_kernels::Real;

/// Deterministic values in [-1, 1).
fn filled<T: Real>(len: usize, seed: usize) -> Vec<T> {
    (0..len)
        .map(|i| T::from_f64_lossy(((i * 7919 + seed * 104_729) % 2001) as f64 / 1000.0 - 1.0))
        .collect()
}

/// A row-major buffer, viewed as given (rs, cs): (k, 1) plain, (1, rows) transposed.
struct Operand<T> {
    data: Vec<T>,
    rs: usize,
    cs: usize,
}

impl<T: Real> Operand<T> {
    /// A rows×cols operand stored row-major, or, if `transposed`, stored as its
    /// cols×rows transpose and read through swapped strides.
    fn new(rows: usize, cols: usize, transposed: bool, seed: usize) -> Self {
        let (rs, cs) = if transposed { (1, rows) } else { (cols, 1) };
        Operand {
            data: filled(rows * cols, seed),
            rs,
            cs,
        }
    }
    fn view(&self) -> MatRef<'_, T> {
        MatRef {
            data: &self.data,
            rs: self.rs,
            cs: self.cs,
        }
    }
}

fn threads() -> String {
    format!("{}t", rayon::current_num_threads())
}

/// Benchmarks one `c = a·b` of m×k by k×n under `id`.
#[allow(clippy::too_many_arguments)]
fn bench_one<T: Real>(
    c: &mut Criterion,
    group: &str,
    id: BenchmarkId,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) {
    let a = Operand::<T>::new(m, k, ta, 1);
    let b = Operand::<T>::new(k, n, tb, 2);
    let mut out = vec![T::zero(); m * n];
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    g.bench_function(id, |bench| {
        bench.iter(|| {
            gemm(
                m,
                n,
                k,
                T::one(),
                a.view(),
                b.view(),
                T::zero(),
                MatMut {
                    data: &mut out,
                    rs: n,
                    cs: 1,
                },
            );
        })
    });
    g.finish();
}

fn square(c: &mut Criterion) {
    for n in [256, 512, 1024, 2048] {
        bench_one::<f32>(
            c,
            "gemm_square",
            BenchmarkId::new(format!("f32_{}", threads()), n),
            n,
            n,
            n,
            false,
            false,
        );
    }
    bench_one::<f64>(
        c,
        "gemm_square",
        BenchmarkId::new(format!("f64_{}", threads()), 512),
        512,
        512,
        512,
        false,
        false,
    );
}

/// Linear layer shapes with B·T = 4096 tokens: forward X·W, and the two
/// backward products through strided (transposed) views.
fn transformer(c: &mut Criterion) {
    let bt = 4096;
    for d in [512, 1024] {
        let f = 4 * d;
        let t = threads();
        // Forward: Y[BT, 4d] = X[BT, d] · W[d, 4d].
        bench_one::<f32>(
            c,
            "gemm_transformer",
            BenchmarkId::new(format!("fwd_XW_{t}"), d),
            bt,
            f,
            d,
            false,
            false,
        );
        if d == 512 {
            // dX[BT, d] = dY[BT, 4d] · Wᵀ  (A·Bᵀ: W stored [d, 4d]).
            bench_one::<f32>(
                c,
                "gemm_transformer",
                BenchmarkId::new(format!("bwd_dX_ABt_{t}"), d),
                bt,
                d,
                f,
                false,
                true,
            );
            // dW[d, 4d] = Xᵀ · dY  (Aᵀ·B: X stored [BT, d]).
            bench_one::<f32>(
                c,
                "gemm_transformer",
                BenchmarkId::new(format!("bwd_dW_AtB_{t}"), d),
                d,
                f,
                bt,
                true,
                false,
            );
        }
    }
}

/// Attention-like batched products: [B·H = 32] × (T = 256, Dh = 64).
fn batched(c: &mut Criterion) {
    let (batch, t, dh) = (32, 256, 64);
    let q: Vec<f32> = filled(batch * t * dh, 3);
    let kmat: Vec<f32> = filled(batch * t * dh, 4);
    let p: Vec<f32> = filled(batch * t * t, 5);
    let mut s = vec![0.0f32; batch * t * t];
    let mut o = vec![0.0f32; batch * t * dh];
    let mut g = c.benchmark_group("gemm_batched");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(2 * (batch * t * t * dh) as u64));
    // Scores S[b] = Q[b] · K[b]ᵀ: K stored [B·H, T, Dh], read as Dh×T with swapped strides.
    g.bench_function(
        BenchmarkId::new(format!("QKt_{}", threads()), "32x256x64x256"),
        |bench| {
            bench.iter(|| {
                gemm_batched(
                    ProductPrecision::Full,
                    batch,
                    t,
                    t,
                    dh,
                    1.0,
                    &q,
                    BatchStrides {
                        bs: t * dh,
                        rs: dh,
                        cs: 1,
                    },
                    &kmat,
                    BatchStrides {
                        bs: t * dh,
                        rs: 1,
                        cs: dh,
                    },
                    0.0,
                    &mut s,
                    BatchStrides {
                        bs: t * t,
                        rs: t,
                        cs: 1,
                    },
                )
            })
        },
    );
    // O[b] = P[b] · V[b].
    g.bench_function(
        BenchmarkId::new(format!("PV_{}", threads()), "32x256x256x64"),
        |bench| {
            bench.iter(|| {
                gemm_batched(
                    ProductPrecision::Full,
                    batch,
                    t,
                    dh,
                    t,
                    1.0,
                    &p,
                    BatchStrides {
                        bs: t * t,
                        rs: t,
                        cs: 1,
                    },
                    &kmat,
                    BatchStrides {
                        bs: t * dh,
                        rs: dh,
                        cs: 1,
                    },
                    0.0,
                    &mut o,
                    BatchStrides {
                        bs: t * dh,
                        rs: dh,
                        cs: 1,
                    },
                )
            })
        },
    );
    g.finish();
}

/// The same square f32 products through the `gemm` and `matrixmultiply` crates.
fn backends(c: &mut Criterion) {
    for n in [1024, 2048] {
        let a: Vec<f32> = filled(n * n, 1);
        let b: Vec<f32> = filled(n * n, 2);
        let mut out = vec![0.0f32; n * n];
        let mut g = c.benchmark_group("gemm_backends");
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        g.bench_function(BenchmarkId::new(format!("moe_kernels_{}", threads()), n), |bench| {
            let (av, bv) = (MatRef { data: &a, rs: n, cs: 1 }, MatRef { data: &b, rs: n, cs: 1 });
            bench.iter(|| {
                gemm(
                    n,
                    n,
                    n,
                    1.0,
                    av,
                    bv,
                    0.0,
                    MatMut {
                        data: &mut out,
                        rs: n,
                        cs: 1,
                    },
                )
            })
        });
        let par = match rayon::current_num_threads() {
            1 => gemm::Parallelism::None,
            t => gemm::Parallelism::Rayon(t),
        };
        g.bench_function(BenchmarkId::new(format!("gemm_crate_{}", threads()), n), |bench| {
            bench.iter(|| {
                // SAFETY: all three buffers are n×n row-major and live for the call.
                unsafe {
                    gemm::gemm(
                        n,
                        n,
                        n,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        n as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    )
                }
            })
        });
        let mm_threads = std::env::var("MATMUL_NUM_THREADS").map_or("auto".to_string(), |t| format!("{t}t"));
        g.bench_function(BenchmarkId::new(format!("matrixmultiply_{mm_threads}"), n), |bench| {
            bench.iter(|| {
                // SAFETY: all three buffers are n×n row-major and live for the call.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        a.as_ptr(),
                        n as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
        });
        g.finish();
    }
}

/// Ten flat samples: the large products take a quarter of a second each, and
/// criterion's default linear sampling would run them 55 times.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = square, transformer, batched, backends
}
criterion_main!(benches);
