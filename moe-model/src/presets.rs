//! Named configs (the paper's three models and tiny debug ones) and the
//! FLOP-matching helpers that derive Switch and granular MoEs from a dense model.

use crate::config::{Activation, AuxLossForm, ModelConfig, MoeConfig};
use crate::{Error, Result};
use moe_router::RouterConfig;

/// Names accepted by [`preset`].
pub const PRESETS: &[&str] = &[
    "paper-dense",
    "paper-switch",
    "paper-granular",
    "debug-dense",
    "debug-switch",
    "debug-granular",
    "gpu-dense",
    "gpu-moe",
    "gpu-granular",
];

/// The config called `name` (see [`PRESETS`]).
pub fn preset(name: &str) -> Result<ModelConfig> {
    match name {
        "paper-dense" => Ok(paper_dense()),
        "paper-switch" => paper_dense().switch_from_dense(8),
        "paper-granular" => paper_dense().granular_from_dense(4, 31, 1),
        "debug-dense" => Ok(debug_dense()),
        "debug-switch" => debug_dense().switch_from_dense(4),
        "debug-granular" => debug_dense().granular_from_dense(4, 7, 1),
        "gpu-dense" => Ok(gpu_dense()),
        "gpu-moe" => Ok(gpu_moe()),
        "gpu-granular" => gpu_dense().granular_from_dense(4, 31, 1),
        other => Err(Error::config(
            "preset",
            format!("unknown preset {other:?}; known: {}", PRESETS.join(", ")),
        )),
    }
}

/// The paper's dense model: 24 layers, d 1024, 16 heads, FFN 2816, Llama-3
/// vocabulary (128256), sequence 2048, GEGLU (marked uncertain in the paper's
/// summaries, so configurable), untied embeddings (~570M parameters).
pub fn paper_dense() -> ModelConfig {
    ModelConfig {
        vocab_size: 128_256,
        hidden_size: 1024,
        num_layers: 24,
        num_heads: 16,
        num_kv_heads: 16,
        head_dim: None,
        intermediate_size: 2816,
        activation: Activation::Geglu,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
        attention_bias: false,
        max_position_embeddings: 2048,
        init_std: 0.02,
        moe: None,
    }
}

/// A dense model small enough for unit tests (GQA, 2 layers).
pub fn debug_dense() -> ModelConfig {
    ModelConfig {
        vocab_size: 64,
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: None,
        intermediate_size: 64,
        activation: Activation::Swiglu,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
        attention_bias: false,
        max_position_embeddings: 128,
        init_std: 0.02,
        moe: None,
    }
}

/// The training-benchmark model (`moe bench --config bench-dense`, the
/// PyTorch peer in `tools/bench/train_peer.py`): D 256, 4 layers, 8 heads,
/// SwiGLU FFN 512, vocabulary 8192, untied.
pub fn bench_dense() -> ModelConfig {
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
        max_position_embeddings: 2048,
        init_std: 0.02,
        moe: None,
    }
}

/// [`bench_dense`] with every FFN an MoE of 8 experts of width 512, top-2
/// (softmax router, Switch aux loss 0.01, z-loss 0.001).
pub fn bench_moe() -> ModelConfig {
    ModelConfig {
        moe: Some(base_moe(8, 2, 512)),
        ..bench_dense()
    }
}

/// The GPU training-benchmark model (`moe bench --config gpu-dense
/// --seq-len 1024`, the PyTorch peer `tools/bench/train_peer.py --config
/// gpu-dense`): GPT-2-small sized, D 768, 12 layers, 12 heads, SwiGLU FFN
/// 2048, vocabulary 32000, untied (~134M parameters, ~85M in the blocks).
pub fn gpu_dense() -> ModelConfig {
    ModelConfig {
        vocab_size: 32_000,
        hidden_size: 768,
        num_layers: 12,
        num_heads: 12,
        num_kv_heads: 12,
        intermediate_size: 2048,
        ..bench_dense()
    }
}

/// [`gpu_dense`] with every FFN an MoE of 8 experts of width 1024, top-2:
/// the same active FFN FLOPs (2 · 1024 = 2048), 8 experts' parameters.
/// `gpu-granular` is the paper's granular form of [`gpu_dense`]: 31 routed
/// experts of width 512, top-3, plus one shared expert of width 512.
pub fn gpu_moe() -> ModelConfig {
    ModelConfig {
        moe: Some(base_moe(8, 2, 1024)),
        ..gpu_dense()
    }
}

/// The paper's penalty-balanced router (softmax top-k, weights = the chosen
/// probabilities, Megatron Switch aux loss 0.01, z-loss 0.001), dropless.
fn base_moe(num_experts: usize, top_k: usize, width: usize) -> MoeConfig {
    MoeConfig {
        router: RouterConfig::penalty_balanced(num_experts, top_k),
        expert_intermediate_size: width,
        shared_intermediate_size: 0,
        shared_expert_gate: false,
        first_dense_layers: 0,
        aux_loss_form: AuxLossForm::PerLayer,
    }
}

