//! Balancing losses: the Switch/GShard auxiliary loss in Megatron-LM's and in
//! HF's normalisation, the DeepSeek-V2/V3 sequence-level variant, and the
//! ST-MoE router z-loss. All return unweighted scalars (the coefficient is the
//! caller's), differentiable in the router probabilities or logits; token
//! counts are constants, as in every reference implementation.
//!
//! The two Switch normalisations differ by a factor of K and in how layers
//! combine:
//! - Megatron-LM (`switch_load_balancing_loss_func`), per layer:
//!   `E · Σ_e f_e · P_e` with `f_e = c_e / (K·N)` and `P_e = mean_t p_te`, so
//!   `Σ f = 1` and a perfectly balanced router scores 1.
//! - HF (`load_balancing_loss_func` in Mixtral/Qwen2-MoE), once per model over
//!   the L layers' logits: `E · Σ_e f_e · P_e` with `f_e = Σ_l c_le / (L·N)` and
//!   `P_e = Σ_l Σ_t p_lte / (L·N)`, so `Σ f = K` and a balanced router scores K;
//!   layers mix (`f` of one layer multiplies `P` of another).

use crate::error::{Result, RouterError};
use moe_tensor::{no_grad, DType, Tensor};

/// Host counts as an I64 `[E]` tensor on `like`'s device.
fn host_counts(counts_E: &[usize], like: &Tensor) -> Result<Tensor> {
    let c: Vec<i64> = counts_E.iter().map(|&c| c as i64).collect();
    Ok(Tensor::from_vec(c, counts_E.len(), &like.device())?)
}

/// Integer counts (I64, on any device) as a constant tensor of `like`'s
/// float dtype; exact below 2^24 (through f32, the cast every device has).
fn counts_as(counts_E: &Tensor, like: &Tensor) -> Result<Tensor> {
    let c = if counts_E.dtype().is_float() {
        counts_E.detach()
    } else {
        counts_E.to_dtype(DType::F32)?
    };
    Ok(c.to_dtype(like.dtype())?)
}

fn check_probs(probs_NE: &Tensor, num_experts: usize) -> Result<()> {
    if probs_NE.rank() != 2 || probs_NE.dims()[1] != num_experts {
        return Err(RouterError::Shape {
            what: "router probabilities",
            expected: format!("[N, {num_experts}]"),
            got: probs_NE.dims().to_vec(),
        });
    }
    Ok(())
}

/// Switch/GShard auxiliary loss, Megatron-LM normalisation, over one layer:
/// `E · Σ_e (c_e / (K·N)) · mean_t p_te`. `probs_NE` are the router's softmax
/// probabilities over all experts; `counts_E[e]` the number of tokens whose
/// top-k contains e (before any capacity dropping).
pub fn switch_aux_loss(probs_NE: &Tensor, counts_E: &[usize], top_k: usize) -> Result<Tensor> {
    switch_aux_loss_from(probs_NE, &host_counts(counts_E, probs_NE)?, top_k)
}

/// [`switch_aux_loss`] with the counts as an `[E]` tensor on the
/// probabilities' device (I64, as a dispatch plan counts them), so the loss
/// is formed without reading the routing back to the host.
pub fn switch_aux_loss_from(probs_NE: &Tensor, counts_E: &Tensor, top_k: usize) -> Result<Tensor> {
    let e = counts_E.elem_count();
    check_probs(probs_NE, e)?;
    if probs_NE.dims()[0] == 0 {
        return empty_batch_loss(probs_NE);
    }
    let n = probs_NE.dims()[0] as f64;
    let f_E = counts_as(counts_E, probs_NE)?.mul_scalar(1.0 / (top_k as f64 * n))?;
    let p_E = probs_NE.mean(&[0], false)?;
    Ok(p_E.mul(&f_E)?.sum_all()?.mul_scalar(e as f64)?)
}

