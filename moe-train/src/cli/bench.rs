//! `moe bench`: training throughput of one model config on random tokens —
//! forward, backward, global-norm clipping and an AdamW step, timed per step —
//! and the process's peak resident memory. `tools/bench/train_peer.py` trains
//! the same model in PyTorch for comparison (`tools/bench/train_vs_torch.sh`).

use anyhow::{bail, Context, Result};
use clap::Args;
use moe_model::{next_token_targets, presets, Decoder, ModelConfig};
use moe_tensor::init::Rng;
use moe_tensor::{profile, Device, Tensor};
use moe_train::config::Precision;
use moe_train::optim::{clip_coefficient, AdamW, AdamWConfig};
use serde::Deserialize;
use std::path::Path;
use std::time::Instant;

/// Built-in bench configs (besides moe-model's presets).
pub const BENCH_CONFIGS: &[&str] = &["bench-dense", "bench-moe"];

/// `moe bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model to train: `bench-dense` (D 256, 4 layers, 8 heads, SwiGLU FFN
    /// 512, vocab 8192, untied), `bench-moe` (the same with 8 experts of
    /// width 512, softmax top-2, aux loss 0.01, z-loss 0.001), a moe-model
    /// preset (debug-dense, paper-switch, ...), or a TOML/JSON file: a model
    /// config, or a table with `model`, optional `batch_size` and `seq_len`.
    #[arg(long)]
    pub config: String,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Sequences per step (default 8, or the file's batch_size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Tokens per sequence (default 256, or the file's seq_len).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Seed of the initialisation and the random tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device to train on: cpu, cuda or cuda:N. On a GPU the phase split is
    /// host time (kernels run asynchronously until the norm and the loss are
    /// read back); the step time is complete.
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
    pub device: Device,
    /// Matrix-product precision: f32, or bf16 (operands rounded to bf16,
    /// f32 accumulation: bf16 tensor cores on a GPU; weights, gradients and
    /// AdamW stay f32).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Time every op over the timed steps and print the most expensive
    /// (waits for the device at each op, so the step itself runs slower).
    #[arg(long)]
    pub profile: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A bench config file with the batch shape beside the model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchFile {
    model: ModelConfig,
    batch_size: Option<usize>,
    seq_len: Option<usize>,
}

