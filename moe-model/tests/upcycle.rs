//! Upcycling acceptance tests: naive upcycling reproduces the dense logits (our
//! model, a transformers-written Llama folder with transformers' own logits as
//! the reference, and a Llama folder we export), Drop-Upcycling's index sets
//! and statistics, granular upcycling's output where it is promised, and the
//! typed errors for bad input.

use anyhow::Result;
use moe_model::config::AuxLossForm;
use moe_model::hf::{load_hf, save_hf};
use moe_model::upcycle::{output_match, OutputMatch, SharedInit};
use moe_model::{upcycle, Decoder, Error, ModelConfig, MoeConfig, UpcycleMethod, UpcycleOptions};
use moe_router::RouterConfig;
use moe_tensor::init::Rng;
use moe_tensor::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

const TOL: f64 = 1e-4;

/// A dense model whose FFN matters: std 0.1 instead of 0.02 so the FFN moves
/// the logits by far more than the tolerance (checked by the negative controls).
fn dense_cfg(d: usize, f: usize) -> ModelConfig {
    let mut c = moe_model::presets::debug_dense();
    (c.hidden_size, c.intermediate_size, c.init_std) = (d, f, 0.1);
    c
}

fn moe(router: RouterConfig, expert: usize, shared: usize, gate: bool) -> MoeConfig {
    MoeConfig {
        router,
        expert_intermediate_size: expert,
        shared_intermediate_size: shared,
        shared_expert_gate: gate,
        first_dense_layers: 0,
        aux_loss_form: AuxLossForm::PerLayer,
    }
}

fn with_moe(dense: &ModelConfig, m: MoeConfig) -> ModelConfig {
    let mut c = dense.clone();
    c.moe = Some(m);
    c
}

fn ids(vocab: usize, seed: u64) -> Result<Tensor> {
    let mut rng = Rng::seed(seed);
    let v: Vec<i64> = (0..2 * 16).map(|_| rng.below(vocab as u64) as i64).collect();
    Ok(Tensor::from_vec(v, (2, 16), &Device::Cpu)?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_vec_f64()?, b.to_vec_f64()?);
    Ok(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max))
}

fn logits_diff(a: &Decoder, b: &Decoder, seed: u64) -> Result<f64> {
    let x = ids(a.config().vocab_size, seed)?;
    max_abs_diff(&a.forward(&x)?.logits, &b.forward(&x)?.logits)
}

fn host(m: &Decoder, name: &str) -> Vec<f32> {
    m.params().get(name).unwrap().to_vec::<f32>().unwrap()
}

fn opts(std: f64, seed: u64) -> UpcycleOptions {
    UpcycleOptions {
        router_init_std: std,
        seed,
        ..UpcycleOptions::default()
    }
}

