//! Checkpoint folders: written into a temporary folder, fsynced, renamed, so a
//! folder named `step-*` is always complete; retention of the newest N and
//! every K-th.

use super::state::{TrainerState, TRAINER_STATE_FILE};
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use moe_model::Decoder;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The checkpoints folder of a run.
pub const CHECKPOINTS: &str = "checkpoints";
/// AdamW's moments inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The tokenizer copy inside a checkpoint.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
const PREFIX: &str = "step-";

/// The folder name of the checkpoint at `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("{PREFIX}{step:08}")
}

/// The step a checkpoint folder name stands for.
fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

fn fsync_path(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
}

/// Writes a checkpoint of `model`, `optimizer` and `state` under
/// `run/checkpoints/step-…`, with a copy of `tokenizer` (a tokenizer.json).
pub fn save_checkpoint(
    run: &Path,
    model: &Decoder,
    optimizer: &AdamW,
    state: &TrainerState,
    tokenizer: &Path,
) -> Result<PathBuf> {
    let root = run.join(CHECKPOINTS);
    std::fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, e))?;
    let name = step_dir_name(state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    moe_model::save_model_dir(model, &tmp)?;
    let tok = tmp.join(TOKENIZER_FILE);
    std::fs::copy(tokenizer, &tok).map_err(|e| TrainError::io(tokenizer, e))?;
    let opt = tmp.join(OPTIMIZER_FILE);
    moe_tensor::safetensors::save(&opt, optimizer.state_dict()?.iter().map(|(n, t)| (n.as_str(), t)), None)?;
    let st = tmp.join(TRAINER_STATE_FILE);
    let json = serde_json::to_string_pretty(state).map_err(|e| TrainError::checkpoint(&st, e.to_string()))?;
    std::fs::write(&st, json).map_err(|e| TrainError::io(&st, e))?;
    for entry in std::fs::read_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))? {
        let path = entry.map_err(|e| TrainError::io(&tmp, e))?.path();
        fsync_path(&path)?;
    }
    fsync_path(&tmp)?;
    let dst = root.join(&name);
    if dst.exists() {
        // A checkpoint of the same step from an interrupted earlier attempt.
        std::fs::remove_dir_all(&dst).map_err(|e| TrainError::io(&dst, e))?;
    }
    std::fs::rename(&tmp, &dst).map_err(|e| TrainError::io(&dst, e))?;
    fsync_path(&root)?;
    Ok(dst)
}

/// Complete checkpoints of a run, oldest first, with their steps.
pub fn list_checkpoints(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = run.join(CHECKPOINTS);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| TrainError::io(&root, e))? {
        let entry = entry.map_err(|e| TrainError::io(&root, e))?;
        let name = entry.file_name();
        if let Some(step) = name.to_str().and_then(parse_step) {
            if entry.path().join(TRAINER_STATE_FILE).exists() {
                out.push((step, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint of a run.
pub fn latest_checkpoint(run: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(run)?.pop().map(|(_, p)| p))
}

/// Deletes checkpoints that are neither among the newest `keep_last` nor at a
/// multiple of `keep_every`, and leftovers of interrupted writes.
pub fn prune(run: &Path, keep_last: usize, keep_every: u64) -> Result<()> {
    let all = list_checkpoints(run)?;
    let cut = all.len().saturating_sub(keep_last);
    for (step, path) in &all[..cut] {
        if keep_every > 0 && step % keep_every == 0 {
            continue;
        }
        std::fs::remove_dir_all(path).map_err(|e| TrainError::io(path, e))?;
    }
    let root = run.join(CHECKPOINTS);
    for entry in std::fs::read_dir(&root).map_err(|e| TrainError::io(&root, e))? {
        let path = entry.map_err(|e| TrainError::io(&root, e))?.path();
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-"));
        if stale {
            std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_newest_and_every_kth() {
        let run = tempfile::tempdir().unwrap();
        for step in [10u64, 20, 30, 40, 50] {
            let d = run.path().join(CHECKPOINTS).join(step_dir_name(step));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(TRAINER_STATE_FILE), "{}").unwrap();
        }
        let tmp = run.path().join(CHECKPOINTS).join(".tmp-step-00000060");
        std::fs::create_dir_all(&tmp).unwrap();
        prune(run.path(), 2, 20).unwrap();
        let steps: Vec<u64> = list_checkpoints(run.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(steps, vec![20, 40, 50]);
        assert!(!tmp.exists());
        assert_eq!(
            latest_checkpoint(run.path()).unwrap().unwrap().file_name().unwrap(),
            "step-00000050"
        );
    }

    #[test]
    fn a_folder_without_state_is_not_a_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(run.path().join(CHECKPOINTS).join(step_dir_name(5))).unwrap();
        assert!(latest_checkpoint(run.path()).unwrap().is_none());
    }
}
