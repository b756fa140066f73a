//! One optimiser step: accumulate the gradients of `grad_accum` micro-batches
//! (each loss scaled by 1/grad_accum, so the sum is the gradient of the mean),
//! clip, update with the schedule's learning rate, and measure.
//!
//! On a GPU the token ids and their targets go up once per micro-batch, and
//! the step itself reads back only what it reports: the losses (a few
//! scalars per micro-batch), each MoE layer's routing counts (one read per
//! layer and micro-batch, two with a capacity, after the backward is queued;
//! the routing itself reads nothing) and the global gradient norm (once per
//! step, for clipping).

use super::metrics::{LayerLoad, TrainRecord};
use super::Trainer;
use crate::config::NanPolicy;
use crate::error::{Result, TrainError};
use crate::optim::clip_coefficient;
use moe_data::Batch;
use moe_model::decoder::Ffn;
use moe_model::next_token_targets;
use moe_tensor::{Device, Tensor};
use std::time::Instant;

/// Sums over a step's micro-batches, averaged at the end.
#[derive(Default)]
struct StepSums {
    loss: f64,
    lm: f64,
    aux: Option<f64>,
    z: Option<f64>,
    layers: Vec<LayerLoad>,
}

/// The value of a one-element tensor, copied to the host first (a read that
/// waits for the device when the tensor lives on one).
fn read_scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_device(&Device::Cpu)?.to_scalar_f64()?)
}

fn add_opt(acc: &mut Option<f64>, v: Option<&Tensor>) -> Result<()> {
    if let Some(t) = v {
        *acc = Some(acc.unwrap_or(0.0) + read_scalar(t)?);
    }
    Ok(())
}

impl StepSums {
    fn add(&mut self, out: &moe_model::LossOutput) -> Result<()> {
        self.loss += read_scalar(&out.total)?;
        self.lm += read_scalar(&out.ce)?;
        add_opt(&mut self.aux, out.aux.as_ref())?;
        add_opt(&mut self.z, out.z.as_ref())?;
        if self.layers.is_empty() {
            self.layers = out
                .routing
                .iter()
                .map(|r| LayerLoad {
                    layer: r.layer,
                    mri: 0.0,
                    max_load: 0.0,
                    mean_load: 0.0,
                    dropped_fraction: 0.0,
                })
                .collect();
        }
        for (acc, r) in self.layers.iter_mut().zip(&out.routing) {
            let s = r.decision.stats().map_err(moe_model::Error::from)?;
            acc.mri += s.mri;
            acc.max_load += s.max_load as f64;
            acc.mean_load += s.mean_load;
            acc.dropped_fraction += s.dropped_fraction;
        }
        Ok(())
    }

    fn mean(mut self, n: usize) -> Self {
        let k = 1.0 / n as f64;
        self.loss *= k;
        self.lm *= k;
        self.aux = self.aux.map(|v| v * k);
        self.z = self.z.map(|v| v * k);
        for l in &mut self.layers {
            l.mri *= k;
            l.max_load *= k;
            l.mean_load *= k;
            l.dropped_fraction *= k;
        }
        self
    }
}

impl Trainer {
    /// Runs one optimiser step and returns its record (not yet logged).
    pub(super) fn train_step(&mut self) -> Result<TrainRecord> {
        let started = Instant::now();
        let step = self.step + 1;
        let lr = self.cfg.schedule.lr_at(step);
        let accum = self.cfg.train.grad_accum;
        let params = self.model.params().clone();
        params.zero_grad();
        let mut sums = StepSums::default();
        let mut batch = Batch::default();
        let names: Vec<String> = self
            .sampler
            .mixture()
            .entries()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        for _ in 0..accum {
            self.sampler.next_batch_into(&mut batch);
            // Ids and their next-token targets are made on the host and
            // uploaded (nothing is read back to build the targets).
            let dev = &self.cfg.device;
            let (shape, host_ids) = ((batch.batch_size, batch.seq_len + 1), batch.to_i64());
            let targets = Tensor::from_vec(next_token_targets(&host_ids, batch.seq_len + 1), shape, dev)?;
            let ids = Tensor::from_vec(host_ids, shape, dev)?;
            let out = self.model.loss_with_targets(&ids, &targets)?;
            out.total.mul_scalar(1.0 / accum as f64)?.backward()?;
            sums.add(&out)?;
            for &d in &batch.domains {
                *self.domain_tokens.entry(names[d as usize].clone()).or_insert(0) += batch.seq_len as u64;
            }
        }
        let sums = sums.mean(accum);
        let clip = if self.cfg.train.clip > 0.0 {
            self.cfg.train.clip
        } else {
            f64::INFINITY
        };
        let (grad_norm, clip_scale) = clip_coefficient(&params, clip)?;
        let finite = sums.loss.is_finite() && grad_norm.is_finite();
        if !finite {
            match self.cfg.train.on_nan {
                NanPolicy::Stop => {
                    let (what, value) = if sums.loss.is_finite() {
                        ("the gradient norm", grad_norm)
                    } else {
                        ("the loss", sums.loss)
                    };
                    return Err(TrainError::NonFinite { step, what, value });
                }
                // The gradients are discarded with everyone's below.
                NanPolicy::Skip => self.skipped += 1,
            }
        } else {
            self.optimizer.step_with_grad_scale(lr, clip_scale)?;
            self.update_expert_biases()?;
        }
        params.zero_grad();
        let step_tokens = self.cfg.tokens_per_step();
        self.step = step;
        self.tokens += step_tokens;
        self.flops += self.flops_per_token * step_tokens as f64;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        Ok(TrainRecord {
            step,
            tokens: self.tokens,
            loss: sums.loss,
            lm_loss: sums.lm,
            aux_loss: sums.aux,
            z_loss: sums.z,
            lr,
            grad_norm,
            tokens_per_s: step_tokens as f64 / secs,
            flops: self.flops,
            domain_tokens: self.domain_tokens.clone(),
            moe: sums.layers,
            skipped: !finite,
        })
    }

    /// Moves the aux-loss-free routers' biases against the step's loads
    /// (read here from the device counts the forwards recorded).
    fn update_expert_biases(&self) -> Result<()> {
        for b in self.model.blocks() {
            if let Ffn::Moe(m) = &b.ffn {
                if let Some(bias) = m.router.expert_bias() {
                    bias.update().map_err(moe_model::Error::from)?;
                }
            }
        }
        Ok(())
    }
}
