//! AdamW and gradient clipping against PyTorch (tools/goldens/optim/gen_adamw.py),
//! weight-decay groups, and exact resume from a saved optimiser state.

use moe_tensor::safetensors::{self, MmapedSafetensors};
use moe_tensor::{DType, Device, Params, Tensor};
use moe_train::optim::{clip_coefficient, clip_grad_norm, AdamW, AdamWConfig};
use moe_train::TrainError;
use std::collections::BTreeMap;

const NAMES: [&str; 4] = ["w", "embed_tokens.weight", "norm.weight", "b"];
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/goldens/adamw.safetensors");

fn golden() -> (BTreeMap<String, Tensor>, BTreeMap<String, String>) {
    let tensors = safetensors::load(GOLDEN, &Device::Cpu).unwrap();
    let meta = MmapedSafetensors::open(GOLDEN).unwrap().metadata().cloned().unwrap();
    (tensors, meta)
}

fn params_from(g: &BTreeMap<String, Tensor>, prefix: &str) -> Params {
    let mut p = Params::new();
    for n in NAMES {
        // A fresh buffer: Params shares storage, and updates are in place.
        let t = &g[&format!("{prefix}{n}")];
        let copy = Tensor::from_vec(t.to_vec::<f32>().unwrap(), t.dims().to_vec(), &Device::Cpu).unwrap();
        p.insert(n, &copy).unwrap();
    }
    p
}

/// Max |a - b| / max(|b|, 1e-3) over the elements: relative, guarded near zero.
fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1e-3))
        .fold(0.0, f64::max)
}

fn config_from(meta: &BTreeMap<String, String>) -> AdamWConfig {
    let f = |k: &str| meta[k].parse::<f64>().unwrap();
    AdamWConfig {
        beta1: f("beta1"),
        beta2: f("beta2"),
        eps: f("eps"),
        weight_decay: f("weight_decay"),
        ..AdamWConfig::default()
    }
}

#[test]
fn adamw_matches_torch_with_two_groups() {
    let (g, meta) = golden();
    let params = params_from(&g, "init.");
    let mut opt = AdamW::new(&params, config_from(&meta)).unwrap();
    let lrs = g["lr"].to_vec::<f64>().unwrap();
    let (mut worst, mut exact, mut total) = (0.0f64, 0usize, 0usize);
    for (t, &lr) in lrs.iter().enumerate() {
        for (n, p) in params.iter() {
            p.set_grad(Some(g[&format!("grad.{t}.{n}")].clone()));
        }
        opt.step(lr).unwrap();
        for (n, p) in params.iter() {
            let err = max_rel(p, &g[&format!("param.{t}.{n}")]);
            assert!(err < 1e-6, "step {t} {n}: rel err {err:e}");
            worst = worst.max(err);
            let (a, b) = (
                p.to_vec::<f32>().unwrap(),
                g[&format!("param.{t}.{n}")].to_vec::<f32>().unwrap(),
            );
            exact += a.iter().zip(&b).filter(|(x, y)| x.to_bits() == y.to_bits()).count();
            total += a.len();
        }
    }
    let state = opt.state_dict().unwrap();
    for n in NAMES {
        for m in ["exp_avg", "exp_avg_sq"] {
            let err = max_rel(&state[&format!("{n}.{m}")], &g[&format!("{m}.{n}")]);
            assert!(err < 1e-6, "{n}.{m}: rel err {err:e}");
        }
        assert_eq!(state[&format!("{n}.step")].to_scalar_f64().unwrap(), lrs.len() as f64);
    }
    println!("AdamW vs torch: max relative error {worst:e}, {exact}/{total} values bit-identical");
}

#[test]
fn weight_decay_groups_by_rank_and_name() {
    let (g, meta) = golden();
    let params = params_from(&g, "init.");
    let opt = AdamW::new(&params, config_from(&meta)).unwrap();
    let wd: BTreeMap<_, _> = opt.weight_decays().into_iter().collect();
    assert_eq!(wd["w"], 0.1);
    assert_eq!(wd["embed_tokens.weight"], 0.1);
    assert_eq!(wd["norm.weight"], 0.0);
    assert_eq!(wd["b"], 0.0);
    let cfg = AdamWConfig {
        decay_embeddings: false,
        ..config_from(&meta)
    };
    let wd: BTreeMap<_, _> = AdamW::new(&params, cfg).unwrap().weight_decays().into_iter().collect();
    assert_eq!(wd["embed_tokens.weight"], 0.0);
    assert_eq!(wd["w"], 0.1);
}

#[test]
fn clip_matches_torch() {
    let (g, meta) = golden();
    let params = params_from(&g, "init.");
    for (n, p) in params.iter() {
        p.set_grad(Some(g[&format!("clip.grad.{n}")].clone()));
    }
    let norm = clip_grad_norm(&params, meta["max_norm"].parse().unwrap()).unwrap();
    let want = g["clip.norm"].to_scalar_f64().unwrap();
    assert!(((norm - want) / want).abs() < 1e-6, "norm {norm} vs torch {want}");
    for (n, p) in params.iter() {
        let err = max_rel(&p.grad().unwrap(), &g[&format!("clip.out.{n}")]);
        assert!(err < 1e-6, "{n}: rel err {err:e}");
    }
}

