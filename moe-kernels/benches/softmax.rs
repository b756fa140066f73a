//! Softmax, log-softmax and fused cross-entropy throughput in GB/s.
//!
//! Throughput counts the bytes each kernel must move (inputs read once,
//! outputs written once), so criterion's "B/s" is effective bandwidth.
//! Shapes: a tiny one, router scores [B·T, E], attention-score rows and an
//! LM head [B·T, V]. Threads: rayon's global pool (`RAYON_NUM_THREADS`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moe_kernels::cpu::cross_entropy::{
    cross_entropy_backward, cross_entropy_forward, cross_entropy_forward_with_grad, grad_scale, Reduction,
};
use moe_kernels::cpu::softmax::{log_softmax_forward, softmax_backward, softmax_forward};

/// Deterministic values in [-4, 4).
fn filled(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 250.0 - 4.0)
        .collect()
}

fn label(n: usize, c: usize) -> String {
    format!("{n}x{c}/t{}", rayon::current_num_threads())
}

fn softmax(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("softmax_f32");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &(n, c) in &[(64, 512), (8192, 64), (4096, 1024), (512, 32_000)] {
        let x = filled(n * c, 1);
        let dy = filled(n * c, 2);
        let mut y = vec![0.0f32; n * c];
        let mut dx = vec![0.0f32; n * c];
        let bytes = (n * c * 4) as u64;
        g.throughput(Throughput::Bytes(2 * bytes));
        g.bench_with_input(BenchmarkId::new("forward", label(n, c)), &(), |b, _| {
            b.iter(|| softmax_forward(&mut y, &x, n, c).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("log_forward", label(n, c)), &(), |b, _| {
            b.iter(|| log_softmax_forward(&mut y, &x, n, c).unwrap())
        });
        softmax_forward(&mut y, &x, n, c).unwrap();
        g.throughput(Throughput::Bytes(3 * bytes));
        g.bench_with_input(BenchmarkId::new("backward", label(n, c)), &(), |b, _| {
            b.iter(|| softmax_backward(&mut dx, &dy, &y, n, c).unwrap())
        });
    }
    g.finish();
}

fn cross_entropy(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("cross_entropy_f32");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &(n, v) in &[(64, 512), (1024, 32_000)] {
        let x = filled(n * v, 3);
        let tg: Vec<i64> = (0..n).map(|i| ((i * 31) % v) as i64).collect();
        let mut lse = vec![0.0f32; n];
        let mut dx = vec![0.0f32; n * v];
        let bytes = (n * v * 4) as u64;
        g.throughput(Throughput::Bytes(bytes));
        g.bench_with_input(BenchmarkId::new("forward", label(n, v)), &(), |b, _| {
            b.iter(|| cross_entropy_forward(&mut lse, &x, &tg, n, v, -100, Reduction::Mean).unwrap())
        });
        let out = cross_entropy_forward(&mut lse, &x, &tg, n, v, -100, Reduction::Mean).unwrap();
        let scale = grad_scale(Reduction::Mean, out.n_valid, 1.0f32);
        g.throughput(Throughput::Bytes(2 * bytes));
        g.bench_with_input(BenchmarkId::new("backward", label(n, v)), &(), |b, _| {
            b.iter(|| cross_entropy_backward(&mut dx, &x, &lse, &tg, n, v, -100, scale).unwrap())
        });
        // Training's one pass: the loss and the gradient (reads x, writes dx).
        g.bench_with_input(BenchmarkId::new("forward_with_grad", label(n, v)), &(), |b, _| {
            b.iter(|| cross_entropy_forward_with_grad(&mut lse, &mut dx, &x, &tg, n, v, -100, Reduction::Mean).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, softmax, cross_entropy);
criterion_main!(benches);
