//! `moe report`: a Markdown report over run folders, with a JSON file beside
//! every table and every plot as PNG and SVG.
//!
//! ```no_run
//! use moe_eval::report::{write_report, ReportOptions};
//! use std::path::{Path, PathBuf};
//! # fn main() -> moe_eval::Result<()> {
//! let runs = [PathBuf::from("runs/moe-a"), PathBuf::from("runs/moe-a-to-b")];
//! let summary = write_report(&runs, Path::new("report"), &ReportOptions::default())?;
//! println!("open {}", summary.markdown.display());
//! # Ok(())
//! # }
//! ```

pub mod cpt_routing;
pub mod figures;
mod markdown;
pub mod plot;
pub mod png;
mod sections;
pub mod table;

use crate::error::{EvalError, Result};
use moe_tensor::Device;
use std::path::{Path, PathBuf};

/// How to build the report.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The report's title.
    pub title: String,
    /// Evaluate checkpoints for the before/after-CPT routing section and heatmaps.
    pub routing: bool,
    /// Dataset for the routing section; `None`: each run's `config.toml` `data.dir`.
    pub data: Option<PathBuf>,
    /// Domain for the routing section; `None`: each CPT run's first old domain.
    pub routing_domain: Option<String>,
    /// Validation windows per routing evaluation.
    pub max_windows: usize,
    /// Windows per batch (the MRI batch).
    pub batch_size: usize,
    /// Device for the routing evaluation.
    pub device: Device,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            title: "Continual pre-training report".into(),
            routing: true,
            data: None,
            routing_domain: None,
            max_windows: 64,
            batch_size: 8,
            device: Device::Cpu,
        }
    }
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug, Default)]
pub struct ReportSummary {
    /// `report.md`.
    pub markdown: PathBuf,
    /// The JSON files beside the tables.
    pub json: Vec<PathBuf>,
    /// Every image (PNG and SVG).
    pub images: Vec<PathBuf>,
    /// Sections left out and why (also listed at the end of the report).
    pub notes: Vec<String>,
}

/// Reads the run folders `runs` and writes `out/report.md` with its tables'
/// JSON and its plots (PNG and SVG) beside it.
pub fn write_report(runs: &[PathBuf], out: &Path, opts: &ReportOptions) -> Result<ReportSummary> {
    if runs.is_empty() {
        return Err(EvalError::bad("runs", "no run folder given"));
    }
    let loaded = runs
        .iter()
        .map(|d| crate::runs::load_run(d))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    markdown::write(&loaded, out, opts)
}
