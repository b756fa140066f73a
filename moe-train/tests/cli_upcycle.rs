//! `moe upcycle` end to end: a dense Llama folder in, an MoE model folder out
//! whose logits match the dense model's where the method promises it.

mod common;

use common::{moe, text};

use moe_model::hf::save_hf;
use moe_model::{load_model_dir, Decoder};
use moe_tensor::init::Rng;
use moe_tensor::{Device, Tensor};
use std::path::Path;

/// The debug-dense shapes with std 0.1, so the FFN visibly moves the logits.
fn dense(dir: &Path) -> Decoder {
    let mut cfg = moe_model::presets::debug_dense();
    cfg.init_std = 0.1;
    let model = Decoder::new(&cfg, &mut Rng::seed(5), &Device::Cpu).unwrap();
    save_hf(&model, dir, None).unwrap();
    model
}

fn logits_diff(a: &Decoder, b: &Decoder) -> f64 {
    let ids: Vec<i64> = (0..24).map(|i| (i * 7 + 3) % 64).collect();
    let ids = Tensor::from_vec(ids, (2, 12), &Device::Cpu).unwrap();
    let (x, y) = (a.forward(&ids).unwrap().logits, b.forward(&ids).unwrap().logits);
    let (x, y) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    x.iter().zip(&y).map(|(p, q)| (p - q).abs() as f64).fold(0.0, f64::max)
}

/// A Mixtral-style target (4 experts, renormalised top-2), as a user writes it.
const MIXTRAL_TOML: &str = r#"
vocab_size = 64
hidden_size = 32
num_layers = 2
num_heads = 4
num_kv_heads = 2
intermediate_size = 64

[moe]
expert_intermediate_size = 64

[moe.router]
num_experts = 4
top_k = 2

[moe.router.kind]
type = "softmax_top_k"
renormalize = true
scaling_factor = 1.0
"#;

#[test]
fn naive_drop_and_granular_from_a_llama_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    let src = dense(&tmp.path().join("dense"));
    std::fs::write(tmp.path().join("mixtral.toml"), MIXTRAL_TOML).unwrap();
    std::fs::write(tmp.path().join("dense/tokenizer.json"), "{\"stand-in\": true}").unwrap();

    // Naive: the Mixtral folder reproduces the dense logits and is HF-loadable.
    let o = moe(&[
        "upcycle",
        "--from",
        &p("dense"),
        "--config",
        &p("mixtral.toml"),
        "--method",
        "naive",
        "--out",
        &p("naive"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("equal to the dense model's"), "{}", text(&o));
    let hf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("naive/config.json")).unwrap()).unwrap();
    assert_eq!(hf["architectures"][0], "MixtralForCausalLM");
    let tok = std::fs::read_to_string(tmp.path().join("naive/tokenizer.json")).unwrap();
    assert_eq!(
        tok, "{\"stand-in\": true}",
        "the source's tokenizer travels with the model"
    );
    let naive = load_model_dir(tmp.path().join("naive"), &Device::Cpu).unwrap();
    let d = logits_diff(&src, &naive);
    assert!(d <= 1e-4, "naive logits differ by {d}");

    // Drop: seeded (same seed, same bytes), and not the dense function.
    for out in ["drop_a", "drop_b"] {
        let o = moe(&[
            "upcycle",
            "--from",
            &p("dense"),
            "--config",
            &p("mixtral.toml"),
            "--method",
            "drop",
            "--ratio",
            "0.5",
            "--seed",
            "3",
            "--out",
            &p(out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("differs from the dense model's"), "{}", text(&o));
    }
    let bytes = |d: &str| std::fs::read(tmp.path().join(d).join("model.safetensors")).unwrap();
    assert_eq!(bytes("drop_a"), bytes("drop_b"));
    assert_ne!(bytes("drop_a"), bytes("naive"));
    let dropped = load_model_dir(tmp.path().join("drop_a"), &Device::Cpu).unwrap();
    assert!(logits_diff(&src, &dropped) > 1e-2);

    // Granular into the debug-granular preset (plain softmax top-3 of 7
    // routed + 1 shared slice) with a uniform router: exact; moe-cpt format.
    let o = moe(&[
        "upcycle",
        "--from",
        &p("dense"),
        "--config",
        "debug-granular",
        "--method",
        "granular",
        "--router-init",
        "0",
        "--out",
        &p("granular"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!tmp.path().join("granular/config.json").exists());
    let granular = load_model_dir(tmp.path().join("granular"), &Device::Cpu).unwrap();
    let d = logits_diff(&src, &granular);
    assert!(d <= 1e-4, "granular logits differ by {d}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).to_string_lossy().into_owned();
    dense(&tmp.path().join("dense"));
    std::fs::write(tmp.path().join("mixtral.toml"), MIXTRAL_TOML).unwrap();
    std::fs::write(
        tmp.path().join("wide.toml"),
        MIXTRAL_TOML.replace("hidden_size = 32", "hidden_size = 64"),
    )
    .unwrap();
    let run_from = |from: &str, extra: &[&str], out: &str| {
        let mut args = vec!["upcycle", "--from", from]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--out".to_string(), p(out)]);
        let o = moe(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!o.status.success(), "{extra:?} should fail");
        text(&o)
    };
    let src = p("dense");
    let run = |extra: &[&str], out: &str| run_from(&src, extra, out);
    let toml = p("mixtral.toml");
    let err = run(&["--config", &toml, "--method", "drop", "--ratio", "1.5"], "o1");
    assert!(err.contains("ratio") && err.contains("1.5"), "{err}");
    let err = run(&["--config", &toml, "--method", "naive", "--ratio", "0.5"], "o2");
    assert!(err.contains("--method drop only"), "{err}");
    let err = run(&["--config", &p("wide.toml"), "--method", "naive"], "o3");
    assert!(err.contains("hidden_size"), "{err}");
    let err = run(&["--config", &p("missing.toml"), "--method", "naive"], "o4");
    assert!(err.contains("missing.toml"), "{err}");
    let err = run_from(&p("nowhere"), &["--config", "debug-switch", "--method", "naive"], "o5");
    assert!(err.contains("nowhere"), "{err}");
    let err = run(&["--config", &toml, "--method", "naive"], "dense");
    assert!(err.contains("--overwrite"), "{err}");
    // Nothing was written for any failure.
    for o in ["o1", "o2", "o3", "o4", "o5"] {
        assert!(!tmp.path().join(o).exists(), "{o}");
    }
}
