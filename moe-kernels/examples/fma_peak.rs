//! Measures the f32 FMA peak of this CPU: the ceiling GEMM throughput is judged against.
//!
//! Each thread runs a loop of independent AVX2 FMA chains (enough accumulators to
//! cover FMA latency × FMA ports), so the loop is bound only by FMA throughput.
//! One FMA on 8 f32 lanes counts as 16 FLOP.
//!
//! Run: `cargo run --release -p moe-kernels --example fma_peak`

use std::time::Instant;

/// Independent accumulators per thread. Zen 3 and recent Intel cores have two
/// 256-bit FMA ports with 4–5 cycle latency, so 8–10 chains are needed; 12 is safe.
const CHAINS: usize = 12;
/// FMA instructions per chain per timed run.
const ITERS: u64 = 200_000_000;

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            println!("this CPU has no AVX2+FMA; nothing to measure");
            return;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("f32 AVX2 FMA peak ({CHAINS} independent chains per thread, best of 3)");
        let mut per_thread = 0.0;
        for threads in [1usize, 2].into_iter().filter(|&t| t <= cpus) {
            let best = (0..3).map(|_| run(threads)).fold(0.0f64, f64::max);
            if threads == 1 {
                per_thread = best;
            }
            println!(
                "{threads} thread(s): {best:7.1} GFLOP/s  ({:.2}x one thread)",
                best / per_thread
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("fma_peak only measures x86_64 AVX2+FMA");
}

/// Runs `threads` threads of the FMA loop at once and returns total GFLOP/s.
#[cfg(target_arch = "x86_64")]
fn run(threads: usize) -> f64 {
    let start = Instant::now();
    let sink: f32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // SAFETY: main() checked that the CPU supports AVX2 and FMA.
                s.spawn(move || unsafe { fma_loop(ITERS, 1.0 + t as f32 * 1e-7) })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    // Print-free use of the result so the loop cannot be optimised away.
    std::hint::black_box(sink);
    let flop = threads as f64 * ITERS as f64 * CHAINS as f64 * 16.0;
    flop / secs / 1e9
}

/// `CHAINS` independent `acc = acc * x + y` chains, `iters` steps each.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    // x slightly below 1 and y small keep every accumulator finite and normal.
    let x = _mm256_set1_ps(0.999_999);
    let y = _mm256_set1_ps(1e-6);
    let mut acc = [_mm256_set1_ps(seed); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut out = [0.0f32; 8];
    let mut total = _mm256_setzero_ps();
    for a in acc {
        total = _mm256_add_ps(total, a);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), total);
    out.iter().sum()
}
