//! Parameter names and shapes: ours are transformers' in-memory names (v5), so
//! a model's `Params` line up with `named_parameters()` of the HF class. Routed
//! experts are stacked as in transformers v5 (`experts.gate_up_proj [E, 2F, D]`,
//! `experts.down_proj [E, D, F]`); [`super::disk`] maps them to the per-expert
//! names HF checkpoints store on disk.

use crate::ModelConfig;

/// How a parameter is initialised (GPT-NeoX/OLMo style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitKind {
    /// Normal(0, init_std).
    Normal,
    /// Normal(0, init_std / √(2L)): projections that write into the residual stream.
    Output,
    /// All ones (norm scales).
    Ones,
    /// All zeros (biases).
    Zeros,
}

/// One parameter of a config: its name, shape and initialisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// HF name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initialisation.
    pub init: InitKind,
}

fn spec(name: String, shape: Vec<usize>, init: InitKind) -> ParamSpec {
    ParamSpec { name, shape, init }
}

/// Name prefix of layer `i`.
pub fn layer_prefix(i: usize) -> String {
    format!("model.layers.{i}")
}

/// The embedding table.
pub const EMBED: &str = "model.embed_tokens.weight";
/// The final norm.
pub const FINAL_NORM: &str = "model.norm.weight";
/// The untied LM head.
pub const LM_HEAD: &str = "lm_head.weight";

fn gated_mlp(out: &mut Vec<ParamSpec>, prefix: &str, d: usize, f: usize) {
    use InitKind::*;
    out.push(spec(format!("{prefix}.gate_proj.weight"), vec![f, d], Normal));
    out.push(spec(format!("{prefix}.up_proj.weight"), vec![f, d], Normal));
    out.push(spec(format!("{prefix}.down_proj.weight"), vec![d, f], Output));
}

/// Every parameter of `cfg`, in registration (and initialisation) order.
pub fn param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    use InitKind::*;
    let (d, hd, v) = (cfg.hidden_size, cfg.head_dim(), cfg.vocab_size);
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let mut out = vec![spec(EMBED.into(), vec![v, d], Normal)];
    for i in 0..cfg.num_layers {
        let p = layer_prefix(i);
        out.push(spec(format!("{p}.input_layernorm.weight"), vec![d], Ones));
        for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            out.push(spec(format!("{p}.self_attn.{name}.weight"), vec![rows, d], Normal));
            if cfg.attention_bias {
                out.push(spec(format!("{p}.self_attn.{name}.bias"), vec![rows], Zeros));
            }
        }
        out.push(spec(format!("{p}.self_attn.o_proj.weight"), vec![d, q], Output));
        out.push(spec(format!("{p}.post_attention_layernorm.weight"), vec![d], Ones));
        match &cfg.moe {
            Some(m) if cfg.is_moe_layer(i) => {
                let (e, f) = (m.num_experts(), m.expert_intermediate_size);
                out.push(spec(format!("{p}.mlp.gate.weight"), vec![e, d], Normal));
                out.push(spec(format!("{p}.mlp.experts.gate_up_proj"), vec![e, 2 * f, d], Normal));
                out.push(spec(format!("{p}.mlp.experts.down_proj"), vec![e, d, f], Output));
                if m.shared_intermediate_size > 0 {
                    gated_mlp(
                        &mut out,
                        &format!("{p}.mlp.shared_expert"),
                        d,
                        m.shared_intermediate_size,
                    );
                    if m.shared_expert_gate {
                        out.push(spec(format!("{p}.mlp.shared_expert_gate.weight"), vec![1, d], Normal));
                    }
                }
            }
            _ => gated_mlp(&mut out, &format!("{p}.mlp"), d, cfg.intermediate_size),
        }
    }
    out.push(spec(FINAL_NORM.into(), vec![d], Ones));
    if !cfg.tie_word_embeddings {
        out.push(spec(LM_HEAD.into(), vec![v, d], Normal));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::preset;

    #[test]
    fn specs_count_matches_param_count() {
        for name in crate::presets::PRESETS {
            let cfg = preset(name).unwrap();
            let n: usize = param_specs(&cfg)
                .iter()
                .map(|s| s.shape.iter().product::<usize>())
                .sum();
            assert_eq!(n, cfg.param_count().total, "{name}");
        }
    }
}
