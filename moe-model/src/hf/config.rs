//! `config.json` ↔ [`ModelConfig`] for LlamaForCausalLM, MixtralForCausalLM and
//! Qwen2MoeForCausalLM.

use crate::config::{Activation, AuxLossForm, ModelConfig, MoeConfig};
use crate::{Error, Result};
use moe_router::{Capacity, RouterConfig, RouterKind, TopKWeights};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The HF causal-LM classes we read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfArch {
    /// `LlamaForCausalLM` (dense).
    Llama,
    /// `MixtralForCausalLM` (routed experts, renormalised top-k).
    Mixtral,
    /// `Qwen2MoeForCausalLM` (routed + gated shared expert).
    Qwen2Moe,
}

impl HfArch {
    /// The class name in `architectures`.
    pub fn class_name(self) -> &'static str {
        match self {
            HfArch::Llama => "LlamaForCausalLM",
            HfArch::Mixtral => "MixtralForCausalLM",
            HfArch::Qwen2Moe => "Qwen2MoeForCausalLM",
        }
    }

    fn model_type(self) -> &'static str {
        match self {
            HfArch::Llama => "llama",
            HfArch::Mixtral => "mixtral",
            HfArch::Qwen2Moe => "qwen2_moe",
        }
    }
}

struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, msg: impl std::fmt::Display) -> Error {
        Error::Json {
            path: self.path.to_path_buf(),
            msg: format!("field `{field}`: {msg}"),
        }
    }
    fn usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?.ok_or_else(|| self.err(field, "missing"))
    }
    fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| self.err(field, format!("{v} is not a non-negative integer"))),
        }
    }
    fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(field, format!("{v} is not a number"))),
        }
    }
    fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(field, format!("{v} is not a boolean"))),
        }
    }
    fn str_or<'b>(&'b self, field: &str, default: &'b str) -> Result<&'b str> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| self.err(field, format!("{v} is not a string"))),
        }
    }
}

fn activation(f: &Fields<'_>) -> Result<Activation> {
    match f.str_or("hidden_act", "silu")? {
        "silu" | "swish" => Ok(Activation::Swiglu),
        "gelu_pytorch_tanh" | "gelu_new" => Ok(Activation::Geglu),
        "gelu" => Ok(Activation::GegluErf),
        other => Err(f.err("hidden_act", format!("unsupported activation {other:?}"))),
    }
}

fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Swiglu => "silu",
        Activation::Geglu => "gelu_pytorch_tanh",
        Activation::GegluErf => "gelu",
    }
}

/// RoPE base from `rope_parameters` (transformers ≥ 5) or `rope_theta`; only
/// the default (unscaled) RoPE is supported.
fn rope_theta(f: &Fields<'_>) -> Result<f64> {
    if let Some(Value::Object(rp)) = f.map.get("rope_parameters") {
        let rp = Fields { map: rp, path: f.path };
        let kind = rp.str_or("rope_type", "default")?;
        if kind != "default" {
            return Err(f.err("rope_parameters.rope_type", format!("unsupported RoPE type {kind:?}")));
        }
        return rp.f64_or("rope_theta", 10_000.0);
    }
    if let Some(Value::Object(_)) = f.map.get("rope_scaling") {
        return Err(f.err("rope_scaling", "scaled RoPE is not supported"));
    }
    f.f64_or("rope_theta", 10_000.0)
}

