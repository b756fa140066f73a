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
    let report = out.join("report");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for needle in [
        "Forgetting and adaptation",
        "cpt-granular-sinkhorn-replay40",
        "union-dense",
        "MRI",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle}");
    }
    // Loss curves (split by model when there are many runs) and the forgetting bars, as PNG.
    let mut pngs: Vec<_> = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    pngs.sort();
    assert!(pngs.iter().any(|p| p.ends_with("forgetting.png")), "{pngs:?}");
    assert!(
        pngs.iter().any(|p| p.to_string_lossy().contains("loss_english")),
        "{pngs:?}"
    );
    for p in &pngs {
        assert_eq!(&std::fs::read(p).unwrap()[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
    }
    let forgetting: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("forgetting.json")).unwrap()).unwrap();
    assert!(forgetting.to_string().contains("cpt-dense-replay40"), "{forgetting}");
    let metrics = std::fs::read_to_string(out.join("runs/pre-dense/metrics.jsonl")).unwrap();
    let again = run();
    assert_eq!(again, first, "a finished demo re-runs to the same table");
    let after = std::fs::read_to_string(out.join("runs/pre-dense/metrics.jsonl")).unwrap();
    assert!(after == metrics, "re-running a finished demo rewrote its metrics");
}
