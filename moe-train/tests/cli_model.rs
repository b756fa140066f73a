//! `moe forward` and `moe generate`, run as the built binary: against the
//! transformers goldens of moe-model (logits, losses, every gradient, greedy
//! tokens), on a tiny model of ours with a trained tokenizer, and on bad input.

mod common;

use common::{moe, text};

use anyhow::{Context, Result};
use moe_model::{presets::preset, save_model_dir, Decoder};
use moe_tensor::{init::Rng, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn golden_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../moe-model/tests/goldens")
        .join(name)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Rows of an I64 `[B, T]` tensor as a JSON file.
fn write_ids(path: &Path, ids: &Tensor) -> Result<()> {
    let t = ids.dims()[1];
    let rows: Vec<Vec<i64>> = ids.to_vec::<i64>()?.chunks(t).map(|r| r.to_vec()).collect();
    std::fs::write(path, serde_json::to_string(&rows)?)?;
    Ok(())
}

/// (max |a − b|, max |b|).
fn diff(a: &Tensor, b: &Tensor) -> Result<(f64, f64)> {
    anyhow::ensure!(a.dims() == b.dims(), "shape {:?} vs {:?}", a.dims(), b.dims());
    let (a, b) = (a.to_vec_f64()?, b.to_vec_f64()?);
    let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    Ok((d, b.iter().map(|y| y.abs()).fold(0.0, f64::max)))
}

fn check_forward(name: &str) -> Result<()> {
    let dir = golden_dir(name);
    let g = moe_tensor::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu)?;
    let hf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let tmp = tempfile::tempdir()?;
    let (ids, out) = (tmp.path().join("ids.json"), tmp.path().join("out.safetensors"));
    write_ids(&ids, &g["input_ids"])?;
    let o = moe(&[
        "forward",
        "--model",
        &s(&dir),
        "--tokens",
        &s(&ids),
        "--out",
        &s(&out),
        "--grads",
    ]);
    assert!(o.status.success(), "{name}: {}", text(&o));
    let r: BTreeMap<String, Tensor> = moe_tensor::safetensors::load(&out, &Device::Cpu)?;
    let (d, _) = diff(&r["logits"], &g["logits"])?;
    assert!(d <= 1e-4, "{name}: logits differ by {d}");
    // transformers' loss is CE + router_aux_loss_coef · aux for the MoE classes.
    let (d, _) = diff(&r["total_loss"], &g["loss"])?;
    assert!(d <= 1e-5, "{name}: total loss differs by {d}");
    let golden_ce = match g.get("aux_loss") {
        Some(aux) => {
            let (d, _) = diff(&r["aux_loss"], aux)?;
            assert!(d <= 1e-5, "{name}: aux loss differs by {d}");
            let coef = hf["router_aux_loss_coef"].as_f64().context("router_aux_loss_coef")?;
            g["loss"].to_scalar_f64()? - coef * aux.to_scalar_f64()?
        }
        None => {
            assert!(!r.contains_key("aux_loss"), "{name}: a dense model has no aux loss");
            g["loss"].to_scalar_f64()?
        }
    };
    let ce = r["loss"].to_scalar_f64()?;
    assert!((ce - golden_ce).abs() <= 1e-5, "{name}: CE {ce} vs {golden_ce}");
    let golden_grads: Vec<&String> = g.keys().filter(|k| k.starts_with("grad.")).collect();
    assert_eq!(
        golden_grads.len(),
        r.keys().filter(|k| k.starts_with("grad.")).count(),
        "{name}: gradient sets differ"
    );
    for k in golden_grads {
        let got = r.get(k).with_context(|| format!("{name}: no {k} in the output"))?;
        let (d, scale) = diff(got, &g[k])?;
        assert!(
            d <= 1e-3 * scale.max(1e-12),
            "{name}: {k} differs by {d} (scale {scale})"
        );
    }
    // Routing: one entry per MoE layer, ids in 0..E, k per token.
    let layers = hf["num_hidden_layers"].as_u64().context("num_hidden_layers")? as usize;
    let n = g["input_ids"].elem_count();
    let routed: Vec<_> = r.keys().filter(|k| k.ends_with(".expert_ids")).collect();
    match hf.get("num_experts_per_tok").and_then(|v| v.as_u64()) {
        Some(k) => {
            let e = hf
                .get("num_local_experts")
                .or(hf.get("num_experts"))
                .and_then(|v| v.as_u64())
                .context("expert count")?;
            assert_eq!(routed.len(), layers, "{name}");
            for l in 0..layers {
                let ids = &r[&format!("routing.{l}.expert_ids")];
                let w = &r[&format!("routing.{l}.weights")];
                assert_eq!(ids.dims(), [n, k as usize], "{name}");
                assert_eq!(w.dims(), [n, k as usize], "{name}");
                assert!(ids.to_vec::<i64>()?.iter().all(|&x| (0..e as i64).contains(&x)));
                if hf["model_type"] == "mixtral" {
                    // Mixtral renormalises the top-k weights to sum to one.
                    for row in w.to_vec::<f32>()?.chunks(k as usize) {
                        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{name}: {row:?}");
                    }
                }
            }
        }
        None => assert!(routed.is_empty(), "{name}: a dense model has no routing"),
    }
    Ok(())
}

