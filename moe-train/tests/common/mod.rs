//! Shared fixtures of the moe-train tests: running the binary, a small
//! built-in dataset and run configs.
#![allow(dead_code)]

use moe_data::builtin::{build, BuiltinDomain, BuiltinOptions};
use moe_tensor::Device;
use moe_train::trainer::{read_records, Record, METRICS_FILE};
use moe_train::{RunConfig, Trainer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `moe` binary with `args`.
pub fn moe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(args)
        .output()
        .expect("run moe")
}

/// A command's stdout and stderr together, for messages and searches.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes an English + German built-in dataset (a few hundred documents each) into `dir/data`.
pub fn dataset(dir: &Path) -> PathBuf {
    let out = dir.join("data");
    let opts = BuiltinOptions {
        domains: vec![BuiltinDomain::English, BuiltinDomain::German],
        docs_per_domain: 400,
        vocab_size: 384,
        seed: 0,
        val_fraction: 0.1,
        tokenizer_docs: 200,
    };
    build(&out, &opts, &|_, _| {}).expect("built-in dataset");
    out
}

/// A run config of `preset` on `data` with the given body appended (TOML).
pub fn config_text(data: &Path, preset: &str, extra: &str) -> String {
    format!(
        r#"name = "test"
seed = 3
[model]
preset = "{preset}"
[data]
dir = "{}"
mixture = {{ english = 1.0 }}
seq_len = 32
micro_batch = 4
val_windows = 4
{extra}"#,
        data.display()
    )
}

/// Parses a config text.
pub fn config(text: &str) -> RunConfig {
    RunConfig::from_toml(text, Path::new("test.toml")).expect("valid config")
}

/// Training and validation losses of `steps` steps of `preset` on `device`
/// at `precision` ("f32" or "bf16"), constant learning rate 3e-3, run in `out`.
pub fn run_losses(
    data: &Path,
    out: &Path,
    device: Device,
    preset: &str,
    steps: u64,
    precision: &str,
) -> (Vec<f64>, Vec<f64>) {
    let body = format!(
        r#"
[train]
steps = {steps}
precision = "{precision}"
[schedule]
kind = "constant"
lr = 3e-3
"#
    );
    let mut cfg = config(&config_text(data, preset, &body));
    cfg.device = device;
    let mut t = Trainer::start(Some(cfg), out, false).unwrap();
    t.run(&mut |_| {}).unwrap();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for r in read_records(&out.join(METRICS_FILE)).unwrap() {
        match r {
            Record::Train(r) => train.push(r.loss),
            Record::Val(r) => val.push(r.loss),
        }
    }
    (train, val)
}