#[test]
fn naive_renormalised_topk_reproduces_dense_logits() -> Result<()> {
    let cfg = dense_cfg(32, 64);
    let dense = Decoder::new(&cfg, &mut Rng::seed(1), &Device::Cpu)?;
    for (e, k, first_dense) in [(4, 1, 0), (4, 2, 0), (8, 2, 1), (3, 3, 0)] {
        let mut m = moe(RouterConfig::mixtral(e, k), 64, 0, false);
        m.first_dense_layers = first_dense;
        let target = with_moe(&cfg, m);
        let o = opts(0.02, 7);
        assert_eq!(output_match(&target, &UpcycleMethod::Naive, &o), OutputMatch::Exact);
        let up = upcycle(&dense, &target, &UpcycleMethod::Naive, &o)?;
        let d = logits_diff(&dense, &up, 3)?;
        println!("naive E={e} k={k} first_dense={first_dense}: max |Δlogit| {d:.2e}");
        assert!(d <= TOL, "E={e} k={k}: logits differ by {d}");
        // Every expert is a bit-exact copy, attention is copied bit-exactly.
        let l = first_dense;
        let p = format!("model.layers.{l}");
        let (gate, up_w) = (
            host(&dense, &format!("{p}.mlp.gate_proj.weight")),
            host(&dense, &format!("{p}.mlp.up_proj.weight")),
        );
        let down = host(&dense, &format!("{p}.mlp.down_proj.weight"));
        let gu = host(&up, &format!("{p}.mlp.experts.gate_up_proj"));
        let dn = host(&up, &format!("{p}.mlp.experts.down_proj"));
        let n = 64 * 32;
        for x in 0..e {
            assert_eq!(&gu[2 * n * x..2 * n * x + n], &gate[..]);
            assert_eq!(&gu[2 * n * x + n..2 * n * (x + 1)], &up_w[..]);
            assert_eq!(&dn[n * x..n * (x + 1)], &down[..]);
        }
        for name in [
            "model.layers.1.self_attn.q_proj.weight",
            "model.embed_tokens.weight",
            "lm_head.weight",
        ] {
            assert_eq!(host(&dense, name), host(&up, name), "{name}");
        }
        // The router is Normal(0, 0.02): E·D = up to 256 samples, std within 20%.
        let r = host(&up, &format!("{p}.mlp.gate.weight"));
        let std = (r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
        assert!((std - 0.02).abs() < 0.004, "router std {std}");
    }
    Ok(())
}

#[test]
fn naive_without_renormalisation_is_reported_and_differs() -> Result<()> {
    // Negative control: the paper's penalty-balanced router scales the copies
    // by their probabilities (≈ 2/4 in total), so the output is not the dense one.
    let cfg = dense_cfg(32, 64);
    let dense = Decoder::new(&cfg, &mut Rng::seed(1), &Device::Cpu)?;
    let target = with_moe(&cfg, moe(RouterConfig::penalty_balanced(4, 2), 64, 0, false));
    let o = UpcycleOptions::default();
    assert!(matches!(
        output_match(&target, &UpcycleMethod::Naive, &o),
        OutputMatch::No { .. }
    ));
    let up = upcycle(&dense, &target, &UpcycleMethod::Naive, &o)?;
    let d = logits_diff(&dense, &up, 3)?;
    assert!(d > 100.0 * TOL, "the FFN should matter: {d}");
    Ok(())
}

fn golden_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens")
        .join(name)
}

#[test]
fn naive_from_transformers_llama_folder_matches_transformers_logits() -> Result<()> {
    // tests/goldens/llama_gqa was written by transformers' LlamaForCausalLM,
    // with its logits on input_ids in golden.safetensors: the upcycled Mixtral
    // must reproduce transformers' dense logits.
    for name in ["llama_gqa", "llama_tied"] {
        transformers_golden(name)?;
    }
    Ok(())
}

fn transformers_golden(name: &str) -> Result<()> {
    let dir = golden_dir(name);
    let (dense, _) = load_hf(&dir, &Device::Cpu)?;
    let g: BTreeMap<String, Tensor> = moe_tensor::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu)?;
    let target = with_moe(
        dense.config(),
        moe(RouterConfig::mixtral(4, 2), dense.config().intermediate_size, 0, false),
    );
    let up = upcycle(&dense, &target, &UpcycleMethod::Naive, &UpcycleOptions::default())?;
    let d = max_abs_diff(&up.forward(&g["input_ids"])?.logits, &g["logits"])?;
    println!("upcycled {name} vs transformers' dense logits: {d:.2e}");
    assert!(d <= TOL, "{d}");
    // The result is a normal Mixtral folder, loadable as HF and as ours.
    let out = tempfile::tempdir()?;
    moe_model::save_model_dir(&up, out.path())?;
    let hf_cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json"))?)?;
    assert_eq!(hf_cfg["architectures"][0], "MixtralForCausalLM");
    let (back, _) = load_hf(out.path(), &Device::Cpu)?;
    assert_eq!(logits_diff(&up, &back, 5)?, 0.0);
    let back = moe_model::load_model_dir(out.path(), &Device::Cpu)?;
    assert_eq!(logits_diff(&up, &back, 5)?, 0.0);
    Ok(())
}

