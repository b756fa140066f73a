//! A router layer: bias-free linear logits in f32, expert selection per the
//! configured router, capacity, losses, statistics and the dispatch plan.

use crate::capacity::copy_limit;
use crate::config::{AuxLoss, RouterConfig, RouterKind};
use crate::decision::{PendingStats, RouteMode, RoutingDecision};
use crate::dispatch::Dispatch;
use crate::error::{Result, RouterError};
use crate::expert_bias::{aux_free_topk, ExpertBias};
use crate::losses::{self, BalanceStats};
use crate::sinkhorn::sinkhorn_topk;
use crate::topk::{softmax_topk, Selection};
use moe_tensor::init::Rng;
use moe_tensor::{CopyLimit, DType, Device, Tensor};
use std::sync::OnceLock;

/// A router: weight `[E, D]` (HF's `gate.weight` layout) plus the config and,
/// for the aux-free router, its expert bias.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    weight_ED: Tensor,
    bias: Option<ExpertBias>,
}

impl Router {
    /// A router over `weight_ED` (`[E, D]`, any float dtype; used as given, so
    /// pass a parameter to train it). Validates the config and the shape.
    pub fn new(config: RouterConfig, weight_ED: Tensor) -> Result<Self> {
        config.validate()?;
        if weight_ED.rank() != 2 || weight_ED.dims()[0] != config.num_experts {
            return Err(RouterError::Shape {
                what: "router weight",
                expected: format!("[{}, D]", config.num_experts),
                got: weight_ED.dims().to_vec(),
            });
        }
        if !weight_ED.dtype().is_float() {
            return Err(RouterError::DType {
                what: "router weight",
                expected: "a float dtype",
                got: weight_ED.dtype(),
            });
        }
        let bias = match config.kind {
            RouterKind::AuxFree(a) => Some(ExpertBias::new(config.num_experts, a.bias_update_rate)),
            _ => None,
        };
        Ok(Router {
            config,
            weight_ED,
            bias,
        })
    }

