//! Our model against transformers on tiny random checkpoints written by
//! `tools/goldens/model/gen_models.py`: logits within 1e-4 (abs), loss and aux
//! loss within 1e-5, every parameter's gradient within 1e-3 relative to the
//! gradient's largest entry.

use anyhow::{bail, Context, Result};
use moe_model::hf::load_hf;
use moe_tensor::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn golden_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens")
        .join(name)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<(f64, f64)> {
    if a.dims() != b.dims() {
        bail!("shape {:?} vs {:?}", a.dims(), b.dims());
    }
    let (a, b) = (a.to_vec_f64()?, b.to_vec_f64()?);
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    Ok((diff, scale))
}

fn check(name: &str) -> Result<()> {
    let dir = golden_dir(name);
    let (model, _) = load_hf(&dir, &Device::Cpu).with_context(|| format!("loading {name}"))?;
    let g: BTreeMap<String, Tensor> = moe_tensor::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu)?;
    let ids = &g["input_ids"];
    let out = model.loss(ids)?;
    let (d, _) = max_abs_diff(&model.forward(ids)?.logits, &g["logits"])?;
    println!("{name}: logits max abs diff {d:.2e}");
    assert!(d <= 1e-4, "{name}: logits differ by {d}");
    let (d, _) = max_abs_diff(&out.total, &g["loss"])?;
    println!("{name}: loss diff {d:.2e}");
    assert!(d <= 1e-5, "{name}: loss differs by {d}");
    match (&out.aux, g.get("aux_loss")) {
        (Some(a), Some(b)) => {
            let (d, _) = max_abs_diff(a, b)?;
            println!("{name}: aux loss diff {d:.2e}");
            assert!(d <= 1e-5, "{name}: aux loss differs by {d}");
        }
        (None, None) => {}
        (a, b) => bail!(
            "{name}: aux loss present in ours: {}, in golden: {}",
            a.is_some(),
            b.is_some()
        ),
    }
    out.total.backward()?;
    let mut worst = 0.0f64;
    for (pname, p) in model.params().iter() {
        let want = g
            .get(&format!("grad.{pname}"))
            .with_context(|| format!("{name}: no golden grad for {pname}"))?;
        let got = p
            .grad()
            .with_context(|| format!("{name}: no gradient reached {pname}"))?;
        let (d, scale) = max_abs_diff(&got, want).with_context(|| pname.to_string())?;
        let rel = d / scale.max(1e-12);
        worst = worst.max(rel);
        assert!(rel <= 1e-3, "{name}: gradient of {pname} differs by {rel:.2e} relative");
    }
    let golden_grads = g.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(golden_grads, model.params().len(), "{name}: parameter sets differ");
    println!("{name}: {} gradients, worst relative diff {worst:.2e}", golden_grads);
    Ok(())
}

#[test]
fn llama_gqa_untied_matches_transformers() -> Result<()> {
    check("llama_gqa")
}

#[test]
fn llama_tied_matches_transformers() -> Result<()> {
    check("llama_tied")
}

#[test]
fn mixtral_top1_matches_transformers() -> Result<()> {
    check("mixtral_top1")
}

#[test]
fn mixtral_top2_matches_transformers() -> Result<()> {
    check("mixtral_top2")
}

#[test]
fn qwen2_moe_matches_transformers() -> Result<()> {
    check("qwen2_moe")
}

/// Greedy generation with the KV cache reproduces transformers' `generate`.
fn check_greedy(name: &str) -> Result<()> {
    let dir = golden_dir(name);
    let (model, _) = load_hf(&dir, &Device::Cpu)?;
    let g = moe_tensor::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu)?;
    let (prompt, want) = (&g["prompt"], &g["greedy"]);
    let new = want.dims()[1] - prompt.dims()[1];
    let mut rng = moe_tensor::init::Rng::seed(0);
    let got = moe_model::generate(&model, prompt, new, moe_model::Sampling::Greedy, &mut rng)?;
    assert_eq!(
        got.to_vec::<i64>()?,
        want.to_vec::<i64>()?,
        "{name}: greedy tokens differ"
    );
    Ok(())
}

#[test]
fn greedy_generation_matches_transformers() -> Result<()> {
    for name in ["llama_gqa", "llama_tied", "mixtral_top1", "mixtral_top2", "qwen2_moe"] {
        check_greedy(name)?;
    }
    Ok(())
}