#[test]
fn naive_from_exported_llama_folder_reproduces_dense_logits() -> Result<()> {
    let mut cfg = dense_cfg(32, 48);
    (cfg.vocab_size, cfg.num_heads, cfg.num_kv_heads) = (80, 8, 2);
    let dense = Decoder::new(&cfg, &mut Rng::seed(11), &Device::Cpu)?;
    let dir = tempfile::tempdir()?;
    save_hf(&dense, dir.path(), None)?;
    let (loaded, _) = load_hf(dir.path(), &Device::Cpu)?;
    let target = with_moe(loaded.config(), moe(RouterConfig::mixtral(8, 2), 48, 0, false));
    let up = upcycle(&loaded, &target, &UpcycleMethod::Naive, &opts(0.02, 2))?;
    let d = logits_diff(&dense, &up, 9)?;
    println!("exported Llama folder, naive 8x top-2: {d:.2e}");
    assert!(d <= TOL, "{d}");
    Ok(())
}

/// Rows of the row-major `[rows, cols]` `a` that differ from `b`'s.
fn changed_rows(a: &[f32], b: &[f32], cols: usize) -> Vec<usize> {
    (0..a.len() / cols)
        .filter(|&r| a[r * cols..(r + 1) * cols] != b[r * cols..(r + 1) * cols])
        .collect()
}

/// Columns of `[rows, cols]` `a` that differ from `b`'s.
fn changed_cols(a: &[f32], b: &[f32], cols: usize) -> Vec<usize> {
    let rows = a.len() / cols;
    (0..cols)
        .filter(|&c| (0..rows).any(|r| a[r * cols + c] != b[r * cols + c]))
        .collect()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
}

/// The re-initialised values must look like Normal(μ, σ) with μ, σ those of
/// the dense values they replace. With n samples the sample mean's standard
/// error is σ/√n and the sample std's is ≈ σ/√(2(n−1)); 5 standard errors
/// leave a false-failure chance below 1e-6 per check (and the seeds are fixed).
fn check_stats(new: &[f64], old: &[f64], what: &str) {
    let (n, (m_new, s_new), (m_old, s_old)) = (new.len() as f64, mean_std(new), mean_std(old));
    assert!(
        (m_new - m_old).abs() <= 5.0 * s_old / n.sqrt(),
        "{what}: mean {m_new} vs {m_old} (n {n})"
    );
    assert!(
        (s_new - s_old).abs() <= 5.0 * s_old / (2.0 * (n - 1.0)).sqrt(),
        "{what}: std {s_new} vs {s_old} (n {n})"
    );
}

/// Drop-Upcycling's sets per layer and expert: (gate rows, up rows, down columns).
type Sets = Vec<Vec<[Vec<usize>; 3]>>;

