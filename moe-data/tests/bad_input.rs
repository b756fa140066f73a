//! Every bad input named in the issue gives a clear error (or a documented
//! count) and leaves nothing half-written behind.

mod common;

use common::{docs, jsonl, list, quiet, tokenizer, tokenizer_with};
use moe_data::{prepare_files, DataError, Dataset, IngestOptions, PrepareOptions, Utf8Policy};
use std::path::{Path, PathBuf};

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// Runs a prepare that must fail, and checks that `out` is exactly as it
/// was before (absent, or the same files).
fn fails(files: &[PathBuf], ingest: IngestOptions, out: &Path) -> DataError {
    let tok = tokenizer(out.parent().unwrap());
    let before = list(out);
    let existed = out.exists();
    let e = prepare_files(&tok, files, &ingest, out, &PrepareOptions::new("dom"), &quiet).unwrap_err();
    assert_eq!(out.exists(), existed, "output folder created or removed: {e}");
    assert_eq!(list(out), before, "files left behind after: {e}");
    e
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(&dir.path().join("a.jsonl"), jsonl(&docs(3)).as_bytes());
    let missing = dir.path().join("nope.jsonl");
    let e = fails(
        &[ok, missing.clone()],
        IngestOptions::default(),
        &dir.path().join("out"),
    );
    assert!(
        matches!(e, DataError::MissingFile { ref path } if *path == missing),
        "{e}"
    );
    assert!(e.to_string().contains("nope.jsonl"));
}

#[test]
fn unsupported_format_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir.path().join("a.parquet"), b"PAR1");
    let e = fails(&[f], IngestOptions::default(), &dir.path().join("out"));
    assert!(
        e.to_string().contains("a.parquet") && e.to_string().contains("unsupported"),
        "{e}"
    );
}

#[test]
fn jsonl_line_that_is_not_json_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = jsonl(&docs(4)) + "\n{\"text\": \"unterminated\n" + &jsonl(&docs(2));
    let f = write(&dir.path().join("bad.jsonl"), text.as_bytes());
    let e = fails(&[f], IngestOptions::default(), &dir.path().join("out"));
    assert!(matches!(e, DataError::BadJsonLine { line: 6, .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "{}:6: not a JSON object",
            dir.path().join("bad.jsonl").display()
        )),
        "{e}"
    );
}

#[test]
fn jsonl_line_without_the_field_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = jsonl(&docs(2)) + "{\"body\": \"x\"}\n";
    let f = write(
        &dir.path().join("bad.jsonl.zst"),
        &zstd::encode_all(text.as_bytes(), 1).unwrap(),
    );
    let e = fails(
        std::slice::from_ref(&f),
        IngestOptions::default(),
        &dir.path().join("out"),
    );
    assert!(
        matches!(e, DataError::MissingField { line: 3, ref field, .. } if field == "text"),
        "{e}"
    );
    // With the right field name the same file is fine, once `text` is not required.
    let ingest = IngestOptions {
        text_field: "body".into(),
        ..Default::default()
    };
    let e = fails(&[f], ingest, &dir.path().join("out"));
    assert!(matches!(e, DataError::MissingField { line: 1, .. }), "{e}");
}

#[test]
fn jsonl_field_that_is_not_a_string_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir.path().join("n.jsonl"), b"{\"text\": 42}\n");
    let e = fails(&[f], IngestOptions::default(), &dir.path().join("out"));
    assert!(
        e.to_string()
            .contains("n.jsonl:1: field `text` is missing or not a string"),
        "{e}"
    );
}

fn utf8_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut txt = b"good one\n\nbad \xff\xfe here\n\ngood two\n".to_vec();
    txt.extend_from_slice(b"\n\nanother bad \xc3\n");
    let mut js = jsonl(&docs(2)).into_bytes();
    js.extend_from_slice(b"{\"text\": \"bad \xe2\x82 json\"}\n");
    vec![write(&dir.join("u.txt"), &txt), write(&dir.join("u.jsonl"), &js)]
}

#[test]
fn invalid_utf8_is_skipped_and_counted_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let files = utf8_inputs(dir.path());
    let out = dir.path().join("out");
    let mut o = PrepareOptions::new("dom");
    o.val_fraction = 0.0;
    let r = prepare_files(&tok, &files, &IngestOptions::default(), &out, &o, &quiet).unwrap();
    assert_eq!(r.entry.ingest.invalid_utf8_documents, 3);
    assert_eq!(r.entry.ingest.documents, 4);
    let ex = &r.entry.ingest.invalid_utf8_examples;
    assert!(
        ex[0].ends_with("u.txt:3") && ex[1].ends_with("u.txt:8") && ex[2].ends_with("u.jsonl:3"),
        "{ex:?}"
    );
    let ds = Dataset::open(&out, None).unwrap();
    let texts: Vec<String> = (0..4)
        .map(|d| tok.decode(&ds.domain("dom").unwrap().train.doc_tokens(d)).unwrap())
        .collect();
    assert_eq!(&texts[..2], ["good one", "good two"]);
}

