//! `moe prepare`: stream documents, tokenize them on all cores, split them
//! into train/validation by document, and write a domain's shards.
//!
//! A reader thread fills chunks of documents (a bounded channel of two
//! chunks keeps memory flat); each chunk is tokenized in parallel with
//! rayon, in order, so the output does not depend on the thread count.
//! The domain is written to a staging folder that is renamed into place,
//! then the manifest is replaced atomically; on any error the staging
//! folder is removed and the dataset is left as it was.

use crate::atomic::write_atomic;
use crate::error::{DataError, Result};
use crate::ingest::{check_inputs, DocumentReader, IngestOptions, IngestStats};
use crate::manifest::{DomainEntry, Manifest, SplitEntry, TokenizerEntry, MANIFEST, TOKENIZER_FILE};
use crate::shard::SplitWriter;
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

/// Options for [`prepare_files`] and [`prepare_documents`].
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Domain name: letters, digits, `-` and `_`.
    pub domain: String,
    /// Share of documents sent to the validation split, in [0, 1).
    pub val_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// A shard is closed once it holds this many tokens.
    pub shard_tokens: u64,
    /// Replace the domain if it exists.
    pub overwrite: bool,
    /// Bytes of text per tokenization chunk.
    pub chunk_bytes: usize,
}

impl PrepareOptions {
    /// Defaults for a domain: 1% validation, seed 0, 256M-token shards.
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.to_string(),
            val_fraction: 0.01,
            seed: 0,
            shard_tokens: 1 << 28,
            overwrite: false,
            chunk_bytes: 4 << 20,
        }
    }
}

/// Running totals passed to the progress callback after each chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Text bytes tokenized.
    pub bytes: u64,
    /// Tokens produced.
    pub tokens: u64,
    /// Documents written.
    pub documents: u64,
}

/// What [`prepare_files`] did.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    /// The domain's manifest entry.
    pub entry: DomainEntry,
    /// Documents that tokenized to no tokens (skipped, counted).
    pub zero_token_documents: u64,
}

/// Whether document `ordinal` goes to validation: a keyed hash, so the
/// split is fixed by the seed and independent of chunking and threads.
pub fn is_val(seed: u64, ordinal: u64, fraction: f64) -> bool {
    let x = splitmix64(seed ^ splitmix64(ordinal));
    ((x >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// SplitMix64's output function.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Reads `files`, tokenizes them and writes domain `opts.domain` of `out`.
pub fn prepare_files(
    tok: &Tokenizer,
    files: &[PathBuf],
    ingest: &IngestOptions,
    out: &Path,
    opts: &PrepareOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<PrepareReport> {
    check_inputs(files)?;
    let reader = Texts(DocumentReader::new(files.to_vec(), ingest.clone()));
    let sources = files.iter().map(|f| f.display().to_string()).collect();
    prepare_inner(tok, reader, sources, out, opts, progress)
}

/// Like [`prepare_files`] for documents from any iterator (the built-in
/// corpus uses it).
pub fn prepare_documents<I>(
    tok: &Tokenizer,
    docs: I,
    sources: Vec<String>,
    out: &Path,
    opts: &PrepareOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<PrepareReport>
where
    I: Iterator<Item = String> + Send,
{
    prepare_inner(
        tok,
        Counted {
            docs,
            stats: IngestStats::default(),
        },
        sources,
        out,
        opts,
        progress,
    )
}

/// A document source that reports reading statistics at the end.
trait Source: Iterator<Item = Result<String>> + Send {
    fn stats(&self) -> IngestStats;
}

/// File documents as text.
struct Texts(DocumentReader);

impl Iterator for Texts {
    type Item = Result<String>;
    fn next(&mut self) -> Option<Result<String>> {
        self.0.next().map(|d| d.map(|d| d.text))
    }
}

impl Source for Texts {
    fn stats(&self) -> IngestStats {
        self.0.stats().clone()
    }
}

/// In-memory documents, counted like the file reader counts.
struct Counted<I> {
    docs: I,
    stats: IngestStats,
}

impl<I: Iterator<Item = String> + Send> Iterator for Counted<I> {
    type Item = Result<String>;
    fn next(&mut self) -> Option<Result<String>> {
        loop {
            let d = self.docs.next()?;
            if d.trim().is_empty() {
                self.stats.empty_documents += 1;
                continue;
            }
            self.stats.documents += 1;
            self.stats.bytes += d.len() as u64;
            return Some(Ok(d));
        }
    }
}

impl<I: Iterator<Item = String> + Send> Source for Counted<I> {
    fn stats(&self) -> IngestStats {
        self.stats.clone()
    }
}

/// Removes the staging folder (and an output folder this run created)
/// unless the run completed.
struct Cleanup {
    staging: PathBuf,
    created_out: Option<PathBuf>,
    done: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.staging);
            if let Some(out) = &self.created_out {
                // Only if empty: never remove what someone else put there.
                let _ = std::fs::remove_dir(out);
            }
        }
    }
}

fn check_domain_name(name: &str) -> Result<()> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DataError::Domain {
            name: name.to_string(),
            reason: "a domain name is 1-64 ASCII letters, digits, `-` or `_`".into(),
        })
    }
}

