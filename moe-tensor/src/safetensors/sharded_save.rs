//! Writing sharded checkpoints the way transformers' `save_pretrained` does: shards
//! filled in order up to a size limit, `model-0000i-of-0000n.safetensors` names, an
//! index written last, and stale files of an earlier checkpoint removed.

use super::atomic::{sync_dir, write_atomic};
use super::save::{save, write_tensors};
use super::sharded::{bad, INDEX_FILE, SAVE_ID_KEY, SINGLE_FILE};
use crate::{Error, Result, Tensor};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

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
