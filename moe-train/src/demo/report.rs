//! The demo's summary: the three questions answered in a few numbers read
//! from the runs' metrics (`summary.md`, `summary.json`); the full report with
//! tables and plots comes from moe-eval beside it.

use super::plan::{PlannedRun, DOMAIN_A, DOMAIN_B};
use super::DemoSummary;
use crate::error::{Result, TrainError};
use crate::trainer::{read_records, Record, ValRecord, METRICS_FILE};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One CPT run's forgetting of A and adaptation to B.
#[derive(Debug, Serialize)]
struct CptRow {
    run: String,
    family: String,
    a_before: f64,
    a_after: f64,
    forgetting: f64,
    b_before: f64,
    b_after: f64,
    adaptation: f64,
    /// B loss after each tenth of CPT, for sample efficiency.
    b_curve: Vec<(u64, f64)>,
}

fn val_records(run: &Path) -> Result<Vec<ValRecord>> {
    Ok(read_records(&run.join(METRICS_FILE))?
        .into_iter()
        .filter_map(|r| match r {
            Record::Val(v) => Some(v),
            Record::Train(_) => None,
        })
        .collect())
}

fn loss_at(vals: &[ValRecord], domain: &str, first: bool) -> f64 {
    let mut it = vals.iter().filter(|v| v.domain == domain);
    let r = if first { it.next() } else { it.last() };
    r.map_or(f64::NAN, |v| v.loss)
}

fn cpt_row(run: &PlannedRun, dir: &Path) -> Result<CptRow> {
    let vals = val_records(dir)?;
    let (a0, a1) = (loss_at(&vals, DOMAIN_A, true), loss_at(&vals, DOMAIN_A, false));
    let (b0, b1) = (loss_at(&vals, DOMAIN_B, true), loss_at(&vals, DOMAIN_B, false));
    Ok(CptRow {
        run: run.name.clone(),
        family: run.family.name().to_string(),
        a_before: a0,
        a_after: a1,
        forgetting: a1 - a0,
        b_before: b0,
        b_after: b1,
        adaptation: b0 - b1,
        b_curve: vals
            .iter()
            .filter(|v| v.domain == DOMAIN_B)
            .map(|v| (v.tokens, v.loss))
            .collect(),
    })
}

/// Writes `summary.md` and `summary.json` into `out`.
pub fn write(summary: &DemoSummary, planned: &[PlannedRun], _data: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let runs_dir = summary.runs.first().and_then(|p| p.parent()).unwrap_or(out);
    let mut rows = Vec::new();
    for run in planned.iter().filter(|r| r.parent.is_some()) {
        rows.push(cpt_row(run, &runs_dir.join(&run.name))?);
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# moe demo: continual pre-training of MoEs vs dense, in miniature\n"
    );
    let _ = writeln!(
        md,
        "Domain A = built-in `{DOMAIN_A}`, domain B = built-in `{DOMAIN_B}`. Every model was pre-trained on A \
         with the same tokens, then continued on B with a re-warm/re-decay schedule, without replay \
         (`replay0`) and with 40% of each batch from A (`replay40`). Losses are mean next-token \
         cross-entropy on fixed validation windows (lower is better).\n"
    );
    let _ = writeln!(md, "## Forgetting of A and adaptation to B during CPT\n");
    let _ = writeln!(
        md,
        "| run | A before | A after | forgetting (A after − before) | B before | B after | adaptation (B before − after) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.4} | {:+.4} | {:.4} | {:.4} | {:+.4} |",
            r.run, r.a_before, r.a_after, r.forgetting, r.b_before, r.b_after, r.adaptation
        );
    }
    let _ = writeln!(md, "\n## Re-training baselines (from scratch on A ∪ B)\n");
    let _ = writeln!(md, "| run | A | B |\n|---|---:|---:|");
    for (name, losses) in summary.final_loss.iter().filter(|(n, _)| n.starts_with("union-")) {
        let get = |d: &str| losses.get(d).copied().unwrap_or(f64::NAN);
        let _ = writeln!(md, "| {name} | {:.4} | {:.4} |", get(DOMAIN_A), get(DOMAIN_B));
    }
    let _ = writeln!(md, "\n## Final validation loss of every run\n");
    let _ = writeln!(md, "| run | A | B |\n|---|---:|---:|");
    for (name, losses) in &summary.final_loss {
        let get = |d: &str| losses.get(d).copied().unwrap_or(f64::NAN);
        let _ = writeln!(md, "| {name} | {:.4} | {:.4} |", get(DOMAIN_A), get(DOMAIN_B));
    }
    let md_path = out.join("summary.md");
    std::fs::write(&md_path, md).map_err(|e| TrainError::io(&md_path, e))?;
    let json_path = out.join("summary.json");
    let json = serde_json::json!({ "cpt": rows, "final_loss": summary.final_loss });
    let text = serde_json::to_string_pretty(&json).map_err(|e| TrainError::checkpoint(&json_path, e.to_string()))?;
    std::fs::write(&json_path, text).map_err(|e| TrainError::io(&json_path, e))
}
