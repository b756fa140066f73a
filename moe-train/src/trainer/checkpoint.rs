//! Checkpoint folders: written into a temporary folder, fsynced, renamed, so a
//! folder named `step-*` is always complete; retention of the newest N and
//! every K-th.

use super::state::{TrainerState, TRAINER_STATE_FILE};
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use moe_model::Decoder;
use moe_tensor::{Device, Params};
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

/// The model with every parameter copied to the host (an explicit read back
/// from the device), for writing: the same files a CPU run with the same
/// values writes.
fn host_copy(model: &Decoder) -> Result<Decoder> {
    let mut params = Params::new();
    for (name, t) in model.params().iter() {
        params.insert(name, &t.detach().to_device(&Device::Cpu)?)?;
    }
    Ok(Decoder::from_params(model.config(), params)?)
}

/// Writes the model folder files and `optimizer.safetensors` into `dir`, from
/// host copies when the model and its optimiser state live on a device.
fn write_weights(dir: &Path, model: &Decoder, optimizer: &AdamW) -> Result<()> {
    let on_device = model.params().iter().any(|(_, t)| !t.device().is_cpu());
    let host = if on_device { Some(host_copy(model)?) } else { None };
    moe_model::save_model_dir(host.as_ref().unwrap_or(model), dir)?;
    // The state dict is host copies of the moments wherever they live.
    let state = optimizer.state_dict()?;
    moe_tensor::safetensors::save(
        dir.join(OPTIMIZER_FILE),
        state.iter().map(|(n, t)| (n.as_str(), t)),
        None,
    )?;
    Ok(())
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
    write_weights(&tmp, model, optimizer)?;
    let tok = tmp.join(TOKENIZER_FILE);
    std::fs::copy(tokenizer, &tok).map_err(|e| TrainError::io(tokenizer, e))?;
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

    /// A model and optimiser on a GPU write the bytes their CPU twins write.
    #[test]
    fn device_weights_are_written_as_the_cpu_writes_them() {
        use crate::optim::AdamWConfig;
        use moe_tensor::init::Rng;
        let Some(dev) =
            moe_tensor::device_check::accelerators_or_skip("device_weights_are_written_as_the_cpu_writes_them").pop()
        else {
            return;
        };
        let cfg = moe_model::presets::preset("debug-dense").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (device, sub) in [(Device::Cpu, "cpu"), (dev, "gpu")] {
            // The initialisation draws on the host: the same values on both.
            let model = Decoder::new(&cfg, &mut Rng::seed(1), &device).unwrap();
            let mut opt = AdamW::new(model.params(), AdamWConfig::default()).unwrap();
            for (_, p) in model.params().iter() {
                p.set_grad(Some(p.detach().mul_scalar(0.5).unwrap()));
            }
            opt.step(1e-3).unwrap();
            let dir = tmp.path().join(sub);
            std::fs::create_dir_all(&dir).unwrap();
            write_weights(&dir, &model, &opt).unwrap();
            let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            files.push(names);
        }
        assert_eq!(files[0].len(), files[1].len());
        for (c, g) in files[0].iter().zip(&files[1]) {
            assert_eq!(c.file_name(), g.file_name());
            assert!(
                std::fs::read(c).unwrap() == std::fs::read(g).unwrap(),
                "{} differs",
                g.display()
            );
        }
    }

    #[test]
    fn a_folder_without_state_is_not_a_checkpoint() {
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(run.path().join(CHECKPOINTS).join(step_dir_name(5))).unwrap();
        assert!(latest_checkpoint(run.path()).unwrap().is_none());
    }
}