    /// A router with an f32 weight drawn from N(0, std²) as a trainable parameter.
    pub fn init(config: RouterConfig, d_model: usize, std: f64, rng: &mut Rng, device: &Device) -> Result<Self> {
        let w = rng.normal((config.num_experts, d_model), 0.0, std, DType::F32, device)?;
        Self::new(config, w.to_param())
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The router weight `[E, D]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight_ED
    }

    /// The aux-free router's expert bias (None for the other routers).
    pub fn expert_bias(&self) -> Option<&ExpertBias> {
        self.bias.as_ref()
    }

    /// Router logits `x_ND · Wᵀ`, `[N, E]`, computed in f32 (f64 when `x_ND` is
    /// f64, for gradient checks); inputs of other float dtypes are upcast.
    pub fn logits(&self, x_ND: &Tensor) -> Result<Tensor> {
        let d = self.weight_ED.dims()[1];
        if x_ND.rank() != 2 || x_ND.dims()[1] != d {
            return Err(RouterError::Shape {
                what: "router input",
                expected: format!("[N, {d}]"),
                got: x_ND.dims().to_vec(),
            });
        }
        let dtype = match x_ND.dtype() {
            DType::F64 => DType::F64,
            t if t.is_float() => DType::F32,
            t => {
                return Err(RouterError::DType {
                    what: "router input",
                    expected: "a float dtype",
                    got: t,
                })
            }
        };
        let w = self.weight_ED.to_dtype(dtype)?;
        Ok(x_ND.to_dtype(dtype)?.matmul(&w.t()?)?)
    }

    /// Routes `x_ND`: logits, then [`Router::route_logits`].
    pub fn route(&self, x_ND: &Tensor, mode: RouteMode) -> Result<RoutingDecision> {
        self.route_logits(&self.logits(x_ND)?, mode)
    }

    /// Routes from precomputed logits `[N, E]` (f32/f64).
    pub fn route_logits(&self, logits_NE: &Tensor, mode: RouteMode) -> Result<RoutingDecision> {
        let (e, k) = (self.config.num_experts, self.config.top_k);
        if logits_NE.rank() != 2 || logits_NE.dims()[1] != e {
            return Err(RouterError::Shape {
                what: "router logits",
                expected: format!("[N, {e}]"),
                got: logits_NE.dims().to_vec(),
            });
        }
        if !matches!(logits_NE.dtype(), DType::F32 | DType::F64) {
            return Err(RouterError::DType {
                what: "router logits",
                expected: "f32 or f64",
                got: logits_NE.dtype(),
            });
        }
        let train = mode == RouteMode::Train;
        let sel: Selection = match (&self.config.kind, &self.bias) {
            (RouterKind::SoftmaxTopK(w), _) => softmax_topk(logits_NE, k, w)?,
            (RouterKind::Sinkhorn(s), _) => sinkhorn_topk(logits_NE, k, s, train)?,
            (RouterKind::AuxFree(a), Some(bias)) => aux_free_topk(logits_NE, k, a, bias)?,
            (RouterKind::AuxFree(_), None) => unreachable!("Router::new creates the bias of an aux-free router"),
        };
        self.decide(logits_NE, sel, train)
    }

    /// Plans the dispatch on the logits' device and forms the losses there:
    /// nothing is read back (statistics stay on the device until
    /// [`RoutingDecision::stats`] asks for them, an aux-free router's load
    /// until its bias update).
    fn decide(&self, logits_NE: &Tensor, sel: Selection, train: bool) -> Result<RoutingDecision> {
        let (n, e, k) = (logits_NE.dims()[0], self.config.num_experts, self.config.top_k);
        // Scores rank copies for dropping by score; constants to the plan.
        let scores_NK = sel.raw_NK.detach();
        let limit = copy_limit(&self.config.capacity, n, k, e, &scores_NK);
        let can_drop = !matches!(limit, CopyLimit::None);
        let dispatch = Dispatch::plan(&sel.ids_NK, e, limit)?;
        let plan = dispatch.tensors();
        // Before capacity: what the balancing losses and the bias count.
        let selected_E = plan.selected.clone();
        if let (Some(bias), true) = (&self.bias, train) {
            bias.record_counts(selected_E.clone());
        }
        let aux_loss = match self.config.aux_loss {
            AuxLoss::None => None,
            AuxLoss::Switch => Some(losses::switch_aux_loss_from(&sel.probs_NE, &selected_E, k)?),
            AuxLoss::Sequence { seq_len } => Some(losses::sequence_aux_loss(&sel.probs_NE, &sel.ids_NK, k, seq_len)?),
        };
        let weights_NK = if can_drop {
            // A constant 0/1 mask: dropped copies get weight 0 and no gradient.
            let keep = plan.dropped.to_dtype(DType::F32)?.affine(-1.0, 1.0)?;
            sel.weights_NK.mul(&keep.to_dtype(logits_NE.dtype())?)?
        } else {
            sel.weights_NK
        };
        let pending_stats = PendingStats {
            selected_E: selected_E.clone(),
            kept_E: plan.counts.clone(),
            dropped_NK: can_drop.then(|| plan.dropped.clone()),
            invalid_ids: plan.invalid_ids.clone(),
            num_tokens: n,
            top_k: k,
            sinkhorn_iters: sel.sinkhorn_iters,
        };
        Ok(RoutingDecision {
            z_loss: losses::z_loss(logits_NE)?,
            balance: BalanceStats::new(&sel.probs_NE, selected_E.clone())?,
            tokens_per_expert_E: selected_E,
            dropped_NK: plan.dropped.clone(),
            logits_NE: logits_NE.clone(),
            probs_NE: sel.probs_NE,
            topk_ids_NK: sel.ids_NK,
            weights_NK,
            aux_loss,
            dispatch,
            aux_loss_coef: self.config.aux_loss_coef,
            z_loss_coef: self.config.z_loss_coef,
            stats: OnceLock::new(),
            pending_stats,
        })
    }
}
