//! Encodes the `text` field of each JSONL line with a tokenizer.json and
//! writes `{"ids": [...], "decoded": "..."}` lines: the Rust side of the
//! tokenizer golden check in tools/goldens/tokenizer/.
//! `cargo run -p moe-data --release --example encode_jsonl -- TOKENIZER IN.jsonl OUT.jsonl`

use anyhow::{Context, Result};
use moe_data::Tokenizer;
use std::io::Write;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tok, input, output] = args.as_slice() else {
        anyhow::bail!("usage: encode_jsonl TOKENIZER IN.jsonl OUT.jsonl");
    };
    let tok = Tokenizer::from_file(tok.as_ref(), None)?;
    let mut out = std::fs::File::create(output).with_context(|| output.clone())?;
    for (i, line) in std::fs::read_to_string(input)
        .with_context(|| input.clone())?
        .lines()
        .enumerate()
    {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{input}:{}", i + 1))?;
        let text = v["text"]
            .as_str()
            .with_context(|| format!("{input}:{}: no text", i + 1))?;
        let ids = tok.encode(text)?;
        let decoded = tok.decode(&ids)?;
        writeln!(out, "{}", serde_json::json!({"ids": ids, "decoded": decoded}))?;
    }
    Ok(())
}
