//! Times `gemm` on the products of one training step of the `bench-moe` /
//! `bench-dense` models (B·T = 2048 rows, D 256, FFN 512, vocab 8192), forward
//! and backward layouts, and prints GFLOP/s per shape: where the step's GEMM
//! time goes and how close each shape runs to the square-matrix throughput.
//!
//! `bf16` as the argument times the products in bf16 precision (operands
//! rounded to bf16, f32 accumulation: the `precision = "bf16"` training path).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo run --release -p moe-kernels --example gemm_shapes [-- bf16]`

use std::time::{Duration, Instant};

use moe_kernels::cpu::gemm::{gemm_with, selected_kernel, MatMut, MatRef, ProductPrecision};

/// (label, m, n, k, a transposed, b transposed).
const SHAPES: &[(&str, usize, usize, usize, bool, bool)] = &[
    ("attn proj  x·Wᵀ", 2048, 256, 256, false, true),
    ("attn proj  dY·W", 2048, 256, 256, false, false),
    ("attn proj  dYᵀ·X", 256, 256, 2048, true, false),
    ("expert up  x·Wᵀ", 4096, 1024, 256, false, true),
    ("expert up  dYᵀ·X", 1024, 256, 4096, true, false),
    ("expert down x·Wᵀ", 4096, 256, 512, false, true),
    ("lm head    x·Wᵀ", 2048, 8192, 256, false, true),
    ("lm head    dY·W", 2048, 256, 8192, false, false),
    ("lm head    dYᵀ·X", 8192, 256, 2048, true, false),
];

fn main() {
    let threads = rayon::current_num_threads();
    let precision = match std::env::args().nth(1).as_deref() {
        Some("bf16") => ProductPrecision::Bf16,
        _ => ProductPrecision::Full,
    };
    println!("{precision:?} precision, kernel {}", selected_kernel::<f32>(precision));
    for &(label, m, n, k, ta, tb) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 2003) as f32 / 1000.0 - 1.0)
            .collect();
        let mut c = vec![0.0f32; m * n];
        // Row-major storage of A (m×k) or of Aᵀ (k×m), likewise B.
        let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
        let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
        let mut run = || {
            gemm_with(
                precision,
                m,
                n,
                k,
                1.0f32,
                MatRef {
                    data: &a,
                    rs: a_rs,
                    cs: a_cs,
                },
                MatRef {
                    data: &b,
                    rs: b_rs,
                    cs: b_cs,
                },
                0.0,
                MatMut {
                    data: &mut c,
                    rs: n,
                    cs: 1,
                },
            )
        };
        for _ in 0..3 {
            run();
        }
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < 10 || start.elapsed() < Duration::from_millis(500) {
            let t = Instant::now();
            run();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        // The minimum as well: on a shared machine it is the steadier figure
        // for comparing two builds.
        let (med, min) = (times[times.len() / 2], times[0]);
        let gflops = 2.0 * (m * n * k) as f64 / med / 1e9;
        println!(
            "{label:18} {m:5}x{n:5}x{k:5}  {threads} thr  {:7.3} ms  {gflops:6.1} GFLOP/s  (min {:7.3} ms)",
            med * 1e3,
            min * 1e3
        );
    }
}
