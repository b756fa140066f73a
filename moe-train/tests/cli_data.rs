//! The data subcommands of the `moe` binary, end to end.

mod common;

use common::{moe, text};

use std::path::Path;

fn write_jsonl(path: &Path, n: usize) {
    let lines: String = (0..n)
        .map(|i| {
            serde_json::json!({"text": format!("Document {i}: the cat sat on mat {i}.\nZweite Zeile über {i}.")})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

#[test]
fn tokenizer_train_prepare_inspect_verify() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
    write_jsonl(&dir.path().join("a.jsonl"), 300);
    let o = moe(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "400",
        "--out",
        &p("tok.json"),
        &p("a.jsonl"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = moe(&[
        "prepare",
        "--tokenizer",
        &p("tok.json"),
        "--domain",
        "en",
        "--out",
        &p("data"),
        "--val-fraction",
        "0.1",
        "--seed",
        "3",
        &p("a.jsonl"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("300 documents"), "{}", text(&o));
    assert!(text(&o).contains("tokens/s"));
    let o = moe(&["data", "inspect", &p("data"), "--sample-tokens", "32"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("en ") && out.contains("--- en, sample 1 (33 tokens) ---") && out.contains("Document"),
        "{out}"
    );
    let o = moe(&["data", "verify", &p("data")]);
    assert!(o.status.success() && text(&o).contains("verified"), "{}", text(&o));
    // A corrupted token is caught by verify.
    let shard = dir.path().join("data/en/train-00000.bin");
    let mut b = std::fs::read(&shard).unwrap();
    b[300] ^= 1;
    std::fs::write(&shard, b).unwrap();
    let o = moe(&["data", "verify", &p("data")]);
    assert!(
        !o.status.success() && text(&o).contains("checksum mismatch"),
        "{}",
        text(&o)
    );
}

#[test]
fn errors_name_the_input_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
    write_jsonl(&dir.path().join("a.jsonl"), 50);
    assert!(moe(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "300",
        "--out",
        &p("tok.json"),
        &p("a.jsonl")
    ])
    .status
    .success());
    let o = moe(&[
        "prepare",
        "--tokenizer",
        &p("tok.json"),
        "--domain",
        "en",
        "--out",
        &p("data"),
        &p("missing.jsonl"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing.jsonl: no such file"), "{}", text(&o));
    std::fs::write(dir.path().join("bad.jsonl"), "{\"text\": \"ok\"}\nnot json\n").unwrap();
    let o = moe(&[
        "prepare",
        "--tokenizer",
        &p("tok.json"),
        "--domain",
        "en",
        "--out",
        &p("data"),
        &p("bad.jsonl"),
    ]);
    assert!(text(&o).contains("bad.jsonl:2: not a JSON object"), "{}", text(&o));
    assert!(!dir.path().join("data").exists());
    let o = moe(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "300",
        "--out",
        &p("t2.json"),
        &p("bad.jsonl"),
    ]);
    assert!(!o.status.success() && text(&o).contains("bad.jsonl:2"), "{}", text(&o));
    assert!(!dir.path().join("t2.json").exists());
    let o = moe(&["data", "inspect", &p("nowhere")]);
    assert!(!o.status.success() && text(&o).contains("manifest"), "{}", text(&o));
}

#[test]
fn builtin_dataset_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo").to_string_lossy().into_owned();
    let o = moe(&[
        "data",
        "builtin",
        "--out",
        &out,
        "--docs-per-domain",
        "300",
        "--vocab-size",
        "512",
        "--domains",
        "english,code",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("english") && text(&o).contains("code") && !text(&o).contains("german"));
    assert!(moe(&["data", "verify", &out]).status.success());
    for args in [
        &["--help"][..],
        &["prepare", "--help"],
        &["tokenizer", "train", "--help"],
        &["data", "builtin", "--help"],
    ] {
        let o = moe(args);
        assert!(o.status.success(), "{args:?}");
    }
    assert!(text(&moe(&["prepare", "--help"])).contains("--val-fraction"));
}
