//! Times `gemm` on square f32 products and prints one JSON line per size, in
//! the format of `tools/bench/matmul_peer.py`, so our numbers and PyTorch's /
//! numpy's can be taken in interleaved rounds by `tools/bench/gemm_rounds.sh`
//! (on a shared machine that gives every library the same quiet moments).
//! The criterion bench (`cargo bench -p moe-kernels --bench gemm`) remains the
//! reference measurement; this is the same call timed the same way as the peers.
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
        let mut run = || {
            gemm(
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
            )
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
            "{{\"lib\": \"moe-kernels\", \"threads\": {threads}, \"n\": {n}, \"median_s\": {median}, \"runs\": {}, \"gflops\": {:.1}}}",
            times.len(),
            gflops
        );
    }
}
