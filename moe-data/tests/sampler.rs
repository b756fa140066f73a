//! Mixture proportions, packing and epochs, exact resume, and validation
//! windows that never touch training documents.

mod common;

use common::{docs, quiet, tokenizer};
use moe_data::builtin::BuiltinDomain;
use moe_data::prepare::is_val;
use moe_data::sampler::permutation;
use moe_data::{prepare_documents, Dataset, Mixture, PrepareOptions, Sampler, SamplerConfig, SamplerState, ValWindows};
use std::sync::Arc;

const SEED: u64 = 5;
const VAL: f64 = 0.25;

/// Domain `a`: 120 test documents with unique `Document N` markers;
/// domain `b`: 80 built-in code documents.
fn dataset(dir: &std::path::Path) -> (Arc<Dataset>, moe_data::Tokenizer) {
    let tok = tokenizer(dir);
    let out = dir.join("data");
    for (name, d) in [("a", docs(120)), ("b", BuiltinDomain::Code.documents(1, 80).collect())] {
        let mut o = PrepareOptions::new(name);
        o.val_fraction = VAL;
        o.seed = SEED;
        o.shard_tokens = 1000;
        prepare_documents(&tok, d.into_iter(), vec![], &out, &o, &quiet).unwrap();
    }
    (Arc::new(Dataset::open(&out, Some(&tok.hash())).unwrap()), tok)
}

fn cfg(batch_size: usize, seq_len: usize) -> SamplerConfig {
    SamplerConfig {
        batch_size,
        seq_len,
        seed: 42,
    }
}

#[test]
fn mixture_shares_hold_within_one_row_at_every_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, _) = dataset(dir.path());
    for spec in ["a=0.7,b=0.3", "a=0.6,b=0.4", "a=0.9,b=0.1", "a=1,b=1"] {
        let mix = Mixture::parse(spec).unwrap();
        let w: Vec<f64> = mix.entries().iter().map(|e| e.1).collect();
        let mut s = Sampler::new(ds.clone(), mix, cfg(8, 16)).unwrap();
        let mut rows = [0u64; 2];
        let mut n = 0u64;
        for _ in 0..300 {
            let b = s.next_batch();
            assert_eq!(b.tokens.len(), 8 * 17);
            for &d in &b.domains {
                rows[d as usize] += 1;
                n += 1;
                for i in 0..2 {
                    let err = (rows[i] as f64 - w[i] * n as f64).abs();
                    assert!(err < 1.0, "{spec}: domain {i} off by {err} rows after {n}");
                }
            }
        }
        let st = s.state();
        for (i, d) in st.domains.iter().enumerate() {
            assert_eq!(d.rows, rows[i]);
            assert_eq!(d.tokens_served, rows[i] * 16);
        }
        // Token shares equal row shares (every row serves T tokens).
        let share = st.domains[0].tokens_served as f64 / (n * 16) as f64;
        assert!((share - w[0]).abs() < 1.0 / n as f64, "{spec}: token share {share}");
    }
}

#[test]
fn packing_follows_the_seeded_permutation_and_reshuffles_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, _) = dataset(dir.path());
    let split = &ds.domain("a").unwrap().train;
    let eod = ds.eod_id();
    let (t, rows) = (17, 3);
    let mut s = Sampler::new(ds.clone(), Mixture::single("a"), cfg(rows, t)).unwrap();
    // Expected stream: three epochs of documents in their permutations.
    let mut expected = Vec::new();
    let perms: Vec<Vec<u32>> = (0..3).map(|e| permutation(42, "a", e, split.n_docs())).collect();
    assert_ne!(perms[0], perms[1]);
    for p in &perms {
        for &d in p {
            expected.extend(split.doc_tokens(d as usize));
            expected.push(eod);
        }
    }
    let epoch_len = split.n_tokens() as usize + split.n_docs();
    let mut stream: Vec<u32> = Vec::new();
    let mut epochs_seen = Vec::new();
    while stream.len() < 2 * epoch_len + 100 {
        let b = s.next_batch();
        for r in 0..rows {
            let row = b.row(r);
            if let Some(&last) = stream.last() {
                assert_eq!(row[0], last, "rows overlap by exactly one token");
                stream.extend_from_slice(&row[1..]);
            } else {
                stream.extend_from_slice(row);
            }
        }
        epochs_seen.push(s.state().domains[0].epoch);
    }
    assert_eq!(&stream[..], &expected[..stream.len()]);
    assert_eq!(*epochs_seen.last().unwrap(), ((stream.len() - 1) / epoch_len) as u64);
    assert!(epochs_seen.windows(2).all(|w| w[1] >= w[0]));
}