/// Parses the `config.json` at `path` (already read into `text`).
pub fn parse_hf_config(text: &str, path: &Path) -> Result<(ModelConfig, HfArch)> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let map = v.as_object().ok_or_else(|| Error::Json {
        path: path.to_path_buf(),
        msg: "not a JSON object".into(),
    })?;
    let f = Fields { map, path };
    let arch_name = map
        .get("architectures")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
        .unwrap_or_else(|| map.get("model_type").and_then(|m| m.as_str()).unwrap_or("<none>"));
    let arch = match arch_name {
        "LlamaForCausalLM" | "llama" => HfArch::Llama,
        "MixtralForCausalLM" | "mixtral" => HfArch::Mixtral,
        "Qwen2MoeForCausalLM" | "qwen2_moe" => HfArch::Qwen2Moe,
        other => {
            return Err(Error::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: other.into(),
            })
        }
    };
    let num_heads = f.usize("num_attention_heads")?;
    if f.bool_or("mlp_bias", false)? {
        return Err(f.err("mlp_bias", "MLP biases are not supported"));
    }
    let attention_bias = match arch {
        // Llama's attention_bias also puts a bias on o_proj, which we lack.
        HfArch::Llama if f.bool_or("attention_bias", false)? => {
            return Err(f.err(
                "attention_bias",
                "biases on the attention projections are not supported",
            ))
        }
        HfArch::Qwen2Moe => f.bool_or("qkv_bias", true)?,
        _ => false,
    };
    if f.bool_or("use_sliding_window", false)? || (arch == HfArch::Mixtral && f.opt_usize("sliding_window")?.is_some())
    {
        return Err(f.err("sliding_window", "sliding-window attention is not supported"));
    }
    let num_layers = f.usize("num_hidden_layers")?;
    let moe = match arch {
        HfArch::Llama => None,
        HfArch::Mixtral => {
            let (e, k) = (f.usize("num_local_experts")?, f.usize("num_experts_per_tok")?);
            Some(hf_moe(
                &f,
                RouterConfig::mixtral(e, k),
                f.usize("intermediate_size")?,
                0,
                0,
            )?)
        }
        HfArch::Qwen2Moe => {
            let (e, k) = (f.usize("num_experts")?, f.usize("num_experts_per_tok")?);
            let router = RouterConfig::qwen2_moe(e, k, f.bool_or("norm_topk_prob", false)?);
            let shared = f.usize("shared_expert_intermediate_size")?;
            let dense = qwen_dense_prefix(&f, num_layers)?;
            Some(hf_moe(&f, router, f.usize("moe_intermediate_size")?, shared, dense)?)
        }
    };
    let cfg = ModelConfig {
        vocab_size: f.usize("vocab_size")?,
        hidden_size: f.usize("hidden_size")?,
        num_layers,
        num_heads,
        num_kv_heads: f.opt_usize("num_key_value_heads")?.unwrap_or(num_heads),
        head_dim: f.opt_usize("head_dim")?,
        intermediate_size: f.usize("intermediate_size")?,
        activation: activation(&f)?,
        rope_theta: rope_theta(&f)?,
        rms_norm_eps: f.f64_or("rms_norm_eps", 1e-6)?,
        tie_word_embeddings: f.bool_or("tie_word_embeddings", false)?,
        attention_bias,
        max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
        init_std: f.f64_or("initializer_range", 0.02)?,
        moe,
    };
    cfg.validate().map_err(|e| match e {
        Error::Config { field, msg } => f.err(&field, msg),
        other => other,
    })?;
    Ok((cfg, arch))
}

/// The MoE part of an HF config: HF's model-level aux loss weighted by
/// `router_aux_loss_coef`, no z-loss, dropless.
fn hf_moe(f: &Fields<'_>, mut router: RouterConfig, width: usize, shared: usize, dense: usize) -> Result<MoeConfig> {
    router.aux_loss_coef = f.f64_or("router_aux_loss_coef", 0.001)?;
    Ok(MoeConfig {
        router,
        expert_intermediate_size: width,
        shared_intermediate_size: shared,
        shared_expert_gate: shared > 0,
        first_dense_layers: dense,
        aux_loss_form: AuxLossForm::Hf,
    })
}

/// Qwen2-MoE places dense layers by `mlp_only_layers` and `decoder_sparse_step`;
/// we support the DeepSeek pattern: a leading run of dense layers.
fn qwen_dense_prefix(f: &Fields<'_>, num_layers: usize) -> Result<usize> {
    let step = f.opt_usize("decoder_sparse_step")?.unwrap_or(1);
    let only: Vec<usize> = match f.map.get("mlp_only_layers") {
        None | Some(Value::Null) => vec![],
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| f.err("mlp_only_layers", e))?,
    };
    let dense: Vec<bool> = (0..num_layers)
        .map(|l| only.contains(&l) || step == 0 || (l + 1) % step != 0)
        .collect();
    let n = dense.iter().take_while(|&&d| d).count();
    if dense[n..].iter().any(|&d| d) {
        return Err(f.err(
            "mlp_only_layers",
            "dense layers must form a leading run (decoder_sparse_step 1, mlp_only_layers = 0..n)",
        ));
    }
    Ok(n)
}

