//! The model configuration: one serde struct for dense, Switch-style and
//! DeepSeek-style (fine-grained + shared experts) decoders, its validation, and
//! parameter counts. Presets and FLOP matching live in [`crate::presets`].

use crate::{Error, Result};
use moe_router::{RouterConfig, RouterError};
use serde::{Deserialize, Serialize};

/// The gated FFN's activation: `act(x·W_gateᵀ) ⊙ (x·W_upᵀ)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SiLU gate (Llama, Mixtral, Qwen2-MoE; HF `hidden_act = "silu"`).
    Swiglu,
    /// GELU gate, tanh approximation (HF `"gelu_pytorch_tanh"`).
    Geglu,
    /// GELU gate, exact erf form (HF `"gelu"`).
    GegluErf,
}

/// Which load-balancing loss the model trains with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuxLossForm {
    /// HF `load_balancing_loss_func` (Mixtral, Qwen2-MoE): all MoE layers'
    /// routing pooled into one value for the model (Σ f = k); weighted by
    /// `router.aux_loss_coef`. The routers' own `aux_loss` setting is unused.
    Hf,
    /// Each layer's router reports its configured `aux_loss` (Megatron Switch
    /// form or sequence-level); the model sums them over layers.
    PerLayer,
}

/// The mixture-of-experts part of a config; absent for a dense model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeConfig {
    /// Routed experts (E), experts per token (k), router kind and weight rule,
    /// capacity, balancing losses and their coefficients (moe-router's config;
    /// every MoE layer has a router of this config).
    pub router: RouterConfig,
    /// FFN width of one routed expert.
    pub expert_intermediate_size: usize,
    /// Total FFN width of the always-on shared expert(s); 0 for none.
    #[serde(default)]
    pub shared_intermediate_size: usize,
    /// Scale the shared expert's output by sigmoid(x·w) (Qwen2-MoE).
    #[serde(default)]
    pub shared_expert_gate: bool,
    /// Leading layers that keep a dense FFN of `intermediate_size` (DeepSeek).
    #[serde(default)]
    pub first_dense_layers: usize,
    /// Which load-balancing loss enters the training loss.
    #[serde(default = "default_aux_form")]
    pub aux_loss_form: AuxLossForm,
}

fn default_aux_form() -> AuxLossForm {
    AuxLossForm::PerLayer
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-5
}
fn default_std() -> f64 {
    0.02
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> Activation {
    Activation::Swiglu
}
/// A decoder-only language model: Llama-style blocks whose FFN is dense or MoE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size (V).
    pub vocab_size: usize,
    /// Model width (D).
    pub hidden_size: usize,
    /// Decoder layers (L).
    pub num_layers: usize,
    /// Query heads (H).
    pub num_heads: usize,
    /// Key/value heads; fewer than `num_heads` is grouped-query attention.
    pub num_kv_heads: usize,
    /// Per-head width; `None` means `hidden_size / num_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Width of a dense FFN (F).
    pub intermediate_size: usize,
    /// Gated FFN activation.
    #[serde(default = "default_act")]
    pub activation: Activation,
    /// RoPE base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// LM head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    /// Longest sequence RoPE and generation are used with.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Std of the normal initialisation; output projections get std/√(2L).
    #[serde(default = "default_std")]
    pub init_std: f64,
    /// Mixture-of-experts settings; `None` for a dense model.
    #[serde(default)]
    pub moe: Option<MoeConfig>,
}

/// Parameter counts of a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCount {
    /// Every parameter.
    pub total: usize,
    /// Parameters one token uses: routed experts counted k times, not E.
    pub active: usize,
}

fn need(ok: bool, field: &str, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::config(field, msg()))
    }
}

