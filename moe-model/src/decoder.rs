//! The decoder-only language model: embedding, L pre-norm blocks (attention +
//! dense or MoE FFN), final norm, LM head; the training loss
//! `cross-entropy + aux_coef · aux + z_coef · z`.

use crate::hf::names::{self, param_specs};
use crate::layers::attention::{Attention, LayerKvCache};
use crate::layers::embedding::Embedding;
use crate::layers::mlp::Mlp;
use crate::layers::moe::{MoeBlock, MoeRouting};
use crate::layers::rms_norm::RmsNorm;
use crate::layers::rope::Rope;
use crate::{Error, ModelConfig, Result};
use moe_router::RouteMode;
use moe_tensor::init::Rng;
use moe_tensor::{Device, Params, Reduction, Tensor, DEFAULT_IGNORE_INDEX};
use std::path::PathBuf;

/// A block's feed-forward part.
#[derive(Clone, Debug)]
pub enum Ffn {
    /// A dense gated FFN.
    Dense(Mlp),
    /// A mixture of experts.
    Moe(MoeBlock),
}

/// One pre-norm decoder block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Norm before attention.
    pub input_norm: RmsNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the FFN.
    pub post_attention_norm: RmsNorm,
    /// Dense or MoE FFN.
    pub ffn: Ffn,
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `[B, T, V]`.
    pub logits: Tensor,
    /// Routing of each MoE layer, in layer order.
    pub routing: Vec<MoeRouting>,
}

/// The training loss and its parts.
#[derive(Debug)]
pub struct LossOutput {
    /// `ce + aux_coef · aux + z_coef · z` (scalar); what training differentiates.
    pub total: Tensor,
    /// Mean next-token cross-entropy (labels = inputs shifted by one, as HF).
    pub ce: Tensor,
    /// The load-balancing loss (unweighted), for MoE models.
    pub aux: Option<Tensor>,
    /// The router z-loss summed over MoE layers (unweighted), for MoE models.
    pub z: Option<Tensor>,
    /// Routing of each MoE layer, in layer order. The loss does not keep the
    /// logits (see [`Decoder::loss_with_targets`]); [`Decoder::forward`] gives them.
    pub routing: Vec<MoeRouting>,
}

/// Per-layer KV caches for incremental decoding.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    /// One cache per layer.
    pub layers: Vec<LayerKvCache>,
}

impl KvCache {
    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoder LM whose parameters are registered under their HF names.
#[derive(Clone, Debug)]
pub struct Decoder {
    cfg: ModelConfig,
    params: Params,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// `[V, D]`; the embedding table itself when tied.
    lm_head: Tensor,
    rope: Rope,
    mode: RouteMode,
}

/// Looks up `name` in `params`, checking its shape.
pub(crate) fn take(params: &Params, name: &str, shape: &[usize]) -> Result<Tensor> {
    let t = params.get(name).ok_or_else(|| Error::MissingTensor {
        path: PathBuf::from("<params>"),
        name: name.into(),
    })?;
    if t.dims() != shape {
        return Err(Error::TensorShape {
            path: PathBuf::from("<params>"),
            name: name.into(),
            expected: shape.to_vec(),
            got: t.dims().to_vec(),
        });
    }
    Ok(t.clone())
}

impl Decoder {
    /// A freshly initialised model (see [`crate::init`]).
    pub fn new(cfg: &ModelConfig, rng: &mut Rng, device: &Device) -> Result<Self> {
        let params = crate::init::init_params(cfg, rng, device)?;
        Self::from_params(cfg, params)
    }

