//! Text → shards → decode gives the input back, for every input format.

mod common;

use common::{docs, jsonl, quiet, tokenizer};
use moe_data::prepare::is_val;
use moe_data::{prepare_files, Dataset, IngestOptions, PrepareOptions, TextSplit, Tokenizer};
use std::io::Write;
use std::path::{Path, PathBuf};

fn decode_split(tok: &Tokenizer, split: &moe_data::Split) -> Vec<String> {
    (0..split.n_docs())
        .map(|d| tok.decode(&split.doc_tokens(d)).unwrap())
        .collect()
}

/// Prepares `files` and checks that train and validation decode to the
/// expected documents in input order, split by the seeded rule.
fn check(files: &[PathBuf], split: TextSplit, expected: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let out = dir.path().join("data");
    let mut opts = PrepareOptions::new("dom");
    opts.val_fraction = 0.2;
    opts.seed = 11;
    opts.shard_tokens = 500; // several shards per split
    opts.chunk_bytes = 700; // several chunks
    let ingest = IngestOptions {
        text_split: split,
        ..Default::default()
    };
    let report = prepare_files(&tok, files, &ingest, &out, &opts, &quiet).unwrap();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, d) in expected.iter().enumerate() {
        if is_val(11, i as u64, 0.2) {
            &mut val
        } else {
            &mut train
        }
        .push(d.clone());
    }
    assert!(!val.is_empty() && !train.is_empty());
    let ds = Dataset::open(&out, Some(&tok.hash())).unwrap();
    ds.verify().unwrap();
    let dom = ds.domain("dom").unwrap();
    assert_eq!(decode_split(&tok, &dom.train), train);
    assert_eq!(decode_split(&tok, &dom.val), val);
    assert!(dom.train.shards().len() > 1, "expected several shards");
    assert_eq!(report.entry.ingest.documents, expected.len() as u64);
    assert_eq!(
        report.entry.ingest.bytes,
        expected.iter().map(|d| d.len() as u64).sum::<u64>()
    );
    assert_eq!(report.entry.train.docs, train.len() as u64);
    let tokens: u64 = train.iter().map(|d| tok.encode(d).unwrap().len() as u64).sum();
    assert_eq!(dom.train.n_tokens(), tokens);
    assert_eq!(dom.train.shards()[0].header().dtype, moe_data::shard::TokenDtype::U16);
    // The dataset keeps its own copy of the tokenizer.
    assert_eq!(ds.tokenizer().unwrap().hash(), tok.hash());
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

#[test]
fn txt_blank_line_split() {
    let dir = tempfile::tempdir().unwrap();
    let d = docs(40);
    // Paragraph-free docs only: blank lines separate documents here.
    let text = d.join("\n\n\n") + "\n";
    check(
        &[write(&dir.path().join("a.txt"), text.as_bytes())],
        TextSplit::BlankLine,
        &d,
    );
}

#[test]
fn txt_separator_split_across_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = docs(40);
    d[3] = "has\n\nblank lines inside\n".trim_end().to_string();
    let a = d[..25].join("\n<|doc|>\n");
    let b = d[25..].join("\r\n<|doc|>\r\n");
    let files = [
        write(&dir.path().join("a.txt"), a.as_bytes()),
        write(&dir.path().join("b.txt"), b.as_bytes()),
    ];
    check(&files, TextSplit::Separator("<|doc|>".into()), &d);
}

#[test]
fn txt_file_per_document() {
    let dir = tempfile::tempdir().unwrap();
    let d = docs(30);
    let files: Vec<PathBuf> = d
        .iter()
        .enumerate()
        .map(|(i, t)| write(&dir.path().join(format!("{i}.txt")), t.as_bytes()))
        .collect();
    check(&files, TextSplit::File, &d);
}

#[test]
fn jsonl_plain_gzip_and_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let d = docs(60);
    let plain = write(&dir.path().join("a.jsonl"), jsonl(&d[..20]).as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(jsonl(&d[20..40]).as_bytes()).unwrap();
    let gz = write(&dir.path().join("b.jsonl.gz"), &gz.finish().unwrap());
    let zst = zstd::encode_all(jsonl(&d[40..]).as_bytes(), 3).unwrap();
    let zst = write(&dir.path().join("c.jsonl.zst"), &zst);
    check(&[plain, gz, zst], TextSplit::BlankLine, &d);
}

#[test]
fn compressed_txt() {
    let dir = tempfile::tempdir().unwrap();
    let d = docs(30);
    let zst = zstd::encode_all((d.join("\n\n") + "\n").as_bytes(), 3).unwrap();
    check(&[write(&dir.path().join("a.txt.zst"), &zst)], TextSplit::BlankLine, &d);
}

#[test]
fn adding_a_second_domain_keeps_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let out = dir.path().join("data");
    let f = write(&dir.path().join("a.jsonl"), jsonl(&docs(20)).as_bytes());
    for name in ["one", "two"] {
        prepare_files(
            &tok,
            std::slice::from_ref(&f),
            &IngestOptions::default(),
            &out,
            &PrepareOptions::new(name),
            &quiet,
        )
        .unwrap();
    }
    let ds = Dataset::open(&out, None).unwrap();
    assert_eq!(ds.domains().keys().collect::<Vec<_>>(), ["one", "two"]);
    // Same name again needs --overwrite, which then replaces it.
    let e = prepare_files(
        &tok,
        std::slice::from_ref(&f),
        &IngestOptions::default(),
        &out,
        &PrepareOptions::new("one"),
        &quiet,
    );
    assert!(e.unwrap_err().to_string().contains("--overwrite"));
    let mut o = PrepareOptions::new("one");
    o.overwrite = true;
    o.val_fraction = 0.5;
    prepare_files(&tok, &[f], &IngestOptions::default(), &out, &o, &quiet).unwrap();
    let ds = Dataset::open(&out, None).unwrap();
    assert_eq!(ds.manifest().domains["one"].val_fraction, 0.5);
    ds.verify().unwrap();
}
