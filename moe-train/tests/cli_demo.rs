//! `moe demo --quick` end to end through the binary: every run trains, the
//! report answers the questions, and re-running the finished demo changes nothing.

use std::process::Command;

#[test]
fn quick_demo_runs_reports_and_reruns_as_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let run = || {
        let o = Command::new(env!("CARGO_BIN_EXE_moe"))
            .args(["demo", "--quick", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let first = run();
    let runs: Vec<String> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(runs.len(), 5 + 10 + 2, "{runs:?}");
    for r in &runs {
        assert!(
            out.join("runs").join(r).join("checkpoints").read_dir().unwrap().count() == 1,
            "{r} keeps its final checkpoint"
        );
        assert!(first.contains(r.as_str()), "{r} missing from the printed table");
    }
    let md = std::fs::read_to_string(out.join("report/summary.md")).unwrap();
    for needle in [
        "Forgetting of A",
        "cpt-granular-sinkhorn-replay40",
        "union-dense",
        "Re-training baselines",
    ] {
        assert!(md.contains(needle), "summary.md lacks {needle}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report/summary.json")).unwrap()).unwrap();
    let cpt = json["cpt"].as_array().unwrap();
    assert_eq!(cpt.len(), 10);
    for row in cpt {
        // CPT on B must have taught something about B.
        assert!(row["adaptation"].as_f64().unwrap() > 0.0, "{row}");
    }
    let metrics = std::fs::read_to_string(out.join("runs/pre-dense/metrics.jsonl")).unwrap();
    let again = run();
    assert_eq!(again, first, "a finished demo re-runs to the same table");
    let after = std::fs::read_to_string(out.join("runs/pre-dense/metrics.jsonl")).unwrap();
    assert!(after == metrics, "re-running a finished demo rewrote its metrics");
}