#[test]
fn clip_by_hand() {
    // Gradients (3, 4) and (12): total norm 13.
    let dev = Device::Cpu;
    let mut params = Params::new();
    let a = params
        .insert("a", &Tensor::zeros(2, DType::F32, &dev).unwrap())
        .unwrap();
    let b = params
        .insert("b", &Tensor::zeros(1, DType::F32, &dev).unwrap())
        .unwrap();
    let c = params
        .insert("c", &Tensor::zeros(1, DType::F32, &dev).unwrap())
        .unwrap(); // no grad
    let set = || {
        a.set_grad(Some(Tensor::from_vec(vec![3.0f32, 4.0], 2, &dev).unwrap()));
        b.set_grad(Some(Tensor::from_vec(vec![12.0f32], 1, &dev).unwrap()));
    };
    set();
    // Below the norm: scaled by 6.5 / (13 + 1e-6).
    assert_eq!(clip_grad_norm(&params, 6.5).unwrap(), 13.0);
    let k = 6.5 / (13.0 + 1e-6);
    let ga = a.grad().unwrap().to_vec::<f32>().unwrap();
    assert_eq!(ga, vec![(3.0 * k) as f32, (4.0 * k) as f32]);
    assert_eq!(b.grad().unwrap().to_vec::<f32>().unwrap(), vec![(12.0 * k) as f32]);
    assert!(c.grad().is_none());
    // Above the norm: untouched.
    set();
    assert_eq!(clip_grad_norm(&params, 20.0).unwrap(), 13.0);
    assert_eq!(a.grad().unwrap().to_vec::<f32>().unwrap(), vec![3.0, 4.0]);
    // Non-finite: returned, gradients untouched.
    b.set_grad(Some(Tensor::from_vec(vec![f32::NAN], 1, &dev).unwrap()));
    assert!(clip_grad_norm(&params, 1.0).unwrap().is_nan());
    assert_eq!(a.grad().unwrap().to_vec::<f32>().unwrap(), vec![3.0, 4.0]);

    // The factor alone, gradients untouched: k below the norm, 1 above it
    // or when the norm is not finite.
    set();
    assert_eq!(clip_coefficient(&params, 6.5).unwrap(), (13.0, k));
    assert_eq!(clip_coefficient(&params, 20.0).unwrap(), (13.0, 1.0));
    assert_eq!(a.grad().unwrap().to_vec::<f32>().unwrap(), vec![3.0, 4.0]);
    b.set_grad(Some(Tensor::from_vec(vec![f32::INFINITY], 1, &dev).unwrap()));
    let (norm, coef) = clip_coefficient(&params, 1.0).unwrap();
    assert!(norm.is_infinite() && coef == 1.0);
}

#[test]
fn the_clip_factor_in_the_step_equals_clipping_then_stepping() {
    // Training passes clip_coefficient's factor to step_with_grad_scale
    // instead of scaling the gradients: the parameters must come out the same
    // bits over several steps, clipped and unclipped.
    let (g, meta) = golden();
    let cfg = config_from(&meta);
    let (pa, pb) = (params_from(&g, "init."), params_from(&g, "init."));
    let (mut oa, mut ob) = (AdamW::new(&pa, cfg.clone()).unwrap(), AdamW::new(&pb, cfg).unwrap());
    for (t, max_norm) in [(0, 0.5), (1, 1e9), (2, 0.05)] {
        for params in [&pa, &pb] {
            for (n, p) in params.iter() {
                let grad = g[&format!("grad.{t}.{n}")].clone();
                p.set_grad(Some(grad));
            }
        }
        let norm_a = clip_grad_norm(&pa, max_norm).unwrap();
        oa.step(1e-2).unwrap();
        let (norm_b, coef) = clip_coefficient(&pb, max_norm).unwrap();
        ob.step_with_grad_scale(1e-2, coef).unwrap();
        assert_eq!(norm_a, norm_b);
        assert_eq!(coef == 1.0, max_norm == 1e9, "step {t}: factor {coef}");
        for ((n, a), (_, b)) in pa.iter().zip(pb.iter()) {
            let bits = |x: &Tensor| {
                x.to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(a), bits(b), "step {t}: {n}");
        }
    }
}

/// Runs `steps` updates with gradients drawn from the golden's grad.* tensors.
fn run(params: &Params, opt: &mut AdamW, steps: std::ops::Range<usize>, g: &BTreeMap<String, Tensor>) {
    for t in steps {
        for (n, p) in params.iter() {
            p.set_grad(Some(
                g[&format!("grad.{}.{n}", t % 5)].mul_scalar(1.0 + t as f64).unwrap(),
            ));
        }
        opt.step(1e-2 / (1.0 + t as f64)).unwrap();
    }
}

