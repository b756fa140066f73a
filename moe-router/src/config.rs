//! Router configuration: which router, how many experts, capacity and losses,
//! with presets for the HF model families and the paper's two routers.
//! Serde-friendly (TOML/JSON) and validated with errors that name the field.

use crate::error::{Result, RouterError};
use serde::{Deserialize, Serialize};

/// How the `K` combine weights are formed from the selected experts' scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopKWeights {
    /// Divide the `K` selected scores by their sum (Mixtral; Qwen2-MoE's
    /// `norm_topk_prob`). With `K = 1` this makes every weight exactly 1.
    pub renormalize: bool,
    /// Multiply the weights by this (DeepSeek's `routed_scaling_factor`; 1 otherwise).
    pub scaling_factor: f64,
}

impl Default for TopKWeights {
    fn default() -> Self {
        TopKWeights {
            renormalize: false,
            scaling_factor: 1.0,
        }
    }
}

/// Sinkhorn-balanced selection (GPT-NeoX `SinkhornRouter`, Megatron-LM `moe_utils.sinkhorn`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkhornConfig {
    /// Stop when the mean absolute change of the expert scaling is at most this
    /// (Megatron-LM's default 1e-4; the paper reports 0.01).
    pub tolerance: f64,
    /// Stop after this many iterations even if the tolerance is not reached.
    pub max_iters: usize,
}

impl Default for SinkhornConfig {
    fn default() -> Self {
        SinkhornConfig {
            tolerance: 1e-4,
            max_iters: 1000,
        }
    }
}

/// The activation that turns logits into expert scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFn {
    /// Softmax over the experts (DeepSeek-V2 and earlier).
    Softmax,
    /// Independent sigmoid per expert (DeepSeek-V3).
    Sigmoid,
}

/// DeepSeek-V3's auxiliary-loss-free balancing: a per-expert bias added to the
/// scores for selection only, updated after each optimiser step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuxFreeConfig {
    /// Score activation (DeepSeek-V3: sigmoid).
    pub score: ScoreFn,
    /// Weight normalisation and scaling of the selected (unbiased) scores.
    pub weights: TopKWeights,
    /// Bias update speed γ: `bias += γ · sign(mean load − load)` per update (DeepSeek-V3: 1e-3).
    pub bias_update_rate: f64,
}

/// Which router selects the experts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RouterKind {
    /// Softmax over the logits, then the top-k probabilities (HF Mixtral,
    /// Qwen2-MoE, DeepSeek-V2 "greedy"; Switch with `K = 1`).
    SoftmaxTopK(TopKWeights),
    /// Top-k of the Sinkhorn-balanced scores in training, plain top-k at inference.
    Sinkhorn(SinkhornConfig),
    /// Top-k of scores plus a load-balancing bias (DeepSeek-V3).
    AuxFree(AuxFreeConfig),
}

/// What decides which token copies an expert drops when it is over capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Keep the earliest tokens (by position in the micro-batch).
    Position,
    /// Keep the tokens with the highest router score for that expert.
    Score,
}

/// Expert capacity.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Capacity {
    /// Every routed token copy is processed (the paper's setting).
    #[default]
    Dropless,
    /// Each expert takes at most `ceil(factor · N · K / E)` copies; the rest are
    /// dropped (their MoE output is zero; the residual carries the token on).
    Factor {
        /// Capacity factor (1.0 = exactly the uniform share).
        factor: f64,
        /// Which copies are dropped.
        drop_policy: DropPolicy,
    },
}

/// Which auxiliary load-balancing loss the router reports per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuxLoss {
    /// No auxiliary loss.
    #[default]
    None,
    /// Switch/GShard over the whole micro-batch, Megatron-LM normalisation:
    /// `E · Σ_e f_e · P_e`, `f_e` = copies routed to e / (K·N), `P_e` = mean
    /// probability of e. (HF's model-level form is [`crate::load_balancing_loss_hf`].)
    Switch,
    /// DeepSeek-V2/V3 sequence-level loss: the Switch form per sequence of
    /// `seq_len` consecutive tokens, averaged over sequences.
    Sequence {
        /// Tokens per sequence (N must be a multiple).
        seq_len: usize,
    },
}

