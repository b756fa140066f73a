//! Decoding with the KV cache (fused attention with a position offset) gives
//! the logits of one uncached forward over the whole sequence, for a GQA dense
//! model and an MoE model, in chunks of several tokens and one token at a time.

use anyhow::Result;
use moe_model::presets::preset;
use moe_model::{Decoder, KvCache};
use moe_router::RouteMode;
use moe_tensor::init::Rng;
use moe_tensor::{no_grad, Device, Tensor};

fn check(name: &str) -> Result<()> {
    let cfg = preset(name)?;
    let mut rng = Rng::seed(7);
    let mut model = Decoder::new(&cfg, &mut rng, &Device::Cpu)?;
    model.set_route_mode(RouteMode::Eval);
    let (b, t) = (2usize, 11usize);
    let ids: Vec<i64> = (0..b * t).map(|_| rng.below(cfg.vocab_size as u64) as i64).collect();
    let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
    no_grad(|| -> Result<()> {
        let full = model.forward(&ids)?.logits.to_vec::<f32>()?;
        let v = cfg.vocab_size;
        for chunks in [vec![4usize, 3, 1, 3], vec![1; t]] {
            let mut cache = KvCache::default();
            let mut pos = 0;
            for len in chunks {
                let part = model.forward_cached(&ids.narrow(1, pos, len)?, &mut cache)?.logits;
                let part = part.to_vec::<f32>()?;
                for r in 0..b {
                    for i in 0..len {
                        let got = &part[(r * len + i) * v..(r * len + i + 1) * v];
                        let want = &full[(r * t + pos + i) * v..(r * t + pos + i + 1) * v];
                        let d = got.iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                        assert!(d < 1e-5, "{name}: row {r} position {} differs by {d}", pos + i);
                    }
                }
                pos += len;
                assert_eq!(cache.len(), pos);
            }
        }
        Ok(())
    })
}

#[test]
fn cached_decoding_matches_one_full_forward() -> Result<()> {
    for name in ["debug-dense", "debug-switch", "debug-granular"] {
        check(name)?;
    }
    Ok(())
}
