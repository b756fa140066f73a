//! RMSNorm and RoPE throughput in GB/s (bytes each kernel must move).
//!
//! Shapes [B·T, D]: a tiny one and widths of the study's models. Threads:
//! rayon's global pool (`RAYON_NUM_THREADS`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moe_kernels::cpu::rms_norm::{rms_norm_backward, rms_norm_forward};
use moe_kernels::cpu::rope::{rope_backward, rope_forward, rope_tables};

/// Deterministic values in [-2, 2).
fn filled(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 500.0 - 2.0)
        .collect()
}

fn label(a: usize, b: usize) -> String {
    format!("{a}x{b}/t{}", rayon::current_num_threads())
}

fn rms_norm(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("rms_norm_f32");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &(n, d) in &[(64, 256), (8192, 1024), (4096, 2048)] {
        let x = filled(n * d, 1);
        let w = filled(d, 2);
        let dy = filled(n * d, 3);
        let mut dx = vec![0.0f32; n * d];
        let mut dw = vec![0.0f32; d];
        let bytes = (n * d * 4) as u64;
        g.throughput(Throughput::Bytes(2 * bytes));
        g.bench_with_input(BenchmarkId::new("forward", label(n, d)), &(), |b, _| {
            b.iter(|| rms_norm_forward(&x, &w, n, d, 1e-6).unwrap())
        });
        let (_, rstd) = rms_norm_forward(&x, &w, n, d, 1e-6).unwrap();
        g.throughput(Throughput::Bytes(3 * bytes));
        g.bench_with_input(BenchmarkId::new("backward", label(n, d)), &(), |b, _| {
            b.iter(|| rms_norm_backward(&mut dx, &mut dw, &dy, &x, &w, &rstd, n, d).unwrap())
        });
    }
    g.finish();
}

fn rope(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("rope_f32");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    // (B·H, T, Dh); (64, 256, 32) is the bench models' q and k.
    for &(o, t, dh) in &[(4, 64, 32), (64, 256, 32), (64, 1024, 64), (32, 2048, 128)] {
        let (mut cos, mut sin) = (vec![0.0f32; t * dh / 2], vec![0.0f32; t * dh / 2]);
        rope_tables(&mut cos, &mut sin, t, dh, 10_000.0).unwrap();
        let pos: Vec<i64> = (0..t as i64).collect();
        let x = filled(o * t * dh, 4);
        g.throughput(Throughput::Bytes((2 * o * t * dh * 4) as u64));
        g.bench_with_input(BenchmarkId::new("forward", label(o * t, dh)), &(), |b, _| {
            b.iter(|| rope_forward(&x, &cos, &sin, &pos, o, t, dh).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("backward", label(o * t, dh)), &(), |b, _| {
            b.iter(|| rope_backward(&x, &cos, &sin, &pos, o, t, dh).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, rms_norm, rope);
criterion_main!(benches);
