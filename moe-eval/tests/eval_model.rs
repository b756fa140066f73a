//! Validation loss and routing collection on real (tiny, random) models,
//! checked against an independent per-window computation; `moe eval`'s
//! library entry points and their errors.

mod common;

use common::*;
use moe_data::ValWindows;
use moe_eval::eval::{compare_checkpoints, evaluate_checkpoint, EvalOptions};
use moe_eval::routing::collect::evaluate_domain;
use moe_eval::{domain_loss, EvalError};
use moe_router::RouteMode;
use moe_tensor::{no_grad, Device, Tensor};

fn windows(vocab: usize, n: usize, t: usize, seed: u64) -> ValWindows {
    let mut x = seed;
    let tokens = (0..n * (t + 1))
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % vocab as u64) as u32
        })
        .collect();
    ValWindows {
        domain: "synthetic".into(),
        seq_len: t,
        tokens,
    }
}

/// Mean CE by hand: per window, one forward, log-softmax in f64 over the logits.
fn reference_loss(model: &moe_model::Decoder, w: &ValWindows) -> f64 {
    let mut m = model.clone();
    m.set_route_mode(RouteMode::Eval);
    let v = model.config().vocab_size;
    let (mut sum, mut n) = (0.0, 0usize);
    no_grad(|| {
        for i in 0..w.len() {
            let row = w.window(i);
            let ids: Vec<i64> = row.iter().map(|&t| t as i64).collect();
            let ids = Tensor::from_vec(ids, (1, row.len()), &Device::Cpu).unwrap();
            let logits = m.forward(&ids).unwrap().logits.to_vec_f64().unwrap();
            for p in 0..w.seq_len {
                let l = &logits[p * v..(p + 1) * v];
                let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + l.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
                sum += lse - l[row[p + 1] as usize];
                n += 1;
            }
        }
    });
    sum / n as f64
}

#[test]
fn domain_loss_matches_per_window_reference_for_any_batch_size() {
    for moe in [false, true] {
        let model = tiny_model(64, moe, 3);
        let w = windows(64, 7, 12, 11);
        let want = reference_loss(&model, &w);
        for b in [1, 3, 100] {
            let got = domain_loss(&model, &w, b).unwrap();
            assert!(
                (got.loss - want).abs() < 1e-5,
                "moe {moe} batch {b}: {} vs {want}",
                got.loss
            );
            assert!((got.ppl - want.exp()).abs() < 1e-4 * want.exp());
            assert_eq!(got.tokens, 7 * 12);
            assert_eq!(got.domain, "synthetic");
        }
        assert_eq!(
            model.route_mode(),
            RouteMode::Train,
            "the caller's model keeps its mode"
        );
    }
}

#[test]
fn domain_loss_rejects_bad_input() {
    let model = tiny_model(64, false, 0);
    let w = windows(64, 2, 4, 0);
    assert!(domain_loss(&model, &w, 0)
        .unwrap_err()
        .to_string()
        .contains("batch_size"));
    let mut bad = w.clone();
    bad.tokens[5] = 64;
    let err = domain_loss(&model, &bad, 2).unwrap_err().to_string();
    assert!(err.contains("token id 64 at position 5"), "{err}");
}

#[test]
fn routing_trace_covers_every_position_and_dense_is_refused() {
    let model = tiny_model(64, true, 5);
    let w = windows(64, 5, 9, 2);
    let ev = evaluate_domain(&model, "tiny", &w, 2, true, |_, _| {}).unwrap();
    let tr = ev.trace.unwrap();
    assert_eq!(tr.num_tokens(), 5 * 10);
    assert_eq!(tr.batch_sizes, vec![20, 20, 10]);
    assert_eq!(tr.layers.len(), 2);
    for l in &tr.layers {
        assert_eq!((l.num_experts, l.top_k, l.topk_ids_NK.len()), (4, 2, 100));
    }
    assert_eq!(tr.token_ids_N, w.tokens);
    let loss = domain_loss(&model, &w, 2).unwrap();
    assert_eq!(ev.loss, loss);
    let dense = tiny_model(64, false, 5);
    let err = evaluate_domain(&dense, "dense.ckpt", &w, 2, true, |_, _| {}).unwrap_err();
    assert!(matches!(err, EvalError::DenseModel { .. }), "{err}");
    assert!(err.to_string().contains("dense.ckpt"));
}

