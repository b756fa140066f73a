//! The paper's five model families at three FLOP-matched scales.
//!
//! | family | FFN |
//! |---|---|
//! | `dense` | one gated FFN of width F |
//! | `switch-aux-z` | 8 experts of width F, top-1, softmax router + aux loss 0.01 + z-loss 0.001 |
//! | `switch-sinkhorn` | the same experts, Sinkhorn-balanced top-1, no balancing loss |
//! | `granular-aux-z` | 31 routed experts of width F/4, top-3, + 1 shared expert of width F/4, aux + z |
//! | `granular-sinkhorn` | the same experts, Sinkhorn-balanced top-3 |
//!
//! Every MoE uses F of active FFN width per token, like the dense model.
//! Scales: `tiny` (the demo: d 64, 2 layers), `small` (about 100M active
//! parameters with a 32k vocabulary: d 768, 8 layers, for one GPU) and
//! `paper` (24 layers, d 1024, 16 heads, FFN 2816, sequence 2048).
//! Presets are named `{scale}-{family}`; their vocabulary is replaced by the
//! dataset's when a run starts.

use crate::error::{Result, TrainError};
use moe_model::ModelConfig;
use moe_router::RouterConfig;

/// One of the study's model families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Dense FFN.
    Dense,
    /// Switch experts, penalty-balanced (aux + z loss).
    SwitchAuxZ,
    /// Switch experts, Sinkhorn-balanced.
    SwitchSinkhorn,
    /// Granular + shared experts, penalty-balanced.
    GranularAuxZ,
    /// Granular + shared experts, Sinkhorn-balanced.
    GranularSinkhorn,
}

/// A model size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// The demo's size: trains in seconds on two cores.
    Tiny,
    /// About 100M active parameters: one GPU.
    Small,
    /// The paper's: config only on a CPU machine.
    Paper,
}

/// Every family, in the order reports list them.
pub const FAMILIES: [Family; 5] = [
    Family::Dense,
    Family::SwitchAuxZ,
    Family::SwitchSinkhorn,
    Family::GranularAuxZ,
    Family::GranularSinkhorn,
];

/// Every scale.
pub const SCALES: [Scale; 3] = [Scale::Tiny, Scale::Small, Scale::Paper];

impl Family {
    /// The name used in preset names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Family::Dense => "dense",
            Family::SwitchAuxZ => "switch-aux-z",
            Family::SwitchSinkhorn => "switch-sinkhorn",
            Family::GranularAuxZ => "granular-aux-z",
            Family::GranularSinkhorn => "granular-sinkhorn",
        }
    }

    /// Whether the family has experts.
    pub fn is_moe(self) -> bool {
        self != Family::Dense
    }
}

impl Scale {
    /// The name used in preset names.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Tiny => "tiny",
            Scale::Small => "small",
            Scale::Paper => "paper",
        }
    }

    /// The dense model of this scale.
    fn dense(self) -> ModelConfig {
        let mut c = moe_model::presets::paper_dense();
        match self {
            Scale::Tiny => {
                (c.vocab_size, c.hidden_size, c.num_layers) = (2048, 64, 2);
                (c.num_heads, c.num_kv_heads, c.intermediate_size) = (4, 4, 176);
                c.max_position_embeddings = 512;
            }
            Scale::Small => {
                (c.vocab_size, c.hidden_size, c.num_layers) = (32_000, 768, 8);
                (c.num_heads, c.num_kv_heads, c.intermediate_size) = (12, 12, 2048);
                c.max_position_embeddings = 1024;
            }
            Scale::Paper => {}
        }
        c
    }
}

/// The config of `family` at `scale`.
pub fn family_config(scale: Scale, family: Family) -> Result<ModelConfig> {
    let dense = scale.dense();
    let model_err = |e: moe_model::Error| TrainError::config("model.preset", e.to_string());
    let mut cfg = match family {
        Family::Dense => return Ok(dense),
        Family::SwitchAuxZ | Family::SwitchSinkhorn => dense.switch_from_dense(8).map_err(model_err)?,
        Family::GranularAuxZ | Family::GranularSinkhorn => dense.granular_from_dense(4, 31, 1).map_err(model_err)?,
    };
    if matches!(family, Family::SwitchSinkhorn | Family::GranularSinkhorn) {
        let moe = cfg.moe.as_mut().expect("an MoE family has an moe section");
        moe.router = RouterConfig::sinkhorn(moe.router.num_experts, moe.router.top_k);
    }
    Ok(cfg)
}

/// Resolves a preset name: `{tiny,small,paper}-{family}` or one of moe-model's
/// presets (`debug-dense`, ...).
pub fn preset_config(name: &str) -> Result<ModelConfig> {
    for scale in SCALES {
        for family in FAMILIES {
            if name == format!("{}-{}", scale.name(), family.name()) {
                return family_config(scale, family);
            }
        }
    }
    moe_model::presets::preset(name).map_err(|_| {
        let mut known: Vec<String> = SCALES
            .iter()
            .flat_map(|s| FAMILIES.iter().map(move |f| format!("{}-{}", s.name(), f.name())))
            .collect();
        known.extend(moe_model::presets::PRESETS.iter().map(|s| s.to_string()));
        TrainError::config(
            "model.preset",
            format!("unknown preset `{name}`; known: {}", known.join(", ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_flop_matched_at_every_scale() {
        for scale in SCALES {
            let dense = family_config(scale, Family::Dense).unwrap();
            let dense_ffn = dense.intermediate_size;
            for family in FAMILIES.into_iter().filter(|f| f.is_moe()) {
                let c = family_config(scale, family).unwrap();
                let m = c.moe.as_ref().unwrap();
                let active = m.top_k() * m.expert_intermediate_size + m.shared_intermediate_size;
                assert_eq!(active, dense_ffn, "{} {}", scale.name(), family.name());
                let same_rest = ModelConfig { moe: None, ..c.clone() };
                assert_eq!(same_rest, dense, "{}: only the FFN differs", family.name());
            }
        }
        let g = family_config(Scale::Paper, Family::GranularSinkhorn).unwrap();
        let m = g.moe.unwrap();
        assert_eq!((m.num_experts(), m.top_k(), m.expert_intermediate_size), (31, 3, 704));
        assert_eq!(m.shared_intermediate_size, 704);
    }

    #[test]
    fn preset_names_resolve_and_unknown_ones_list_the_known() {
        assert_eq!(preset_config("tiny-dense").unwrap().hidden_size, 64);
        assert!(preset_config("debug-switch").unwrap().moe.is_some());
        let err = preset_config("tiny-dence").unwrap_err().to_string();
        assert!(err.contains("model.preset") && err.contains("tiny-dense"), "{err}");
    }
}