/// Picks the HF class that expresses `cfg`, or says which field prevents it.
pub fn hf_arch_for(cfg: &ModelConfig) -> Result<HfArch> {
    let Some(m) = &cfg.moe else {
        return if cfg.attention_bias {
            Err(Error::config(
                "attention_bias",
                "LlamaForCausalLM has no q/k/v-only bias",
            ))
        } else {
            Ok(HfArch::Llama)
        };
    };
    let RouterKind::SoftmaxTopK(TopKWeights {
        renormalize,
        scaling_factor,
    }) = m.router.kind
    else {
        return Err(Error::config("moe.router.kind", "HF classes route with softmax top-k"));
    };
    if scaling_factor != 1.0 {
        return Err(Error::config(
            "moe.router.scaling_factor",
            "no HF class we export scales routed outputs",
        ));
    }
    if m.router.capacity != Capacity::Dropless {
        return Err(Error::config("moe.router.capacity", "HF classes are dropless"));
    }
    if m.shared_intermediate_size == 0 && renormalize && m.first_dense_layers == 0 && !cfg.attention_bias {
        return Ok(HfArch::Mixtral);
    }
    if m.shared_intermediate_size > 0 && m.shared_expert_gate {
        return Ok(HfArch::Qwen2Moe);
    }
    Err(Error::config(
        "moe",
        "export needs either Mixtral's form (no shared expert, renormalised top-k, no dense layers) or Qwen2-MoE's (a gated shared expert)",
    ))
}

/// The `config.json` transformers reads for `cfg` (no pad/bos/eos ids).
pub fn to_hf_config(cfg: &ModelConfig) -> Result<Value> {
    let arch = hf_arch_for(cfg)?;
    let mut v = json!({
        "architectures": [arch.class_name()],
        "model_type": arch.model_type(),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim(),
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": act_name(cfg.activation),
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "initializer_range": cfg.init_std,
        "attention_dropout": 0.0,
        "pad_token_id": null,
        "bos_token_id": null,
        "eos_token_id": null,
        "dtype": "float32",
        "use_cache": true,
    });
    let obj = v
        .as_object_mut()
        .ok_or_else(|| Error::config("moe", "internal: config is not an object"))?;
    if let Some(m) = &cfg.moe {
        obj.insert("num_experts_per_tok".into(), json!(m.top_k()));
        obj.insert("router_aux_loss_coef".into(), json!(m.router.aux_loss_coef));
        obj.insert("output_router_logits".into(), json!(false));
        match arch {
            HfArch::Mixtral => {
                obj.insert("num_local_experts".into(), json!(m.num_experts()));
                // Mixtral's experts are `intermediate_size` wide.
                obj.insert("intermediate_size".into(), json!(m.expert_intermediate_size));
                obj.insert("router_jitter_noise".into(), json!(0.0));
            }
            _ => {
                obj.insert("num_experts".into(), json!(m.num_experts()));
                obj.insert("moe_intermediate_size".into(), json!(m.expert_intermediate_size));
                obj.insert(
                    "shared_expert_intermediate_size".into(),
                    json!(m.shared_intermediate_size),
                );
                obj.insert("norm_topk_prob".into(), json!(renormalizes(m)));
                obj.insert("decoder_sparse_step".into(), json!(1));
                obj.insert(
                    "mlp_only_layers".into(),
                    json!((0..m.first_dense_layers).collect::<Vec<_>>()),
                );
                obj.insert("qkv_bias".into(), json!(cfg.attention_bias));
                obj.insert("use_sliding_window".into(), json!(false));
            }
        }
    } else {
        obj.insert("attention_bias".into(), json!(false));
        obj.insert("mlp_bias".into(), json!(false));
    }
    Ok(v)
}

fn renormalizes(m: &MoeConfig) -> bool {
    matches!(
        m.router.kind,
        RouterKind::SoftmaxTopK(TopKWeights { renormalize: true, .. })
    )
}
