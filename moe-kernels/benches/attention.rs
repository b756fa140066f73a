//! Causal GQA attention forward and forward+backward. Throughput is reported
//! as "elements" = FLOPs of the causal products (forward 2·2·Dh per visible
//! (query, key) pair, backward 2·5·Dh), so criterion's "elem/s" reads as FLOP/s.
//! Threads: rayon's global pool (`RAYON_NUM_THREADS`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moe_kernels::cpu::attention::{attention_backward, attention_forward, default_scale, AttnDims};
use moe_kernels::cpu::gemm::ProductPrecision;

/// Deterministic values in [-1, 1).
fn filled(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1000.0 - 1.0)
        .collect()
}

fn attention(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("attention_f32");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let cases = [
        AttnDims::causal(1, 4, 4, 128, 32),
        AttnDims::causal(4, 8, 8, 256, 64),
        AttnDims::causal(1, 8, 2, 1024, 64),
        AttnDims::causal(1, 16, 16, 1024, 128),
    ];
    for d in cases {
        let (nq, nkv) = (d.b * d.hq * d.tq * d.dh, d.b * d.hkv * d.tk * d.dh);
        let (q, k, v, d_o) = (filled(nq, 1), filled(nkv, 2), filled(nkv, 3), filled(nq, 4));
        let scale = default_scale::<f32>(d.dh);
        let pairs = (d.b * d.hq * d.tq * (d.tq + 1) / 2) as u64; // visible pairs when Tq = Tk
        let id = format!(
            "b{}_hq{}_hkv{}_t{}_dh{}/t{}",
            d.b,
            d.hq,
            d.hkv,
            d.tq,
            d.dh,
            rayon::current_num_threads()
        );
        g.throughput(Throughput::Elements(pairs * 4 * d.dh as u64));
        g.bench_with_input(BenchmarkId::new("forward", &id), &(), |b, _| {
            b.iter(|| attention_forward(&q, &k, &v, d, scale, ProductPrecision::Full).unwrap())
        });
        g.throughput(Throughput::Elements(pairs * 14 * d.dh as u64));
        g.bench_with_input(BenchmarkId::new("forward_backward", &id), &(), |b, _| {
            b.iter(|| {
                let (o, lse) = attention_forward(&q, &k, &v, d, scale, ProductPrecision::Full).unwrap();
                attention_backward(&d_o, &q, &k, &v, &o, &lse, d, scale, ProductPrecision::Full).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
