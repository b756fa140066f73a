//! `moe eval` and `moe report` end to end on tiny real runs: an MoE
//! pre-trained on English, continued on German with 10% replay, and a dense
//! run; the report's images are checked as PNG (signature, IHDR size) and
//! SVG, and bad input gives clear errors.

mod common;

use common::moe;

use moe_data::builtin::{build, BuiltinDomain, BuiltinOptions};
use std::path::{Path, PathBuf};
use std::process::Output;

fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "moe failed: {text}");
    text
}

fn fails(o: Output) -> String {
    assert!(!o.status.success(), "moe should have failed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dataset(dir: &Path, seed: u64, vocab: usize) -> PathBuf {
    let opts = BuiltinOptions {
        domains: vec![BuiltinDomain::English, BuiltinDomain::German],
        docs_per_domain: 300,
        vocab_size: vocab,
        seed,
        val_fraction: 0.1,
        tokenizer_docs: 200,
    };
    build(dir, &opts, &|_, _| {}).expect("built-in dataset");
    dir.to_path_buf()
}

fn train(tmp: &Path, name: &str, preset: &str, data: &Path, mixture: &str, init: Option<&Path>) -> PathBuf {
    let init = init.map_or(String::new(), |p| {
        format!("[init]\nfrom = {:?}\n", p.display().to_string())
    });
    let text = format!(
        "name = \"{name}\"\nseed = 1\n[model]\npreset = \"{preset}\"\n[data]\ndir = {:?}\nmixture = {{ {mixture} }}\n\
         seq_len = 16\nmicro_batch = 4\nval_windows = 4\n[train]\nsteps = 6\n[schedule]\nkind = \"cosine\"\n\
         max_lr = 3e-3\nmin_lr = 3e-4\n[eval]\ninterval = 3\n[checkpoint]\ninterval = 3\n{init}",
        data.display().to_string()
    );
    let cfg = tmp.join(format!("{name}.toml"));
    std::fs::write(&cfg, text).unwrap();
    let out = tmp.join("runs").join(name);
    ok(moe(&[
        "train",
        "--quiet",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    out
}

fn last_ckpt(run: &Path) -> PathBuf {
    let mut c: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("step-"))
        .collect();
    c.sort();
    c.pop().unwrap()
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn eval_compare_report_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = dataset(&t.join("data"), 0, 320);
    let base = train(t, "moe-en", "debug-switch", &data, "english = 1.0", None);
    let cpt = train(
        t,
        "moe-en-de",
        "debug-switch",
        &data,
        "german = 0.9, english = 0.1",
        Some(&last_ckpt(&base)),
    );
    let dense = train(t, "dense-en", "debug-dense", &data, "english = 1.0", None);
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // moe eval --ckpt ... --routing
    let eval_json = t.join("eval.json");
    let out = ok(moe(&[
        "eval",
        "--ckpt",
        &s(&last_ckpt(&cpt)),
        "--data",
        &s(&data),
        "--domain",
        "english",
        "--routing",
        "--seq-len",
        "16",
        "--max-windows",
        "4",
        "--batch-size",
        "2",
        "--out",
        &s(&eval_json),
    ]));
    assert!(out.contains("english") && out.contains("MRI"), "{out}");
    let ev: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&eval_json).unwrap()).unwrap();
    let d = &ev["domains"][0];
    assert_eq!(d["domain"], "english");
    assert_eq!(d["tokens"], 4 * 16);
    assert!(d["loss"].as_f64().unwrap().is_finite());
    assert_eq!(d["routing"]["layers"][0]["mri_per_batch"].as_array().unwrap().len(), 2);

    // moe eval --compare: identical checkpoints change by exactly 0.
    let change = t.join("change.json");
    let ck = s(&last_ckpt(&cpt));
    ok(moe(&[
        "eval",
        "--compare",
        &ck,
        &ck,
        "--data",
        &s(&data),
        "--max-windows",
        "2",
        "--out",
        &s(&change),
    ]));
    let c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&change).unwrap()).unwrap();
    for dom in c["domains"].as_array().unwrap() {
        for l in dom["layers"].as_array().unwrap() {
            assert_eq!(l["change"].as_f64(), Some(0.0));
        }
    }

    // Bad input.
    let o = s(&t.join("x.json"));
    let err = fails(moe(&[
        "eval",
        "--ckpt",
        &s(&last_ckpt(&dense)),
        "--data",
        &s(&data),
        "--routing",
        "--out",
        &o,
    ]));
    assert!(err.contains("dense") && err.contains("no routing"), "{err}");
    let err = fails(moe(&[
        "eval",
        "--ckpt",
        &ck,
        "--data",
        &s(&data),
        "--domain",
        "klingon",
        "--out",
        &o,
    ]));
    assert!(err.contains("klingon") && err.contains("english, german"), "{err}");
    let other = dataset(&t.join("other"), 1, 300);
    let err = fails(moe(&["eval", "--ckpt", &ck, "--data", &s(&other), "--out", &o]));
    assert!(err.contains("different tokenizers"), "{err}");

    // moe report over the three runs.
    let rep = t.join("report");
    let out = ok(moe(&[
        "report",
        &s(&base),
        &s(&cpt),
        &s(&dense),
        "--out",
        &s(&rep),
        "--max-windows",
        "4",
    ]));
    assert!(out.contains("report.md"), "{out}");
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("| moe-en-de |"), "{md}");
    assert!(md.contains("## Routing on the old domain before and after CPT"), "{md}");
    for name in ["loss_english", "loss_german", "forgetting", "load_moe-en-de", "mri"] {
        assert_eq!(png_size(&rep.join(format!("{name}.png"))), (960, 600), "{name}");
        let svg = std::fs::read_to_string(rep.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{name}");
        assert!(md.contains(&format!("({name}.png)")), "{name} not linked");
    }
    let loss_svg = std::fs::read_to_string(rep.join("loss_english.svg")).unwrap();
    assert!(loss_svg.contains("moe-en-de") && loss_svg.contains("CPT start"));
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rep.join("forgetting.json")).unwrap()).unwrap();
    let replay = f[0]["replay_share"].as_f64().unwrap();
    assert!((replay - 0.1).abs() < 0.06, "replay share {replay}");
}