fn drop_sets(dense: &Decoder, up: &Decoder, e: usize, check: bool) -> Sets {
    let (d, f) = (dense.config().hidden_size, dense.config().intermediate_size);
    let n = f * d;
    (0..dense.config().num_layers)
        .map(|l| {
            let p = format!("model.layers.{l}.mlp");
            let (gate, upw, down) = (
                host(dense, &format!("{p}.gate_proj.weight")),
                host(dense, &format!("{p}.up_proj.weight")),
                host(dense, &format!("{p}.down_proj.weight")),
            );
            let gu = host(up, &format!("{p}.experts.gate_up_proj"));
            let dn = host(up, &format!("{p}.experts.down_proj"));
            (0..e)
                .map(|x| {
                    let eg = &gu[2 * n * x..2 * n * x + n];
                    let eu = &gu[2 * n * x + n..2 * n * (x + 1)];
                    let ed = &dn[n * x..n * (x + 1)];
                    let sets = [
                        changed_rows(eg, &gate, d),
                        changed_rows(eu, &upw, d),
                        changed_cols(ed, &down, f),
                    ];
                    if check {
                        let rows = |m: &[f32], s: &[usize]| -> Vec<f64> {
                            s.iter()
                                .flat_map(|&r| m[r * d..(r + 1) * d].iter().map(|&v| v as f64))
                                .collect()
                        };
                        let cols = |m: &[f32], s: &[usize]| -> Vec<f64> {
                            (0..d)
                                .flat_map(|r| s.iter().map(move |&c| m[r * f + c] as f64))
                                .collect()
                        };
                        check_stats(
                            &rows(eg, &sets[0]),
                            &rows(&gate, &sets[0]),
                            &format!("{p} expert {x} gate"),
                        );
                        check_stats(
                            &rows(eu, &sets[1]),
                            &rows(&upw, &sets[1]),
                            &format!("{p} expert {x} up"),
                        );
                        check_stats(
                            &cols(ed, &sets[2]),
                            &cols(&down, &sets[2]),
                            &format!("{p} expert {x} down"),
                        );
                    }
                    sets
                })
                .collect()
        })
        .collect()
}

#[test]
fn drop_reinitialises_exactly_floor_rf_per_expert_with_matching_statistics() -> Result<()> {
    // D 64, F 256: r = 0.5 replaces 128 rows of 64 values, n = 8192 per matrix.
    let cfg = dense_cfg(64, 256);
    let dense = Decoder::new(&cfg, &mut Rng::seed(4), &Device::Cpu)?;
    let target = with_moe(&cfg, moe(RouterConfig::mixtral(4, 2), 256, 0, false));
    for (ratio, want) in [(0.5, 128), (0.3, 76), (1.0, 256)] {
        let method = UpcycleMethod::Drop {
            ratio,
            per_matrix: false,
        };
        let up = upcycle(&dense, &target, &method, &opts(0.02, 5))?;
        let sets = drop_sets(&dense, &up, 4, true);
        for layer in &sets {
            for [g, u, d] in layer {
                assert_eq!(
                    g.len(),
                    want,
                    "ratio {ratio}: ⌊r·F⌋ rows re-initialised, the rest bit-identical"
                );
                assert_eq!((g, g), (u, d), "one index set per expert for gate, up and down");
            }
            for a in 0..4 {
                for b in a + 1..4 {
                    if ratio < 1.0 {
                        assert_ne!(layer[a][0], layer[b][0], "experts {a} and {b} share an index set");
                    }
                }
            }
        }
        if ratio < 1.0 {
            assert_ne!(sets[0][0][0], sets[1][0][0], "layers share index sets");
        }
    }
    Ok(())
}

#[test]
fn drop_per_matrix_draws_a_set_per_matrix() -> Result<()> {
    let cfg = dense_cfg(64, 256);
    let dense = Decoder::new(&cfg, &mut Rng::seed(4), &Device::Cpu)?;
    let target = with_moe(&cfg, moe(RouterConfig::mixtral(4, 2), 256, 0, false));
    let method = UpcycleMethod::Drop {
        ratio: 0.5,
        per_matrix: true,
    };
    let up = upcycle(&dense, &target, &method, &opts(0.02, 5))?;
    for layer in drop_sets(&dense, &up, 4, true) {
        for [g, u, d] in &layer {
            assert_eq!((g.len(), u.len(), d.len()), (128, 128, 128));
            assert!(g != u && u != d && g != d, "per-matrix sets should differ");
        }
    }
    Ok(())
}

