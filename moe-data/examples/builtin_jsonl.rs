//! Writes built-in corpus documents as JSONL (`{"text": ...}` per line),
//! domains interleaved: test and benchmark input that needs no download.
//! `cargo run -p moe-data --release --example builtin_jsonl -- OUT.jsonl DOCS_PER_DOMAIN [SEED]`

use anyhow::{Context, Result};
use moe_data::builtin::BuiltinDomain;
use std::io::{BufWriter, Write};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(out), Some(n)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: builtin_jsonl OUT.jsonl DOCS_PER_DOMAIN [SEED]");
    };
    let n: u64 = n.parse().context("DOCS_PER_DOMAIN")?;
    let seed: u64 = args.get(2).map(|s| s.parse()).transpose().context("SEED")?.unwrap_or(0);
    let mut w = BufWriter::new(std::fs::File::create(out).with_context(|| out.clone())?);
    for i in 0..n {
        for d in BuiltinDomain::ALL {
            writeln!(
                w,
                "{}",
                serde_json::json!({ "text": d.document(seed, i), "domain": d.name() })
            )?;
        }
    }
    w.flush()?;
    Ok(())
}
