//! `moe report`: a Markdown report (tables with JSON beside them, PNG and SVG
//! plots) over one or more run folders.

use super::eval::parse_device;
use anyhow::Result;
use clap::Args;
use moe_eval::report::{write_report, ReportOptions};
use std::path::PathBuf;

/// `moe report`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  moe report runs/moe-a runs/moe-a-to-b runs/moe-ab runs/dense-a runs/dense-a-to-b --out report"
)]
pub struct ReportArgs {
    /// Run folders written by `moe train` (pre-training runs, CPT runs and
    /// re-training baselines; give a CPT run's parent too).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output folder (report.md, *.json, *.png, *.svg).
    #[arg(long)]
    pub out: PathBuf,
    /// Report title.
    #[arg(long, default_value = "Continual pre-training report")]
    pub title: String,
    /// Skip evaluating checkpoints for the before/after-CPT routing section.
    #[arg(long)]
    pub no_routing: bool,
    /// Dataset for the routing section (default: each run's config.toml data.dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Domain for the routing section (default: each CPT run's first old domain).
    #[arg(long)]
    pub domain: Option<String>,
    /// Validation windows per routing evaluation.
    #[arg(long, default_value_t = 64)]
    pub max_windows: usize,
    /// Windows per batch (MRI is taken per batch).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Device for the routing evaluation: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `moe report`.
pub fn run(a: ReportArgs) -> Result<()> {
    let opts = ReportOptions {
        title: a.title,
        routing: !a.no_routing,
        data: a.data,
        routing_domain: a.domain,
        max_windows: a.max_windows,
        batch_size: a.batch_size,
        device: parse_device(&a.device)?,
    };
    let s = write_report(&a.runs, &a.out, &opts)?;
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    println!(
        "wrote {} ({} tables, {} images)",
        s.markdown.display(),
        s.json.len(),
        s.images.len()
    );
    Ok(())
}