#[test]
fn restoring_the_state_gives_byte_identical_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, _) = dataset(dir.path());
    let mix = Mixture::parse("a=0.7,b=0.3").unwrap();
    for k in [0usize, 1, 7, 60, 233] {
        let mut s = Sampler::new(ds.clone(), mix.clone(), cfg(4, 29)).unwrap();
        for _ in 0..k {
            s.next_batch();
        }
        let json = serde_json::to_string(&s.state()).unwrap();
        assert!(json.len() < 1024, "state is small: {} bytes", json.len());
        let state: SamplerState = serde_json::from_str(&json).unwrap();
        let mut r = Sampler::from_state(ds.clone(), &state).unwrap();
        for i in 0..40 {
            let (a, b) = (s.next_batch(), r.next_batch());
            assert_eq!(a, b, "after {k} batches, batch {i} differs");
        }
        assert_eq!(s.state(), r.state());
    }
}

#[test]
fn states_that_do_not_fit_the_dataset_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, _) = dataset(dir.path());
    let mut s = Sampler::new(ds.clone(), Mixture::parse("a=1,b=1").unwrap(), cfg(2, 8)).unwrap();
    s.next_batch();
    let good = s.state();
    let mut bad = good.clone();
    bad.domains[0].train_docs += 1;
    assert!(Sampler::from_state(ds.clone(), &bad)
        .unwrap_err()
        .to_string()
        .contains("training documents"));
    let mut bad = good.clone();
    bad.domains[1].doc_pos = 10_000;
    assert!(Sampler::from_state(ds.clone(), &bad).is_err());
    let mut bad = good.clone();
    bad.domains[0].tok_pos = 1_000_000;
    assert!(Sampler::from_state(ds.clone(), &bad)
        .unwrap_err()
        .to_string()
        .contains("token position"));
    let mut bad = good.clone();
    bad.tokenizer_hash = "00".repeat(32);
    assert!(Sampler::from_state(ds.clone(), &bad)
        .unwrap_err()
        .to_string()
        .contains("tokenizer"));
    let mut bad = good;
    bad.domains.swap(0, 1);
    assert!(Sampler::from_state(ds.clone(), &bad).is_err());
    assert!(Sampler::new(ds.clone(), Mixture::single("zzz"), cfg(2, 8))
        .unwrap_err()
        .to_string()
        .contains("a, b"));
    assert!(Sampler::new(ds, Mixture::single("a"), cfg(0, 8)).is_err());
}

/// `Document N` markers in a text.
fn markers(text: &str) -> Vec<u64> {
    text.split("Document ")
        .skip(1)
        .filter_map(|s| s.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn validation_windows_are_fixed_and_never_hold_training_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, tok) = dataset(dir.path());
    let v = ValWindows::new(&ds, "a", 24, 1000).unwrap();
    assert_eq!(v, ValWindows::new(&ds, "a", 24, 1000).unwrap());
    let val_split = &ds.domain("a").unwrap().val;
    // All validation tokens, separators included, cut into whole windows.
    assert_eq!(v.len(), (val_split.n_tokens() as usize + val_split.n_docs()) / 25);
    assert_eq!(ValWindows::new(&ds, "a", 24, 3).unwrap().tokens, v.tokens[..75]);
    let val_text = tok.decode(&v.tokens).unwrap();
    let val_ids = markers(&val_text);
    assert!(val_ids.len() > 10);
    assert!(
        val_ids.iter().all(|&i| is_val(SEED, i, VAL)),
        "a training document in validation"
    );
    // Training batches only ever show training documents.
    let mut s = Sampler::new(ds.clone(), Mixture::single("a"), cfg(8, 64)).unwrap();
    let mut train_ids = Vec::new();
    for _ in 0..100 {
        train_ids.extend(markers(&tok.decode(&s.next_batch().tokens).unwrap()));
    }
    assert!(s.state().domains[0].epoch >= 1);
    assert!(!train_ids.is_empty() && train_ids.iter().all(|&i| !is_val(SEED, i, VAL)));
    let e = ValWindows::new(&ds, "a", 1_000_000, 1).unwrap_err();
    assert!(e.to_string().contains("fewer than one window"), "{e}");
}