fn prepare_inner<S: Source>(
    tok: &Tokenizer,
    source: S,
    sources: Vec<String>,
    out: &Path,
    opts: &PrepareOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<PrepareReport> {
    check_domain_name(&opts.domain)?;
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(DataError::invalid(
            "validation fraction",
            format!("{} is not in [0, 1)", opts.val_fraction),
        ));
    }
    let created_out = if out.exists() {
        None
    } else {
        std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
        Some(out.to_path_buf())
    };
    let mut cleanup = Cleanup {
        staging: out.join(format!(".{}.tmp-{}", opts.domain, std::process::id())),
        created_out,
        done: false,
    };
    let (mut manifest, new_dataset) = open_manifest(tok, out)?;
    let final_dir = out.join(&opts.domain);
    if (manifest.domains.contains_key(&opts.domain) || final_dir.exists()) && !opts.overwrite {
        return Err(DataError::Domain {
            name: opts.domain.clone(),
            reason: format!("already exists in {} (use --overwrite to replace it)", out.display()),
        });
    }
    let staging = cleanup.staging.clone();
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;

    let (train, val, stats, zero) = tokenize_stream(tok, source, &staging, opts, progress)?;
    if train.docs + val.docs == 0 {
        return Err(DataError::NoDocuments {
            skipped_empty: stats.empty_documents + zero,
            skipped_utf8: stats.invalid_utf8_documents,
        });
    }
    let entry = DomainEntry {
        sources,
        seed: opts.seed,
        val_fraction: opts.val_fraction,
        ingest: stats,
        train,
        val,
    };
    // The tokenizer copy, then the domain, then the manifest: a dataset is
    // only what its manifest lists, so a crash between steps leaves it valid.
    if new_dataset {
        write_atomic(&out.join(TOKENIZER_FILE), tok.json())?;
    }
    install(&staging, &final_dir)?;
    cleanup.done = true;
    manifest.domains.insert(opts.domain.clone(), entry.clone());
    manifest.save(out)?;
    Ok(PrepareReport {
        entry,
        zero_token_documents: zero,
    })
}

/// Loads the folder's manifest (checking its tokenizer) or starts one
/// (then `true`: the tokenizer copy must be written).
fn open_manifest(tok: &Tokenizer, out: &Path) -> Result<(Manifest, bool)> {
    if out.join(MANIFEST).exists() {
        let m = Manifest::load(out)?;
        if m.tokenizer.hash != tok.hash_hex() {
            return Err(DataError::TokenizerMismatch {
                path: out.join(MANIFEST),
                expected: tok.hash_hex(),
                found: m.tokenizer.hash,
            });
        }
        return Ok((m, false));
    }
    let m = Manifest::new(TokenizerEntry {
        hash: tok.hash_hex(),
        vocab_size: tok.vocab_size(),
        eod_id: tok.eod_id(),
        eod_token: tok.eod_token().to_string(),
        file: TOKENIZER_FILE.into(),
    });
    Ok((m, true))
}

/// Renames the staged domain into place, replacing an old one.
fn install(staging: &Path, final_dir: &Path) -> Result<()> {
    if final_dir.exists() {
        let old = staging.with_extension("old");
        // A leftover from a run killed at this very point.
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(final_dir, &old).map_err(|e| DataError::io(final_dir, e))?;
        std::fs::rename(staging, final_dir).map_err(|e| DataError::io(final_dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| DataError::io(&old, e))?;
    } else {
        std::fs::rename(staging, final_dir).map_err(|e| DataError::io(final_dir, e))?;
    }
    Ok(())
}

type Streamed = (SplitEntry, SplitEntry, IngestStats, u64);

/// The reader thread and the tokenize/write loop.
fn tokenize_stream<S: Source>(
    tok: &Tokenizer,
    mut source: S,
    dir: &Path,
    opts: &PrepareOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Streamed> {
    let (vocab, hash) = (tok.vocab_size(), tok.hash());
    let mut train = SplitWriter::new(dir, "train", opts.shard_tokens, vocab, hash);
    let mut val = SplitWriter::new(dir, "val", opts.shard_tokens, vocab, hash);
    let (tx, rx) = sync_channel::<Result<Vec<String>>>(2);
    let chunk_bytes = opts.chunk_bytes.max(1);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            for doc in source.by_ref() {
                match doc {
                    Ok(d) => {
                        bytes += d.len();
                        chunk.push(d);
                        if bytes >= chunk_bytes {
                            bytes = 0;
                            if tx.send(Ok(std::mem::take(&mut chunk))).is_err() {
                                return source;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return source;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(Ok(chunk));
            }
            source
        });
        let mut p = Progress::default();
        let mut ordinal = 0u64;
        let mut zero = 0u64;
        let result = (|| -> Result<()> {
            for chunk in rx.iter() {
                let chunk = chunk?;
                let ids: Vec<Result<Vec<u32>>> = chunk.par_iter().map(|d| tok.encode(d)).collect();
                for (d, ids) in chunk.iter().zip(ids) {
                    let ids = ids?;
                    p.bytes += d.len() as u64;
                    if ids.is_empty() {
                        zero += 1;
                        continue;
                    }
                    p.tokens += ids.len() as u64;
                    p.documents += 1;
                    if is_val(opts.seed, ordinal, opts.val_fraction) {
                        val.push_doc(&ids)?;
                    } else {
                        train.push_doc(&ids)?;
                    }
                    ordinal += 1;
                }
                progress(&p);
            }
            Ok(())
        })();
        drop(rx);
        let source = reader
            .join()
            .map_err(|_| DataError::invalid("reader thread", "panicked"))?;
        result?;
        let train = SplitEntry::from_shards(train.finish()?);
        let val = SplitEntry::from_shards(val.finish()?);
        Ok((train, val, source.stats(), zero))
    })
}
