//! `moe tokenizer train`: a byte-level BPE from text/JSONL files.

use super::input::{report_skips, InputArgs};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use moe_data::ingest::{check_inputs, DocumentReader};
use moe_data::tokenizer::{train_bpe, BpeOptions, DEFAULT_EOD};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Tokenizer commands.
#[derive(Debug, Subcommand)]
pub enum TokenizerCmd {
    /// Train a byte-level BPE and save a Hugging Face tokenizer.json.
    Train(TrainArgs),
}

/// `moe tokenizer train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Vocabulary size, 256 byte tokens and special tokens included.
    #[arg(long)]
    pub vocab_size: usize,
    /// Output tokenizer.json (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Pairs seen fewer times are not merged.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Special tokens; the first is the end-of-document token.
    #[arg(long = "special-token", default_values_t = [DEFAULT_EOD.to_string()])]
    pub special_tokens: Vec<String>,
    #[command(flatten)]
    pub input: InputArgs,
    /// Input files: .txt or .jsonl, optionally .gz or .zst.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs a tokenizer command.
pub fn run(cmd: TokenizerCmd) -> Result<()> {
    let TokenizerCmd::Train(a) = cmd;
    if a.special_tokens.is_empty() {
        anyhow::bail!("at least one --special-token (the end-of-document token) is required");
    }
    check_inputs(&a.files)?;
    let reader = Arc::new(Mutex::new(DocumentReader::new(a.files.clone(), a.input.options())));
    let error = Arc::new(Mutex::new(None));
    // The trainer consumes an infallible iterator: stop at the first error
    // and report it afterwards.
    let docs = {
        let (reader, error) = (reader.clone(), error.clone());
        std::iter::from_fn(move || {
            let next = reader.lock().ok()?.next()?;
            match next {
                Ok(d) => Some(d.text),
                Err(e) => {
                    *error.lock().ok()? = Some(e);
                    None
                }
            }
        })
    };
    let opts = BpeOptions {
        vocab_size: a.vocab_size,
        min_frequency: a.min_frequency,
        special_tokens: a.special_tokens,
    };
    let start = std::time::Instant::now();
    let json = train_bpe(docs, &opts)?;
    if let Some(e) = error
        .lock()
        .map_err(|_| anyhow::anyhow!("reader lock poisoned"))?
        .take()
    {
        return Err(e.into());
    }
    let stats = reader
        .lock()
        .map_err(|_| anyhow::anyhow!("reader lock poisoned"))?
        .stats()
        .clone();
    if stats.documents == 0 {
        anyhow::bail!("no non-empty documents in the inputs");
    }
    moe_data::atomic::write_atomic(&a.out, json.as_bytes()).with_context(|| format!("writing {}", a.out.display()))?;
    let tok = moe_data::Tokenizer::from_file(&a.out, Some(&opts.special_tokens[0]))?;
    report_skips(&stats);
    println!(
        "trained {} ({} tokens, end of document `{}` = {}) on {} documents, {} bytes in {:.1}s; hash {}",
        a.out.display(),
        tok.vocab_size(),
        tok.eod_token(),
        tok.eod_id(),
        stats.documents,
        stats.bytes,
        start.elapsed().as_secs_f64(),
        tok.hash_hex()
    );
    Ok(())
}