/// Everything a router layer needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterConfig {
    /// E: number of routed experts.
    pub num_experts: usize,
    /// K: experts per token.
    pub top_k: usize,
    /// Which router.
    pub kind: RouterKind,
    /// Dropless (default) or a capacity factor.
    #[serde(default)]
    pub capacity: Capacity,
    /// Which auxiliary balancing loss to report.
    #[serde(default)]
    pub aux_loss: AuxLoss,
    /// Weight of the auxiliary loss in [`crate::RoutingDecision::weighted_loss`].
    #[serde(default)]
    pub aux_loss_coef: f64,
    /// Weight of the router z-loss in [`crate::RoutingDecision::weighted_loss`].
    #[serde(default)]
    pub z_loss_coef: f64,
}

impl RouterConfig {
    fn softmax(num_experts: usize, top_k: usize, renormalize: bool, scaling_factor: f64) -> Self {
        RouterConfig {
            num_experts,
            top_k,
            kind: RouterKind::SoftmaxTopK(TopKWeights {
                renormalize,
                scaling_factor,
            }),
            capacity: Capacity::Dropless,
            aux_loss: AuxLoss::None,
            aux_loss_coef: 0.0,
            z_loss_coef: 0.0,
        }
    }

    /// HF Mixtral: softmax, top-k, weights renormalised to sum to 1 (with
    /// `K = 1` every gate is exactly 1; the router then learns only from losses).
    pub fn mixtral(num_experts: usize, top_k: usize) -> Self {
        Self::softmax(num_experts, top_k, true, 1.0)
    }

    /// HF Qwen2-MoE: like Mixtral, renormalised only if `norm_topk_prob`.
    pub fn qwen2_moe(num_experts: usize, top_k: usize, norm_topk_prob: bool) -> Self {
        Self::softmax(num_experts, top_k, norm_topk_prob, 1.0)
    }

    /// HF DeepSeek-V2 (`topk_method = "greedy"`): no renormalisation, weights
    /// scaled by `routed_scaling_factor`.
    pub fn deepseek_v2(num_experts: usize, top_k: usize, routed_scaling_factor: f64) -> Self {
        Self::softmax(num_experts, top_k, false, routed_scaling_factor)
    }

    /// Switch Transformer: top-1, the expert output scaled by its probability.
    pub fn switch(num_experts: usize) -> Self {
        Self::softmax(num_experts, 1, false, 1.0)
    }

    /// The paper's penalty-balanced top-k (PB): softmax top-k, weights are the
    /// selected probabilities, Switch aux loss 0.01 and z-loss 0.001.
    pub fn penalty_balanced(num_experts: usize, top_k: usize) -> Self {
        RouterConfig {
            aux_loss: AuxLoss::Switch,
            aux_loss_coef: 0.01,
            z_loss_coef: 0.001,
            ..Self::softmax(num_experts, top_k, false, 1.0)
        }
    }

    /// The paper's Sinkhorn-balanced top-k (SB), no balancing losses.
    pub fn sinkhorn(num_experts: usize, top_k: usize) -> Self {
        RouterConfig {
            kind: RouterKind::Sinkhorn(SinkhornConfig::default()),
            ..Self::softmax(num_experts, top_k, false, 1.0)
        }
    }

    /// DeepSeek-V3-style aux-loss-free balancing: sigmoid scores, bias for
    /// selection, weights renormalised and scaled, bias rate 1e-3.
    pub fn aux_free(num_experts: usize, top_k: usize, routed_scaling_factor: f64) -> Self {
        RouterConfig {
            kind: RouterKind::AuxFree(AuxFreeConfig {
                score: ScoreFn::Sigmoid,
                weights: TopKWeights {
                    renormalize: true,
                    scaling_factor: routed_scaling_factor,
                },
                bias_update_rate: 1e-3,
            }),
            ..Self::softmax(num_experts, top_k, false, 1.0)
        }
    }