#[test]
fn restored_state_continues_bit_identically() {
    let (g, meta) = golden();
    let cfg = config_from(&meta);
    // Uninterrupted: 8 steps.
    let full = params_from(&g, "init.");
    let mut opt = AdamW::new(&full, cfg.clone()).unwrap();
    run(&full, &mut opt, 0..8, &g);
    // Interrupted after 3 steps: save params + state to disk, rebuild, load, continue.
    let first = params_from(&g, "init.");
    let mut opt1 = AdamW::new(&first, cfg.clone()).unwrap();
    run(&first, &mut opt1, 0..3, &g);
    let dir = tempfile::tempdir().unwrap();
    let (pp, sp) = (
        dir.path().join("model.safetensors"),
        dir.path().join("optimizer.safetensors"),
    );
    safetensors::save(&pp, first.iter(), None).unwrap();
    safetensors::save(
        &sp,
        opt1.state_dict().unwrap().iter().map(|(k, v)| (k.as_str(), v)),
        None,
    )
    .unwrap();
    let loaded = safetensors::load(&pp, &Device::Cpu).unwrap();
    let resumed = params_from(&loaded, "");
    let mut opt2 = AdamW::new(&resumed, cfg).unwrap();
    opt2.load_state_dict(&safetensors::load(&sp, &Device::Cpu).unwrap())
        .unwrap();
    run(&resumed, &mut opt2, 3..8, &g);
    for ((n, a), (_, b)) in full.iter().zip(resumed.iter()) {
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{n} differs after resume");
    }
    let (s1, s2) = (opt.state_dict().unwrap(), opt2.state_dict().unwrap());
    for (k, v) in &s1 {
        assert_eq!(v.to_vec_f64().unwrap(), s2[k].to_vec_f64().unwrap(), "{k}");
    }
}

#[test]
fn bad_state_dicts_are_rejected_by_name() {
    let (g, meta) = golden();
    let params = params_from(&g, "init.");
    let mut opt = AdamW::new(&params, config_from(&meta)).unwrap();
    let good = opt.state_dict().unwrap();
    let mut missing = good.clone();
    missing.remove("b.exp_avg_sq");
    let err = opt.load_state_dict(&missing).unwrap_err();
    assert!(
        matches!(&err, TrainError::MissingState { name } if name == "b.exp_avg_sq"),
        "{err}"
    );
    let mut wrong = good.clone();
    wrong.insert(
        "w.exp_avg".into(),
        Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = opt.load_state_dict(&wrong).unwrap_err();
    assert!(
        matches!(&err, TrainError::StateShape { name, .. } if name == "w.exp_avg"),
        "{err}"
    );
    let mut extra = good.clone();
    extra.insert(
        "ghost.exp_avg".into(),
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = opt.load_state_dict(&extra).unwrap_err();
    assert!(
        matches!(&err, TrainError::UnexpectedState { name } if name == "ghost.exp_avg"),
        "{err}"
    );
    opt.load_state_dict(&good).unwrap();
}

#[test]
fn bf16_parameters_update_through_f32_master() {
    let (g, meta) = golden();
    let f32_params = params_from(&g, "init.");
    let mut bf = Params::new();
    for (n, p) in f32_params.iter() {
        bf.insert(n, &p.to_dtype(DType::BF16).unwrap()).unwrap();
    }
    let mut opt = AdamW::new(&bf, config_from(&meta)).unwrap();
    let start = opt.state_dict().unwrap()["w.master"].to_vec::<f32>().unwrap();
    // Tiny steps that a bf16 parameter alone would round away accumulate in the master.
    for _ in 0..3 {
        for (n, p) in bf.iter() {
            p.set_grad(Some(g[&format!("grad.0.{n}")].to_dtype(DType::BF16).unwrap()));
        }
        opt.step(1e-5).unwrap();
    }
    let state = opt.state_dict().unwrap();
    let master = state["w.master"].to_vec::<f32>().unwrap();
    assert!(master.iter().zip(&start).any(|(a, b)| a != b), "master did not move");
    let w = bf.get("w").unwrap();
    assert_eq!(w.dtype(), DType::BF16);
    let rounded = Tensor::from_vec(master, (4, 3), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    assert_eq!(w.to_vec_f64().unwrap(), rounded.to_vec_f64().unwrap());
}

#[test]
fn invalid_config_names_field() {
    let params = Params::new();
    let cfg = AdamWConfig {
        beta2: 1.0,
        ..AdamWConfig::default()
    };
    let err = AdamW::new(&params, cfg).unwrap_err();
    assert!(err.to_string().contains("optimizer.beta2"), "{err}");
    let cfg = AdamWConfig {
        eps: 0.0,
        ..AdamWConfig::default()
    };
    assert!(AdamW::new(&params, cfg)
        .unwrap_err()
        .to_string()
        .contains("optimizer.eps"));
}
