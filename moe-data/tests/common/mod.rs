//! Helpers shared by the integration tests.
#![allow(dead_code)]

use moe_data::tokenizer::{train_bpe, BpeOptions};
use moe_data::Tokenizer;
use std::path::{Path, PathBuf};

/// A small byte-level BPE trained on varied text (vocab 600).
pub fn tokenizer(dir: &Path) -> Tokenizer {
    tokenizer_with(dir, 600, "tok.json")
}

/// Same corpus, another vocabulary size: a different tokenizer.
pub fn tokenizer_with(dir: &Path, vocab: usize, name: &str) -> Tokenizer {
    let corpus: Vec<String> = (0..300).flat_map(doc_pair).collect();
    let json = train_bpe(
        corpus.into_iter(),
        &BpeOptions {
            vocab_size: vocab,
            ..Default::default()
        },
    )
    .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    Tokenizer::from_file(&path, None).unwrap()
}

fn doc_pair(i: usize) -> [String; 2] {
    [
        doc(i),
        format!("def f_{i}(x):\n    return x * {i}  # Größe über Straße"),
    ]
}

/// Document `i` of the test corpus: unique, multi-line, some non-ASCII.
pub fn doc(i: usize) -> String {
    let extra = "the quick brown fox jumps over the lazy dog ".repeat(i % 7);
    format!(
        "Document {i} says hello.\n{extra}Zürich café №{i} ✓.\n  indented line {}",
        i * 31 % 97
    )
}

/// `n` test documents.
pub fn docs(n: usize) -> Vec<String> {
    (0..n).map(doc).collect()
}

/// Every file under `dir`, relative, sorted.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
                if p.is_dir() {
                    walk(root, &p, out);
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Writes JSONL lines `{"id": i, "text": doc}`.
pub fn jsonl(docs: &[String]) -> String {
    docs.iter()
        .enumerate()
        .map(|(i, d)| serde_json::json!({"id": i, "text": d, "meta": {"a": [1, 2]}}).to_string() + "\n")
        .collect()
}

/// A no-op progress callback.
pub fn quiet(_: &moe_data::Progress) {}