/// The model config and optional batch shape named by `--config`.
fn resolve(name: &str) -> Result<(ModelConfig, Option<usize>, Option<usize>)> {
    match name {
        "bench-dense" => return Ok((presets::bench_dense(), None, None)),
        "bench-moe" => return Ok((presets::bench_moe(), None, None)),
        _ => {}
    }
    let path = Path::new(name);
    if !path.exists() {
        return match presets::preset(name) {
            Ok(c) => Ok((c, None, None)),
            Err(_) => bail!(
                "--config {name:?} is neither a file nor a known config ({}, {})",
                BENCH_CONFIGS.join(", "),
                presets::PRESETS.join(", ")
            ),
        };
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let value: serde_json::Value = if json {
        serde_json::from_str(&text).with_context(|| format!("{name}: invalid JSON"))?
    } else {
        let v: toml::Value = toml::from_str(&text).with_context(|| format!("{name}: invalid TOML"))?;
        serde_json::to_value(v)?
    };
    if value.get("model").is_some() {
        let f: BenchFile = serde_json::from_value(value).with_context(|| format!("{name}: bad bench config"))?;
        Ok((f.model, f.batch_size, f.seq_len))
    } else {
        let c: ModelConfig = serde_json::from_value(value).with_context(|| format!("{name}: bad model config"))?;
        Ok((c, None, None))
    }
}

/// Peak resident set size of this process in bytes (VmHWM), where /proc has it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system, all threads) this process has used, in seconds,
/// from /proc/self/stat (clock ticks of 10 ms), where /proc has it.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Runs `moe bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    let (cfg, file_b, file_t) = resolve(&a.config)?;
    cfg.validate().with_context(|| format!("--config {}", a.config))?;
    let (b, t) = (
        a.batch_size.or(file_b).unwrap_or(8),
        a.seq_len.or(file_t).unwrap_or(256),
    );
    if b == 0 || t < 2 || a.steps == 0 {
        bail!(
            "need --batch-size >= 1, --seq-len >= 2 and --steps >= 1 (got {b}, {t}, {})",
            a.steps
        );
    }
    if t > cfg.max_position_embeddings {
        bail!(
            "--seq-len {t} exceeds max_position_embeddings = {}",
            cfg.max_position_embeddings
        );
    }
    let dev = a.device;
    moe_train::trainer::check_device(&dev)?;
    moe_tensor::set_matmul_precision(a.precision.matmul());
    if let Some(note) = a.precision.slow_on(&dev) {
        eprintln!("{note}");
    }
    let mut rng = Rng::seed(a.seed);
    let model = Decoder::new(&cfg, &mut rng, &dev)?;
    let params = model.params();
    let mut opt = AdamW::new(params, AdamWConfig::default())?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(threads);
    let mut times = Vec::with_capacity(a.steps);
    // Per phase: forward (with the loss), backward, clipping + optimiser.
    let mut phases: [Vec<f64>; 3] = Default::default();
    let (mut first_loss, mut last_loss) = (f64::NAN, f64::NAN);
    let mut cpu_start = None;
    for step in 0..a.warmup + a.steps {
        if step == a.warmup {
            cpu_start = process_cpu_seconds();
            profile::enable(a.profile);
        }
        let ids: Vec<i64> = (0..b * t).map(|_| rng.below(cfg.vocab_size as u64) as i64).collect();
        let targets = Tensor::from_vec(next_token_targets(&ids, t), (b, t), &dev)?;
        let ids = Tensor::from_vec(ids, (b, t), &dev)?;
        profile::mark();
        let t0 = Instant::now();
        params.zero_grad();
        let out = model.loss_with_targets(&ids, &targets)?;
        let t1 = Instant::now();
        out.total.backward()?;
        let t2 = Instant::now();
        let (_, clip_scale) = clip_coefficient(params, 1.0)?;
        opt.step_with_grad_scale(3e-4, clip_scale)?;
        // Read back after the update: on a GPU this waits for the whole step.
        let loss = out.ce.to_device(&Device::Cpu)?.to_scalar_f64()?;
        drop(out);
        let t3 = Instant::now();
        let dt = (t3 - t0).as_secs_f64();
        if step >= a.warmup {
            for (acc, d) in phases.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                acc.push(d.as_secs_f64());
            }
        }
        if step == 0 {
            first_loss = loss;
        }
        last_loss = loss;
        if step >= a.warmup {
            times.push(dt);
        }
    }
    profile::enable(false);
    let cpu_per_step = match (cpu_start, process_cpu_seconds()) {
        (Some(a0), Some(a1)) => Some((a1 - a0) / a.steps as f64),
        _ => None,
    };
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let [fwd, bwd, opt_ms] = phases.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3
    });
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let tokens = (b * t) as f64;
    // Model FLOPs of one step (6·N per token plus attention, as the trainer
    // logs them) over the median step time: the CPU counterpart of MFU.
    let step_gflop = moe_train::trainer::training_flops_per_token(&cfg, t) * tokens / 1e9;
    let peak = peak_rss_bytes();
    let counts = cfg.param_count();
    if a.json {
        let v = serde_json::json!({
            "config": a.config,
            "device": dev.to_string(),
            "precision": format!("{:?}", a.precision).to_lowercase(),
            "cpu_gemm_kernel": dev.is_cpu().then(moe_tensor::cpu_matmul_kernel),
            "batch_size": b,
            "seq_len": t,
            "threads": threads,
            "params_total": counts.total,
            "params_active": counts.active,
            "steps": a.steps,
            "warmup": a.warmup,
            "step_ms_median": median * 1e3,
            "step_ms_mean": mean * 1e3,
            "step_ms_min": sorted[0] * 1e3,
            "forward_ms_median": fwd,
            "backward_ms_median": bwd,
            "optimizer_ms_median": opt_ms,
            "tokens_per_s": tokens / median,
            "model_gflop_per_step": step_gflop,
            "model_gflop_per_s": step_gflop / median,
            "cpu_ms_per_step": cpu_per_step.map(|c| c * 1e3),
            "tokens_per_cpu_s": cpu_per_step.map(|c| tokens / c),
            "peak_rss_bytes": peak,
            "first_loss": first_loss,
            "last_loss": last_loss,
            "profile": a.profile.then(|| profile_json(a.steps)),
        });
        println!("{v}");
    } else {
        let mib = peak.map_or("n/a".to_string(), |p| format!("{:.0} MiB", p as f64 / (1 << 20) as f64));
        println!(
            "{} on {dev}: B={b} T={t}, {:.2}M params ({:.2}M active), {threads} threads, {} steps after {} warmup",
            a.config,
            counts.total as f64 / 1e6,
            counts.active as f64 / 1e6,
            a.steps,
            a.warmup
        );
        if dev.is_cpu() {
            println!("GEMM kernel: {}", moe_tensor::cpu_matmul_kernel());
        }
        let cpu = cpu_per_step.map_or("n/a".to_string(), |c| format!("{:.0} ms", c * 1e3));
        println!(
            "step median {:.1} ms (mean {:.1}, min {:.1}): {:.0} tokens/s; CPU time {cpu}/step; peak RSS {mib}; loss {first_loss:.3} -> {last_loss:.3}",
            median * 1e3,
            mean * 1e3,
            sorted[0] * 1e3,
            tokens / median
        );
        println!("phase medians: forward {fwd:.1} ms, backward {bwd:.1} ms, clip + AdamW {opt_ms:.1} ms");
        println!(
            "model FLOPs: {step_gflop:.1} GFLOP per step, {:.1} GFLOP/s at the median step",
            step_gflop / median
        );
        if a.profile {
            print_profile(a.steps);
        }
    }
    Ok(())
}

/// The profiled ops as JSON: per op, calls and milliseconds per step.
fn profile_json(steps: usize) -> serde_json::Value {
    let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e3 / steps as f64;
    profile::report()
        .into_iter()
        .map(|(name, t)| {
            serde_json::json!({
                "op": name,
                "forward_calls": t.forward_calls / steps as u64,
                "forward_ms": per_step(t.forward),
                "backward_calls": t.backward_calls / steps as u64,
                "backward_ms": per_step(t.backward),
            })
        })
        .collect()
}

/// The most expensive ops per step (with the profiler's waiting included).
fn print_profile(steps: usize) {
    let rows = profile::report();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3 / steps as f64;
    let total: f64 = rows.iter().map(|(_, t)| ms(t.forward) + ms(t.backward)).sum();
    println!("op profile (per step; forward = time since the previous op):");
    println!(
        "{:<28} {:>6} {:>10} {:>6} {:>10} {:>6}",
        "op", "calls", "fwd ms", "calls", "bwd ms", "share"
    );
    for (name, t) in rows.iter().take(20) {
        let (f, b) = (ms(t.forward), ms(t.backward));
        println!(
            "{name:<28} {:>6} {f:>10.2} {:>6} {b:>10.2} {:>5.1}%",
            t.forward_calls / steps as u64,
            t.backward_calls / steps as u64,
            100.0 * (f + b) / total.max(1e-12)
        );
    }
    println!(
        "{:<28} {:>6} {:>10} {:>6} {:>10} {total:>6.1} ms",
        "all ops", "", "", "", ""
    );
}
