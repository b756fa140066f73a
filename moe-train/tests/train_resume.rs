//! The trainer end to end on a tiny model: metrics, checkpoints, exact resume
//! (in-process and after `kill -9` of a real `moe train`), continual
//! pre-training, and non-finite losses.

mod common;

use common::{config, config_text, dataset};
use moe_train::trainer::{list_checkpoints, read_records, Record, TrainRecord, ValRecord, METRICS_FILE};
use moe_train::{TrainError, Trainer};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BODY: &str = r#"
[train]
steps = 12
grad_accum = 2
[schedule]
kind = "cosine"
max_lr = 3e-3
min_lr = 3e-4
[eval]
interval = 4
[checkpoint]
interval = 3
keep_last = 10
"#;

fn records(run: &Path) -> (Vec<TrainRecord>, Vec<ValRecord>) {
    let (mut t, mut v) = (Vec::new(), Vec::new());
    for r in read_records(&run.join(METRICS_FILE)).unwrap() {
        match r {
            Record::Train(r) => t.push(r),
            Record::Val(r) => v.push(r),
        }
    }
    (t, v)
}

/// Everything but wall-clock throughput must agree bit for bit.
fn assert_same_history(a: &Path, b: &Path) {
    let (mut ta, va) = records(a);
    let (mut tb, vb) = records(b);
    for r in ta.iter_mut().chain(tb.iter_mut()) {
        r.tokens_per_s = 0.0;
    }
    assert_eq!(ta.len(), 12);
    assert_eq!(ta, tb, "train records differ");
    assert_eq!(va, vb, "validation records differ");
}

fn train(cfg_text: &str, out: &Path) -> std::path::PathBuf {
    let mut t = Trainer::start(Some(config(cfg_text)), out, false).unwrap();
    t.run(&mut |_| {}).unwrap()
}

#[test]
fn resuming_from_a_middle_checkpoint_repeats_every_later_step_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    for preset in ["debug-granular", "tiny-switch-sinkhorn", "aux-free"] {
        let text = if preset == "aux-free" {
            // DeepSeek-V3 aux-loss-free routing: its expert biases are trainer
            // state that the checkpoint must carry.
            let mut m = moe_train::config::preset_config("debug-switch").unwrap();
            m.vocab_size = 384;
            m.moe.as_mut().unwrap().router = moe_router::RouterConfig::aux_free(4, 2, 1.0);
            let mut t: toml::Table = config_text(&data, "debug-dense", BODY).parse().unwrap();
            let mut model = toml::Table::new();
            model.insert("config".into(), toml::Value::try_from(&m).unwrap());
            t.insert("model".into(), toml::Value::Table(model));
            toml::to_string(&t).unwrap()
        } else {
            config_text(&data, preset, BODY)
        };
        let full = tmp.path().join(format!("{preset}-full"));
        train(&text, &full);
        let ckpts = list_checkpoints(&full).unwrap();
        assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![3, 6, 9, 12]);
        // A copy of the run that "died" after its step-6 checkpoint, with its log running ahead.
        let cut = tmp.path().join(format!("{preset}-cut"));
        copy_dir(&full, &cut);
        for (step, dir) in list_checkpoints(&cut).unwrap() {
            if step > 6 {
                std::fs::remove_dir_all(dir).unwrap();
            }
        }
        let mut t = Trainer::start(None, &cut, true).unwrap();
        assert_eq!(t.step(), 6);
        if preset == "aux-free" {
            let state = moe_train::trainer::TrainerState::load(&ckpts[1].1).unwrap();
            assert!(state.expert_bias.len() == 2 && state.expert_bias[0].iter().any(|b| *b != 0.0));
        }
        t.run(&mut |_| {}).unwrap();
        assert_same_history(&full, &cut);
    }
}

