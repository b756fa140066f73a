//! moe-cpt model folders: exact round trips for models HF can express (which
//! then also carry an HF config) and for those it cannot (Sinkhorn routers).

use anyhow::Result;
use moe_model::hf::{load_hf, MOE_CONFIG_FILE};
use moe_model::presets::preset;
use moe_model::{load_model_dir, save_model_dir, Decoder, Error};
use moe_router::{RouteMode, RouterConfig};
use moe_tensor::init::Rng;
use moe_tensor::{Device, Tensor};

fn logits(m: &Decoder) -> Result<Vec<f32>> {
    let ids = Tensor::from_vec(vec![1i64, 5, 9, 2, 7, 3, 0, 4], (2, 4), &Device::Cpu)?;
    Ok(m.forward(&ids)?.logits.to_vec::<f32>()?)
}

#[test]
fn hf_expressible_model_gets_both_configs_and_loads_in_either_way() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = preset("debug-switch")?;
    let moe = cfg.moe.as_mut().unwrap();
    moe.router = RouterConfig::mixtral(moe.router.num_experts, moe.router.top_k);
    moe.router.z_loss_coef = 0.001; // not in HF's config: must survive through ours
    let m = Decoder::new(&cfg, &mut Rng::seed(1), &Device::Cpu)?;
    save_model_dir(&m, dir.path())?;
    assert!(dir.path().join("config.json").exists());
    assert!(dir.path().join(MOE_CONFIG_FILE).exists());
    let back = load_model_dir(dir.path(), &Device::Cpu)?;
    assert_eq!(back.config(), m.config());
    assert_eq!(logits(&back)?, logits(&m)?);
    // The same folder is a plain HF Mixtral folder.
    let (hf, _) = load_hf(dir.path(), &Device::Cpu)?;
    assert_eq!(logits(&hf)?, logits(&m)?);
    Ok(())
}

#[test]
fn sinkhorn_model_keeps_its_router_without_an_hf_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = preset("debug-granular")?;
    let moe = cfg.moe.as_mut().unwrap();
    moe.router = RouterConfig::sinkhorn(moe.router.num_experts, moe.router.top_k);
    let mut m = Decoder::new(&cfg, &mut Rng::seed(2), &Device::Cpu)?;
    m.set_route_mode(RouteMode::Eval);
    save_model_dir(&m, dir.path())?;
    assert!(!dir.path().join("config.json").exists());
    let mut back = load_model_dir(dir.path(), &Device::Cpu)?;
    back.set_route_mode(RouteMode::Eval);
    assert_eq!(back.config(), &cfg);
    assert_eq!(logits(&back)?, logits(&m)?);
    Ok(())
}

#[test]
fn a_folder_without_any_config_is_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let err = load_model_dir(dir.path(), &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
    Ok(())
}
