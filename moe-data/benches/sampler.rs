//! Sampler cost per batch: [B, T + 1] windows from a two-domain mixture
//! (70% code, 30% english replay) of the built-in corpus, reusing the
//! batch buffer as a training loop would. Shapes: the demo's tiny one, and
//! the paper's sequence length 2048 at a per-device micro-batch of 8.
//! `cargo bench -p moe-data --bench sampler`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moe_data::builtin::{build, BuiltinDomain, BuiltinOptions};
use moe_data::{Batch, Dataset, Mixture, Sampler, SamplerConfig, ValWindows};
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = BuiltinOptions {
        domains: vec![BuiltinDomain::English, BuiltinDomain::Code],
        docs_per_domain: 4000,
        vocab_size: 1024,
        tokenizer_docs: 500,
        ..Default::default()
    };
    build(dir.path(), &opts, &|_, _| {}).expect("built-in dataset");
    let ds = Arc::new(Dataset::open(dir.path(), None).expect("open"));
    let mix = Mixture::parse("code=0.7,english=0.3").expect("mixture");
    let mut g = c.benchmark_group("sampler_next_batch");
    for (b, t) in [(8usize, 256usize), (16, 512), (8, 2048)] {
        let cfg = SamplerConfig {
            batch_size: b,
            seq_len: t,
            seed: 0,
        };
        let mut s = Sampler::new(ds.clone(), mix.clone(), cfg).expect("sampler");
        let mut batch = Batch::default();
        g.throughput(Throughput::Elements((b * t) as u64));
        g.bench_function(BenchmarkId::new("BxT", format!("{b}x{t}")), |bench| {
            bench.iter(|| s.next_batch_into(&mut batch))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("sampler_state");
    let cfg = SamplerConfig {
        batch_size: 8,
        seq_len: 256,
        seed: 0,
    };
    let mut s = Sampler::new(ds.clone(), mix.clone(), cfg).expect("sampler");
    for _ in 0..100 {
        s.next_batch();
    }
    let state = s.state();
    g.bench_function("snapshot", |bench| bench.iter(|| s.state()));
    g.bench_function("restore", |bench| {
        bench.iter(|| Sampler::from_state(ds.clone(), &state).expect("restore"))
    });
    g.bench_function("val_windows_64x256", |bench| {
        bench.iter(|| ValWindows::new(&ds, "english", 256, 64).expect("windows"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
