//! Evaluation speed against the training forward pass over the same tokens.
//!
//! ```text
//! cargo run -p moe-eval --release --example eval_speed -- [TOKENS] [ROUNDS] [moe|dense]
//! ```
//!
//! Model: the `moe bench` shape (D 256, 4 layers, 8 heads, FFN 512, V 8192;
//! MoE: 8 experts of width 512, top-2), random weights; windows of T = 256
//! random token ids, 8 windows a batch. For each round, in this order:
//! `domain_loss` (no_grad, RouteMode::Eval), the same with routing recorded
//! (`evaluate_domain`, what `moe eval --routing` runs), and the training
//! forward (`Decoder::loss` with gradients recorded, RouteMode::Train, no
//! backward). Prints every round and the median of each, in wall seconds and
//! in process CPU seconds (user + system over all threads, robust to other
//! load on a shared machine).

use moe_data::ValWindows;
use moe_eval::routing::collect::evaluate_domain;
use moe_model::presets::debug_dense;
use moe_model::Decoder;
use moe_router::RouteMode;
use moe_tensor::{init::Rng, Device, Tensor};
use std::time::Instant;

const T: usize = 256;
const BATCH: usize = 8;

fn model(moe: bool) -> anyhow::Result<Decoder> {
    let mut c = debug_dense();
    (c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads) = (8192, 256, 4, 8, 8);
    (c.intermediate_size, c.max_position_embeddings) = (512, 512);
    if moe {
        c = c.switch_from_dense(8)?;
        c.moe.as_mut().expect("moe").router.top_k = 2;
    }
    Ok(Decoder::new(&c, &mut Rng::seed(0), &Device::Cpu)?)
}

fn train_forward(m: &Decoder, w: &ValWindows) -> anyhow::Result<f64> {
    let mut m = m.clone();
    m.set_route_mode(RouteMode::Train);
    let mut sum = 0.0;
    for rows in w.batches(BATCH) {
        let ids: Vec<i64> = rows.iter().map(|&t| t as i64).collect();
        let ids = Tensor::from_vec(ids, (rows.len() / (T + 1), T + 1), &Device::Cpu)?;
        sum += m.loss(&ids)?.ce.to_scalar_f64()?;
    }
    Ok(sum)
}

/// Process CPU time (all threads) in seconds.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `f`, returning (wall seconds, CPU seconds).
fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let (t0, c0) = (Instant::now(), cpu_seconds());
    f()?;
    Ok((t0.elapsed().as_secs_f64(), cpu_seconds() - c0))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tokens: usize = args.first().map_or(Ok(1_000_000), |s| s.parse())?;
    let rounds: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let moe = args.get(2).is_none_or(|s| s != "dense");
    let m = model(moe)?;
    let n = tokens.div_ceil(T);
    let mut x = 1u64;
    let ids = (0..n * (T + 1))
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % 8192) as u32
        })
        .collect();
    let w = ValWindows {
        domain: "random".into(),
        seq_len: T,
        tokens: ids,
    };
    println!(
        "{} model, {} windows x T {T} = {} predicted tokens, batch {BATCH}, {} threads",
        if moe { "MoE 8x top-2" } else { "dense" },
        n,
        n * T,
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    // [phase][round] = (wall, cpu); phases: eval, eval + routing, training forward.
    let mut times: [Vec<(f64, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut loss = 0.0;
    for r in 0..rounds {
        times[0].push(timed(|| {
            loss = moe_eval::domain_loss(&m, &w, BATCH)?.loss;
            Ok(())
        })?);
        times[1].push(timed(|| {
            if moe {
                evaluate_domain(&m, "bench", &w, BATCH, true, |_, _| {})?;
            }
            Ok(())
        })?);
        times[2].push(timed(|| {
            train_forward(&m, &w)?;
            Ok(())
        })?);
        let f = |p: usize| format!("{:.1}s wall / {:.1}s CPU", times[p][r].0, times[p][r].1);
        println!(
            "round {r}: eval {}, eval+routing {}, training forward {} (loss {loss:.4})",
            f(0),
            f(1),
            f(2)
        );
    }
    let med = |p: usize, cpu: bool| median(times[p].iter().map(|t| if cpu { t.1 } else { t.0 }).collect());
    let tokens = (n * T) as f64;
    for (cpu, what) in [(false, "wall"), (true, "CPU")] {
        let (e, er, t) = (med(0, cpu), med(1, cpu), med(2, cpu));
        println!(
            "median {what}: eval {e:.1}s ({:.0} tok/s), eval+routing {er:.1}s ({:.0} tok/s), training forward \
             {t:.1}s ({:.0} tok/s); eval/train {:.2}, eval+routing/train {:.2}",
            tokens / e,
            tokens / er,
            tokens / t,
            e / t,
            er / t
        );
    }
    Ok(())
}
