//! Seeded GPT-NeoX/OLMo-style initialisation: every matrix Normal(0, σ), the
//! projections into the residual stream (attention `o_proj`, FFN `down_proj`)
//! Normal(0, σ/√(2L)), norm scales 1, biases 0. Parameters are drawn in the
//! order of [`param_specs`], so one seed gives one model.

use crate::hf::names::{param_specs, InitKind};
use crate::{ModelConfig, Result};
use moe_tensor::init::Rng;
use moe_tensor::{DType, Device, Params, Tensor};

/// Fresh parameters for `cfg` drawn from `rng`.
pub fn init_params(cfg: &ModelConfig, rng: &mut Rng, device: &Device) -> Result<Params> {
    cfg.validate()?;
    let std = cfg.init_std;
    let out_std = std / (2.0 * cfg.num_layers as f64).sqrt();
    let mut params = Params::new();
    for s in param_specs(cfg) {
        let t = match s.init {
            InitKind::Normal => rng.normal(s.shape.clone(), 0.0, std, DType::F32, device)?,
            InitKind::Output => rng.normal(s.shape.clone(), 0.0, out_std, DType::F32, device)?,
            InitKind::Ones => Tensor::ones(s.shape.clone(), DType::F32, device)?,
            InitKind::Zeros => Tensor::zeros(s.shape.clone(), DType::F32, device)?,
        };
        params.insert(s.name, &t)?;
    }
    Ok(params)
}
