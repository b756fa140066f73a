//! `metrics.jsonl`: one JSON object per line, flushed as written (see
//! docs/run-format.md for the fields).

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The log's file name inside a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One MoE layer's load in a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerLoad {
    /// Decoder layer index.
    pub layer: usize,
    /// Maximum Routing Imbalance, mean over the step's micro-batches.
    pub mri: f64,
    /// Largest tokens-per-expert count, mean over micro-batches.
    pub max_load: f64,
    /// Mean tokens-per-expert count (N·K/E).
    pub mean_load: f64,
    /// Share of token copies dropped by capacity.
    pub dropped_fraction: f64,
}

/// Reads a number JSON wrote as `null` (serde_json writes NaN and infinities
/// that way) back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One optimiser step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    pub step: u64,
    pub tokens: u64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub lm_loss: f64,
    pub aux_loss: Option<f64>,
    pub z_loss: Option<f64>,
    pub lr: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub flops: f64,
    pub domain_tokens: BTreeMap<String, u64>,
    pub moe: Vec<LayerLoad>,
    /// True when the step was skipped for a non-finite loss (weights untouched).
    #[serde(default)]
    pub skipped: bool,
}

/// One domain's validation loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValRecord {
    pub step: u64,
    pub tokens: u64,
    pub domain: String,
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
    pub ppl: f64,
    pub val_tokens: u64,
}

/// A line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Train(TrainRecord),
    Val(ValRecord),
}

impl Record {
    /// The step the record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            Record::Train(r) => r.step,
            Record::Val(r) => r.step,
        }
    }
}

/// An append-only metrics log.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// A new, empty log in `run` (an existing one is replaced).
    pub fn create(run: &Path) -> Result<Self> {
        let path = run.join(METRICS_FILE);
        let file = File::create(&path).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Reopens the log of a resumed run, dropping the records after `step`
    /// (written after the checkpoint being resumed, they will be written again)
    /// and any torn last line.
    pub fn resume(run: &Path, step: u64) -> Result<Self> {
        let path = run.join(METRICS_FILE);
        // Kept lines are copied verbatim, so a resumed log is byte-identical
        // to an uninterrupted one up to the checkpoint.
        let kept: Vec<String> = if path.exists() {
            complete_lines(&path)?
                .into_iter()
                .filter(|(_, r)| r.step() <= step)
                .map(|(line, _)| line)
                .collect()
        } else {
            Vec::new()
        };
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        moe_data::atomic::write_atomic(&path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Appends one record and flushes it.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).map_err(|e| TrainError::checkpoint(&self.path, e.to_string()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Every complete record of a log (a torn last line, from a killed process, is ignored).
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    Ok(complete_lines(path)?.into_iter().map(|(_, r)| r).collect())
}

/// Each complete line with its parsed record.
fn complete_lines(path: &Path) -> Result<Vec<(String, Record)>> {
    let f = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    let lines: Vec<String> = BufReader::new(f)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| TrainError::io(path, e))?;
    let n = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(r) => out.push((line, r)),
            Err(_) if i + 1 == n => {} // torn final line
            Err(e) => return Err(TrainError::checkpoint(path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, loss: f64) -> Record {
        Record::Val(ValRecord {
            step,
            tokens: step * 10,
            domain: "a".into(),
            loss,
            ppl: loss.exp(),
            val_tokens: 5,
        })
    }

    #[test]
    fn floats_read_back_bit_exact_and_resume_keeps_lines_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::create(dir.path()).unwrap();
        // Values whose shortest decimal form needs all 17 digits.
        let values = [1.2780633678884703, 7.334889411926269, 0.1 + 0.2, f64::MIN_POSITIVE];
        for (i, v) in values.iter().enumerate() {
            log.write(&record(i as u64, *v)).unwrap();
        }
        let back: Vec<f64> = read_records(&dir.path().join(METRICS_FILE))
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Record::Val(v) => v.loss,
                Record::Train(t) => t.loss,
            })
            .collect();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.map(f64::to_bits)
        );
        let before = std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        // A torn last line (killed mid-write) and records past the checkpoint are dropped.
        std::fs::write(dir.path().join(METRICS_FILE), format!("{before}{{\"kind\":\"va")).unwrap();
        drop(MetricsLog::resume(dir.path(), 1).unwrap());
        let after = std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        let first_two: String = before.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(after, first_two);
    }
}
