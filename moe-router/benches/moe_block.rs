//! MoE block forward + backward throughput (tokens/s): routing, dispatch, the
//! experts as grouped SwiGLU matmuls, weighted combine, balancing losses and
//! the whole backward, for Switch (E = 8, top-1, full-width experts) and
//! granular (E = 32, top-4, quarter-width experts), dropless and with capacity
//! factor 1.25, next to the dense SwiGLU FFN of the same active size
//! (K · F_expert = F_dense). A second group isolates the routing overhead
//! (route + permute + combine, no expert matmuls).
//!
//! `cargo bench -p moe-router --bench moe_block`

#![allow(non_snake_case)] // shape suffixes, as in the crate

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use moe_router::{DropPolicy, RouteMode, Router, RouterConfig};
use moe_tensor::init::Rng;
use moe_tensor::{DType, Device, Tensor};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One FFN block: dense (no router) or MoE with `E` experts of width `fe`.
struct Block {
    x: Tensor,
    router: Option<Router>,
    w_gate: Tensor,
    w_up: Tensor,
    w_down: Tensor,
}

fn param(rng: &mut Rng, dims: &[usize]) -> Res<Tensor> {
    Ok(rng
        .normal(dims.to_vec(), 0.0, 0.02, DType::F32, &Device::Cpu)?
        .to_param())
}

impl Block {
    fn dense(n: usize, d: usize, f: usize) -> Res<Self> {
        let mut rng = Rng::seed(0);
        Ok(Block {
            x: rng.normal((n, d), 0.0, 1.0, DType::F32, &Device::Cpu)?,
            router: None,
            w_gate: param(&mut rng, &[d, f])?,
            w_up: param(&mut rng, &[d, f])?,
            w_down: param(&mut rng, &[f, d])?,
        })
    }

    fn moe(n: usize, d: usize, config: RouterConfig, fe: usize) -> Res<Self> {
        let mut rng = Rng::seed(0);
        let e = config.num_experts;
        Ok(Block {
            x: rng.normal((n, d), 0.0, 1.0, DType::F32, &Device::Cpu)?,
            router: Some(Router::init(config, d, 0.02, &mut rng, &Device::Cpu)?),
            w_gate: param(&mut rng, &[e, d, fe])?,
            w_up: param(&mut rng, &[e, d, fe])?,
            w_down: param(&mut rng, &[e, fe, d])?,
        })
    }

    /// Forward, loss, backward, zero the gradients; returns the dropped share.
    fn step(&self) -> Res<f64> {
        let mut dropped = 0.0;
        let loss = match &self.router {
            None => {
                let h = self.x.matmul(&self.w_gate)?.swiglu(&self.x.matmul(&self.w_up)?)?;
                h.matmul(&self.w_down)?.sqr()?.mean_all()?
            }
            Some(router) => {
                let route = router.route(&self.x, RouteMode::Train)?;
                let counts = route.counts();
                let x_MD = route.permute(&self.x)?;
                let h_MF = x_MD
                    .grouped_matmul(&self.w_gate, counts)?
                    .swiglu(&x_MD.grouped_matmul(&self.w_up, counts)?)?;
                let y_ND = route.combine(&h_MF.grouped_matmul(&self.w_down, counts)?)?;
                dropped = route.stats.dropped_fraction;
                let loss = y_ND.sqr()?.mean_all()?;
                match route.weighted_loss()? {
                    Some(l) => loss.add(&l)?,
                    None => loss,
                }
            }
        };
        loss.backward()?;
        for w in [&self.w_gate, &self.w_up, &self.w_down] {
            w.zero_grad();
        }
        if let Some(r) = &self.router {
            r.weight().zero_grad();
        }
        Ok(dropped)
    }

    /// Routing alone: route, permute, combine (identity experts), backward.
    fn routing_step(&self) -> Res<()> {
        let router = self.router.as_ref().ok_or("dense block has no router")?;
        let route = router.route(&self.x, RouteMode::Train)?;
        let y = route.combine(&route.permute(&self.x)?)?;
        y.sqr()?
            .mean_all()?
            .add(&route.weighted_loss()?.ok_or("no router loss")?)?
            .backward()?;
        router.weight().zero_grad();
        Ok(())
    }
}

/// The block variants at one size: dense width `f`, Switch experts of width
/// `f`, granular experts of width `f / 4`.
fn variants(n: usize, d: usize, f: usize) -> Res<Vec<(String, Block)>> {
    let cap = |c: RouterConfig| c.with_capacity(1.25, DropPolicy::Position);
    let switch = RouterConfig::penalty_balanced(8, 1);
    let granular = RouterConfig::penalty_balanced(32, 4);
    Ok(vec![
        (format!("dense_f{f}"), Block::dense(n, d, f)?),
        (format!("switch_e8k1_f{f}_dropless"), Block::moe(n, d, switch, f)?),
        (format!("switch_e8k1_f{f}_cap1.25"), Block::moe(n, d, cap(switch), f)?),
        (
            format!("granular_e32k4_f{}_dropless", f / 4),
            Block::moe(n, d, granular, f / 4)?,
        ),
        (
            format!("granular_e32k4_f{}_cap1.25", f / 4),
            Block::moe(n, d, cap(granular), f / 4)?,
        ),
    ])
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("moe_block_fwd_bwd");
    group.sample_size(10);
    for (n, d, f) in [(2048, 256, 704), (1024, 1024, 2816)] {
        group.throughput(Throughput::Elements(n as u64));
        for (name, block) in variants(n, d, f).expect("init") {
            let dropped = block.step().expect("step");
            eprintln!("{name} N{n} d{d}: dropped share {dropped:.4}");
            group.bench_function(format!("N{n}_d{d}/{name}"), |b| b.iter(|| block.step().expect("step")));
        }
    }
    group.finish();

    let mut group = c.benchmark_group("routing_only_fwd_bwd");
    group.sample_size(20);
    let (n, d) = (2048, 256);
    group.throughput(Throughput::Elements(n as u64));
    for (name, block) in variants(n, d, 704)
        .expect("init")
        .into_iter()
        .filter(|(_, b)| b.router.is_some())
    {
        group.bench_function(format!("N{n}_d{d}/{name}"), |b| {
            b.iter(|| block.routing_step().expect("step"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
