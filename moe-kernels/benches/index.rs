//! Throughput of the indexing kernels at shapes the MoE models use: embedding
//! lookup and its scatter-add backward (vocab × width, tokens), router top-k
//! over experts, sampling top-k over a vocabulary, and gather/scatter_add/cumsum
//! over a [tokens, experts] routing matrix. Reported in bytes moved per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moe_kernels::cpu::index::{self, Dims3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

fn rand_f32(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn rand_ids(rng: &mut ChaCha8Rng, n: usize, size: usize) -> Vec<i64> {
    (0..n).map(|_| rng.random_range(0..size as i64)).collect()
}

fn embedding(c: &mut Criterion) {
    let mut g = c.benchmark_group("embedding");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // (vocab, width, tokens): a tiny debug model and a 32k-vocab model at 4k tokens per step.
    for (v, d, n) in [(1000, 64, 256), (32000, 512, 4096)] {
        let w = rand_f32(&mut rng, v * d);
        let ids = rand_ids(&mut rng, n, v);
        let gy = rand_f32(&mut rng, n * d);
        let mut out = vec![0.0f32; n * d];
        let mut gw = vec![0.0f32; v * d];
        let label = format!("V{v}xD{d}/N{n}");
        g.throughput(Throughput::Bytes((2 * n * d * 4) as u64));
        g.bench_function(BenchmarkId::new("forward", &label), |b| {
            b.iter(|| index::embedding(black_box(&w), v, d, black_box(&ids), &mut out).unwrap())
        });
        // Backward reads grad_out and read-modify-writes the rows it hits
        // (at most N of them); rows no id points at are not touched.
        g.throughput(Throughput::Bytes((3 * n * d * 4) as u64));
        g.bench_function(BenchmarkId::new("backward", &label), |b| {
            b.iter(|| index::embedding_backward(black_box(&gy), &ids, v, d, &mut gw).unwrap())
        });
    }
    g.finish();
}

fn topk(c: &mut Criterion) {
    let mut g = c.benchmark_group("topk");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Router scores [tokens, experts] and sampling logits [batch, vocab].
    for (rows, n, k) in [(4096, 8, 1), (4096, 64, 8), (16, 32000, 50)] {
        let x = rand_f32(&mut rng, rows * n);
        let mut v = vec![0.0f32; rows * k];
        let mut ix = vec![0i64; rows * k];
        g.throughput(Throughput::Bytes((rows * n * 4) as u64));
        g.bench_function(BenchmarkId::from_parameter(format!("{rows}x{n}/k{k}")), |b| {
            b.iter(|| index::topk(black_box(&x), rows, n, k, &mut v, &mut ix).unwrap())
        });
    }
    g.finish();
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (t, e, k) = (4096, 64, 8);
    let probs = rand_f32(&mut rng, t * e);
    let idx = rand_ids(&mut rng, t * k, e);
    let gk = rand_f32(&mut rng, t * k);
    let mut out = vec![0.0f32; t * k];
    let mut acc = vec![0.0f32; t * e];
    let d = Dims3::new(t, e, 1);
    g.throughput(Throughput::Bytes((t * k * 12) as u64));
    g.bench_function(format!("gather/T{t}xE{e}/K{k}"), |b| {
        b.iter(|| index::gather(black_box(&probs), d, &idx, k, &mut out).unwrap())
    });
    g.bench_function(format!("scatter_add/T{t}xE{e}/K{k}"), |b| {
        b.iter(|| index::scatter_add(&mut acc, d, &idx, black_box(&gk), k).unwrap())
    });
    let mut pos = vec![0.0f32; t * e];
    g.throughput(Throughput::Bytes((t * e * 8) as u64));
    g.bench_function(format!("cumsum_over_tokens/T{t}xE{e}"), |b| {
        b.iter(|| index::cumsum(black_box(&probs), Dims3::new(1, t, e), &mut pos).unwrap())
    });
    g.finish();
}

criterion_group!(benches, embedding, topk, routing);
criterion_main!(benches);
