//! AdamW, step for step as `torch.optim.AdamW` (single-tensor path, amsgrad off).
//!
//! Per parameter θ with gradient g at its t-th update and learning rate lr:
//! θ ← θ·(1 − lr·wd); m ← m + (1−β1)(g − m); v ← β2·v + (1−β2)·g²;
//! θ ← θ − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε).
//! The state is kept in f32 on the host; parameters stored in another dtype get an
//! f32 master copy that the update works on.

use super::AdamWConfig;
use crate::error::{Result, TrainError};
use moe_tensor::{DType, Device, Params, Tensor};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// The state of one parameter: its update count, moments and optional master copy.
#[derive(Clone, Debug)]
struct ParamState {
    step: u64,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    master: Option<Vec<f32>>,
}

/// One update's scalars, rounded to f32 as PyTorch does.
struct UpdateConsts {
    decay: f32,
    w1: f32,
    b2: f32,
    c2: f32,
    step_size: f32,
    inv_bc2_sqrt: f32,
    eps: f32,
}

/// Elements per parallel chunk: large enough that scheduling is negligible.
const CHUNK: usize = 1 << 14;

impl UpdateConsts {
    /// The AdamW update of every element, in parallel chunks; each element's
    /// arithmetic is the same whatever the chunking, so results are bit-identical.
    fn apply(&self, theta: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        theta
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((theta, m), v), g)| {
                // Zipped iterators (no bounds checks) let the loop vectorise;
                // IEEE sqrt and division give the same bits in SIMD lanes.
                for (((theta, m), v), &g) in theta.iter_mut().zip(m).zip(v).zip(g) {
                    *theta *= self.decay;
                    *m += self.w1 * (g - *m);
                    *v = *v * self.b2 + self.c2 * g * g;
                    let denom = v.sqrt() * self.inv_bc2_sqrt + self.eps;
                    // addcdiv evaluates (value · m) / denom, in that order.
                    *theta += (-self.step_size * *m) / denom;
                }
            });
    }
}

/// AdamW over a fixed, named set of parameters.
#[derive(Clone, Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Params,
    states: Vec<ParamState>,
}

impl AdamW {
    /// An optimiser for `params` with zeroed moments (what PyTorch creates on the first
    /// step). Non-f32 parameters get an f32 master copy of their current values.
    pub fn new(params: &Params, config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        let states = params
            .iter()
            .map(|(_, p)| {
                let n = p.elem_count();
                let master = match p.dtype() {
                    DType::F32 => None,
                    _ => Some(p.to_dtype(DType::F32)?.to_vec::<f32>()?),
                };
                Ok(ParamState {
                    step: 0,
                    exp_avg: vec![0.0; n],
                    exp_avg_sq: vec![0.0; n],
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
    /// as in PyTorch). Gradients are not cleared.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let (beta1, beta2) = (self.config.beta1, self.config.beta2);
        for ((name, p), st) in self.params.iter().zip(self.states.iter_mut()) {
            let Some(grad) = p.grad() else { continue };
            st.step += 1;
            let wd = self.config.weight_decay_for(name, p.rank());
            let t = st.step as f64;
            let k = UpdateConsts {
                // PyTorch turns the Python-float scalars into f32 for f32 tensors.
                decay: (1.0 - lr * wd) as f32,
                w1: (1.0 - beta1) as f32,
                b2: beta2 as f32,
                c2: (1.0 - beta2) as f32,
                step_size: (lr / (1.0 - beta1.powf(t))) as f32,
                // PyTorch's CPU division by a scalar multiplies by its f32 reciprocal.
                inv_bc2_sqrt: 1.0 / ((1.0 - beta2.powf(t)).sqrt()) as f32,
                eps: self.config.eps as f32,
            };
            let (m, v) = (&mut st.exp_avg, &mut st.exp_avg_sq);
            if st.master.is_none() && p.is_contiguous_cpu_f32() && grad.is_contiguous_cpu_f32() {
                // The common case: update the parameter where it lives.
                grad.with_f32_slice(|g| p.update_f32_in_place(|theta| k.apply(theta, m, v, g)))??;
                continue;
            }
            let g = grad.to_dtype(DType::F32)?.to_vec::<f32>()?;
            let mut theta = match &st.master {
                Some(master) => master.clone(),
                None => p.to_vec::<f32>()?,
            };
            k.apply(&mut theta, m, v, &g);
            let new = Tensor::from_vec(theta, p.dims().to_vec(), &Device::Cpu)?;
            match &mut st.master {
                Some(master) => {
                    p.assign(&new.to_dtype(p.dtype())?)?;
                    *master = new.to_vec::<f32>()?;
                }
                None => p.assign(&new)?,
            }
        }
        Ok(())
    }

    /// The state as named tensors: `{param}.step` (i64 scalar), `{param}.exp_avg`,
    /// `{param}.exp_avg_sq` and, for non-f32 parameters, `{param}.master` (all f32, the
    /// parameter's shape). Saving and loading it resumes bit-identically.
    pub fn state_dict(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for ((name, p), st) in self.params.iter().zip(&self.states) {
            let shape = p.dims().to_vec();
            let dev = Device::Cpu;
            out.insert(format!("{name}.step"), Tensor::scalar(st.step as i64, &dev)?);
            out.insert(
                format!("{name}.exp_avg"),
                Tensor::from_slice(&st.exp_avg, shape.clone(), &dev)?,
            );
            out.insert(
                format!("{name}.exp_avg_sq"),
                Tensor::from_slice(&st.exp_avg_sq, shape.clone(), &dev)?,
            );
            if let Some(m) = &st.master {
                out.insert(format!("{name}.master"), Tensor::from_slice(m, shape, &dev)?);
            }
        }
        Ok(out)
    }

    /// Restores a [`AdamW::state_dict`]: every parameter's entries must be present with
    /// its shape, and no entry may name an unknown parameter.
    pub fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let mut known = 0usize;
        let mut states = Vec::with_capacity(self.states.len());
        for ((name, p), old) in self.params.iter().zip(&self.states) {
            let get = |suffix: &str| -> Result<&Tensor> {
                let key = format!("{name}.{suffix}");
                state.get(&key).ok_or(TrainError::MissingState { name: key })
            };
            let vec = |suffix: &str| -> Result<Vec<f32>> {
                let t = get(suffix)?;
                if t.dims() != p.dims() {
                    return Err(TrainError::StateShape {
                        name: format!("{name}.{suffix}"),
                        expected: p.dims().to_vec(),
                        found: t.dims().to_vec(),
                    });
                }
                Ok(t.to_dtype(DType::F32)?.to_vec::<f32>()?)
            };
            let step = get("step")?.to_scalar_f64()?;
            if !(step >= 0.0 && step.fract() == 0.0) {
                return Err(TrainError::MissingState {
                    name: format!("{name}.step (got {step})"),
                });
            }
            let master = match old.master {
                Some(_) => Some(vec("master")?),
                None => None,
            };
            known += 3 + usize::from(master.is_some());
            states.push(ParamState {
                step: step as u64,
                exp_avg: vec("exp_avg")?,
                exp_avg_sq: vec("exp_avg_sq")?,
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