    /// With a capacity factor instead of dropless routing.
    pub fn with_capacity(mut self, factor: f64, drop_policy: DropPolicy) -> Self {
        self.capacity = Capacity::Factor { factor, drop_policy };
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, msg: String| Err(RouterError::Config { field, msg });
        if self.num_experts == 0 {
            return bad("num_experts", "must be at least 1".into());
        }
        if self.top_k == 0 || self.top_k > self.num_experts {
            return bad(
                "top_k",
                format!("must be in 1..={} (num_experts), got {}", self.num_experts, self.top_k),
            );
        }
        let weights = |w: &TopKWeights| -> Result<()> {
            if !(w.scaling_factor.is_finite() && w.scaling_factor > 0.0) {
                return bad(
                    "scaling_factor",
                    format!("must be finite and > 0, got {}", w.scaling_factor),
                );
            }
            Ok(())
        };
        match &self.kind {
            RouterKind::SoftmaxTopK(w) => weights(w)?,
            RouterKind::Sinkhorn(s) => {
                if !(s.tolerance.is_finite() && s.tolerance > 0.0) {
                    return bad("tolerance", format!("must be finite and > 0, got {}", s.tolerance));
                }
                if s.max_iters == 0 {
                    return bad("max_iters", "must be at least 1".into());
                }
            }
            RouterKind::AuxFree(a) => {
                weights(&a.weights)?;
                if !(a.bias_update_rate.is_finite() && a.bias_update_rate >= 0.0) {
                    return bad(
                        "bias_update_rate",
                        format!("must be finite and ≥ 0, got {}", a.bias_update_rate),
                    );
                }
            }
        }
        if let Capacity::Factor { factor, .. } = self.capacity {
            if !(factor.is_finite() && factor > 0.0) {
                return bad("capacity.factor", format!("must be finite and > 0, got {factor}"));
            }
        }
        if let AuxLoss::Sequence { seq_len: 0 } = self.aux_loss {
            return bad("aux_loss.seq_len", "must be at least 1".into());
        }
        for (field, v) in [("aux_loss_coef", self.aux_loss_coef), ("z_loss_coef", self.z_loss_coef)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("must be finite and ≥ 0, got {v}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_bad_fields_are_named() {
        for c in [
            RouterConfig::mixtral(8, 2),
            RouterConfig::qwen2_moe(60, 4, false),
            RouterConfig::deepseek_v2(64, 6, 16.0),
            RouterConfig::switch(8),
            RouterConfig::penalty_balanced(31, 3),
            RouterConfig::sinkhorn(8, 1),
            RouterConfig::aux_free(32, 4, 2.5).with_capacity(1.25, DropPolicy::Score),
        ] {
            c.validate().unwrap();
        }
        let field = |c: RouterConfig| match c.validate() {
            Err(RouterError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(field(RouterConfig::mixtral(8, 9)), "top_k");
        assert_eq!(field(RouterConfig::mixtral(0, 1)), "num_experts");
        assert_eq!(field(RouterConfig::deepseek_v2(8, 2, f64::NAN)), "scaling_factor");
        assert_eq!(
            field(RouterConfig::switch(8).with_capacity(0.0, DropPolicy::Position)),
            "capacity.factor"
        );
        let mut c = RouterConfig::penalty_balanced(8, 2);
        c.z_loss_coef = -1.0;
        assert_eq!(field(c), "z_loss_coef");
        c = RouterConfig::sinkhorn(8, 2);
        c.kind = RouterKind::Sinkhorn(SinkhornConfig {
            tolerance: 0.0,
            max_iters: 10,
        });
        assert_eq!(field(c), "tolerance");
    }
}
