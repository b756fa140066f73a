//! Times forward + backward of `Decoder::loss` on random tokens for the
//! training-benchmark shapes (d_model 256, 4 layers, 8 heads, FFN 512,
//! seq 256, batch 8, vocab 8192; dense and 8 experts top-2).
//!
//! `cargo run -p moe-model --release --example step_time [-- STEPS]`

use moe_model::config::{Activation, AuxLossForm, MoeConfig};
use moe_model::{Decoder, ModelConfig};
use moe_router::RouterConfig;
use moe_tensor::init::Rng;
use moe_tensor::{Device, Tensor};
use std::time::Instant;

fn config(moe: bool) -> ModelConfig {
    ModelConfig {
        vocab_size: 8192,
        hidden_size: 256,
        num_layers: 4,
        num_heads: 8,
        num_kv_heads: 8,
        head_dim: None,
        intermediate_size: 512,
        activation: Activation::Swiglu,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
        attention_bias: false,
        max_position_embeddings: 256,
        init_std: 0.02,
        moe: moe.then(|| MoeConfig {
            router: RouterConfig::penalty_balanced(8, 2),
            expert_intermediate_size: 512,
            shared_intermediate_size: 0,
            shared_expert_gate: false,
            first_dense_layers: 0,
            aux_loss_form: AuxLossForm::PerLayer,
        }),
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
