//! `write_report` on tiny synthetic run folders: metrics.jsonl / run.json /
//! config.toml written by hand, tiny random checkpoints saved with
//! moe-model. Expected numbers are worked out by hand from the logs.

mod common;

use common::*;
use moe_eval::report::{write_report, ReportOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

struct RunSpec<'a> {
    name: &'a str,
    init_from: Option<PathBuf>,
    cpt_start: u64,
    moe: bool,
    /// (tokens, {domain: loss}) validations.
    vals: Vec<(u64, Vec<(&'a str, f64)>)>,
    /// Final domain_tokens.
    domain_tokens: Vec<(&'a str, u64)>,
    seed: u64,
}

fn write_run(root: &Path, data: &Path, vocab: usize, s: &RunSpec) -> PathBuf {
    let dir = root.join(s.name);
    std::fs::create_dir_all(&dir).unwrap();
    let info = json!({"name": s.name, "init_from": s.init_from, "cpt_start_tokens": s.cpt_start, "version": "0.1.0"});
    std::fs::write(dir.join("run.json"), info.to_string()).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "name = \"{}\"\n[data]\ndir = {:?}\nseq_len = 16\n",
            s.name,
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut lines = Vec::new();
    for step in 1..=4u64 {
        let tokens = step * 250;
        let dt: serde_json::Map<String, Value> = s
            .domain_tokens
            .iter()
            .map(|(d, n)| (d.to_string(), json!(n * step / 4)))
            .collect();
        let moe = if s.moe {
            json!([{"layer": 0, "mri": 0.5 + 0.05 * step as f64, "max_load": 10.0, "mean_load": 8.0, "dropped_fraction": 0.0},
                   {"layer": 1, "mri": 0.6, "max_load": 10.0, "mean_load": 8.0, "dropped_fraction": 0.0}])
        } else {
            json!([])
        };
        lines.push(
            json!({"kind": "train", "step": step, "tokens": tokens, "loss": 4.0, "lm_loss": 4.0,
            "aux_loss": null, "z_loss": null, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 100.0,
            "flops": 1e9 * step as f64, "domain_tokens": dt, "moe": moe}),
        );
    }
    for (tokens, losses) in &s.vals {
        for (d, l) in losses {
            lines.push(
                json!({"kind": "val", "step": tokens / 250, "tokens": tokens, "domain": d, "loss": l,
                "ppl": l.exp(), "val_tokens": 64}),
            );
        }
    }
    let text: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
    save_checkpoint(
        &tiny_model(vocab, s.moe, s.seed),
        &dir.join("checkpoints/step-00000004"),
        data,
    );
    dir
}

#[test]
fn report_on_synthetic_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let vocab = tiny_dataset(&data, 0, 300);
    let runs_dir = tmp.path().join("runs");
    let ckpt = |run: &str| runs_dir.join(run).join("checkpoints/step-00000004");
    let specs = [
        RunSpec {
            name: "moe-a",
            init_from: None,
            cpt_start: 0,
            moe: true,
            vals: vec![
                (0, vec![("english", 5.0), ("german", 5.5)]),
                (1000, vec![("english", 3.0), ("german", 4.5)]),
            ],
            domain_tokens: vec![("english", 1000)],
            seed: 1,
        },
        RunSpec {
            name: "moe-a-b",
            init_from: Some(ckpt("moe-a")),
            cpt_start: 1000,
            moe: true,
            // At token 0 (the starting checkpoint) and at the end.
            vals: vec![
                (0, vec![("english", 3.0), ("german", 4.5)]),
                (1000, vec![("english", 3.4), ("german", 3.2)]),
            ],
            domain_tokens: vec![("english", 100), ("german", 900)],
            seed: 2,
        },
        RunSpec {
            name: "moe-ab",
            init_from: None,
            cpt_start: 0,
            moe: true,
            vals: vec![(1000, vec![("english", 3.1), ("german", 3.3)])],
            domain_tokens: vec![("english", 500), ("german", 500)],
            seed: 3,
        },
        RunSpec {
            name: "dense-a",
            init_from: None,
            cpt_start: 0,
            moe: false,
            vals: vec![(1000, vec![("english", 3.2), ("german", 4.6)])],
            domain_tokens: vec![("english", 1000)],
            seed: 4,
        },
        RunSpec {
            name: "dense-a-b",
            init_from: Some(ckpt("dense-a")),
            cpt_start: 1000,
            moe: false,
            // No validation at token 0: the parent's last validation is used.
            vals: vec![(1000, vec![("english", 3.9), ("german", 3.4)])],
            domain_tokens: vec![("german", 1000)],
            seed: 5,
        },
    ];
    let dirs: Vec<PathBuf> = specs.iter().map(|s| write_run(&runs_dir, &data, vocab, s)).collect();
    let out = std::env::var_os("MOE_EVAL_KEEP_REPORT").map_or(tmp.path().join("report"), PathBuf::from);
    let opts = ReportOptions {
        max_windows: 4,
        batch_size: 2,
        ..Default::default()
    };
    let summary = write_report(&dirs, &out, &opts).unwrap();
    assert!(summary.notes.is_empty(), "{:?}", summary.notes);
    let md = std::fs::read_to_string(&summary.markdown).unwrap();
    for s in [
        "## Final validation loss",
        "## Forgetting and adaptation",
        "## Routing on the old domain before and after CPT",
        "## Routing balance during training",
        "## Sample efficiency",
        "![",
    ] {
        assert!(md.contains(s), "report lacks {s:?}");
    }

    // Forgetting, by hand: moe-a-b english 3.0 -> 3.4 (+0.4), german 4.5 -> 3.2 (-1.3), replay 100/1000;
    // baseline moe-ab: gaps 3.4 - 3.1 = +0.3 and 3.2 - 3.3 = -0.1.
    // dense-a-b: before = dense-a's last validation (3.2, 4.6), after (3.9, 3.4); replay 0; no dense baseline.
    let f: Value = serde_json::from_str(&std::fs::read_to_string(out.join("forgetting.json")).unwrap()).unwrap();
    let f = f.as_array().unwrap();
    assert_eq!(f.len(), 2);
    let moe = f.iter().find(|r| r["run"] == "moe-a-b").unwrap();
    assert!((moe["replay_share"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert_eq!(moe["baseline_run"], "moe-ab");
    assert_eq!(moe["model"], "MoE 4x top-2");
    let dom = |r: &Value, d: &str| {
        r["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["domain"] == d)
            .unwrap()
            .clone()
    };
    let close = |v: &Value, want: f64| assert!((v.as_f64().unwrap() - want).abs() < 1e-9, "{v} vs {want}");
    let en = dom(moe, "english");
    assert_eq!(en["old"], true);
    close(&en["delta"], 0.4);
    close(&en["gap_to_baseline"], 0.3);
    let h = en["history"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0]["tokens"].as_u64(), h[1]["tokens"].as_u64()),
        (Some(0), Some(1000))
    );
    close(&h[0]["delta"], 0.0);
    close(&h[1]["delta"], 0.4);
    let de = dom(moe, "german");
    assert_eq!(de["old"], false);
    close(&de["delta"], -1.3);
    close(&de["gap_to_baseline"], -0.1);
    let dense = f.iter().find(|r| r["run"] == "dense-a-b").unwrap();
    close(&dom(dense, "english")["before"], 3.2);
    close(&dom(dense, "english")["delta"], 0.7);
    close(&dense["replay_share"], 0.0);
    assert!(dense["baseline_run"].is_null());
    assert!(
        md.contains("+0.4000") && md.contains("10.0%"),
        "table shows the numbers"
    );

    // Routing before/after CPT on the old domain (english), two MoE layers, top-2 of 4.
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("routing.json")).unwrap()).unwrap();
    let r = &r.as_array().unwrap()[0];
    assert_eq!(
        (r["run"].as_str(), r["domain"].as_str()),
        (Some("moe-a-b"), Some("english"))
    );
    for key in ["before", "after"] {
        for l in r[key].as_array().unwrap() {
            let mri = l["mri_median"].as_f64().unwrap();
            assert!((0.5..=1.0).contains(&mri), "MRI {mri} outside [K/E, 1]");
        }
    }
    assert_eq!(r["change"].as_array().unwrap().len(), 2);

    // Images: every PNG decodes at the plot size, every SVG parses and names its series.
    let pngs: Vec<&PathBuf> = summary
        .images
        .iter()
        .filter(|p| p.extension().unwrap() == "png")
        .collect();
    assert_eq!(pngs.len() * 2, summary.images.len());
    for p in &pngs {
        assert_eq!(decode_png(p).0, 960);
        assert!(md.contains(&format!("({})", p.file_name().unwrap().to_string_lossy())));
    }
    let expect = [
        (
            "loss_english.svg",
            vec![
                "moe-a",
                "moe-a-b",
                "dense-a-b",
                "CPT start",
                "Validation loss on english",
            ],
        ),
        (
            "forgetting.svg",
            vec!["MoE 4x top-2, replay 10.0%", "dense, replay 0.0%", "Forgetting"],
        ),
        (
            "load_moe-a-b.svg",
            vec!["before CPT", "after CPT", "layer 0", "layer 1"],
        ),
        ("mri.svg", vec!["moe-a-b layer 0", "moe-ab layer 1", "CPT start"]),
        (
            "efficiency_german.svg",
            vec!["dense-a-b (dense)", "moe-ab (MoE 4x top-2)"],
        ),
    ];
    for (file, texts) in expect {
        let t = svg_texts(&out.join(file));
        for s in texts {
            assert!(t.contains(s), "{file}: {s:?} missing");
        }
    }
    // Sample efficiency, by hand: moe-a-b's last validation (its step 4, token 1000) sits at
    // 1000 + 1000 tokens and 4e9 (its log) + 4e9 (moe-a's FLOPs up to token 1000) FLOPs.
    let e: Value = serde_json::from_str(&std::fs::read_to_string(out.join("efficiency.json")).unwrap()).unwrap();
    let s = e
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["run"] == "moe-a-b" && s["domain"] == "german")
        .unwrap();
    let last = s["points"].as_array().unwrap().last().unwrap();
    assert_eq!(last["tokens"], 2000);
    close(&last["flops"], 8e9);
    close(&last["loss"], 3.2);
    assert_eq!(s["points"][0]["tokens"], 1000);
    close(&s["points"][0]["flops"], 4e9);
    for json in &summary.json {
        serde_json::from_str::<Value>(&std::fs::read_to_string(json).unwrap()).unwrap();
    }
}

#[test]
fn report_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = write_report(
        &[tmp.path().join("nope")],
        &tmp.path().join("out"),
        &ReportOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("run.json"), "{err}");
    let run = tmp.path().join("bad");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("run.json"),
        r#"{"name": "bad", "init_from": null, "cpt_start_tokens": 0}"#,
    )
    .unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"kind\": \"val\", \"step\": 1}\nnot json\n",
    )
    .unwrap();
    let err = write_report(&[run], &tmp.path().join("out"), &ReportOptions::default()).unwrap_err();
    assert!(err.to_string().contains("metrics.jsonl:1"), "{err}");
}
