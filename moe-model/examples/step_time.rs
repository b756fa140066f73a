//! Times forward + backward of `Decoder::loss` on random tokens for the
//! training-benchmark shapes (d_model 256, 4 layers, 8 heads, FFN 512,
//! seq 256, batch 8, vocab 8192; dense and 8 experts top-2).
//!
//! `cargo run -p moe-model --release --example step_time [-- STEPS]`

use moe_model::{presets, Decoder, ModelConfig};
use moe_tensor::init::Rng;
use moe_tensor::{Device, Tensor};
use std::time::Instant;

fn config(moe: bool) -> ModelConfig {
    if moe {
        presets::bench_moe()
    } else {
        presets::bench_dense()
    }
}

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args().nth(1).map_or(Ok(5), |s| s.parse())?;
    let (b, t) = (8, 256);
    for moe in [false, true] {
        let cfg = config(moe);
        let mut rng = Rng::seed(0);
        let model = Decoder::new(&cfg, &mut rng, &Device::Cpu)?;
        let ids: Vec<i64> = (0..b * t).map(|_| rng.below(cfg.vocab_size as u64) as i64).collect();
        let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
        let mut times = Vec::new();
        for i in 0..steps + 1 {
            model.params().zero_grad();
            let t0 = Instant::now();
            let out = model.loss(&ids)?;
            out.total.backward()?;
            if i > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "{}: fwd+bwd median {:.1} ms, min {:.1} ms, {:.0} tokens/s",
            if moe { "moe " } else { "dense" },
            med * 1e3,
            times[0] * 1e3,
            (b * t) as f64 / med
        );
    }
    Ok(())
}
