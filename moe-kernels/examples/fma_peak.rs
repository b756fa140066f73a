//! Measures the f32 FMA peak of this CPU: the ceiling GEMM throughput is judged against.
//!
//! Each thread runs a loop of independent AVX2 FMA chains (enough accumulators to
//! cover FMA latency × FMA ports), so the loop is bound only by FMA throughput.
//! One FMA on 8 f32 lanes counts as 16 FLOP. Where the CPU has AVX512-BF16 it
//! also measures `VDPBF16PS` chains, the bf16 GEMM kernel's instruction: 32
//! bf16 products summed pairwise into 16 f32 lanes, 64 FLOP.
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
        report(cpus, fma_loop, 16.0);
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") {
            println!("bf16 pair VDPBF16PS (zmm) peak, f32 accumulation (the bf16 GEMM kernel's instruction)");
            report(cpus, dpbf16_loop, 64.0);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("fma_peak only measures x86_64 AVX2+FMA");
}

/// A loop of `CHAINS` independent chains, `iters` instructions each.
#[cfg(target_arch = "x86_64")]
type Chains = unsafe fn(u64, f32) -> f32;

/// Prints the best of 3 runs of `kernel` on 1 and 2 threads.
#[cfg(target_arch = "x86_64")]
fn report(cpus: usize, kernel: Chains, flop_per_instruction: f64) {
    let mut per_thread = 0.0;
    for threads in [1usize, 2].into_iter().filter(|&t| t <= cpus) {
        let best = (0..3)
            .map(|_| run(threads, kernel, flop_per_instruction))
            .fold(0.0f64, f64::max);
        if threads == 1 {
            per_thread = best;
        }
        println!(
            "{threads} thread(s): {best:7.1} GFLOP/s  ({:.2}x one thread)",
            best / per_thread
        );
    }
}

/// Runs `threads` threads of `kernel` at once and returns total GFLOP/s.
#[cfg(target_arch = "x86_64")]
fn run(threads: usize, kernel: Chains, flop_per_instruction: f64) -> f64 {
    let start = Instant::now();
    let sink: f32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // SAFETY: main() checked that the CPU supports the kernel's instructions.
                s.spawn(move || unsafe { kernel(ITERS, 1.0 + t as f32 * 1e-7) })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    // Print-free use of the result so the loop cannot be optimised away.
    std::hint::black_box(sink);
    let flop = threads as f64 * ITERS as f64 * CHAINS as f64 * flop_per_instruction;
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

/// `CHAINS` independent `acc += x·y` bf16 pair dot-product chains, `iters`
/// steps each (the products are small enough to keep every sum finite).
///
/// # Safety
/// The CPU must support AVX-512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dpbf16_loop(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(2e-3));
    let y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3));
    let mut acc = [_mm512_set1_ps(seed); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_dpbf16_ps(*a, x, y);
        }
    }
    let mut total = _mm512_setzero_ps();
    for a in acc {
        total = _mm512_add_ps(total, a);
    }
    _mm512_reduce_add_ps(total)
}
