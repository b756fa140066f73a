//! Times `gemm` on square f32 products and prints one JSON line per size, in
//! the format of `tools/bench/matmul_peer.py`, so our numbers and PyTorch's /
//! numpy's can be taken in interleaved rounds by `tools/bench/gemm_rounds.sh`
//! (on a shared machine that gives every library the same quiet moments).
//! The criterion bench (`cargo bench -p moe-kernels --bench gemm`) remains the
//! reference measurement; this is the same call timed the same way as the peers.
//!
//! `GEMM_BACKEND=gemm-crate` or `matrixmultiply` times those crates instead
//! (the alternatives `cpu::gemm` was chosen over; matrixmultiply takes its
//! thread count from `MATMUL_NUM_THREADS`).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo run --release -p moe-kernels --example gemm_square -- 1024 2048`

use std::time::{Duration, Instant};

use moe_kernels::cpu::gemm::{gemm, MatMut, MatRef};

/// Warm-up runs, then timed runs until both `MIN_RUNS` and `MIN_TIME` are met
/// (the same rule as matmul_peer.py).
const MIN_RUNS: usize = 10;
const MIN_TIME: Duration = Duration::from_secs(1);

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|s| s.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![256, 512, 1024, 2048]
    } else {
        sizes
    };
    let threads = rayon::current_num_threads();
    for n in sizes {
        let a: Vec<f32> = (0..n * n).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        let b: Vec<f32> = (0..n * n)
            .map(|i| ((i * 104_729) % 2003) as f32 / 1000.0 - 1.0)
            .collect();
        let mut c = vec![0.0f32; n * n];
        let backend = std::env::var("GEMM_BACKEND").unwrap_or_else(|_| "moe-kernels".into());
        let mut run = || match backend.as_str() {
            "gemm-crate" => {
                let par = if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: a, b, c are n×n row-major buffers that outlive the call.
                unsafe {
                    gemm::gemm(
                        n,
                        n,
                        n,
                        c.as_mut_ptr(),
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
            }
            // SAFETY: as above.
            "matrixmultiply" => unsafe {
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
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            },
            _ => gemm(
                n,
                n,
                n,
                1.0,
                MatRef { data: &a, rs: n, cs: 1 },
                MatRef { data: &b, rs: n, cs: 1 },
                0.0,
                MatMut {
                    data: &mut c,
                    rs: n,
                    cs: 1,
                },
            ),
        };
        run();
        run();
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < MIN_RUNS || start.elapsed() < MIN_TIME {
            let t = Instant::now();
            run();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let gflops = 2.0 * (n as f64).powi(3) / median / 1e9;
        println!(
            "{{\"lib\": \"{backend}\", \"threads\": {threads}, \"n\": {n}, \"median_s\": {median}, \"runs\": {}, \"gflops\": {:.1}}}",
            times.len(),
            gflops
        );
    }
}
