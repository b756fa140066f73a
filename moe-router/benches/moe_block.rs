//! MoE block forward + backward throughput (tokens/s): routing, dispatch, the
//! experts as grouped SwiGLU matmuls, weighted combine, balancing losses and
//! the whole backward, for Switch (E = 8, top-1, full-width experts) and
//! granular (E = 32, top-4, quarter-width experts), dropless and with capacity
//! factor 1.25, next to the dense SwiGLU FFN of the same active size
//! (K · F_expert = F_dense). A second group isolates the routing overhead
//! (route + permute + combine, no expert matmuls).
//!
//! Every benchmark runs twice: `wall/…` in wall-clock time (tokens/s) and
//! `cpu/…` in process CPU time (user + system, all threads; tokens per CPU
//! second). On a shared machine other processes inflate wall time; CPU time
//! stays comparable across runs.
//!
//! `cargo bench -p moe-router --bench moe_block`

#![allow(non_snake_case)] // shape suffixes, as in the crate

use criterion::measurement::{Measurement, ValueFormatter};
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
                let counts = route.segments();
                let x_MD = route.permute(&self.x)?;
                let h_MF = x_MD
                    .grouped_matmul(&self.w_gate, counts)?
                    .swiglu(&x_MD.grouped_matmul(&self.w_up, counts)?)?;
                let y_ND = route.combine(&h_MF.grouped_matmul(&self.w_down, counts)?)?;
                dropped = route.stats().unwrap().dropped_fraction;
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
        let mut loss = y.sqr()?.mean_all()?;
        // Sinkhorn has no balancing loss.
        if let Some(extra) = route.weighted_loss()? {
            loss = loss.add(&extra)?;
        }
        loss.backward()?;
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

/// The routed block variants, plus the other routers and drop policy of
/// the paper's families: Sinkhorn (Switch and granular) and capacity 1.25
/// dropping by score.
fn routing_variants(n: usize, d: usize, f: usize) -> Res<Vec<(String, Block)>> {
    let mut out: Vec<(String, Block)> = variants(n, d, f)?
        .into_iter()
        .filter(|(_, b)| b.router.is_some())
        .collect();
    let score = |c: RouterConfig| c.with_capacity(1.25, DropPolicy::Score);
    out.push((
        format!("switch_e8k1_f{f}_sinkhorn"),
        Block::moe(n, d, RouterConfig::sinkhorn(8, 1), f)?,
    ));
    out.push((
        format!("granular_e32k4_f{}_sinkhorn", f / 4),
        Block::moe(n, d, RouterConfig::sinkhorn(32, 4), f / 4)?,
    ));
    out.push((
        format!("granular_e32k4_f{}_cap1.25_score", f / 4),
        Block::moe(n, d, score(RouterConfig::penalty_balanced(32, 4)), f / 4)?,
    ));
    Ok(out)
}

/// Process CPU time (all threads, user + system) in nanoseconds.
struct CpuTime;

fn cpu_now_ns() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID is
    // supported on Linux and the call writes only through the pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

impl Measurement for CpuTime {
    type Intermediate = f64;
    type Value = f64;
    fn start(&self) -> f64 {
        cpu_now_ns()
    }
    fn end(&self, start: f64) -> f64 {
        cpu_now_ns() - start
    }
    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn zero(&self) -> f64 {
        0.0
    }
    fn to_f64(&self, v: &f64) -> f64 {
        *v
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuTimeFormatter
    }
}

/// Shows CPU time in ms and throughput in elements per CPU second.
struct CpuTimeFormatter;

impl ValueFormatter for CpuTimeFormatter {
    fn scale_values(&self, _typical_ns: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v *= 1e-6);
        "ms CPU"
    }
    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => n as f64,
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
        "elem/CPU-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns CPU"
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let mut group = c.benchmark_group(format!("{clock}/moe_block_fwd_bwd"));
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

    let mut group = c.benchmark_group(format!("{clock}/routing_only_fwd_bwd"));
    group.sample_size(20);
    let (n, d) = (2048, 256);
    group.throughput(Throughput::Elements(n as u64));
    for (name, block) in routing_variants(n, d, 704).expect("init") {
        group.bench_function(format!("N{n}_d{d}/{name}"), |b| {
            b.iter(|| block.routing_step().expect("step"))
        });
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "wall");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "cpu");
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_clock;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_clock, cpu_clock);
