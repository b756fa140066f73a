//! HF export/import round trips and bad checkpoints: each bad input is a typed
//! error naming what is at fault.

use anyhow::Result;
use moe_model::hf::{load_hf, save_hf};
use moe_model::presets::preset;
use moe_model::{Decoder, Error};
use moe_tensor::init::Rng;
use moe_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens")
        .join(name)
}

fn ids() -> Result<Tensor> {
    Ok(Tensor::from_vec(vec![1i64, 5, 9, 2, 7, 3, 0, 4], (2, 4), &Device::Cpu)?)
}

fn same_logits(a: &Decoder, b: &Decoder) -> Result<()> {
    let (x, y) = (a.forward(&ids()?)?.logits, b.forward(&ids()?)?.logits);
    assert_eq!(x.to_vec::<f32>()?, y.to_vec::<f32>()?);
    Ok(())
}

/// Copies a golden folder so a test can corrupt it.
fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        std::fs::copy(e.path(), dst.join(e.file_name()))?;
    }
    Ok(())
}

#[test]
fn export_then_import_is_exact_single_and_sharded() -> Result<()> {
    for name in ["debug-dense", "debug-switch"] {
        let mut cfg = preset(name)?;
        if let Some(m) = cfg.moe.as_mut() {
            // Mixtral's weight rule, so the model is expressible as an HF class.
            m.router = moe_router::RouterConfig::mixtral(m.router.num_experts, m.router.top_k);
        }
        let model = Decoder::new(&cfg, &mut Rng::seed(1), &Device::Cpu)?;
        for shard in [None, Some(20_000u64)] {
            let dir = tempfile::tempdir()?;
            let files = save_hf(&model, dir.path(), shard)?;
            assert_eq!(files.len() > 2, shard.is_some(), "{name}: {files:?}");
            let (back, _) = load_hf(dir.path(), &Device::Cpu)?;
            same_logits(&model, &back)?;
        }
    }
    Ok(())
}

#[test]
fn golden_moe_models_survive_our_export() -> Result<()> {
    for name in ["mixtral_top2", "qwen2_moe"] {
        let (model, arch) = load_hf(golden(name), &Device::Cpu)?;
        let dir = tempfile::tempdir()?;
        save_hf(&model, dir.path(), None)?;
        let (back, arch2) = load_hf(dir.path(), &Device::Cpu)?;
        assert_eq!(arch, arch2);
        same_logits(&model, &back)?;
    }
    Ok(())
}

#[test]
fn unsupported_architecture_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    copy_dir(&golden("llama_gqa"), dir.path())?;
    let cfg = std::fs::read_to_string(dir.path().join("config.json"))?;
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("LlamaForCausalLM", "GPT2LMHeadModel"),
    )?;
    match load_hf(dir.path(), &Device::Cpu) {
        Err(Error::UnsupportedArchitecture { arch, .. }) => assert_eq!(arch, "GPT2LMHeadModel"),
        other => panic!("expected UnsupportedArchitecture, got {other:?}"),
    }
    Ok(())
}

/// Rewrites the golden llama's weights with one tensor dropped or reshaped.
fn with_weights(edit: impl Fn(&str, &Tensor) -> Option<Tensor>) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    copy_dir(&golden("llama_gqa"), dir.path())?;
    let path = dir.path().join("model.safetensors");
    let all = moe_tensor::safetensors::load(&path, &Device::Cpu)?;
    let kept: Vec<(String, Tensor)> = all
        .iter()
        .filter_map(|(n, t)| edit(n, t).map(|t| (n.clone(), t)))
        .collect();
    moe_tensor::safetensors::save(&path, kept.iter().map(|(n, t)| (n.as_str(), t)), None)?;
    Ok(dir)
}

#[test]
fn missing_and_misshapen_tensors_are_named() -> Result<()> {
    let victim = "model.layers.1.self_attn.k_proj.weight";
    let dir = with_weights(|n, t| (n != victim).then(|| t.clone()))?;
    match load_hf(dir.path(), &Device::Cpu) {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, victim),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    let dir = with_weights(|n, t| {
        Some(if n == victim {
            t.narrow(0, 0, 8).unwrap()
        } else {
            t.clone()
        })
    })?;
    let err = load_hf(dir.path(), &Device::Cpu).unwrap_err();
    match &err {
        Error::TensorShape {
            name, expected, got, ..
        } => {
            assert_eq!(
                (name.as_str(), expected.as_slice(), got.as_slice()),
                (victim, &[16, 32][..], &[8, 32][..])
            )
        }
        other => panic!("expected TensorShape, got {other:?}"),
    }
    assert!(err.to_string().contains(victim), "{err}");
    Ok(())
}

#[test]
fn token_ids_out_of_range_are_rejected() -> Result<()> {
    let (model, _) = load_hf(golden("llama_gqa"), &Device::Cpu)?;
    let bad = Tensor::from_vec(vec![1i64, 96], (1, 2), &Device::Cpu)?;
    match model.forward(&bad) {
        Err(Error::TokenOutOfRange {
            id: 96,
            pos: 1,
            vocab: 96,
        }) => {}
        other => panic!("expected TokenOutOfRange, got {other:?}"),
    }
    Ok(())
}