impl ModelConfig {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_heads.max(1))
    }

    /// Whether layer `layer` has an MoE FFN.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| layer >= m.first_dense_layers)
    }

    /// Number of MoE layers.
    pub fn num_moe_layers(&self) -> usize {
        (0..self.num_layers).filter(|&l| self.is_moe_layer(l)).count()
    }

    /// Checks every field; the error names the first one at fault.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            need(v > 0, field, || "must be positive".into())?;
        }
        need(self.num_heads.is_multiple_of(self.num_kv_heads), "num_kv_heads", || {
            format!("{} does not divide num_heads = {}", self.num_kv_heads, self.num_heads)
        })?;
        match self.head_dim {
            Some(h) => need(h > 0 && h % 2 == 0, "head_dim", || {
                format!("{h} must be positive and even (RoPE)")
            })?,
            None => need(
                self.hidden_size.is_multiple_of(self.num_heads)
                    && (self.hidden_size / self.num_heads).is_multiple_of(2),
                "num_heads",
                || {
                    format!(
                        "hidden_size {} / num_heads {} must be an even integer (or set head_dim)",
                        self.hidden_size, self.num_heads
                    )
                },
            )?,
        }
        need(
            self.rope_theta.is_finite() && self.rope_theta > 1.0,
            "rope_theta",
            || format!("{} must be finite and > 1", self.rope_theta),
        )?;
        need(
            self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0,
            "rms_norm_eps",
            || format!("{} must be finite and > 0", self.rms_norm_eps),
        )?;
        need(self.init_std.is_finite() && self.init_std > 0.0, "init_std", || {
            format!("{} must be finite and > 0", self.init_std)
        })?;
        if let Some(m) = &self.moe {
            m.validate(self.num_layers)?;
        }
        Ok(())
    }

    /// Parameters of one gated FFN of width `f`.
    fn ffn_params(&self, f: usize) -> usize {
        3 * self.hidden_size * f
    }

    /// Total and active parameter counts (embeddings and LM head included).
    pub fn param_count(&self) -> ParamCount {
        let (d, hd) = (self.hidden_size, self.head_dim());
        let (q, kv) = (self.num_heads * hd, self.num_kv_heads * hd);
        let mut attn = d * q + 2 * d * kv + q * d;
        if self.attention_bias {
            attn += q + 2 * kv;
        }
        let per_layer_common = attn + 2 * d;
        let embed = self.vocab_size * d * if self.tie_word_embeddings { 1 } else { 2 };
        let mut total = embed + d + self.num_layers * per_layer_common;
        let mut active = total;
        for layer in 0..self.num_layers {
            match &self.moe {
                Some(m) if self.is_moe_layer(layer) => {
                    let mut common = m.num_experts() * d; // router
                    if m.shared_intermediate_size > 0 {
                        common += self.ffn_params(m.shared_intermediate_size);
                        if m.shared_expert_gate {
                            common += d;
                        }
                    }
                    let expert = self.ffn_params(m.expert_intermediate_size);
                    total += common + m.num_experts() * expert;
                    active += common + m.top_k() * expert;
                }
                _ => {
                    total += self.ffn_params(self.intermediate_size);
                    active += self.ffn_params(self.intermediate_size);
                }
            }
        }
        ParamCount { total, active }
    }

    /// Parses a JSON config and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| Error::config("<json>", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl MoeConfig {
    /// Routed experts per MoE layer (E).
    pub fn num_experts(&self) -> usize {
        self.router.num_experts
    }

    /// Experts per token (k).
    pub fn top_k(&self) -> usize {
        self.router.top_k
    }

    /// Checks the MoE fields; errors name them as `moe.<field>`.
    pub fn validate(&self, num_layers: usize) -> Result<()> {
        self.router.validate().map_err(|e| match e {
            RouterError::Config { field, msg } => Error::config(format!("moe.router.{field}"), msg),
            other => Error::config("moe.router", other.to_string()),
        })?;
        need(
            self.expert_intermediate_size > 0,
            "moe.expert_intermediate_size",
            || "must be positive".into(),
        )?;
        need(
            !self.shared_expert_gate || self.shared_intermediate_size > 0,
            "moe.shared_expert_gate",
            || "needs shared_intermediate_size > 0".into(),
        )?;
        need(self.first_dense_layers < num_layers, "moe.first_dense_layers", || {
            format!("{} leaves no MoE layer among {num_layers}", self.first_dense_layers)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::debug_dense;

    #[test]
    fn small_gqa_tied_counts_by_hand() {
        // V 10, D 8, L 1, H 4, Hkv 2 (hd 2), F 6, tied, with q/k/v bias.
        let mut c = debug_dense();
        (c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads) = (10, 8, 1, 4, 2);
        (c.intermediate_size, c.tie_word_embeddings, c.attention_bias) = (6, true, true);
        let attn = 8 * 8 + 2 * 8 * 4 + 8 * 8 + (8 + 4 + 4);
        let expect = 10 * 8 + 8 + (attn + 2 * 8) + 3 * 8 * 6;
        assert_eq!(
            c.param_count(),
            ParamCount {
                total: expect,
                active: expect
            }
        );
    }

    #[test]
    fn small_moe_counts_by_hand() {
        // D 4, L 3 with one leading dense layer, E 5, k 2, expert 3, shared 2 gated.
        let mut c = debug_dense();
        (c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads) = (7, 4, 3, 2, 2);
        c.intermediate_size = 8;
        let mut m = c.switch_from_dense(5).unwrap().moe.unwrap();
        m.router.top_k = 2;
        (m.expert_intermediate_size, m.shared_intermediate_size) = (3, 2);
        (m.shared_expert_gate, m.first_dense_layers) = (true, 1);
        c.moe = Some(m);
        c.validate().unwrap();
        let common = 2 * 7 * 4 + 4 + 3 * (4 * 16 + 2 * 4);
        let dense_ffn = 3 * 4 * 8;
        let moe_common = 5 * 4 + 3 * 4 * 2 + 4;
        let expert = 3 * 4 * 3;
        let pc = c.param_count();
        assert_eq!(pc.total, common + dense_ffn + 2 * (moe_common + 5 * expert));
        assert_eq!(pc.active, common + dense_ffn + 2 * (moe_common + 2 * expert));
        assert_eq!(c.num_moe_layers(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        let field = |c: ModelConfig| match c.validate() {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        let mut c = debug_dense();
        c.num_kv_heads = 3;
        assert_eq!(field(c), "num_kv_heads");
        let mut c = debug_dense().switch_from_dense(4).unwrap();
        c.moe.as_mut().unwrap().router.top_k = 5;
        assert_eq!(field(c), "moe.router.top_k");
        let mut c = debug_dense();
        c.rope_theta = f64::NAN;
        assert_eq!(field(c), "rope_theta");
    }

    #[test]
    fn json_round_trip_and_unknown_fields() {
        let c = debug_dense().granular_from_dense(4, 7, 1).unwrap();
        assert_eq!(ModelConfig::from_json(&c.to_json()).unwrap(), c);
        let bad = c.to_json().replacen("\"vocab_size\"", "\"vocab_sise\"", 1);
        let err = ModelConfig::from_json(&bad).unwrap_err().to_string();
        assert!(err.contains("vocab_sise"), "{err}");
    }
}