#[test]
fn kill_9_at_any_moment_then_resume_gives_the_uninterrupted_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let text = config_text(&data, "tiny-granular-aux-z", BODY);
    let cfg_path = tmp.path().join("run.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let full = tmp.path().join("full");
    train(&text, &full);
    let moe = env!("CARGO_BIN_EXE_moe");
    let run = tmp.path().join("killed");
    // Kill the process at different points: as soon as a first checkpoint
    // exists, a few milliseconds later, and while later steps run.
    for (i, delay_ms) in [0u64, 7, 23].into_iter().enumerate() {
        let mut cmd = Command::new(moe);
        cmd.args(["train", "--quiet", "--out"]).arg(&run);
        if i == 0 {
            cmd.arg("--config").arg(&cfg_path);
        } else {
            cmd.arg("--resume");
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let have = list_checkpoints(&run).map(|c| c.len()).unwrap_or(0);
        let start = Instant::now();
        while list_checkpoints(&run).map(|c| c.len()).unwrap_or(0) <= have
            && start.elapsed() < Duration::from_secs(60)
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let status = Command::new(moe)
        .args(["train", "--quiet", "--resume", "--out"])
        .arg(&run)
        .status()
        .unwrap();
    assert!(status.success());
    assert_same_history(&full, &run);
}

#[test]
fn continual_pretraining_starts_from_the_checkpoint_and_keeps_or_resets_adam() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let base = tmp.path().join("base");
    let last = train(&config_text(&data, "debug-switch", BODY), &base);
    for keep in [false, true] {
        let text = format!(
            r#"name = "cpt"
[data]
dir = "{}"
mixture = {{ german = 0.6, english = 0.4 }}
seq_len = 32
micro_batch = 5
val_windows = 4
[train]
steps = 4
[schedule]
kind = "rewarm"
start_lr = 3e-4
max_lr = 3e-3
min_lr = 3e-4
[init]
from = "{}"
keep_optimizer = {keep}
"#,
            data.display(),
            last.display()
        );
        let out = tmp.path().join(format!("cpt-{keep}"));
        let end = train(&text, &out);
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        assert_eq!(info["cpt_start_tokens"], 12 * 2 * 4 * 32);
        let (t, v) = records(&out);
        // Replay: rows follow the 60/40 mixture (5 rows per step: 3 German, 2 English).
        assert_eq!(t[3].domain_tokens["german"], 4 * 3 * 32);
        assert_eq!(t[3].domain_tokens["english"], 4 * 2 * 32);
        // The first evaluation (step 0) is the checkpoint itself: the parent's final loss.
        let (_, parent_val) = records(&base);
        let parent_final: Vec<f64> = parent_val.iter().filter(|r| r.step == 12).map(|r| r.loss).collect();
        let start: Vec<f64> = v.iter().filter(|r| r.step == 0).map(|r| r.loss).collect();
        assert_eq!(start, parent_final);
        let opt = moe_tensor::safetensors::load(end.join("optimizer.safetensors"), &moe_tensor::Device::Cpu).unwrap();
        let steps = opt["model.embed_tokens.weight.step"].to_vec::<i64>().unwrap()[0];
        assert_eq!(steps, if keep { 12 + 4 } else { 4 });
    }
}

#[test]
fn a_non_finite_loss_stops_naming_the_step_or_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let body = |policy: &str| {
        format!(
            r#"
[train]
steps = 6
on_nan = "{policy}"
[schedule]
kind = "constant"
lr = 1e30
[checkpoint]
interval = 1
"#
        )
    };
    let out = tmp.path().join("stop");
    let mut t = Trainer::start(
        Some(config(&config_text(&data, "debug-dense", &body("stop")))),
        &out,
        false,
    )
    .unwrap();
    let err = t.run(&mut |_| {}).unwrap_err();
    let TrainError::NonFinite { step, .. } = err else {
        panic!("expected a non-finite error, got {err}")
    };
    assert!(step >= 2, "the first step's loss is finite");
    assert!(err_text(step).contains(&format!("step {step}")));
    let ckpts = list_checkpoints(&out).unwrap();
    assert_eq!(ckpts.last().unwrap().0, step - 1, "the last good checkpoint stays");

    let out = tmp.path().join("skip");
    let mut t = Trainer::start(
        Some(config(&config_text(&data, "debug-dense", &body("skip")))),
        &out,
        false,
    )
    .unwrap();
    t.run(&mut |_| {}).unwrap();
    let (tr, _) = records(&out);
    assert_eq!(tr.len(), 6);
    assert!(!tr[0].skipped && tr.iter().any(|r| r.skipped));
}

fn err_text(step: u64) -> String {
    TrainError::NonFinite {
        step,
        what: "the loss",
        value: f64::NAN,
    }
    .to_string()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

#[test]
fn cpt_from_an_upcycled_folder_counts_the_dense_models_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let base = tmp.path().join("base");
    let dense_ckpt = train(&config_text(&data, "debug-dense", BODY), &base);
    let dense_cfg = moe_model::load_model_dir(&dense_ckpt, &moe_tensor::Device::Cpu)
        .unwrap()
        .config()
        .clone();
    let mut target = dense_cfg.switch_from_dense(4).unwrap();
    let m = target.moe.as_mut().unwrap();
    m.router = moe_router::RouterConfig::mixtral(4, 2);
    let target_path = tmp.path().join("moe.toml");
    std::fs::write(&target_path, toml::to_string(&target).unwrap()).unwrap();
    let up = tmp.path().join("up");
    let status = Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(["upcycle", "--method", "naive", "--from"])
        .arg(&dense_ckpt)
        .arg("--config")
        .arg(&target_path)
        .arg("--out")
        .arg(&up)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = config_text(&data, "debug-dense", BODY).replace("preset = \"debug-dense\"", "");
    let text = format!("{text}[init]\nfrom = \"{}\"\n", up.display());
    let out = tmp.path().join("moe");
    train(&text, &out);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["cpt_start_tokens"], 12 * 2 * 4 * 32, "the dense model's tokens");
    // Naive top-k upcycling with renormalised weights starts where the dense model ended.
    let (_, dense_val) = records(&base);
    let (_, moe_val) = records(&out);
    for (d, m) in dense_val
        .iter()
        .filter(|r| r.step == 12)
        .zip(moe_val.iter().filter(|r| r.step == 0))
    {
        assert_eq!(d.domain, m.domain);
        assert!(
            (d.loss - m.loss).abs() < 1e-5,
            "{}: dense {} vs upcycled {}",
            d.domain,
            d.loss,
            m.loss
        );
    }
}