#[test]
fn invalid_utf8_replace_policy_keeps_documents() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let out = dir.path().join("out");
    let ingest = IngestOptions {
        utf8: Utf8Policy::Replace,
        ..Default::default()
    };
    let mut o = PrepareOptions::new("dom");
    o.val_fraction = 0.0;
    let r = prepare_files(&tok, &utf8_inputs(dir.path()), &ingest, &out, &o, &quiet).unwrap();
    assert_eq!(
        (r.entry.ingest.documents, r.entry.ingest.invalid_utf8_documents),
        (7, 3)
    );
    let ds = Dataset::open(&out, None).unwrap();
    let t = tok.decode(&ds.domain("dom").unwrap().train.doc_tokens(1)).unwrap();
    assert_eq!(t, "bad \u{fffd}\u{fffd} here");
}

#[test]
fn invalid_utf8_error_policy_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = IngestOptions {
        utf8: Utf8Policy::Error,
        ..Default::default()
    };
    let e = fails(&utf8_inputs(dir.path()), ingest, &dir.path().join("out"));
    assert!(
        matches!(
            e,
            DataError::InvalidUtf8 {
                line: 3,
                document: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("u.txt"));
}

#[test]
fn empty_documents_are_skipped_and_counted_and_all_empty_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let text = "{\"text\": \"\"}\n{\"text\": \"  \\n \"}\n{\"text\": \"real\"}\n\n";
    let f = write(&dir.path().join("e.jsonl"), text.as_bytes());
    let mut o = PrepareOptions::new("dom");
    o.val_fraction = 0.0;
    let r = prepare_files(
        &tok,
        &[f],
        &IngestOptions::default(),
        &dir.path().join("ok"),
        &o,
        &quiet,
    )
    .unwrap();
    assert_eq!((r.entry.ingest.documents, r.entry.ingest.empty_documents), (1, 2));

    let f = write(
        &dir.path().join("all_empty.jsonl"),
        b"{\"text\": \"\"}\n{\"text\": \" \"}\n",
    );
    let sep = write(&dir.path().join("s.txt"), b"---\n---\n   \n---\n");
    let ingest = IngestOptions {
        text_split: moe_data::TextSplit::Separator("---".into()),
        ..Default::default()
    };
    for (files, ingest) in [(vec![f], IngestOptions::default()), (vec![sep], ingest)] {
        let e = fails(&files, ingest, &dir.path().join("out"));
        assert!(matches!(e, DataError::NoDocuments { skipped_empty: 2.., .. }), "{e}");
    }
}

#[test]
fn failure_leaves_an_existing_dataset_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let out = dir.path().join("out");
    let good = write(&dir.path().join("g.jsonl"), jsonl(&docs(30)).as_bytes());
    prepare_files(
        &tok,
        std::slice::from_ref(&good),
        &IngestOptions::default(),
        &out,
        &PrepareOptions::new("dom"),
        &quiet,
    )
    .unwrap();
    // The error comes after many documents, so shards were being written.
    let bad = write(&dir.path().join("b.jsonl"), (jsonl(&docs(200)) + "oops\n").as_bytes());
    let before = list(&out);
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    let mut o = PrepareOptions::new("dom");
    o.overwrite = true;
    o.shard_tokens = 100;
    let e = prepare_files(&tok, &[good, bad], &IngestOptions::default(), &out, &o, &quiet).unwrap_err();
    assert!(e.to_string().contains("b.jsonl:201"), "{e}");
    assert_eq!(list(&out), before);
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), manifest);
    Dataset::open(&out, None).unwrap().verify().unwrap();
}

#[test]
fn preparing_with_another_tokenizer_into_a_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let other = tokenizer_with(dir.path(), 700, "other.json");
    assert_ne!(tok.hash(), other.hash());
    let out = dir.path().join("out");
    let f = write(&dir.path().join("g.jsonl"), jsonl(&docs(5)).as_bytes());
    prepare_files(
        &tok,
        std::slice::from_ref(&f),
        &IngestOptions::default(),
        &out,
        &PrepareOptions::new("a"),
        &quiet,
    )
    .unwrap();
    let before = list(&out);
    let e = prepare_files(
        &other,
        &[f],
        &IngestOptions::default(),
        &out,
        &PrepareOptions::new("b"),
        &quiet,
    )
    .unwrap_err();
    assert!(matches!(e, DataError::TokenizerMismatch { .. }), "{e}");
    assert_eq!(list(&out), before);
}