#[test]
fn drop_is_seeded_and_ratio_zero_is_naive() -> Result<()> {
    let cfg = dense_cfg(32, 64);
    let dense = Decoder::new(&cfg, &mut Rng::seed(4), &Device::Cpu)?;
    let target = with_moe(&cfg, moe(RouterConfig::mixtral(4, 2), 64, 0, false));
    let all = |m: &Decoder| {
        m.params()
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_vec::<f32>().unwrap()))
            .collect::<Vec<_>>()
    };
    for per_matrix in [false, true] {
        let method = UpcycleMethod::Drop { ratio: 0.5, per_matrix };
        let a = upcycle(&dense, &target, &method, &opts(0.02, 9))?;
        let b = upcycle(&dense, &target, &method, &opts(0.02, 9))?;
        let c = upcycle(&dense, &target, &method, &opts(0.02, 10))?;
        assert_eq!(all(&a), all(&b), "same seed, same model");
        assert_ne!(all(&a), all(&c), "another seed, another model");
    }
    let zero = upcycle(
        &dense,
        &target,
        &UpcycleMethod::Drop {
            ratio: 0.0,
            per_matrix: false,
        },
        &opts(0.02, 9),
    )?;
    let naive = upcycle(&dense, &target, &UpcycleMethod::Naive, &opts(0.02, 9))?;
    assert_eq!(all(&zero), all(&naive));
    assert!(logits_diff(&dense, &zero, 1)? <= TOL);
    Ok(())
}

fn granular_case(name: &str, dense: &Decoder, m: MoeConfig, o: UpcycleOptions, exact: bool) -> Result<Decoder> {
    let target = with_moe(dense.config(), m);
    let promised = output_match(&target, &UpcycleMethod::Granular, &o);
    assert_eq!(promised == OutputMatch::Exact, exact, "{name}: {promised:?}");
    let up = upcycle(dense, &target, &UpcycleMethod::Granular, &o)?;
    let d = logits_diff(dense, &up, 21)?;
    println!("granular {name}: max |Δlogit| {d:.2e} ({promised:?})");
    if exact {
        assert!(d <= TOL, "{name}: {d}");
    } else {
        assert!(d > 100.0 * TOL, "{name}: the control should differ, got {d}");
    }
    Ok(up)
}

