//! Writes freshly initialised debug models as HF folders, with our logits on
//! fixed ids, for `tools/goldens/model/roundtrip.py` to load in transformers.
//! Usage: cargo run -p moe-model --release --example export_hf -- OUT_DIR

use anyhow::Result;
use moe_model::{hf::save_hf, presets::preset, Decoder};
use moe_tensor::{init::Rng, Device, Tensor};

fn main() -> Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "roundtrip".into());
    let ids: Vec<i64> = (0..16).map(|i| (i * 7 + 3) % 64).collect();
    let ids = Tensor::from_vec(ids, (2, 8), &Device::Cpu)?;
    for name in ["debug-dense", "debug-switch", "debug-granular"] {
        let mut cfg = preset(name)?;
        cfg.init_std = 0.2;
        if let Some(m) = cfg.moe.as_mut() {
            // Express as Mixtral (no shared expert) or Qwen2-MoE (gated shared expert).
            if m.shared_intermediate_size == 0 {
                m.router = moe_router::RouterConfig::mixtral(m.router.num_experts, m.router.top_k);
            } else {
                m.router = moe_router::RouterConfig::qwen2_moe(m.router.num_experts, m.router.top_k, false);
                m.shared_expert_gate = true;
            }
        }
        let model = Decoder::new(&cfg, &mut Rng::seed(7), &Device::Cpu)?;
        let dir = std::path::Path::new(&out).join(name);
        save_hf(&model, &dir, None)?;
        let logits = model.forward(&ids)?.logits;
        moe_tensor::safetensors::save(
            dir.join("ours.safetensors"),
            [("input_ids", &ids), ("logits", &logits)],
            None,
        )?;
        println!("{}", dir.display());
    }
    Ok(())
}
