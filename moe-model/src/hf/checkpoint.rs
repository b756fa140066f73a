//! HF model folders: `config.json` + `model.safetensors` (or sharded with
//! `model.safetensors.index.json`), read into a [`Decoder`] and written back in
//! the layout `from_pretrained` expects.
//!
//! On disk HF stores routed experts one by one (Mixtral:
//! `block_sparse_moe.experts.{e}.w1/w3/w2.weight` and `block_sparse_moe.gate`;
//! Qwen2-MoE: `mlp.experts.{e}.gate_proj/up_proj/down_proj.weight`); in memory
//! (ours and transformers v5's) they are stacked: `mlp.experts.gate_up_proj
//! [E, 2F, D]` (gate rows first) and `mlp.experts.down_proj [E, D, F]`.

use super::config::{parse_hf_config, to_hf_config, HfArch};
use super::names::param_specs;
use crate::{Decoder, Error, ModelConfig, Result};
use moe_tensor::safetensors::{save_sharded, ShardedSafetensors};
use moe_tensor::{DType, Device, Params, Tensor};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where one in-memory parameter lives on disk.
enum DiskLayout {
    /// One tensor under this name.
    Single(String),
    /// Stacked experts: expert `e` is the row-wise concatenation of `parts[e]`.
    Experts(Vec<Vec<String>>),
}

/// Where `name` lives on disk for `arch`; `None` is moe-cpt's own layout
/// (every tensor under its in-memory name, experts stacked).
fn disk_layout(arch: Option<HfArch>, name: &str, num_experts: usize) -> DiskLayout {
    let Some(arch) = arch else {
        return DiskLayout::Single(name.to_string());
    };
    let expert_names = |prefix: &str, parts: &[&str]| {
        (0..num_experts)
            .map(|e| {
                parts
                    .iter()
                    .map(|p| format!("{prefix}.experts.{e}.{p}.weight"))
                    .collect()
            })
            .collect()
    };
    let mixtral_prefix = |p: &str| p.replace(".mlp", ".block_sparse_moe");
    if let Some(p) = name.strip_suffix(".experts.gate_up_proj") {
        return DiskLayout::Experts(match arch {
            HfArch::Mixtral => expert_names(&mixtral_prefix(p), &["w1", "w3"]),
            _ => expert_names(p, &["gate_proj", "up_proj"]),
        });
    }
    if let Some(p) = name.strip_suffix(".experts.down_proj") {
        return DiskLayout::Experts(match arch {
            HfArch::Mixtral => expert_names(&mixtral_prefix(p), &["w2"]),
            _ => expert_names(p, &["down_proj"]),
        });
    }
    match (arch, name.strip_suffix(".mlp.gate.weight")) {
        (HfArch::Mixtral, Some(p)) => DiskLayout::Single(format!("{p}.block_sparse_moe.gate.weight")),
        _ => DiskLayout::Single(name.to_string()),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and parses `dir/config.json`.
pub fn read_hf_config(dir: &Path) -> Result<(ModelConfig, HfArch)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    parse_hf_config(&text, &path)
}

/// Loads `name` from the checkpoint as f32 with the expected `shape`.
fn load_checked(st: &ShardedSafetensors, dir: &Path, name: &str, shape: &[usize], dev: &Device) -> Result<Tensor> {
    let info = st.info(name).ok_or_else(|| Error::MissingTensor {
        path: dir.to_path_buf(),
        name: name.into(),
    })?;
    if info.shape != shape {
        return Err(Error::TensorShape {
            path: dir.to_path_buf(),
            name: name.into(),
            expected: shape.to_vec(),
            got: info.shape.clone(),
        });
    }
    Ok(st.load(name, dev)?.to_dtype(DType::F32)?)
}

/// Loads an HF model folder (LlamaForCausalLM, MixtralForCausalLM or
/// Qwen2MoeForCausalLM) into f32 parameters. Tensors the model does not use
/// (rotary caches, a tied model's `lm_head.weight`) are ignored.
pub fn load_hf(dir: impl AsRef<Path>, device: &Device) -> Result<(Decoder, HfArch)> {
    let dir = dir.as_ref();
    let (cfg, arch) = read_hf_config(dir)?;
    Ok((load_params(dir, &cfg, Some(arch), device)?, arch))
}

/// Loads the safetensors of `dir` as a model of `cfg`, with tensors named as
/// `arch` stores them on disk (`None`: moe-cpt's stacked in-memory names).
pub(crate) fn load_params(dir: &Path, cfg: &ModelConfig, arch: Option<HfArch>, device: &Device) -> Result<Decoder> {
    let st = ShardedSafetensors::open(dir)?;
    let e = cfg.moe.as_ref().map_or(0, |m| m.num_experts());
    let mut params = Params::new();
    for spec in param_specs(cfg) {
        let t = match disk_layout(arch, &spec.name, e) {
            DiskLayout::Single(n) => load_checked(&st, dir, &n, &spec.shape, device)?,
            DiskLayout::Experts(experts) => {
                // spec.shape = [E, rows, cols]; each part holds rows / parts rows.
                let (rows, cols) = (spec.shape[1], spec.shape[2]);
                let mut per_expert = Vec::with_capacity(experts.len());
                for parts in &experts {
                    let shape = [rows / parts.len(), cols];
                    let ts = parts
                        .iter()
                        .map(|n| load_checked(&st, dir, n, &shape, device))
                        .collect::<Result<Vec<_>>>()?;
                    per_expert.push(Tensor::cat(&ts.iter().collect::<Vec<_>>(), 0)?);
                }
                Tensor::stack(&per_expert.iter().collect::<Vec<_>>(), 0)?
            }
        };
        params.insert(spec.name, &t)?;
    }
    Decoder::from_params(cfg, params)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Saves `model` as an HF folder: `config.json` and `model.safetensors`, or
/// shards of at most `max_shard_bytes` with an index. Parameters are written in
/// their current dtype under HF's on-disk names. Returns the files written.
pub fn save_hf(model: &Decoder, dir: impl AsRef<Path>, max_shard_bytes: Option<u64>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let cfg = model.config();
    let arch = super::config::hf_arch_for(cfg)?;
    let config = to_hf_config(cfg)?;
    let mut files = save_params(model, dir, Some(arch), max_shard_bytes)?;
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Json {
        path: cfg_path.clone(),
        msg: e.to_string(),
    })?;
    write_atomic(&cfg_path, text.as_bytes())?;
    files.push(cfg_path);
    Ok(files)
}

/// Writes the parameters of `model` into `dir` named as `arch` stores them
/// (`None`: moe-cpt's in-memory names).
pub(crate) fn save_params(
    model: &Decoder,
    dir: &Path,
    arch: Option<HfArch>,
    max_shard_bytes: Option<u64>,
) -> Result<Vec<PathBuf>> {
    let cfg = model.config();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let e = cfg.moe.as_ref().map_or(0, |m| m.num_experts());
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, t) in model.params().iter() {
        match disk_layout(arch, name, e) {
            DiskLayout::Single(n) => tensors.push((n, t.clone())),
            DiskLayout::Experts(experts) => {
                for (i, parts) in experts.into_iter().enumerate() {
                    let rows = t.dims()[1] / parts.len();
                    for (j, n) in parts.into_iter().enumerate() {
                        tensors.push((n, t.narrow(0, i, 1)?.squeeze(0)?.narrow(0, j * rows, rows)?));
                    }
                }
            }
        }
    }
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    Ok(save_sharded(
        dir,
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
        max_shard_bytes.unwrap_or(u64::MAX),
        Some(&meta),
    )?)
}
