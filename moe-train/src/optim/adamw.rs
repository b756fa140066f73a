//! AdamW, step for step as `torch.optim.AdamW` (single-tensor path, amsgrad off).
//!
//! Per parameter θ with gradient g at its t-th update and learning rate lr:
//! θ ← θ·(1 − lr·wd); m ← m + (1−β1)(g − m); v ← β2·v + (1−β2)·g²;
//! θ ← θ − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε).
//! The moments are f32 tensors on the parameter's device and the update runs
//! there (moe-tensor's `optim::adamw_update`: the same bits on the CPU and on
//! CUDA); parameters stored in another dtype get an f32 master copy that the
//! update works on. Only the update counts live on the host.

use super::AdamWConfig;
use crate::error::{Result, TrainError};
use moe_tensor::optim::{adamw_update, AdamWScalars};
use moe_tensor::{no_grad, DType, Device, Params, Tensor};
use std::collections::BTreeMap;

/// The state of one parameter: its update count, moments and optional master
/// copy, the tensors on the parameter's device.
#[derive(Debug)]
struct ParamState {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    master: Option<Tensor>,
}

/// A fresh contiguous f32 copy of `t`'s values on `device`, sharing storage
/// with nothing (the optimiser updates its state in place).
fn owned_f32(t: &Tensor, device: &Device) -> Result<Tensor> {
    let host = t
        .detach()
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_vec::<f32>()?;
    Ok(Tensor::from_vec(host, t.dims().to_vec(), device)?)
}

/// AdamW over a fixed, named set of parameters. Not `Clone`: its state tensors
/// are updated in place, so a clone would share them.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Params,
    states: Vec<ParamState>,
}

impl AdamW {
    /// An optimiser for `params` with zeroed moments (what PyTorch creates on the first
    /// step) on each parameter's device. Non-f32 parameters get an f32 master copy of
    /// their current values.
    pub fn new(params: &Params, config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        let states = params
            .iter()
            .map(|(_, p)| {
                let device = p.device();
                let master = match p.dtype() {
                    DType::F32 => None,
                    _ => Some(owned_f32(p, &device)?),
                };
                Ok(ParamState {
                    step: 0,
                    exp_avg: Tensor::zeros(p.shape(), DType::F32, &device)?,
                    exp_avg_sq: Tensor::zeros(p.shape(), DType::F32, &device)?,
                    master,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            params: params.clone(),
            states,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The weight decay each parameter gets, in registration order (the two groups).
    pub fn weight_decays(&self) -> Vec<(String, f64)> {
        let cfg = &self.config;
        self.params
            .iter()
            .map(|(n, p)| (n.to_string(), cfg.weight_decay_for(n, p.rank())))
            .collect()
    }

    /// One update with learning rate `lr` of every parameter that has a gradient
    /// (parameters without one are left alone and their update count does not move,
    /// as in PyTorch), on the parameters' device. Gradients are not cleared.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.step_with_grad_scale(lr, 1.0)
    }

    /// [`AdamW::step`] reading every gradient multiplied by `grad_scale` (the
    /// global-norm clipping factor of [`super::clip_coefficient`]): the same
    /// bits as scaling the gradients first and then stepping, without writing
    /// them. The gradients themselves are left as they are.
    pub fn step_with_grad_scale(&mut self, lr: f64, grad_scale: f64) -> Result<()> {
        let cfg = &self.config;
        no_grad(|| {
            for ((name, p), st) in self.params.iter().zip(self.states.iter_mut()) {
                let Some(grad) = p.grad() else { continue };
                st.step += 1;
                let wd = cfg.weight_decay_for(name, p.rank());
                let k =
                    AdamWScalars::for_step(lr, cfg.beta1, cfg.beta2, cfg.eps, wd, st.step).with_grad_scale(grad_scale);
                match &st.master {
                    Some(master) => {
                        adamw_update(master, &grad, &st.exp_avg, &st.exp_avg_sq, &k)?;
                        p.assign(&master.to_dtype(p.dtype())?)?;
                    }
                    // The common case: update the parameter where it lives.
                    None => adamw_update(p, &grad, &st.exp_avg, &st.exp_avg_sq, &k)?,
                }
            }
            Ok(())
        })
    }

    /// The state as named tensors: `{param}.step` (i64 scalar), `{param}.exp_avg`,
    /// `{param}.exp_avg_sq` and, for non-f32 parameters, `{param}.master` (all f32, the
    /// parameter's shape). The tensors are host copies (read back from the device when
    /// the state lives there), taken now: later steps do not change them. Saving and
    /// loading it resumes bit-identically.
    pub fn state_dict(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        let host = Device::Cpu;
        for ((name, _), st) in self.params.iter().zip(&self.states) {
            out.insert(format!("{name}.step"), Tensor::scalar(st.step as i64, &host)?);
            out.insert(format!("{name}.exp_avg"), owned_f32(&st.exp_avg, &host)?);
            out.insert(format!("{name}.exp_avg_sq"), owned_f32(&st.exp_avg_sq, &host)?);
            if let Some(m) = &st.master {
                out.insert(format!("{name}.master"), owned_f32(m, &host)?);
            }
        }
        Ok(out)
    }

    /// Restores a [`AdamW::state_dict`] (tensors on any device; each is copied to its
    /// parameter's device): every parameter's entries must be present with its shape,
    /// and no entry may name an unknown parameter.
    pub fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let mut known = 0usize;
        let mut states = Vec::with_capacity(self.states.len());
        for ((name, p), old) in self.params.iter().zip(&self.states) {
            let get = |suffix: &str| -> Result<&Tensor> {
                let key = format!("{name}.{suffix}");
                state.get(&key).ok_or(TrainError::MissingState { name: key })
            };
            let device = p.device();
            let load = |suffix: &str| -> Result<Tensor> {
                let t = get(suffix)?;
                if t.dims() != p.dims() {
                    return Err(TrainError::StateShape {
                        name: format!("{name}.{suffix}"),
                        expected: p.dims().to_vec(),
                        found: t.dims().to_vec(),
                    });
                }
                owned_f32(t, &device)
            };
            let step = get("step")?.to_scalar_f64()?;
            if !(step >= 0.0 && step.fract() == 0.0) {
                return Err(TrainError::MissingState {
                    name: format!("{name}.step (got {step})"),
                });
            }
            let master = match old.master {
                Some(_) => Some(load("master")?),
                None => None,
            };
            known += 3 + usize::from(master.is_some());
            states.push(ParamState {
                step: step as u64,
                exp_avg: load("exp_avg")?,
                exp_avg_sq: load("exp_avg_sq")?,
                master,
            });
        }
        if known != state.len() {
            // Some key belongs to no parameter: name the first one.
            let expected: std::collections::BTreeSet<String> = self
                .params
                .iter()
                .zip(&states)
                .flat_map(|((n, _), st)| {
                    let mut keys = vec![format!("{n}.step"), format!("{n}.exp_avg"), format!("{n}.exp_avg_sq")];
                    keys.extend(st.master.as_ref().map(|_| format!("{n}.master")));
                    keys
                })
                .collect();
            let extra = state
                .keys()
                .find(|k| !expected.contains(*k))
                .cloned()
                .unwrap_or_default();
            return Err(TrainError::UnexpectedState { name: extra });
        }
        self.states = states;
        Ok(())
    }
}