#[test]
fn forward_matches_transformers_goldens() -> Result<()> {
    for name in ["llama_gqa", "llama_tied", "mixtral_top2", "qwen2_moe"] {
        check_forward(name)?;
    }
    Ok(())
}

/// Generated rows as JSON lines.
fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn greedy_generation_matches_transformers() -> Result<()> {
    for name in ["llama_gqa", "qwen2_moe"] {
        let dir = golden_dir(name);
        let g = moe_tensor::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu)?;
        let (prompt, want) = (&g["prompt"], &g["greedy"]);
        let tmp = tempfile::tempdir()?;
        let ids = tmp.path().join("prompt.json");
        write_ids(&ids, prompt)?;
        let new = (want.dims()[1] - prompt.dims()[1]).to_string();
        let o = moe(&[
            "generate",
            "--model",
            &s(&dir),
            "--tokens",
            &s(&ids),
            "--max-new-tokens",
            &new,
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let want_rows: Vec<Vec<i64>> = want
            .to_vec::<i64>()?
            .chunks(want.dims()[1])
            .map(|r| r.to_vec())
            .collect();
        let got: Vec<Vec<i64>> = lines(&o)
            .iter()
            .map(|l| serde_json::from_value(l["ids"].clone()).unwrap())
            .collect();
        assert_eq!(got, want_rows, "{name}");
        // One row through --prompt-ids gives that row's continuation.
        let row0: Vec<String> = want_rows[0][..prompt.dims()[1]].iter().map(|x| x.to_string()).collect();
        let o = moe(&[
            "generate",
            "--model",
            &s(&dir),
            "--prompt-ids",
            &row0.join(","),
            "--max-new-tokens",
            &new,
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let got: Vec<i64> = serde_json::from_value(lines(&o)[0]["ids"].clone())?;
        assert_eq!(got, want_rows[0], "{name}");
    }
    Ok(())
}

/// A tiny Switch model of ours with a BPE tokenizer trained on a few lines.
fn tiny_model_with_tokenizer(dir: &Path) -> Result<usize> {
    let corpus = dir.join("corpus.txt");
    let doc = "the cat sat on the mat and the dog sat on the log\n\n";
    std::fs::write(&corpus, doc.repeat(50))?;
    let model = dir.join("model");
    std::fs::create_dir_all(&model)?;
    let tok = model.join("tokenizer.json");
    let o = moe(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "280",
        "--out",
        &s(&tok),
        &s(&corpus),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let mut cfg = preset("debug-switch")?;
    cfg.vocab_size = 280;
    let m = Decoder::new(&cfg, &mut Rng::seed(5), &Device::Cpu)?;
    save_model_dir(&m, &model)?;
    Ok(cfg.vocab_size)
}

#[test]
fn generate_from_text_with_sampling_is_seeded() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let vocab = tiny_model_with_tokenizer(tmp.path())? as i64;
    let model = s(&tmp.path().join("model"));
    let args = [
        "generate",
        "--model",
        &model,
        "--prompt",
        "the cat sat",
        "--max-new-tokens",
        "6",
        "--temperature",
        "0.8",
        "--top-p",
        "0.9",
        "--seed",
        "3",
    ];
    let (a, b) = (moe(&args), moe(&args));
    assert!(a.status.success(), "{}", text(&a));
    assert_eq!(a.stdout, b.stdout, "the same seed gives the same tokens");
    let l = &lines(&a)[0];
    let new: Vec<i64> = serde_json::from_value(l["new_ids"].clone())?;
    assert_eq!(new.len(), 6);
    assert!(new.iter().all(|&t| (0..vocab).contains(&t)));
    assert!(l["text"].as_str().context("text")?.starts_with("the cat sat"), "{l}");
    // The same model through `forward` (our folder format).
    let ids = tmp.path().join("ids.json");
    std::fs::write(&ids, "[[1, 2, 3, 4], [5, 6, 7, 8]]")?;
    let out = tmp.path().join("out.safetensors");
    let o = moe(&["forward", "--model", &model, "--tokens", &s(&ids), "--out", &s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let r = moe_tensor::safetensors::load(&out, &Device::Cpu)?;
    assert_eq!(r["logits"].dims(), [2, 4, 280]);
    assert!(r.contains_key("routing.1.expert_ids") && !r.keys().any(|k| k.starts_with("grad.")));
    Ok(())
}

#[test]
fn bad_input_is_a_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let golden = s(&golden_dir("llama_gqa"));
    let out = s(&tmp.path().join("out.safetensors"));
    let run = |content: &str, model: &str| {
        let ids = tmp.path().join("ids.json");
        std::fs::write(&ids, content).unwrap();
        let o = moe(&["forward", "--model", model, "--tokens", &s(&ids), "--out", &out]);
        assert!(!o.status.success());
        text(&o)
    };
    let msg = run("[[1, 2, 3], [4, 5]]", &golden);
    assert!(msg.contains("ids.json") && msg.contains("row 1"), "{msg}");
    let msg = run("[[1, 2, 300]]", &golden);
    assert!(msg.contains("300") && msg.contains("out of range"), "{msg}");
    let msg = run("{\"ids\": 1}", &golden);
    assert!(msg.contains("ids.json"), "{msg}");
    let missing = s(&tmp.path().join("no-such-model"));
    let msg = run("[[1, 2]]", &missing);
    assert!(msg.contains("no-such-model"), "{msg}");
    let o = moe(&["generate", "--model", &golden, "--prompt", "hello"]);
    assert!(!o.status.success() && text(&o).contains("tokenizer"), "{}", text(&o));
    assert!(!Path::new(&out).exists(), "no output is written on failure");
    Ok(())
}

#[test]
fn bench_reports_throughput_and_memory() -> Result<()> {
    let o = moe(&[
        "bench",
        "--config",
        "debug-switch",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert!(v["tokens_per_s"].as_f64().context("tokens_per_s")? > 0.0, "{v}");
    assert!(v["peak_rss_bytes"].as_u64().context("peak_rss_bytes")? > 0, "{v}");
    assert_eq!((v["batch_size"].as_u64(), v["seq_len"].as_u64()), (Some(2), Some(16)));
    for phase in ["forward_ms_median", "backward_ms_median", "optimizer_ms_median"] {
        assert!(v[phase].as_f64().context(phase)? > 0.0, "{v}");
    }
    let flops = moe_train::trainer::training_flops_per_token(&preset("debug-switch")?, 16) * 32.0 / 1e9;
    assert_eq!(v["model_gflop_per_step"].as_f64(), Some(flops), "{v}");
    // A TOML bench file: a model table plus the batch shape.
    let tmp = tempfile::tempdir()?;
    let mut cfg = preset("debug-dense")?;
    cfg.num_layers = 1;
    let model = toml::Value::try_from(&cfg)?;
    let mut file = toml::map::Map::new();
    file.insert("model".into(), model);
    file.insert("batch_size".into(), toml::Value::Integer(1));
    file.insert("seq_len".into(), toml::Value::Integer(8));
    let path = tmp.path().join("bench.toml");
    std::fs::write(&path, toml::to_string(&toml::Value::Table(file))?)?;
    let o = moe(&[
        "bench",
        "--config",
        &s(&path),
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(v["params_total"].as_u64(), Some(cfg.param_count().total as u64));
    assert_eq!((v["batch_size"].as_u64(), v["seq_len"].as_u64()), (Some(1), Some(8)));
    // Unknown names list the known configs.
    let o = moe(&["bench", "--config", "no-such-config"]);
    assert!(!o.status.success() && text(&o).contains("bench-moe"), "{}", text(&o));
    Ok(())
}