#[test]
fn checkpoint_eval_compare_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, other) = (tmp.path().join("data"), tmp.path().join("other"));
    let vocab = tiny_dataset(&data, 0, 300);
    tiny_dataset(&other, 1, 290);
    let (moe_dir, dense_dir, moe2_dir) = (
        tmp.path().join("moe"),
        tmp.path().join("dense"),
        tmp.path().join("moe2"),
    );
    save_checkpoint(&tiny_model(vocab, true, 1), &moe_dir, &data);
    save_checkpoint(&tiny_model(vocab, false, 1), &dense_dir, &data);
    save_checkpoint(&tiny_model(vocab, true, 2), &moe2_dir, &data);
    let opts = EvalOptions {
        routing: true,
        seq_len: Some(16),
        max_windows: 6,
        batch_size: 2,
        vocab_min_count: 1,
        ..Default::default()
    };

    let ev = evaluate_checkpoint(&moe_dir, &data, &opts, |_, _, _| {}).unwrap();
    assert_eq!(ev.domains.len(), 2);
    assert_eq!((ev.moe_layers, ev.num_experts, ev.top_k), (2, 4, 2));
    for d in &ev.domains {
        let r = d.routing.as_ref().unwrap();
        assert_eq!(r.layers.len(), 2);
        assert_eq!(r.layers[0].mri_per_batch.len(), 3);
        assert!((r.layers[0].load_share.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(r.vocab[0]
            .experts
            .iter()
            .flat_map(|e| &e.top_tokens)
            .all(|t| t.text.is_some()));
        assert_eq!(d.loss.tokens, 6 * 16);
    }
    // eval.json round-trips.
    let json = serde_json::to_string(&ev).unwrap();
    let back: moe_eval::CheckpointEval = serde_json::from_str(&json).unwrap();
    assert_eq!(back.domains[0].loss, ev.domains[0].loss);

    // The same checkpoint twice: routing change exactly 0; another one: > 0.
    let same = compare_checkpoints(&moe_dir, &moe_dir, &data, &opts, |_, _, _| {}).unwrap();
    for d in &same.domains {
        assert!(d.layers.iter().all(|l| l.change == 0.0 && l.saturation == 1.0));
    }
    let diff = compare_checkpoints(&moe_dir, &moe2_dir, &data, &opts, |_, _, _| {}).unwrap();
    assert!(diff.domains[0].layers.iter().any(|l| l.change > 0.0));

    // Bad input: dense asked for routing, missing domain, other tokenizer.
    let err = evaluate_checkpoint(&dense_dir, &data, &opts, |_, _, _| {}).unwrap_err();
    assert!(matches!(err, EvalError::DenseModel { .. }), "{err}");
    let no_routing = EvalOptions {
        routing: false,
        ..opts.clone()
    };
    assert!(evaluate_checkpoint(&dense_dir, &data, &no_routing, |_, _, _| {}).is_ok());
    let missing = EvalOptions {
        domains: vec!["klingon".into()],
        ..opts.clone()
    };
    let err = evaluate_checkpoint(&moe_dir, &data, &missing, |_, _, _| {}).unwrap_err();
    assert!(matches!(err, EvalError::MissingDomain { .. }), "{err}");
    assert!(
        err.to_string().contains("klingon") && err.to_string().contains("english, german"),
        "{err}"
    );
    let err = evaluate_checkpoint(&moe_dir, &other, &opts, |_, _, _| {}).unwrap_err();
    assert!(matches!(err, EvalError::TokenizerMismatch { .. }), "{err}");
    assert!(err.to_string().contains("different tokenizers"), "{err}");
    let err = compare_checkpoints(&moe_dir, &dense_dir, &data, &opts, |_, _, _| {}).unwrap_err();
    assert!(matches!(err, EvalError::DenseModel { .. }), "{err}");
}
