//! HF-style sharded checkpoints: `model-00001-of-00003.safetensors` files and a
//! `model.safetensors.index.json` of the form
//! `{"metadata": {"total_size": N}, "weight_map": {tensor name: shard file}}`.
//!
//! A save writes every shard atomically, then the index; each shard and the index
//! carry the same `moe_save_id`, so a load notices shards left over from an
//! interrupted save instead of mixing two checkpoints.

use super::header::{Entries, TensorInfo};
use super::load::MmapedSafetensors;
use crate::{Device, Error, Result, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

/// File name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// File name of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Key tying shards to their index (in shard `__metadata__` and index `metadata`).
pub(crate) const SAVE_ID_KEY: &str = "moe_save_id";

pub(crate) fn bad(path: &Path, msg: String) -> Error {
    Error::Safetensors {
        path: path.to_path_buf(),
        msg,
    }
}

/// A checkpoint of one or more safetensors files, every shard memory-mapped.
#[derive(Debug)]
pub struct ShardedSafetensors {
    shards: Vec<MmapedSafetensors>,
    /// Tensor name → index into `shards`.
    weight_map: BTreeMap<String, usize>,
    total_size: Option<u64>,
}

#[derive(serde::Deserialize)]
struct IndexFile {
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    weight_map: Entries,
}

impl ShardedSafetensors {
    /// Opens a checkpoint from a directory (its index, else its `model.safetensors`),
    /// an index `.json` file, or a single `.safetensors` file; validates that index
    /// and shards agree.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let (index, single) = (path.join(INDEX_FILE), path.join(SINGLE_FILE));
            if index.is_file() {
                Self::open_index(&index)
            } else if single.is_file() {
                Self::open_single(&single)
            } else {
                Err(bad(
                    path,
                    format!("directory has neither {INDEX_FILE} nor {SINGLE_FILE}"),
                ))
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            Self::open_index(path)
        } else {
            Self::open_single(path)
        }
    }

    fn open_single(path: &Path) -> Result<Self> {
        let shard = MmapedSafetensors::open(path)?;
        let weight_map = shard.names().map(|n| (n.to_string(), 0)).collect();
        let total_size = Some(
            shard
                .tensors()
                .iter()
                .map(|t| (t.data_offsets.1 - t.data_offsets.0) as u64)
                .sum(),
        );
        Ok(ShardedSafetensors {
            shards: vec![shard],
            weight_map,
            total_size,
        })
    }

    fn open_index(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|source| Error::Io {
            path: index.to_path_buf(),
            source,
        })?;
        let parsed: IndexFile =
            serde_json::from_str(&text).map_err(|e| bad(index, format!("corrupt index JSON: {e}")))?;
        if let Some(dup) = parsed.weight_map.first_duplicate() {
            return Err(bad(index, format!("duplicate tensor name `{dup}` in weight_map")));
        }
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut files: Vec<String> = Vec::new();
        let mut file_ix: HashMap<String, usize> = HashMap::new();
        let mut weight_map = BTreeMap::new();
        for (name, file) in parsed.weight_map.0 {
            let file = file
                .as_str()
                .filter(|f| is_plain_file_name(f))
                .ok_or_else(|| {
                    bad(
                        index,
                        format!("weight_map entry `{name}`: {file} is not a file name in this directory"),
                    )
                })?
                .to_string();
            let ix = *file_ix.entry(file.clone()).or_insert_with(|| {
                files.push(file.clone());
                files.len() - 1
            });
            weight_map.insert(name, ix);
        }
        let mut shards = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let p = dir.join(f);
            if !p.is_file() {
                let first = weight_map.iter().find(|(_, &s)| s == i).map_or("", |(n, _)| n.as_str());
                return Err(bad(
                    &p,
                    format!(
                        "shard listed in {} (for tensor `{first}`) does not exist",
                        index.display()
                    ),
                ));
            }
            shards.push(MmapedSafetensors::open(&p)?);
        }
        let meta = parsed.metadata.unwrap_or_default();
        check_agreement(
            index,
            &shards,
            &weight_map,
            meta.get(SAVE_ID_KEY).and_then(|v| v.as_str()),
        )?;
        let total_size = meta.get("total_size").and_then(|v| v.as_u64());
        Ok(ShardedSafetensors {
            shards,
            weight_map,
            total_size,
        })
    }

    /// The shard files, in index order.
    pub fn shard_paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path())
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.weight_map.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.weight_map.len()
    }

    /// Whether the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.weight_map.is_empty()
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.weight_map.contains_key(name)
    }

    /// `total_size` from the index (for a single file: the sum of tensor bytes).
    pub fn total_size(&self) -> Option<u64> {
        self.total_size
    }

    /// The shard holding `name`.
    pub fn shard_of(&self, name: &str) -> Option<&MmapedSafetensors> {
        self.weight_map.get(name).map(|&i| &self.shards[i])
    }

    /// The header entry of `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.shard_of(name).and_then(|s| s.info(name))
    }

    /// Loads `name` onto `device`.
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        match self.shard_of(name) {
            Some(s) => s.load(name, device),
            None => Err(bad(
                self.shards.first().map_or(Path::new(INDEX_FILE), |s| s.path()),
                format!("no tensor named `{name}` in this checkpoint"),
            )),
        }
    }

    /// Loads every tensor onto `device`, by name.
    pub fn load_all(&self, device: &Device) -> Result<BTreeMap<String, Tensor>> {
        self.names()
            .map(|n| Ok((n.to_string(), self.load(n, device)?)))
            .collect()
    }
}

/// A name with no directory part, so an index cannot point outside its directory.
fn is_plain_file_name(f: &str) -> bool {
    let mut c = Path::new(f).components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
}

/// Every listed tensor is in its shard, no shard holds an unlisted or doubly-stored
/// tensor, and (when the index has one) every shard carries the index's save id.
fn check_agreement(
    index: &Path,
    shards: &[MmapedSafetensors],
    weight_map: &BTreeMap<String, usize>,
    save_id: Option<&str>,
) -> Result<()> {
    for (name, &s) in weight_map {
        if !shards[s].contains(name) {
            return Err(bad(
                shards[s].path(),
                format!(
                    "tensor `{name}` is listed in {} but absent from this shard",
                    index.display()
                ),
            ));
        }
    }
    for (i, shard) in shards.iter().enumerate() {
        for name in shard.names() {
            match weight_map.get(name) {
                Some(&j) if j == i => {}
                Some(&j) => {
                    return Err(bad(
                        shard.path(),
                        format!(
                            "duplicate tensor `{name}`: also in {} (where {} puts it)",
                            shards[j].path().display(),
                            index.display()
                        ),
                    ))
                }
                None => {
                    return Err(bad(
                        shard.path(),
                        format!("tensor `{name}` is not listed in {}", index.display()),
                    ))
                }
            }
        }
        if let Some(id) = save_id {
            if shard.metadata().and_then(|m| m.get(SAVE_ID_KEY)).map(String::as_str) != Some(id) {
                return Err(bad(
                    shard.path(),
                    format!(
                        "shard was not written by the save that wrote {} (interrupted save?)",
                        index.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}
