//! Forward + backward of a SwiGLU MLP block through moe-tensor's autograd:
//! the whole-op-graph cost (GEMMs, elementwise ops, allocation, graph walk),
//! to compare with the same block in PyTorch (tools/bench/mlp_step.py).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use moe_tensor::init::Rng;
use moe_tensor::{DType, Device, Result, Tensor};

struct Mlp {
    x: Tensor,
    w_gate: Tensor,
    w_up: Tensor,
    w_down: Tensor,
}

impl Mlp {
    fn new(tokens: usize, d: usize, f: usize) -> Result<Self> {
        let dev = Device::Cpu;
        let mut rng = Rng::seed(0);
        let std = 0.02;
        Ok(Mlp {
            x: rng.normal((tokens, d), 0.0, 1.0, DType::F32, &dev)?,
            w_gate: rng.normal((d, f), 0.0, std, DType::F32, &dev)?.to_param(),
            w_up: rng.normal((d, f), 0.0, std, DType::F32, &dev)?.to_param(),
            w_down: rng.normal((f, d), 0.0, std, DType::F32, &dev)?.to_param(),
        })
    }

    fn step(&self) -> Result<()> {
        let h = self.x.matmul(&self.w_gate)?.swiglu(&self.x.matmul(&self.w_up)?)?;
        let loss = h.matmul(&self.w_down)?.sqr()?.mean_all()?;
        loss.backward()?;
        for w in [&self.w_gate, &self.w_up, &self.w_down] {
            w.zero_grad();
        }
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("swiglu_mlp_fwd_bwd");
    group.sample_size(10);
    for (tokens, d, f) in [(2048, 512, 1376), (4096, 1024, 2816)] {
        let mlp = Mlp::new(tokens, d, f).expect("init");
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_function(format!("T{tokens}_d{d}_f{f}"), |b| b.iter(|| mlp.step().expect("step")));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