#[test]
fn granular_reproduces_dense_output_where_promised() -> Result<()> {
    let cfg = dense_cfg(32, 64);
    let dense = Decoder::new(&cfg, &mut Rng::seed(8), &Device::Cpu)?;
    let rnd = opts(0.02, 3);
    let uniform = opts(0.0, 3);
    // Qwen2-MoE style: g = 4 slices of 16, one gated shared slice, 3 routed per
    // copy, 6 routed experts (2 whole copies), renormalised top-3.
    let up = granular_case(
        "qwen2 1 shared + 6 routed top-3",
        &dense,
        moe(RouterConfig::qwen2_moe(6, 3, true), 16, 16, true),
        rnd,
        true,
    )?;
    // The layout, checked by hand on layer 0: shared = indices 0..16 with down
    // ×2 (gate sigmoid(0) = ½); expert 4 = copy 1, slice 1 = indices 32..48,
    // down × r / W = 3 / 1.
    let (gate, down) = (
        host(&dense, "model.layers.0.mlp.gate_proj.weight"),
        host(&dense, "model.layers.0.mlp.down_proj.weight"),
    );
    assert_eq!(
        host(&up, "model.layers.0.mlp.shared_expert.gate_proj.weight"),
        gate[..16 * 32].to_vec()
    );
    let sd = host(&up, "model.layers.0.mlp.shared_expert.down_proj.weight");
    assert_eq!(sd[5 * 16 + 3], 2.0 * down[5 * 64 + 3]);
    assert_eq!(host(&up, "model.layers.0.mlp.shared_expert_gate.weight"), vec![0.0; 32]);
    let gu = host(&up, "model.layers.0.mlp.experts.gate_up_proj");
    assert_eq!(
        gu[4 * 32 * 32..4 * 32 * 32 + 16 * 32].to_vec(),
        gate[32 * 32..48 * 32].to_vec()
    );
    let ed = host(&up, "model.layers.0.mlp.experts.down_proj");
    assert_eq!(ed[4 * 32 * 16 + 7 * 16 + 2], 3.0 * down[7 * 64 + 32 + 2]);
    let router = host(&up, "model.layers.0.mlp.gate.weight");
    assert_eq!(router[..32], router[2 * 32..3 * 32], "router rows shared within a copy");
    assert_ne!(router[..32], router[3 * 32..4 * 32], "copies get their own rows");
    // The result exports as an HF Qwen2-MoE folder.
    save_hf(&up, tempfile::tempdir()?.path(), None)?;

    // No shared expert: 2 slices of 32, 8 experts, top-2 and top-4 (2 copies).
    for k in [2, 4] {
        granular_case(
            &format!("mixtral 8 routed top-{k}"),
            &dense,
            moe(RouterConfig::mixtral(8, k), 32, 0, false),
            rnd,
            true,
        )?;
    }
    // The shared expert as the whole FFN, halved, with 4 slices of 16 routed
    // (halved too), top-4 of 8.
    let mut whole = rnd;
    whole.shared_init = SharedInit::WholeFfn;
    granular_case(
        "whole-FFN shared + 8 routed top-4",
        &dense,
        moe(RouterConfig::mixtral(8, 4), 16, 64, false),
        whole,
        true,
    )?;
    // The paper's granular model (plain softmax top-3 of 7 routed, no
    // renormalisation, one shared slice): exact with a uniform router only.
    let paper = cfg.granular_from_dense(4, 7, 1)?.moe.unwrap();
    granular_case(
        "paper 1 shared + 7 routed top-3, uniform router",
        &dense,
        paper.clone(),
        uniform,
        true,
    )?;
    granular_case("paper, random router (control)", &dense, paper, rnd, false)?;
    // k not a multiple of the slices per copy (control).
    granular_case(
        "top-3 of 2-slice copies (control)",
        &dense,
        moe(RouterConfig::mixtral(8, 3), 32, 0, false),
        rnd,
        false,
    )?;
    Ok(())
}

fn field_of(r: moe_model::Result<Decoder>) -> String {
    match r {
        Err(Error::Upcycle { field, .. }) => field,
        Err(e) => panic!("expected an upcycle error, got {e}"),
        Ok(_) => panic!("expected an upcycle error, got a model"),
    }
}

