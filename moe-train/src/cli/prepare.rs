//! `moe prepare`: tokenize files into one domain of a dataset folder.

use super::input::{report_skips, InputArgs};
use super::progress::DataProgress;
use anyhow::Result;
use clap::Args;
use moe_data::ingest::{detect_format, Compression};
use moe_data::{prepare_files, PrepareOptions, Tokenizer};
use std::path::PathBuf;

/// `moe prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The tokenizer.json to encode with.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Name of the domain to write (letters, digits, - and _).
    #[arg(long)]
    pub domain: String,
    /// Dataset folder (created if missing; other domains are kept).
    #[arg(long)]
    pub out: PathBuf,
    /// Share of documents held out for validation, in [0, 1).
    #[arg(long, default_value_t = 0.01)]
    pub val_fraction: f64,
    /// Seed of the train/validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tokens per shard file before a new one is started.
    #[arg(long, default_value_t = 1 << 28)]
    pub shard_tokens: u64,
    /// End-of-document token (default: the first of <|endoftext|>, <|end_of_text|>, </s>, <eos>).
    #[arg(long)]
    pub eod_token: Option<String>,
    /// Replace the domain if it already exists.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub input: InputArgs,
    /// Input files: .txt or .jsonl, optionally .gz or .zst.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `moe prepare`.
pub fn run(a: PrepareArgs) -> Result<()> {
    let tok = Tokenizer::from_file(&a.tokenizer, a.eod_token.as_deref())?;
    let mut opts = PrepareOptions::new(&a.domain);
    opts.val_fraction = a.val_fraction;
    opts.seed = a.seed;
    opts.shard_tokens = a.shard_tokens;
    opts.overwrite = a.overwrite;
    let bar = DataProgress::new(plain_size(&a.files));
    let report = prepare_files(&tok, &a.files, &a.input.options(), &a.out, &opts, &|p| {
        bar.update(&a.domain, p)
    })?;
    let secs = bar.finish().max(1e-9);
    let e = &report.entry;
    report_skips(&e.ingest);
    if report.zero_token_documents > 0 {
        eprintln!(
            "note: skipped {} documents that encode to no tokens",
            report.zero_token_documents
        );
    }
    let tokens = e.train.tokens + e.val.tokens;
    println!(
        "{}/{}: {} documents ({} train, {} val), {} tokens ({} train, {} val), {} shards",
        a.out.display(),
        a.domain,
        e.train.docs + e.val.docs,
        e.train.docs,
        e.val.docs,
        tokens,
        e.train.tokens,
        e.val.tokens,
        e.train.shards.len() + e.val.shards.len()
    );
    println!(
        "{:.1} MB of text in {secs:.2}s: {:.2} MB/s, {:.0} tokens/s",
        e.ingest.bytes as f64 / 1e6,
        e.ingest.bytes as f64 / 1e6 / secs,
        tokens as f64 / secs
    );
    Ok(())
}

/// Total input size when no input is compressed (then it equals the text
/// bytes the bar counts), else unknown.
fn plain_size(files: &[PathBuf]) -> Option<u64> {
    let mut total = 0;
    for f in files {
        if detect_format(f).ok()?.1 != Compression::None {
            return None;
        }
        total += std::fs::metadata(f).ok()?.len();
    }
    Some(total)
}