/// DeepSeek-V2/V3 sequence-level auxiliary loss: for each sequence of
/// `seq_len` consecutive tokens, `Σ_e f_e · P_e` with `f_e = E·c_e / (K·T)`
/// (`c_e` = tokens of the sequence selecting e) and `P_e` = the sequence's mean
/// score of e; averaged over sequences. `probs_NE` are normalised scores
/// (softmax probabilities, or sigmoid scores divided by their row sum);
/// `topk_ids_NK` the chosen experts (I64 `[N, K]`, on the probabilities'
/// device: the counts are formed there, nothing is read back; an id outside
/// `0..E` counts for no expert, and the dispatch plan reports it).
pub fn sequence_aux_loss(probs_NE: &Tensor, topk_ids_NK: &Tensor, top_k: usize, seq_len: usize) -> Result<Tensor> {
    let (n, e) = (
        probs_NE.dims().first().copied().unwrap_or(0),
        probs_NE.dims().get(1).copied().unwrap_or(0),
    );
    check_probs(probs_NE, e)?;
    if seq_len == 0 || n % seq_len != 0 || n == 0 {
        return Err(RouterError::Invalid {
            what: "sequence aux loss",
            msg: format!("{n} tokens are not a positive multiple of seq_len {seq_len}"),
        });
    }
    if topk_ids_NK.dims() != [n, top_k] {
        return Err(RouterError::Shape {
            what: "sequence aux loss expert ids",
            expected: format!("[{n}, {top_k}]"),
            got: topk_ids_NK.dims().to_vec(),
        });
    }
    let b = n / seq_len;
    let scale = e as f64 / (top_k as f64 * seq_len as f64);
    // c_BE: each token's experts as a one-hot row, summed over the sequence.
    let chosen_NE = one_hot(topk_ids_NK, e, probs_NE.dtype())?.sum(&[1], false)?;
    let f_BE = chosen_NE
        .reshape((b, seq_len, e))?
        .sum(&[1], false)?
        .mul_scalar(scale)?;
    let p_BE = probs_NE.reshape((b, seq_len, e))?.mean(&[1], false)?;
    Ok(p_BE.mul(&f_BE)?.sum(&[1], false)?.mean_all()?)
}

/// `[N, K, E]` in `dtype`: 1 at `[t, k, ids[t, k]]`, 0 elsewhere (an id
/// outside `0..E` gives a zero row), formed on the ids' device.
pub(crate) fn one_hot(ids_NK: &Tensor, num_experts: usize, dtype: DType) -> Result<Tensor> {
    let (n, k) = (ids_NK.dims()[0], ids_NK.dims()[1]);
    // Ids and expert numbers compared in f32: exact below 2^24 experts.
    let experts_11E = Tensor::arange(num_experts, DType::F32, &ids_NK.device())?.reshape((1, 1, num_experts))?;
    Ok(ids_NK
        .to_dtype(DType::F32)?
        .reshape((n, k, 1))?
        .eq(&experts_11E)?
        .to_dtype(DType::F32)?
        .to_dtype(dtype)?)
}

/// Router z-loss (ST-MoE): `mean_t (logsumexp_e logits_te)²`.
pub fn z_loss(logits_NE: &Tensor) -> Result<Tensor> {
    if logits_NE.rank() != 2 {
        return Err(RouterError::Shape {
            what: "router logits",
            expected: "[N, E]".into(),
            got: logits_NE.dims().to_vec(),
        });
    }
    if logits_NE.dims()[0] == 0 {
        return empty_batch_loss(logits_NE);
    }
    Ok(logsumexp_rows(logits_NE)?.sqr()?.mean_all()?)
}

/// An empty batch has nothing to balance: a zero loss, not the NaN of a mean over no rows.
fn empty_batch_loss(like: &Tensor) -> Result<Tensor> {
    Ok(like.sum_all()?)
}

