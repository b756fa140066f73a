//! HF-style sharded checkpoints: `model-00001-of-00003.safetensors` files and a
//! `model.safetensors.index.json` of the form
//! `{"metadata": {"total_size": N}, "weight_map": {tensor name: shard file}}`.
//!
//! A save writes every shard atomically, then the index; each shard and the index
//! carry the same `moe_save_id`, so a load notices shards left over from an
//! interrupted save instead of mixing two checkpoints.

use super::atomic::{sync_dir, write_atomic};
use super::header::{Entries, TensorInfo};
use super::load::MmapedSafetensors;
use super::save::{save, write_tensors};
use crate::{Device, Error, Result, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// File name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// File name of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Key tying shards to their index (in shard `__metadata__` and index `metadata`).
const SAVE_ID_KEY: &str = "moe_save_id";

fn bad(path: &Path, msg: String) -> Error {
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

/// HF shard file name: `model-00001-of-00003.safetensors`.
fn shard_name(i: usize, n: usize) -> String {
    format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
}

fn is_shard_name(f: &str) -> bool {
    let b = f.as_bytes();
    f.len() == 32
        && f.starts_with("model-")
        && &f[11..15] == "-of-"
        && f.ends_with(".safetensors")
        && b[6..11].iter().chain(&b[15..20]).all(u8::is_ascii_digit)
}

/// A value unique to this save (time, process, counter).
fn new_save_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}

/// Saves `tensors` into `dir` as a checkpoint whose shards hold at most
/// `max_shard_bytes` of tensor data each (a larger tensor gets a shard of its own),
/// filled in the given order, as HF does. One shard is written as
/// `model.safetensors` without an index; more as `model-0000i-of-0000n.safetensors`
/// plus `model.safetensors.index.json`. Files of an earlier checkpoint in `dir` that
/// the new one does not use (index, single file, shards) are removed afterwards.
/// `metadata` goes into every shard's header. Returns the files written, index last.
pub fn save_sharded<'a, S: AsRef<str>>(
    dir: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (S, &'a Tensor)>,
    max_shard_bytes: u64,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let tensors: Vec<(S, &Tensor)> = tensors.into_iter().collect();
    if max_shard_bytes == 0 {
        return Err(bad(dir, "max_shard_bytes must be positive".into()));
    }
    let mut seen = HashSet::new();
    if let Some((dup, _)) = tensors.iter().find(|(n, _)| !seen.insert(n.as_ref())) {
        return Err(bad(dir, format!("duplicate tensor name `{}`", dup.as_ref())));
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let nbytes = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
    let mut groups: Vec<Vec<usize>> = vec![];
    let mut cur = 0u64;
    for (i, (_, t)) in tensors.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if !g.is_empty() && cur + nbytes(t) <= max_shard_bytes => g.push(i),
            _ => {
                groups.push(vec![i]);
                cur = 0;
            }
        }
        cur += nbytes(t);
    }
    if groups.len() <= 1 {
        let path = dir.join(SINGLE_FILE);
        save(&path, tensors.iter().map(|(n, t)| (n.as_ref(), *t)), metadata)?;
        remove_stale(dir, &[SINGLE_FILE.to_string()])?;
        return Ok(vec![path]);
    }
    let id = new_save_id();
    let mut shard_meta = metadata.cloned().unwrap_or_default();
    shard_meta.insert(SAVE_ID_KEY.into(), id.clone());
    let mut written = vec![];
    let mut names = vec![];
    let mut weight_map = BTreeMap::new();
    for (gi, g) in groups.iter().enumerate() {
        let name = shard_name(gi, groups.len());
        let path = dir.join(&name);
        let part: Vec<(&str, &Tensor)> = g.iter().map(|&i| (tensors[i].0.as_ref(), tensors[i].1)).collect();
        write_atomic(&path, |w| write_tensors(w, &path, &part, Some(&shard_meta)))?;
        for (n, _) in &part {
            weight_map.insert(n.to_string(), name.clone());
        }
        written.push(path);
        names.push(name);
    }
    let total: u64 = tensors.iter().map(|(_, t)| nbytes(t)).sum();
    let index = serde_json::json!({
        "metadata": { "total_size": total, SAVE_ID_KEY: id },
        "weight_map": weight_map,
    });
    let index_path = dir.join(INDEX_FILE);
    let mut text =
        serde_json::to_vec_pretty(&index).map_err(|e| bad(&index_path, format!("encoding the index: {e}")))?;
    text.push(b'\n');
    write_atomic(&index_path, |w| super::atomic::write_all(w, &text, &index_path))?;
    names.push(INDEX_FILE.to_string());
    remove_stale(dir, &names)?;
    written.push(index_path);
    Ok(written)
}

/// Removes checkpoint files in `dir` (index, single file, shards) not in `keep`; a
/// stale index goes first, so a crash part-way never leaves it pointing at a mix.
fn remove_stale(dir: &Path, keep: &[String]) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut stale = vec![];
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(f) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if (f == INDEX_FILE || f == SINGLE_FILE || is_shard_name(&f)) && !keep.contains(&f) {
            stale.push(f);
        }
    }
    stale.sort_by_key(|f| f != INDEX_FILE);
    for f in &stale {
        let p = dir.join(f);
        std::fs::remove_file(&p).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
        if f == INDEX_FILE {
            sync_dir(&p)?;
        }
    }
    if !stale.is_empty() {
        sync_dir(&dir.join(INDEX_FILE))?;
    }
    Ok(())
}