impl ModelConfig {
    /// Switch-style MoE with the same active FFN: `num_experts` experts of the
    /// dense FFN's width, top-1, the gate scaled by the chosen probability.
    pub fn switch_from_dense(&self, num_experts: usize) -> Result<ModelConfig> {
        let mut cfg = self.clone();
        cfg.moe = Some(base_moe(num_experts, 1, self.intermediate_size));
        cfg.validate()?;
        Ok(cfg)
    }

    /// DeepSeek-style granular MoE with the same active FFN: experts
    /// `granularity` times narrower than the dense FFN, `num_shared` of them
    /// always on (merged into one shared FFN) and `granularity - num_shared`
    /// routed per token, so (k + shared) · F/g = F.
    pub fn granular_from_dense(&self, granularity: usize, num_routed: usize, num_shared: usize) -> Result<ModelConfig> {
        if granularity == 0 || !self.intermediate_size.is_multiple_of(granularity) {
            return Err(Error::config(
                "granularity",
                format!(
                    "{granularity} must divide intermediate_size = {}",
                    self.intermediate_size
                ),
            ));
        }
        if num_shared >= granularity {
            return Err(Error::config(
                "num_shared",
                format!("{num_shared} leaves no routed expert per token for granularity {granularity}"),
            ));
        }
        let width = self.intermediate_size / granularity;
        let mut moe = base_moe(num_routed, granularity - num_shared, width);
        moe.shared_intermediate_size = num_shared * width;
        let mut cfg = self.clone();
        cfg.moe = Some(moe);
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand formula: attention 4·D² (MHA), FFN 3·D·F, norms 2·D per layer, final
    /// norm D, embedding and head V·D each.
    #[test]
    fn paper_counts_match_the_table() {
        let (v, d, l, f) = (128_256usize, 1024usize, 24usize, 2816usize);
        let dense = preset("paper-dense").unwrap().param_count();
        let attn = 4 * d * d;
        let expect_dense = 2 * v * d + d + l * (attn + 2 * d + 3 * d * f);
        assert_eq!(dense.total, expect_dense);
        assert_eq!(dense.active, expect_dense);
        // ~570M in the paper's table.
        assert!((560_000_000..580_000_000).contains(&dense.total), "{}", dense.total);

        let sw = preset("paper-switch").unwrap().param_count();
        let router = 8 * d;
        assert_eq!(sw.total, expect_dense + l * (router + 7 * 3 * d * f));
        assert_eq!(sw.active, expect_dense + l * router);

        let gr = preset("paper-granular").unwrap().param_count();
        let router = 31 * d;
        let e = 3 * d * 704;
        assert_eq!(gr.total, 2 * v * d + d + l * (attn + 2 * d + router + 32 * e));
        assert_eq!(gr.active, expect_dense + l * router);
        // ~2B total for both MoEs.
        for t in [sw.total, gr.total] {
            assert!((1_900_000_000..2_100_000_000).contains(&t), "{t}");
        }
    }

    #[test]
    fn gpu_bench_models_match_the_peer_script_and_each_other() {
        let d = preset("gpu-dense").unwrap();
        // Hand count: blocks 12 · (4·768² + 3·768·2048 + 2·768), embedding and
        // head 2 · 32000·768, final norm 768.
        let blocks = 12 * (4 * 768 * 768 + 3 * 768 * 2048 + 2 * 768);
        assert_eq!(d.param_count().total, blocks + 2 * 32_000 * 768 + 768);
        for name in ["gpu-moe", "gpu-granular"] {
            let m = preset(name).unwrap().moe.unwrap();
            let active = m.top_k() * m.expert_intermediate_size + m.shared_intermediate_size;
            assert_eq!(active, 2048, "{name} is FLOP-matched to gpu-dense");
        }
        let g = preset("gpu-granular").unwrap().moe.unwrap();
        assert_eq!((g.num_experts(), g.top_k(), g.shared_intermediate_size), (31, 3, 512));
    }

    #[test]
    fn granular_is_flop_matched() {
        let g = preset("paper-granular").unwrap();
        let m = g.moe.unwrap();
        assert_eq!((m.num_experts(), m.top_k(), m.expert_intermediate_size), (31, 3, 704));
        assert_eq!(
            m.top_k() * m.expert_intermediate_size + m.shared_intermediate_size,
            2816
        );
        assert!(paper_dense().granular_from_dense(3, 8, 1).is_err());
        assert!(paper_dense().granular_from_dense(4, 8, 4).is_err());
    }

    #[test]
    fn every_preset_validates() {
        for name in PRESETS {
            preset(name).unwrap().validate().unwrap();
        }
        assert!(preset("nope").is_err());
    }
}
