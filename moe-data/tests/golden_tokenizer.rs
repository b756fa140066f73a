//! The committed tokenizer golden (tools/goldens/tokenizer/, checked
//! against transformers by check.py) still encodes identically here.

use moe_data::Tokenizer;
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/goldens/tokenizer")
        .join(name)
}

#[test]
fn committed_tokenizer_encodes_as_transformers_did() {
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("result.json")).unwrap()).unwrap();
    assert_eq!(result["ok"], true, "the committed Python check did not pass");
    let tok = Tokenizer::from_file(&golden("tokenizer.json"), None).unwrap();
    let texts = std::fs::read_to_string(golden("texts.jsonl")).unwrap();
    let ids = std::fs::read_to_string(golden("rust_ids.jsonl")).unwrap();
    let mut n = 0;
    for (t, i) in texts.lines().zip(ids.lines()) {
        let text: serde_json::Value = serde_json::from_str(t).unwrap();
        let text = text["text"].as_str().unwrap();
        let expected: serde_json::Value = serde_json::from_str(i).unwrap();
        let expected: Vec<u32> = serde_json::from_value(expected["ids"].clone()).unwrap();
        assert_eq!(tok.encode(text).unwrap(), expected, "text {n}: {text:?}");
        assert_eq!(tok.decode(&expected).unwrap(), text);
        n += 1;
    }
    assert_eq!(n, result["texts"].as_u64().unwrap() as usize);
}