    /// A model over existing parameters (named as [`param_specs`] lists them);
    /// a missing, misshapen or extra parameter is an error naming it.
    pub fn from_params(cfg: &ModelConfig, params: Params) -> Result<Self> {
        cfg.validate()?;
        let specs = param_specs(cfg);
        for s in &specs {
            take(&params, &s.name, &s.shape)?;
        }
        if params.len() != specs.len() {
            let known: std::collections::HashSet<_> = specs.iter().map(|s| s.name.as_str()).collect();
            if let Some((name, _)) = params.iter().find(|(n, _)| !known.contains(n)) {
                return Err(Error::UnexpectedTensor {
                    path: PathBuf::from("<params>"),
                    name: name.into(),
                });
            }
        }
        let get = |n: &str| params.get(n).cloned().ok_or_else(|| Error::config(n, "missing"));
        let norm = |n: String| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: get(&n)?,
                eps: cfg.rms_norm_eps,
            })
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = names::layer_prefix(i);
            let a = format!("{p}.self_attn");
            let qkv_bias = if cfg.attention_bias {
                Some([
                    get(&format!("{a}.q_proj.bias"))?,
                    get(&format!("{a}.k_proj.bias"))?,
                    get(&format!("{a}.v_proj.bias"))?,
                ])
            } else {
                None
            };
            let attn = Attention {
                q_proj: get(&format!("{a}.q_proj.weight"))?,
                k_proj: get(&format!("{a}.k_proj.weight"))?,
                v_proj: get(&format!("{a}.v_proj.weight"))?,
                o_proj: get(&format!("{a}.o_proj.weight"))?,
                qkv_bias,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim(),
            };
            let ffn = if cfg.is_moe_layer(i) {
                Ffn::Moe(MoeBlock::from_params(cfg, &params, &format!("{p}.mlp"))?)
            } else {
                Ffn::Dense(mlp_from(&params, &format!("{p}.mlp"), cfg)?)
            };
            blocks.push(Block {
                input_norm: norm(format!("{p}.input_layernorm.weight"))?,
                attn,
                post_attention_norm: norm(format!("{p}.post_attention_layernorm.weight"))?,
                ffn,
            });
        }
        let embed = Embedding {
            weight: get(names::EMBED)?,
        };
        let lm_head = if cfg.tie_word_embeddings {
            embed.weight.clone()
        } else {
            get(names::LM_HEAD)?
        };
        Ok(Decoder {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm: norm(names::FINAL_NORM.into())?,
            lm_head,
            rope: Rope::new(cfg.head_dim(), cfg.rope_theta, cfg.max_position_embeddings)?,
            mode: RouteMode::Train,
            params,
        })
    }

    /// The config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Whether [`Decoder::forward`] and [`Decoder::loss`] route as in training
    /// (the default; Sinkhorn balances, aux-free biases record load) or as at
    /// inference. Cached (generation) forwards always route as at inference.
    pub fn set_route_mode(&mut self, mode: RouteMode) {
        self.mode = mode;
    }

    /// The routing mode of [`Decoder::forward`].
    pub fn route_mode(&self) -> RouteMode {
        self.mode
    }

    /// Every parameter under its HF name.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The blocks (for inspection and upcycling).
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Checks `ids` is a non-empty I64 `[B, T]` batch.
    fn check_batch(&self, ids: &Tensor) -> Result<()> {
        if ids.rank() != 2 || ids.elem_count() == 0 || ids.dtype() != moe_tensor::DType::I64 {
            return Err(Error::BadInput {
                what: "token ids",
                msg: format!(
                    "need a non-empty I64 [B, T] tensor, got {:?} {:?}",
                    ids.dtype(),
                    ids.dims()
                ),
            });
        }
        Ok(())
    }

    /// Logits `[B, T, V]` for `ids [B, T]` (I64) and the MoE layers' routing.
    pub fn forward(&self, ids: &Tensor) -> Result<ForwardOutput> {
        self.forward_impl(ids, None, self.mode)
    }

    /// Like [`Decoder::forward`], continuing after the positions in `cache`
    /// and appending this call's keys and values to it.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<ForwardOutput> {
        if cache.layers.len() != self.blocks.len() {
            cache.layers = vec![LayerKvCache::default(); self.blocks.len()];
        }
        self.forward_impl(ids, Some(cache), RouteMode::Eval)
    }

    fn forward_impl(&self, ids: &Tensor, cache: Option<&mut KvCache>, mode: RouteMode) -> Result<ForwardOutput> {
        let (h, routing) = self.hidden(ids, cache, mode)?;
        let logits = h.matmul(&self.lm_head.t()?)?;
        Ok(ForwardOutput { logits, routing })
    }

    /// The final hidden states `[B, T, D]` (after the last norm) and the MoE
    /// layers' routing: everything before the LM head.
    fn hidden(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        mode: RouteMode,
    ) -> Result<(Tensor, Vec<MoeRouting>)> {
        self.check_batch(ids)?;
        let start = cache.as_ref().map_or(0, |c| c.len());
        let t = ids.dims()[1];
        if start + t > self.cfg.max_position_embeddings {
            return Err(Error::BadInput {
                what: "token ids",
                msg: format!(
                    "positions up to {} exceed max_position_embeddings = {}",
                    start + t,
                    self.cfg.max_position_embeddings
                ),
            });
        }
        let mut h = self.embed.forward(ids)?; // [B, T, D]
        let mut routing = Vec::new();
        for (i, blk) in self.blocks.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let a = blk
                .attn
                .forward(&blk.input_norm.forward(&h)?, &self.rope, start, layer_cache)?;
            h = h.add(&a)?;
            let x = blk.post_attention_norm.forward(&h)?;
            let f = match &blk.ffn {
                Ffn::Dense(m) => m.forward(&x)?,
                Ffn::Moe(m) => {
                    let (y, r) = m.forward(&x, i, mode)?;
                    routing.push(r);
                    y
                }
            };
            h = h.add(&f)?;
        }
        Ok((self.norm.forward(&h)?, routing))
    }

    /// The training loss on `ids [B, T]`: mean cross-entropy of predicting
    /// token t+1 from tokens ..=t (HF's causal-LM loss with labels = ids), plus
    /// the weighted router losses of an MoE model. The targets are built on
    /// the host from the ids (read back when they live on a device); a caller
    /// that has the ids on the host gives [`next_token_targets`] to
    /// [`Decoder::loss_with_targets`] instead.
    pub fn loss(&self, ids: &Tensor) -> Result<LossOutput> {
        self.check_batch(ids)?;
        let (b, t) = (ids.dims()[0], ids.dims()[1]);
        let host_ids = ids.to_device(&Device::Cpu)?.to_vec::<i64>()?;
        let targets = Tensor::from_vec(next_token_targets(&host_ids, t), (b, t), &ids.device())?;
        self.loss_with_targets(ids, &targets)
    }

    /// [`Decoder::loss`] with its targets given: `targets [B, T]` (on the ids'
    /// device) must be [`next_token_targets`] of the ids.
    pub fn loss_with_targets(&self, ids: &Tensor, targets: &Tensor) -> Result<LossOutput> {
        self.check_batch(ids)?;
        let (b, t, v) = (ids.dims()[0], ids.dims()[1], self.cfg.vocab_size);
        if t < 2 {
            return Err(Error::BadInput {
                what: "token ids",
                msg: format!("the loss needs sequences of at least 2 tokens, got {t}"),
            });
        }
        if targets.dims() != [b, t] {
            return Err(Error::BadInput {
                what: "targets",
                msg: format!("expected [{b}, {t}] like the ids, got {:?}", targets.dims()),
            });
        }
        let (h, routing) = self.hidden(ids, None, self.mode)?;
        // The LM head fused with cross-entropy over all [B, T] rows, targets =
        // ids shifted left and the last position ignored: the mean over the
        // B·(T − 1) predicted tokens. The [B, T, V] logits are never kept (the
        // separate matmul and cross_entropy give the same bits).
        debug_assert_eq!(self.lm_head.dims(), [v, h.dims()[2]]);
        let ce = h.linear_cross_entropy(&self.lm_head, targets, DEFAULT_IGNORE_INDEX, Reduction::Mean)?;
        let mut total = ce.clone();
        let (mut aux, mut z) = (None, None);
        if let Some(m) = &self.cfg.moe {
            let a = crate::layers::moe::aux_loss(m, &routing)?;
            let zl = crate::layers::moe::z_loss(&routing)?;
            if m.router.aux_loss_coef > 0.0 {
                total = total.add(&a.mul_scalar(m.router.aux_loss_coef)?)?;
            }
            if m.router.z_loss_coef > 0.0 {
                total = total.add(&zl.mul_scalar(m.router.z_loss_coef)?)?;
            }
            aux = Some(a);
            z = Some(zl);
        }
        Ok(LossOutput {
            total,
            ce,
            aux,
            z,
            routing,
        })
    }
}

