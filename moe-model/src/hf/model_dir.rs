//! moe-cpt model folders: any model, HF-loadable whenever an HF class can
//! express it.
//!
//! A folder holds `moe_config.json` (our [`ModelConfig`], which keeps what
//! HF configs cannot: Sinkhorn routers, capacity, loss coefficients, init std)
//! and `model.safetensors`. When [`super::hf_arch_for`] finds an HF class, the
//! folder also gets that class's `config.json` and the tensors use its on-disk
//! names, so `from_pretrained` loads it; otherwise tensors keep our in-memory
//! names. [`load_model_dir`] reads these folders and plain HF folders alike.

use super::checkpoint::{load_params, save_params, write_atomic};
use super::config::{hf_arch_for, to_hf_config};
use crate::{Decoder, Error, ModelConfig, Result};
use moe_tensor::Device;
use std::path::{Path, PathBuf};

/// Our config file inside a model folder.
pub const MOE_CONFIG_FILE: &str = "moe_config.json";
/// The HF config file inside a model folder.
pub const HF_CONFIG_FILE: &str = "config.json";

fn json_err(path: &Path, msg: impl ToString) -> Error {
    Error::Json {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Reads the model config of `dir`: `moe_config.json` when present, else the
/// HF `config.json`.
pub fn read_model_config(dir: &Path) -> Result<ModelConfig> {
    let ours = dir.join(MOE_CONFIG_FILE);
    if ours.exists() {
        let text = std::fs::read_to_string(&ours).map_err(|source| Error::Io {
            path: ours.clone(),
            source,
        })?;
        return ModelConfig::from_json(&text).map_err(|e| json_err(&ours, e));
    }
    if !dir.join(HF_CONFIG_FILE).exists() {
        return Err(Error::Io {
            path: dir.join(MOE_CONFIG_FILE),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a model folder: neither moe_config.json nor config.json exists",
            ),
        });
    }
    Ok(super::read_hf_config(dir)?.0)
}

/// Loads a model folder written by [`save_model_dir`] or by transformers
/// (Llama, Mixtral, Qwen2-MoE), as f32 parameters on `device`.
pub fn load_model_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Decoder> {
    let dir = dir.as_ref();
    if !dir.join(MOE_CONFIG_FILE).exists() {
        return Ok(super::load_hf(dir, device)?.0);
    }
    let cfg = read_model_config(dir)?;
    // The tensors use HF names exactly when we wrote an HF config beside ours.
    let arch = if dir.join(HF_CONFIG_FILE).exists() {
        Some(hf_arch_for(&cfg)?)
    } else {
        None
    };
    load_params(dir, &cfg, arch, device)
}

/// Writes `model` into `dir` (created if needed): `moe_config.json`,
/// `model.safetensors` and, when an HF class expresses the model, its
/// `config.json` with HF tensor names. Returns the files written.
pub fn save_model_dir(model: &Decoder, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let cfg = model.config();
    let hf = hf_arch_for(cfg).ok();
    let mut files = save_params(model, dir, hf, None)?;
    if hf.is_some() {
        let path = dir.join(HF_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&to_hf_config(cfg)?).map_err(|e| json_err(&path, e))?;
        write_atomic(&path, text.as_bytes())?;
        files.push(path);
    } else {
        // A stale HF config would make the loader expect HF tensor names.
        let stale = dir.join(HF_CONFIG_FILE);
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(|source| Error::Io { path: stale, source })?;
        }
    }
    let path = dir.join(MOE_CONFIG_FILE);
    write_atomic(&path, cfg.to_json().as_bytes())?;
    files.push(path);
    Ok(files)
}
