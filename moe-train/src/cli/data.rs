//! `moe data`: inspect, verify and build datasets.

use super::progress::DataProgress;
use anyhow::Result;
use clap::{Args, Subcommand};
use moe_data::builtin::{build, BuiltinDomain, BuiltinOptions};
use moe_data::{Dataset, Mixture, Sampler, SamplerConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// Dataset commands.
#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Show domains, token and document counts, and decoded samples.
    Inspect(InspectArgs),
    /// Re-hash every shard against the manifest and check every token id.
    Verify {
        /// Dataset folder.
        dir: PathBuf,
    },
    /// Write the built-in corpus (generated offline) as a dataset, with a
    /// byte-level BPE trained on it.
    Builtin(BuiltinArgs),
}

/// `moe data inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dataset folder.
    pub dir: PathBuf,
    /// Sampled training windows to decode per domain.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Tokens per decoded sample.
    #[arg(long, default_value_t = 64)]
    pub sample_tokens: usize,
}

/// `moe data builtin`.
#[derive(Debug, Args)]
pub struct BuiltinArgs {
    /// Output dataset folder (must not hold a dataset).
    #[arg(long)]
    pub out: PathBuf,
    /// Domains to write, comma-separated (english, german, code).
    #[arg(long, value_delimiter = ',', default_value = "english,german,code")]
    pub domains: Vec<String>,
    /// Documents generated per domain.
    #[arg(long, default_value_t = 20_000)]
    pub docs_per_domain: u64,
    /// Vocabulary size of the tokenizer trained on the corpus.
    #[arg(long, default_value_t = 2048)]
    pub vocab_size: usize,
    /// Corpus and split seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of documents held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
}

/// Runs a data command.
pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Inspect(a) => inspect(a),
        DataCmd::Verify { dir } => {
            let ds = Dataset::open(&dir, None)?;
            ds.verify()?;
            let shards: usize = ds
                .domains()
                .values()
                .map(|d| d.train.shards().len() + d.val.shards().len())
                .sum();
            println!("{}: {shards} shards verified (checksums and token ids)", dir.display());
            Ok(())
        }
        DataCmd::Builtin(a) => builtin(a),
    }
}

fn inspect(a: InspectArgs) -> Result<()> {
    let ds = Arc::new(Dataset::open(&a.dir, None)?);
    let tok = ds.tokenizer()?;
    let m = ds.manifest();
    println!(
        "{}: tokenizer {} (vocabulary {}, end of document `{}` = {})",
        a.dir.display(),
        &m.tokenizer.hash[..16],
        m.tokenizer.vocab_size,
        m.tokenizer.eod_token,
        m.tokenizer.eod_id
    );
    println!(
        "{:<16} {:>12} {:>10} {:>12} {:>10} {:>7}",
        "domain", "train tok", "train doc", "val tok", "val doc", "shards"
    );
    for (name, d) in &m.domains {
        println!(
            "{:<16} {:>12} {:>10} {:>12} {:>10} {:>7}",
            name,
            d.train.tokens,
            d.train.docs,
            d.val.tokens,
            d.val.docs,
            d.train.shards.len() + d.val.shards.len()
        );
    }
    for name in m.domains.keys() {
        if ds.domain(name)?.train.n_docs() == 0 || a.samples == 0 {
            continue;
        }
        let cfg = SamplerConfig {
            batch_size: a.samples,
            seq_len: a.sample_tokens.max(1),
            seed: 0,
        };
        let batch = Sampler::new(ds.clone(), Mixture::single(name), cfg)?.next_batch();
        for r in 0..a.samples {
            println!(
                "\n--- {name}, sample {} ({} tokens) ---\n{}",
                r + 1,
                cfg.seq_len + 1,
                tok.decode(batch.row(r))?
            );
        }
    }
    Ok(())
}

fn builtin(a: BuiltinArgs) -> Result<()> {
    let domains = a
        .domains
        .iter()
        .map(|d| BuiltinDomain::from_name(d))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = BuiltinOptions {
        domains,
        docs_per_domain: a.docs_per_domain,
        vocab_size: a.vocab_size,
        seed: a.seed,
        val_fraction: a.val_fraction,
        ..Default::default()
    };
    let bar = DataProgress::new(None);
    let tok = build(&a.out, &opts, &|name, p| bar.update(name, p))?;
    let secs = bar.finish();
    let ds = Dataset::open(&a.out, Some(&tok.hash()))?;
    for d in &opts.domains {
        let dom = ds.domain(d.name())?;
        println!(
            "{:<8} {:>9} train tokens {:>7} val tokens  {}",
            d.name(),
            dom.train.n_tokens(),
            dom.val.n_tokens(),
            d.description()
        );
    }
    println!(
        "wrote {} in {secs:.1}s (tokenizer hash {})",
        a.out.display(),
        tok.hash_hex()
    );
    Ok(())
}