#[test]
fn bad_input_is_an_error_naming_the_field() -> Result<()> {
    let cfg = dense_cfg(32, 64);
    let dense = Decoder::new(&cfg, &mut Rng::seed(1), &Device::Cpu)?;
    let good = with_moe(&cfg, moe(RouterConfig::mixtral(4, 2), 64, 0, false));
    let naive = UpcycleMethod::Naive;
    let o = UpcycleOptions::default();
    let changed = |f: &dyn Fn(&mut ModelConfig)| {
        let mut t = good.clone();
        f(&mut t);
        t
    };
    let cases: Vec<(&str, ModelConfig)> = vec![
        ("hidden_size", changed(&|t| (t.hidden_size, t.num_heads) = (64, 8))),
        ("num_layers", changed(&|t| t.num_layers = 3)),
        ("vocab_size", changed(&|t| t.vocab_size = 65)),
        (
            "num_heads",
            changed(&|t| (t.num_heads, t.num_kv_heads, t.head_dim) = (2, 2, Some(8))),
        ),
        ("num_kv_heads", changed(&|t| t.num_kv_heads = 4)),
        ("intermediate_size", changed(&|t| t.intermediate_size = 128)),
        (
            "activation",
            changed(&|t| t.activation = moe_model::config::Activation::Geglu),
        ),
        ("tie_word_embeddings", changed(&|t| t.tie_word_embeddings = true)),
        (
            "moe.expert_intermediate_size",
            changed(&|t| t.moe.as_mut().unwrap().expert_intermediate_size = 32),
        ),
        ("moe", cfg.clone()),
    ];
    for (field, target) in cases {
        let got = field_of(upcycle(&dense, &target, &naive, &o));
        assert_eq!(got, field);
        let msg = upcycle(&dense, &target, &naive, &o).unwrap_err().to_string();
        assert!(msg.contains(field), "{msg}");
    }
    for ratio in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let m = UpcycleMethod::Drop {
            ratio,
            per_matrix: false,
        };
        assert_eq!(field_of(upcycle(&dense, &good, &m, &o)), "ratio", "ratio {ratio}");
    }
    let bad_std = UpcycleOptions {
        router_init_std: -1.0,
        ..o
    };
    assert_eq!(field_of(upcycle(&dense, &good, &naive, &bad_std)), "router_init_std");
    // A source that is already an MoE.
    let moe_model = upcycle(&dense, &good, &naive, &o)?;
    assert_eq!(field_of(upcycle(&moe_model, &good, &naive, &o)), "moe");
    // Naive/drop with a shared expert; granular with slices that do not tile the FFN.
    let shared = with_moe(&cfg, moe(RouterConfig::qwen2_moe(4, 2, true), 64, 64, true));
    assert_eq!(
        field_of(upcycle(&dense, &shared, &naive, &o)),
        "moe.shared_intermediate_size"
    );
    let gran = UpcycleMethod::Granular;
    let untiled = with_moe(&cfg, moe(RouterConfig::mixtral(4, 2), 24, 0, false));
    assert_eq!(
        field_of(upcycle(&dense, &untiled, &gran, &o)),
        "moe.expert_intermediate_size"
    );
    let too_wide = with_moe(&cfg, moe(RouterConfig::mixtral(4, 2), 16, 64, false));
    assert_eq!(
        field_of(upcycle(&dense, &too_wide, &gran, &o)),
        "moe.shared_intermediate_size"
    );
    let whole = UpcycleOptions {
        shared_init: SharedInit::WholeFfn,
        ..o
    };
    let narrow_shared = with_moe(&cfg, moe(RouterConfig::mixtral(4, 2), 16, 16, false));
    assert_eq!(
        field_of(upcycle(&dense, &narrow_shared, &gran, &whole)),
        "moe.shared_intermediate_size"
    );
    // An invalid target config is the config's own error.
    let invalid = changed(&|t| t.moe.as_mut().unwrap().router.top_k = 9);
    assert!(matches!(
        upcycle(&dense, &invalid, &naive, &o),
        Err(Error::Config { .. })
    ));
    Ok(())
}

#[test]
fn target_config_reads_toml_json_and_presets() -> Result<()> {
    let cfg = with_moe(&dense_cfg(32, 64), moe(RouterConfig::mixtral(4, 2), 64, 0, false));
    let dir = tempfile::tempdir()?;
    let toml_path = dir.path().join("moe.toml");
    std::fs::write(&toml_path, toml::to_string(&cfg)?)?;
    assert_eq!(moe_model::upcycle::target_config(toml_path.to_str().unwrap())?, cfg);
    let json_path = dir.path().join("moe.json");
    std::fs::write(&json_path, cfg.to_json())?;
    assert_eq!(moe_model::upcycle::target_config(json_path.to_str().unwrap())?, cfg);
    assert_eq!(
        moe_model::upcycle::target_config("debug-switch")?,
        moe_model::presets::preset("debug-switch")?
    );
    std::fs::write(&toml_path, toml::to_string(&cfg)?.replace("hidden_size", "hidden_sise"))?;
    let err = moe_model::upcycle::target_config(toml_path.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("moe.toml") && err.contains("hidden_sise"), "{err}");
    let err = moe_model::upcycle::target_config("no/such/file.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no/such/file.toml"), "{err}");
    Ok(())
}
