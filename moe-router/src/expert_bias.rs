//! DeepSeek-V3's auxiliary-loss-free load balancing (arXiv 2412.19437, §2.1.2):
//! a per-expert bias added to the scores for expert selection only (the
//! combine weights use the unbiased scores). After each optimiser step the
//! bias of an overloaded expert goes down and that of an underloaded one up:
//! `bias_e += γ · sign(mean load − load_e)`, load counted over the step's
//! training forwards.

use crate::config::{AuxFreeConfig, ScoreFn};
use crate::error::{Result, RouterError};
use crate::topk::{apply_weights, select_chosen, Selection};
use moe_tensor::{no_grad, DType, Device, Tensor};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
struct State {
    bias_E: Vec<f32>,
    /// Routed copies per expert since the last update.
    load_E: Vec<u64>,
    /// Loads recorded as device counts (`[E]`, I64), not yet read: added
    /// to `load_E` when the load is next needed, so routing never waits.
    pending_E: Vec<Tensor>,
}

impl State {
    /// Reads the pending device counts into `load_E`.
    fn fold_pending(&mut self) -> Result<()> {
        for counts in std::mem::take(&mut self.pending_E) {
            for (l, c) in self.load_E.iter_mut().zip(counts.to_vec::<i64>()?) {
                *l += c.max(0) as u64;
            }
        }
        Ok(())
    }
}

/// The per-expert selection bias and the load recorded since its last update.
/// Shared by reference between forwards (interior mutability), so a router
/// used through `&self` can record its loads.
#[derive(Debug)]
pub struct ExpertBias {
    rate: f64,
    state: Mutex<State>,
}

impl ExpertBias {
    /// A zero bias over `num_experts` experts, updated at `rate` (γ).
    pub fn new(num_experts: usize, rate: f64) -> Self {
        ExpertBias {
            rate,
            state: Mutex::new(State {
                bias_E: vec![0.0; num_experts],
                load_E: vec![0; num_experts],
                pending_E: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current bias, `[E]` (HF DeepSeek-V3 name: `e_score_correction_bias`).
    pub fn bias(&self) -> Vec<f32> {
        self.lock().bias_E.clone()
    }

    /// The bias as a `[1, E]` tensor of `dtype`, to add to scores.
    pub fn bias_tensor(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let b = self.bias();
        let e = b.len();
        Ok(Tensor::from_vec(b, (1, e), device)?.to_dtype(dtype)?)
    }

    /// Replaces the bias (loading a checkpoint or HF weights).
    pub fn set_bias(&self, bias_E: &[f32]) -> Result<()> {
        let mut s = self.lock();
        if bias_E.len() != s.bias_E.len() || bias_E.iter().any(|b| !b.is_finite()) {
            return Err(RouterError::Invalid {
                what: "expert bias",
                msg: format!(
                    "expected {} finite values, got {} ({:?}…)",
                    s.bias_E.len(),
                    bias_E.len(),
                    &bias_E[..bias_E.len().min(4)]
                ),
            });
        }
        s.bias_E.copy_from_slice(bias_E);
        Ok(())
    }

    /// Adds one training forward's routed copies per expert to the pending load.
    pub fn record(&self, tokens_per_expert: &[usize]) {
        let mut s = self.lock();
        for (l, &c) in s.load_E.iter_mut().zip(tokens_per_expert) {
            *l += c as u64;
        }
    }

    /// Adds one training forward's routed copies per expert, `[E]` I64 on
    /// any device, without reading them now.
    pub fn record_counts(&self, counts_E: Tensor) {
        self.lock().pending_E.push(counts_E);
    }

    /// Load recorded since the last [`ExpertBias::update`] (reads the
    /// recorded device counts).
    pub fn pending_load(&self) -> Result<Vec<u64>> {
        let mut s = self.lock();
        s.fold_pending()?;
        Ok(s.load_E.clone())
    }

    /// Applies `bias_e += γ · sign(mean load − load_e)` for the recorded load
    /// and clears it; returns the new bias. Nothing changes if no load was
    /// recorded. Call once after each optimiser step.
    pub fn update(&self) -> Result<Vec<f32>> {
        let mut s = self.lock();
        s.fold_pending()?;
        let total: u64 = s.load_E.iter().sum();
        if total > 0 {
            let mean = total as f64 / s.load_E.len() as f64;
            let State { bias_E, load_E, .. } = &mut *s;
            for (b, &l) in bias_E.iter_mut().zip(load_E.iter()) {
                let diff = mean - l as f64;
                let sign = if diff > 0.0 {
                    1.0
                } else if diff < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                *b += (self.rate * sign) as f32;
            }
            load_E.iter_mut().for_each(|l| *l = 0);
        }
        Ok(s.bias_E.clone())
    }
}

/// DeepSeek-V3 selection: `ids = topk(scores + bias)` without gradient,
/// weights from the unbiased scores gathered at `ids`, renormalised
/// (`+ 1e-20` as HF's DeepSeek-V3) and scaled per the config.
pub(crate) fn aux_free_topk(
    logits_NE: &Tensor,
    top_k: usize,
    cfg: &AuxFreeConfig,
    bias: &ExpertBias,
) -> Result<Selection> {
    let scores_NE = match cfg.score {
        ScoreFn::Sigmoid => logits_NE.sigmoid()?,
        ScoreFn::Softmax => logits_NE.softmax(-1)?,
    };
    let bias_1E = bias.bias_tensor(scores_NE.dtype(), &scores_NE.device())?;
    let ids_NK = no_grad(|| scores_NE.detach().add(&bias_1E)?.topk(top_k))?.1;
    let raw_NK = select_chosen(&scores_NE, &ids_NK)?;
    let weights_NK = apply_weights(&raw_NK, &cfg.weights, 1e-20)?;
    // Scores normalised per token, as DeepSeek-V3's sequence-wise balance loss uses them.
    let probs_NE = match cfg.score {
        ScoreFn::Sigmoid => scores_NE.div(&scores_NE.sum(&[1], true)?)?,
        ScoreFn::Softmax => scores_NE,
    };
    Ok(Selection {
        ids_NK,
        raw_NK,
        weights_NK,
        probs_NE,
        sinkhorn_iters: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_counts_are_read_when_the_load_is_needed() {
        let b = ExpertBias::new(3, 0.5);
        b.record(&[1, 0, 0]);
        b.record_counts(Tensor::from_vec(vec![5i64, 3, 0], 3, &Device::Cpu).unwrap());
        assert_eq!(b.pending_load().unwrap(), vec![6, 3, 0]);
        assert_eq!(b.update().unwrap(), vec![-0.5, 0.0, 0.5]);
    }

    #[test]
    fn update_moves_against_the_load_and_clears_it() {
        let b = ExpertBias::new(3, 0.5);
        assert_eq!(b.update().unwrap(), vec![0.0; 3]); // nothing recorded
        b.record(&[6, 3, 0]);
        assert_eq!(b.pending_load().unwrap(), vec![6, 3, 0]);
        assert_eq!(b.update().unwrap(), vec![-0.5, 0.0, 0.5]); // mean 3
        assert_eq!(b.pending_load().unwrap(), vec![0, 0, 0]);
        assert!(b.set_bias(&[1.0, 2.0]).is_err());
        b.set_bias(&[1.0, 2.0, f32::MIN_POSITIVE]).unwrap();
        assert_eq!(b.bias()[1], 2.0);
    }
}