/// `log Σ_e exp(x_te)` per row, `[N]`, stable: the row max (a constant for the
/// gradient, which is then exactly softmax) is subtracted first.
pub fn logsumexp_rows(x_NE: &Tensor) -> Result<Tensor> {
    let m_N1 = no_grad(|| x_NE.max(1, true))?.detach();
    Ok(x_NE.sub(&m_N1)?.exp()?.sum(&[1], true)?.log()?.add(&m_N1)?.squeeze(1)?)
}

/// One layer's share of HF's model-level load-balancing loss: routed copies per
/// expert (constants) and the sum of the softmax probabilities over the layer's
/// tokens (differentiable).
#[derive(Clone, Debug)]
pub struct BalanceStats {
    /// Top-k assignments per expert, `[E]` I64 on the router's device
    /// (before capacity dropping).
    pub counts_E: Tensor,
    /// `Σ_t p_te`, `[E]`, differentiable in the router logits.
    pub prob_sum_E: Tensor,
    /// Tokens in the layer's batch (N).
    pub rows: usize,
}

impl BalanceStats {
    /// What HF's `load_balancing_loss_func` computes from one layer's logits:
    /// softmax, top-k of the probabilities (ties to the lower index), counts
    /// and probability sums.
    pub fn from_logits(logits_NE: &Tensor, top_k: usize) -> Result<Self> {
        let probs = logits_NE.softmax(-1)?;
        let e = probs.dims().get(1).copied().unwrap_or(0);
        if probs.rank() != 2 || top_k == 0 || top_k > e {
            return Err(RouterError::Shape {
                what: "router logits",
                expected: format!("[N, E] with E ≥ top_k = {top_k}"),
                got: probs.dims().to_vec(),
            });
        }
        let ids = no_grad(|| probs.topk(top_k))?.1;
        Self::new(&probs, ids.dispatch_plan(e)?.counts)
    }

    /// From a layer's softmax probabilities `[N, E]` and its routed counts
    /// (`[E]`, I64, on the probabilities' device).
    pub fn new(probs_NE: &Tensor, counts_E: Tensor) -> Result<Self> {
        check_probs(probs_NE, counts_E.elem_count())?;
        Ok(BalanceStats {
            prob_sum_E: probs_NE.sum(&[0], false)?,
            rows: probs_NE.dims()[0],
            counts_E,
        })
    }
}

/// HF Mixtral/Qwen2-MoE `load_balancing_loss_func`, exactly: over all layers,
/// `f = Σ_l counts_l / Σ_l N_l`, `P = Σ_l prob_sum_l / Σ_l N_l`, loss
/// `E · Σ_e f_e · P_e` (no attention mask). A model-level value: pass every
/// MoE layer's stats.
pub fn load_balancing_loss_hf(layers: &[&BalanceStats]) -> Result<Tensor> {
    let first = layers.first().ok_or(RouterError::Invalid {
        what: "load_balancing_loss_hf",
        msg: "no layers given".into(),
    })?;
    let e = first.counts_E.elem_count();
    let mut counts = first.prob_sum_E.zeros_like()?.detach();
    let mut prob_sum = first.prob_sum_E.zeros_like()?;
    let mut rows = 0usize;
    for l in layers {
        if l.counts_E.elem_count() != e || l.prob_sum_E.dims() != [e] {
            return Err(RouterError::Invalid {
                what: "load_balancing_loss_hf",
                msg: format!(
                    "layers disagree on the number of experts ({e} vs {})",
                    l.counts_E.elem_count()
                ),
            });
        }
        // Integer-valued sums: exact in the float dtype below 2^24.
        counts = counts.add(&counts_as(&l.counts_E, &l.prob_sum_E)?)?;
        prob_sum = prob_sum.add(&l.prob_sum_E)?;
        rows += l.rows;
    }
    let rows = rows.max(1) as f64;
    let f_E = counts.mul_scalar(1.0 / rows)?;
    let p_E = prob_sum.mul_scalar(1.0 / rows)?;
    Ok(p_E.mul(&f_E)?.sum_all()?.mul_scalar(e as f64)?)
}
