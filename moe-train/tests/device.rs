//! Where a run trains: the config's `device` and `--device` of `moe train`
//! and `moe bench` are validated before any work, and asking for a GPU this
//! build or machine cannot use is a one-line error saying why.
//!
//! The "no GPU" checks run only where there is none (every machine without
//! the `cuda` feature, or without a driver or GPU); on a GPU machine they
//! print why they are skipped.

mod common;

use common::{config, config_text, dataset, moe, text};
use moe_tensor::device_check::cuda_device;
use moe_tensor::Device;
use moe_train::{RunConfig, TrainError, Trainer};
use std::path::Path;

const BODY: &str = "[train]\nsteps = 2\n[schedule]\nkind = \"constant\"\nlr = 1e-3\n";

/// A config text with `line` added among the top-level keys.
fn with_top_level(text: &str, line: &str) -> String {
    text.replacen("seed = 3\n", &format!("seed = 3\n{line}\n"), 1)
}

/// The reason there is no CUDA device, or `None` (printing that `what` is
/// skipped) on a machine that has one.
fn no_gpu_reason(what: &str) -> Option<String> {
    match cuda_device() {
        Err(reason) => Some(reason),
        Ok(d) => {
            println!("{d} is available: skipping {what}");
            None
        }
    }
}

#[test]
fn the_device_field_defaults_to_cpu_and_reads_every_form() {
    let data = Path::new("data");
    let c = config(&config_text(data, "debug-dense", BODY));
    assert_eq!(c.device, Device::Cpu);
    assert!(c.to_toml().contains("device = \"cpu\""), "{}", c.to_toml());
    for (name, d) in [
        ("cpu", Device::Cpu),
        ("cuda", Device::Cuda(0)),
        ("cuda:1", Device::Cuda(1)),
    ] {
        let c = config(&with_top_level(
            &config_text(data, "debug-dense", BODY),
            &format!("device = \"{name}\""),
        ));
        assert_eq!(c.device, d);
        // The resolved config reads back as itself.
        assert_eq!(RunConfig::from_toml(&c.to_toml(), Path::new("x")).unwrap(), c);
    }
}

#[test]
fn a_bad_device_is_refused_naming_the_field() {
    let data = Path::new("data");
    for bad in ["\"tpu\"", "\"cuda:x\"", "3"] {
        let text = with_top_level(&config_text(data, "debug-dense", BODY), &format!("device = {bad}"));
        let e = RunConfig::from_toml(&text, Path::new("run.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("run.toml") && e.contains("device"), "{bad}: {e}");
    }
    let text = with_top_level(&config_text(data, "debug-dense", BODY), "device = \"tpu\"");
    let e = RunConfig::from_toml(&text, Path::new("run.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected cpu, cuda or cuda:N"), "{e}");
}

#[test]
fn the_device_is_not_part_of_a_runs_identity() {
    let c = config(&config_text(Path::new("data"), "debug-dense", BODY));
    let mut on_gpu = c.clone();
    on_gpu.device = Device::Cuda(0);
    assert!(c.same_run(&on_gpu) && on_gpu.same_run(&c));
    let mut other = c.clone();
    other.seed += 1;
    assert!(!c.same_run(&other));
}

#[test]
fn the_cli_validates_device_before_anything_else() {
    let o = moe(&["train", "--config", "missing.toml", "--device", "tpu"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("--device") && t.contains("expected cpu, cuda or cuda:N"),
        "{t}"
    );
    let o = moe(&["bench", "--config", "debug-dense", "--device", "gpu0"]);
    assert!(
        !o.status.success() && text(&o).contains("expected cpu, cuda or cuda:N"),
        "{}",
        text(&o)
    );
}

#[test]
fn dry_run_shows_the_device_given_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("run.toml");
    std::fs::write(&path, config_text(Path::new("data"), "debug-dense", BODY)).unwrap();
    let p = path.to_string_lossy();
    let o = moe(&["train", "--config", &p, "--dry-run", "--device", "cuda:1"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("device = \"cuda:1\""), "{shown}");
}

#[test]
fn cuda_without_a_gpu_fails_in_one_line_before_any_work() {
    let Some(reason) = no_gpu_reason("cuda_without_a_gpu_fails_in_one_line_before_any_work") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let text_cfg = config_text(&data, "debug-dense", BODY);

    // The library: a typed error, and nothing written.
    let mut cfg = config(&text_cfg);
    cfg.device = Device::Cuda(0);
    let out = tmp.path().join("lib-run");
    let e = match Trainer::start(Some(cfg), &out, false) {
        Err(e) => e,
        Ok(_) => panic!("training on cuda without a GPU must fail"),
    };
    assert!(
        matches!(&e, TrainError::DeviceUnavailable { device: Device::Cuda(0), reason: r } if reason.contains(r.as_str())),
        "{e} (device_check says: {reason})"
    );
    assert!(!out.exists(), "nothing is written before the device check");

    // The binary: the config's field and --device, for train and bench.
    let path = tmp.path().join("run.toml");
    std::fs::write(&path, with_top_level(&text_cfg, "device = \"cuda\"")).unwrap();
    let cli_out = tmp.path().join("cli-run");
    let (p, o) = (path.to_string_lossy(), cli_out.to_string_lossy());
    let from_field = moe(&["train", "--quiet", "--config", &p, "--out", &o]);
    std::fs::write(&path, &text_cfg).unwrap();
    let from_flag = moe(&["train", "--quiet", "--config", &p, "--out", &o, "--device", "cuda:0"]);
    let bench = moe(&[
        "bench",
        "--config",
        "debug-dense",
        "--seq-len",
        "16",
        "--steps",
        "1",
        "--device",
        "cuda",
    ]);
    for run in [from_field, from_flag, bench] {
        let err = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(!run.status.success(), "{}", text(&run));
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: device cuda:0 is not available: "), "{err}");
        assert!(err.contains("--device cpu"), "{err}");
        assert!(run.stdout.is_empty(), "no work reported: {}", text(&run));
    }
    assert!(!cli_out.exists(), "nothing is written before the device check");
}

#[test]
fn a_cpu_run_can_resume_under_an_explicit_cpu_device() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = tmp.path().join("run");
    let mut t = Trainer::start(Some(config(&config_text(&data, "debug-dense", BODY))), &out, false).unwrap();
    t.run(&mut |_| {}).unwrap();
    // Resuming with the device given explicitly finds nothing left to do.
    let t = Trainer::start_on(None, &out, true, Some(Device::Cpu)).unwrap();
    assert_eq!(t.step(), 2);
    assert_eq!(t.config().device, Device::Cpu);
}
