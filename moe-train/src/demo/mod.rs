//! `moe demo`: the study in miniature, offline, on the built-in corpus —
//! pre-train the five families on domain A, continue each on domain B with
//! and without replay, train the re-training baselines on A ∪ B, and write a
//! report answering the paper's three questions (see [`plan`]).
//!
//! A demo folder can be re-run: finished runs are skipped and an interrupted
//! one resumes from its newest checkpoint.

pub mod plan;

use crate::config::Family;
use crate::error::{Result, TrainError};
use crate::trainer::{latest_checkpoint, read_records, Record, TrainRecord, METRICS_FILE};
use crate::{Event, Trainer};
use moe_data::builtin::{build, BuiltinDomain, BuiltinOptions};
use plan::{plan, DemoSize, PlannedRun};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to run and where.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The demo folder: `data/`, `runs/`, `report/`.
    pub out: PathBuf,
    /// Token budgets and shapes.
    pub size: DemoSize,
    /// Families to include (default: all five).
    pub families: Vec<Family>,
}

/// Progress of the demo.
#[derive(Debug)]
pub enum DemoEvent<'a> {
    /// A phase began (dataset, a run, the report).
    Phase(String),
    /// A training step finished: the demo's overall position in steps.
    Step {
        run: &'a str,
        record: &'a TrainRecord,
        done: u64,
        total: u64,
    },
}

/// Final validation losses of every run.
#[derive(Clone, Debug, Default)]
pub struct DemoSummary {
    /// run name → domain → final validation loss.
    pub final_loss: BTreeMap<String, BTreeMap<String, f64>>,
    /// The report folder (`report.md` with its JSON and plots).
    pub report: PathBuf,
    /// The runs, in plan order.
    pub runs: Vec<PathBuf>,
}

fn ensure_dataset(data: &Path, size: &DemoSize) -> Result<()> {
    if data.join(moe_data::manifest::MANIFEST).exists() {
        return Ok(());
    }
    let tmp = data.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    let opts = BuiltinOptions {
        domains: vec![BuiltinDomain::English, BuiltinDomain::German],
        docs_per_domain: size.docs_per_domain,
        vocab_size: 1024,
        seed: 0,
        val_fraction: 0.05,
        tokenizer_docs: 1000,
    };
    build(&tmp, &opts, &|_, _| {})?;
    std::fs::rename(&tmp, data).map_err(|e| TrainError::io(data, e))
}

fn final_losses(run: &Path) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for r in read_records(&run.join(METRICS_FILE))? {
        if let Record::Val(v) = r {
            out.insert(v.domain, v.loss); // later records overwrite earlier ones
        }
    }
    Ok(out)
}

fn start_run(run: &PlannedRun, runs: &Path) -> Result<Trainer> {
    let mut cfg = run.config.clone();
    if let (Some(parent), Some(init)) = (&run.parent, cfg.init.as_mut()) {
        init.from = latest_checkpoint(&runs.join(parent))?.ok_or_else(|| {
            TrainError::checkpoint(runs.join(parent), "the parent run has no checkpoint to continue from")
        })?;
    }
    Trainer::start(Some(cfg), &runs.join(&run.name), true)
}

/// Runs the whole demo.
pub fn run_demo(opts: &DemoOptions, on_event: &mut dyn FnMut(DemoEvent<'_>)) -> Result<DemoSummary> {
    std::fs::create_dir_all(&opts.out).map_err(|e| TrainError::io(&opts.out, e))?;
    let out = std::path::absolute(&opts.out).map_err(|e| TrainError::io(&opts.out, e))?;
    let (data, runs) = (out.join("data"), out.join("runs"));
    on_event(DemoEvent::Phase(
        "building the built-in corpus (English = A, German = B)".into(),
    ));
    ensure_dataset(&data, &opts.size)?;
    let planned = plan(&data, &runs, &opts.size, &opts.families);
    let total: u64 = planned.iter().map(|r| r.config.total_steps()).sum();
    let mut done = 0u64;
    let mut summary = DemoSummary::default();
    for (i, run) in planned.iter().enumerate() {
        on_event(DemoEvent::Phase(format!(
            "run {}/{}: {}",
            i + 1,
            planned.len(),
            run.name
        )));
        let mut trainer = start_run(run, &runs)?;
        done += trainer.step();
        trainer.run(&mut |e| {
            if let Event::Step { record, .. } = e {
                done += 1;
                on_event(DemoEvent::Step {
                    run: &run.name,
                    record,
                    done,
                    total,
                });
            }
        })?;
        let dir = runs.join(&run.name);
        summary.final_loss.insert(run.name.clone(), final_losses(&dir)?);
        summary.runs.push(dir);
    }
    on_event(DemoEvent::Phase(
        "writing the report (evaluating routing before and after CPT)".into(),
    ));
    summary.report = out.join("report");
    let report_opts = moe_eval::report::ReportOptions {
        title: "moe demo: continual pre-training of MoEs and dense models, in miniature".into(),
        data: Some(data),
        routing_domain: Some(plan::DOMAIN_A.into()),
        max_windows: opts.size.val_windows,
        ..Default::default()
    };
    moe_eval::report::write_report(&summary.runs, &summary.report, &report_opts)?;
    Ok(summary)
}
