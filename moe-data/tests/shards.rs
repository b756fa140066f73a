//! Shard reading: truncated, corrupted and foreign shards are refused with
//! a message naming the file; the u32 layout round-trips.

mod common;

use common::{docs, jsonl, quiet, tokenizer, tokenizer_with};
use moe_data::shard::{Shard, ShardWriter, TokenDtype, Tokens};
use moe_data::{prepare_files, DataError, Dataset, IngestOptions, PrepareOptions};
use std::path::{Path, PathBuf};

/// A dataset with one domain; returns (dataset dir, first train shard).
fn dataset(dir: &Path, tok: &moe_data::Tokenizer, name: &str) -> (PathBuf, PathBuf) {
    let f = dir.join(format!("{name}.jsonl"));
    std::fs::write(&f, jsonl(&docs(50))).unwrap();
    let out = dir.join(name);
    prepare_files(
        tok,
        &[f],
        &IngestOptions::default(),
        &out,
        &PrepareOptions::new("dom"),
        &quiet,
    )
    .unwrap();
    let shard = out.join("dom").join("train-00000.bin");
    (out, shard)
}

fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

#[test]
fn truncated_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let (out, shard) = dataset(dir.path(), &tok, "a");
    modify(&shard, |b| b.truncate(b.len() - 3));
    let e = Dataset::open(&out, None).unwrap_err();
    assert!(
        matches!(e, DataError::CorruptShard { ref path, .. } if *path == shard),
        "{e}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");
    modify(&shard, |b| b.truncate(40));
    assert!(Shard::open(&shard, None)
        .unwrap_err()
        .to_string()
        .contains("shorter than the 128-byte header"));
    modify(&shard, |b| b.clear());
    assert!(Shard::open(&shard, None).is_err());
    std::fs::remove_file(&shard).unwrap();
    assert!(matches!(
        Dataset::open(&out, None).unwrap_err(),
        DataError::MissingFile { .. }
    ));
}

#[test]
fn corrupted_header_index_and_tokens_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let (out, shard) = dataset(dir.path(), &tok, "a");
    let clean = std::fs::read(&shard).unwrap();

    modify(&shard, |b| b[30] ^= 0x40); // token count
    assert!(Dataset::open(&out, None)
        .unwrap_err()
        .to_string()
        .contains("header checksum"));

    std::fs::write(&shard, &clean).unwrap();
    modify(&shard, |b| {
        let n = b.len();
        b[n - 10] ^= 0x80; // second-to-last document offset, high byte
    });
    let e = Dataset::open(&out, None).unwrap_err();
    assert!(e.to_string().contains("document index"), "{e}");

    // A flip that keeps the index increasing is only seen by the checksum.
    std::fs::write(&shard, &clean).unwrap();
    modify(&shard, |b| {
        let n = b.len();
        b[n - 16] ^= 0x01;
    });
    let e = Dataset::open(&out, None).unwrap().verify().unwrap_err();
    assert!(matches!(e, DataError::ChecksumMismatch { .. }), "{e}");

    std::fs::write(&shard, &clean).unwrap();
    modify(&shard, |b| b[200] ^= 0x01); // a token id: structure intact
    let ds = Dataset::open(&out, None).unwrap();
    let e = ds.verify().unwrap_err();
    assert!(
        matches!(e, DataError::ChecksumMismatch { ref path, .. } if *path == shard),
        "{e}"
    );

    std::fs::write(&shard, &clean).unwrap();
    modify(&out.join("manifest.json"), |b| {
        let s = String::from_utf8(b.clone())
            .unwrap()
            .replacen("\"docs\"", "\"dokz\"", 1);
        *b = s.into_bytes();
    });
    let e = Dataset::open(&out, None).unwrap_err();
    assert!(matches!(e, DataError::Manifest { .. }), "{e}");
}

#[test]
fn shards_from_another_tokenizer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let other = tokenizer_with(dir.path(), 700, "other.json");
    let (out_a, shard_a) = dataset(dir.path(), &tok, "a");
    let (out_b, shard_b) = dataset(dir.path(), &other, "b");
    // A model whose tokenizer differs from the dataset's.
    let e = Dataset::open(&out_a, Some(&other.hash())).unwrap_err();
    assert!(matches!(e, DataError::TokenizerMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&other.hash_hex()) && e.to_string().contains(&tok.hash_hex()));
    Dataset::open(&out_b, Some(&other.hash())).unwrap();
    // A shard copied in from a dataset made with another tokenizer.
    std::fs::copy(&shard_b, &shard_a).unwrap();
    let e = Dataset::open(&out_a, None).unwrap_err();
    assert!(
        matches!(e, DataError::TokenizerMismatch { ref path, .. } if *path == shard_a),
        "{e}"
    );
    let e = Shard::open(&shard_a, Some(&tok.hash())).unwrap_err();
    assert!(matches!(e, DataError::TokenizerMismatch { .. }), "{e}");
}

#[test]
fn u32_shards_round_trip_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.bin");
    let mut w = ShardWriter::create(&path, 100_000, [9; 32]).unwrap();
    let docs: Vec<Vec<u32>> = vec![vec![0, 99_999, 65_536], vec![7], vec![1, 2, 3, 4, 5]];
    for d in &docs {
        w.push_doc(d).unwrap();
    }
    assert!(w.push_doc(&[100_000]).unwrap_err().to_string().contains("100000"));
    let entry = w.finish().unwrap();
    assert_eq!((entry.tokens, entry.docs), (9, 3));
    let s = Shard::open(&path, Some(&[9; 32])).unwrap();
    assert_eq!(s.header().dtype, TokenDtype::U32);
    assert!(matches!(s.tokens(), Tokens::U32(_)));
    for (i, d) in docs.iter().enumerate() {
        let mut v = Vec::new();
        s.tokens().extend_into(s.doc_range(i), &mut v);
        assert_eq!(&v, d);
    }
    s.check_ids().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 128 + 40 + 32);
}
