//! The built-in corpus builds offline, identically every time, into
//! domains whose token statistics clearly differ.

use moe_data::builtin::{build, BuiltinDomain, BuiltinOptions};
use moe_data::Dataset;

fn opts() -> BuiltinOptions {
    BuiltinOptions {
        docs_per_domain: 400,
        vocab_size: 512,
        tokenizer_docs: 200,
        ..Default::default()
    }
}

/// Unigram distribution of a split's tokens.
fn unigrams(split: &moe_data::Split, vocab: usize) -> Vec<f64> {
    let mut c = vec![0f64; vocab];
    for d in 0..split.n_docs() {
        for t in split.doc_tokens(d) {
            c[t as usize] += 1.0;
        }
    }
    let n: f64 = c.iter().sum();
    c.iter().map(|x| x / n).collect()
}

#[test]
fn builds_deterministically_with_distinct_domains() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let ta = build(&a, &opts(), &|_, _| {}).unwrap();
    let tb = build(&b, &opts(), &|_, _| {}).unwrap();
    assert_eq!(ta.hash(), tb.hash(), "tokenizer training is deterministic");
    let (da, db) = (Dataset::open(&a, None).unwrap(), Dataset::open(&b, None).unwrap());
    let strip = |m: &moe_data::Manifest| serde_json::to_string(&m.domains).unwrap();
    assert_eq!(
        strip(da.manifest()),
        strip(db.manifest()),
        "same shards, same checksums"
    );
    da.verify().unwrap();
    assert_eq!(da.domains().keys().collect::<Vec<_>>(), ["code", "english", "german"]);

    let v = da.vocab_size() as usize;
    let u: Vec<Vec<f64>> = BuiltinDomain::ALL
        .iter()
        .map(|d| unigrams(&da.domain(d.name()).unwrap().train, v))
        .collect();
    // Total-variation distance between every pair of domains.
    for i in 0..3 {
        for j in i + 1..3 {
            let tv: f64 = u[i].iter().zip(&u[j]).map(|(p, q)| (p - q).abs()).sum::<f64>() / 2.0;
            assert!(tv > 0.5, "domains {i} and {j} too similar: TV {tv}");
        }
    }
    for d in BuiltinDomain::ALL {
        let dom = da.domain(d.name()).unwrap();
        assert!(dom.val.n_docs() > 5 && dom.train.n_docs() > 300);
        let text = ta.decode(&dom.train.doc_tokens(0)).unwrap();
        assert!(
            (0..400).any(|i| d.document(0, i) == text),
            "decodes to a generated document"
        );
    }
    assert!(build(&a, &opts(), &|_, _| {})
        .unwrap_err()
        .to_string()
        .contains("already holds"));
}