/// The targets of the next-token loss for row-major `ids [B, T]` (`t` = T):
/// each row shifted left by one, its last position [`DEFAULT_IGNORE_INDEX`].
pub fn next_token_targets(ids: &[i64], t: usize) -> Vec<i64> {
    (0..ids.len())
        .map(|i| {
            if i % t + 1 < t {
                ids[i + 1]
            } else {
                DEFAULT_IGNORE_INDEX
            }
        })
        .collect()
}

/// A dense gated FFN from `{prefix}.{gate,up,down}_proj.weight`.
pub(crate) fn mlp_from(params: &Params, prefix: &str, cfg: &ModelConfig) -> Result<Mlp> {
    let get = |n: &str| {
        params
            .get(&format!("{prefix}.{n}.weight"))
            .cloned()
            .ok_or_else(|| Error::MissingTensor {
                path: PathBuf::from("<params>"),
                name: format!("{prefix}.{n}.weight"),
            })
    };
    Ok(Mlp {
        gate_proj: get("gate_proj")?,
        up_proj: get("up_proj")?,
        down_proj: get("down_proj")?,
        act: cfg.activation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_each_row_shifted_left_with_the_last_ignored() {
        let ignore = DEFAULT_IGNORE_INDEX;
        assert_eq!(
            next_token_targets(&[1, 2, 3, 4, 5, 6], 3),
            vec![2, 3, ignore, 5, 6, ignore]
        );
        assert_eq!(next_token_targets(&[7, 8], 1), vec![ignore, ignore]);
    }

    #[test]
    fn loss_with_given_targets_is_the_loss() {
        let cfg = crate::presets::preset("debug-switch").unwrap();
        let model = Decoder::new(&cfg, &mut Rng::seed(2), &Device::Cpu).unwrap();
        let host: Vec<i64> = (0..2 * 9).map(|i| (i * 7 % 50) as i64).collect();
        let ids = Tensor::from_vec(host.clone(), (2, 9), &Device::Cpu).unwrap();
        let targets = Tensor::from_vec(next_token_targets(&host, 9), (2, 9), &Device::Cpu).unwrap();
        let a = model.loss(&ids).unwrap().total.to_vec::<f32>().unwrap();
        let b = model
            .loss_with_targets(&ids, &targets)
            .unwrap()
            .total
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(a, b);
        let short = Tensor::from_vec(vec![0i64; 9], (1, 9), &Device::Cpu).unwrap();
        let e = model.loss_with_targets(&ids, &short).unwrap_err();
        assert!(e.to_string().contains("targets"), "{e}");
    }
}
