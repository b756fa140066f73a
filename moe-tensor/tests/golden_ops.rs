//! Forward and backward of moe-tensor's ops against PyTorch goldens.
//!
//! The files in `tests/goldens/` come from `tools/goldens/gen_ops.py` (see the README
//! there): f32 inputs and an upstream gradient `gy`, with outputs and input gradients
//! computed by torch in f64 from those same f32 values. Each test runs our op in f64
//! (where only summation order may differ from torch) and in f32, then compares
//! every element with `|ours − torch| ≤ atol + rtol·|torch|`, printing the largest
//! differences (run with `--nocapture` to see them).

use anyhow::{bail, Context, Result};
use moe_tensor::safetensors::MmapedSafetensors;
use moe_tensor::{DType, Device, Reduction, Rope, Tensor, DEFAULT_IGNORE_INDEX};

const CPU: Device = Device::Cpu;

/// Tolerances per compute dtype.
#[derive(Clone, Copy, Debug)]
struct Tol {
    atol: f64,
    rtol: f64,
}

/// Our f64 result against torch's f64: only rounding and summation order differ.
const TOL_F64: Tol = Tol {
    atol: 1e-12,
    rtol: 1e-10,
};
/// Our f32 result (f32 inputs, f32 arithmetic) against torch's f64.
const TOL_F32: Tol = Tol { atol: 1e-5, rtol: 1e-4 };

fn tol(dtype: DType) -> Tol {
    if dtype == DType::F64 {
        TOL_F64
    } else {
        TOL_F32
    }
}

/// One golden file.
struct Golden {
    file: MmapedSafetensors,
}

impl Golden {
    fn open(name: &str) -> Result<Golden> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/goldens")
            .join(format!("{name}.safetensors"));
        Ok(Golden {
            file: MmapedSafetensors::open(&path)?,
        })
    }

    /// A float input (stored as F32) converted to `dtype`.
    fn input(&self, key: &str, dtype: DType) -> Result<Tensor> {
        let t = self
            .file
            .load(key, &CPU)
            .with_context(|| format!("golden input {key}"))?;
        if t.dtype() != DType::F32 {
            bail!("golden input {key} is {:?}, expected F32", t.dtype());
        }
        Ok(t.to_dtype(dtype)?)
    }

    /// An integer input (ids, targets, positions).
    fn ids(&self, key: &str) -> Result<Tensor> {
        Ok(self.file.load(key, &CPU)?)
    }

    /// A torch result, in f64.
    fn reference(&self, key: &str) -> Result<Tensor> {
        Ok(self.file.load(key, &CPU)?)
    }

    /// A numeric attribute from the file's metadata.
    #[allow(dead_code)]
    fn attr(&self, key: &str) -> Result<f64> {
        let v = self
            .file
            .metadata()
            .and_then(|m| m.get(key))
            .with_context(|| format!("metadata {key}"))?;
        Ok(v.parse()?)
    }

    /// A boolean attribute (`True`/`False`, as Python writes them).
    fn flag(&self, key: &str) -> Result<bool> {
        let v = self
            .file
            .metadata()
            .and_then(|m| m.get(key))
            .with_context(|| format!("metadata {key}"))?;
        Ok(v == "True")
    }
}

/// Compares `got` with the f64 reference `want`, printing the largest differences.
fn check(label: &str, got: &Tensor, want: &Tensor, dtype: DType) -> Result<()> {
    let Tol { atol, rtol } = tol(dtype);
    if got.dims() != want.dims() {
        bail!("{label}: shape {:?}, torch has {:?}", got.dims(), want.dims());
    }
    let (g, w) = (got.to_vec_f64()?, want.to_vec_f64()?);
    let (mut max_abs, mut max_rel, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    for (a, b) in g.iter().zip(&w) {
        let d = (a - b).abs();
        max_abs = max_abs.max(d);
        if b.abs() > 1e-3 {
            max_rel = max_rel.max(d / b.abs());
        }
        // NaN-safe: a NaN difference makes `worst` NaN, which fails the check.
        worst = if d.is_nan() {
            f64::NAN
        } else {
            worst.max(d / (atol + rtol * b.abs()))
        };
    }
    let ok = worst <= 1.0;
    println!(
        "{} {label} [{dtype:?}]: max abs diff {max_abs:.2e}, max rel diff {max_rel:.2e} (|torch| > 1e-3), \
         worst diff/tolerance {worst:.3} (atol {atol:e}, rtol {rtol:e})",
        if ok { "OK" } else { "NOT OK" }
    );
    if !ok {
        bail!("{label} [{dtype:?}]: differs from torch beyond tolerance (max abs diff {max_abs:e})");
    }
    Ok(())
}

/// Gradient of a parameter after backward, or an error naming it.
fn grad(t: &Tensor, label: &str) -> Result<Tensor> {
    t.grad().with_context(|| format!("{label}: no gradient after backward"))
}

const DTYPES: [DType; 2] = [DType::F64, DType::F32];

#[test]
fn matmul_matches_torch() -> Result<()> {
    let g = Golden::open("matmul")?;
    for case in ["mm", "bmm", "bcast", "tt", "bt"] {
        for dtype in DTYPES {
            let a = g.input(&format!("{case}.a"), dtype)?.to_param();
            let b = g.input(&format!("{case}.b"), dtype)?.to_param();
            // Transposed operands are views, not copies.
            let a_used = if g.flag(&format!("{case}.transpose_a"))? {
                a.transpose(-1, -2)?
            } else {
                a.clone()
            };
            let b_used = if g.flag(&format!("{case}.transpose_b"))? {
                b.transpose(-1, -2)?
            } else {
                b.clone()
            };
            let y = a_used.matmul(&b_used)?;
            y.backward_with(&g.input(&format!("{case}.gy"), dtype)?)?;
            check(
                &format!("matmul.{case}.y"),
                &y,
                &g.reference(&format!("{case}.y"))?,
                dtype,
            )?;
            check(
                &format!("matmul.{case}.grad_a"),
                &grad(&a, "a")?,
                &g.reference(&format!("{case}.grad_a"))?,
                dtype,
            )?;
            check(
                &format!("matmul.{case}.grad_b"),
                &grad(&b, "b")?,
                &g.reference(&format!("{case}.grad_b"))?,
                dtype,
            )?;
        }
    }
    Ok(())
}

#[test]
fn activations_match_torch() -> Result<()> {
    let g = Golden::open("activations")?;
    type Act = fn(&Tensor) -> moe_tensor::Result<Tensor>;
    let ops: [(&str, Act); 3] = [
        ("silu", Tensor::silu),
        ("gelu_tanh", Tensor::gelu_tanh),
        ("gelu_erf", Tensor::gelu_erf),
    ];
    for (name, op) in ops {
        for dtype in DTYPES {
            let x = g.input("x", dtype)?.to_param();
            let y = op(&x)?;
            y.backward_with(&g.input("gy", dtype)?)?;
            check(&format!("{name}.y"), &y, &g.reference(&format!("{name}.y"))?, dtype)?;
            check(
                &format!("{name}.grad_x"),
                &grad(&x, "x")?,
                &g.reference(&format!("{name}.grad_x"))?,
                dtype,
            )?;
        }
    }
    Ok(())
}

#[test]
fn embedding_matches_torch() -> Result<()> {
    let g = Golden::open("embedding")?;
    for dtype in DTYPES {
        let w = g.input("weight", dtype)?.to_param();
        let y = w.embedding(&g.ids("ids")?)?;
        y.backward_with(&g.input("gy", dtype)?)?;
        check("embedding.y", &y, &g.reference("y")?, dtype)?;
        // Repeated ids: their rows' gradients add up.
        check(
            "embedding.grad_weight",
            &grad(&w, "weight")?,
            &g.reference("grad_weight")?,
            dtype,
        )?;
    }
    Ok(())
}

#[test]
fn softmax_and_log_softmax_match_torch() -> Result<()> {
    type Op = fn(&Tensor, isize) -> moe_tensor::Result<Tensor>;
    let ops: [(&str, Op); 2] = [("softmax", Tensor::softmax), ("log_softmax", Tensor::log_softmax)];
    for (name, op) in ops {
        let g = Golden::open(name)?;
        for case in ["last", "mid"] {
            let dim = g.attr(&format!("{case}.dim"))? as isize;
            for dtype in DTYPES {
                let x = g.input(&format!("{case}.x"), dtype)?.to_param();
                let y = op(&x, dim)?;
                y.backward_with(&g.input(&format!("{case}.gy"), dtype)?)?;
                check(
                    &format!("{name}.{case}.y"),
                    &y,
                    &g.reference(&format!("{case}.y"))?,
                    dtype,
                )?;
                let gx = grad(&x, "x")?;
                check(
                    &format!("{name}.{case}.grad_x"),
                    &gx,
                    &g.reference(&format!("{case}.grad_x"))?,
                    dtype,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn rms_norm_matches_torch() -> Result<()> {
    let g = Golden::open("rms_norm")?;
    for case in ["d16", "d64"] {
        let eps = g.attr(&format!("{case}.eps"))?;
        for dtype in DTYPES {
            let x = g.input(&format!("{case}.x"), dtype)?.to_param();
            let w = g.input(&format!("{case}.w"), dtype)?.to_param();
            let y = x.rms_norm(&w, eps)?;
            y.backward_with(&g.input(&format!("{case}.gy"), dtype)?)?;
            check(
                &format!("rms_norm.{case}.y"),
                &y,
                &g.reference(&format!("{case}.y"))?,
                dtype,
            )?;
            check(
                &format!("rms_norm.{case}.grad_x"),
                &grad(&x, "x")?,
                &g.reference(&format!("{case}.grad_x"))?,
                dtype,
            )?;
            check(
                &format!("rms_norm.{case}.grad_w"),
                &grad(&w, "w")?,
                &g.reference(&format!("{case}.grad_w"))?,
                dtype,
            )?;
        }
    }
    Ok(())
}

#[test]
fn rope_matches_transformers() -> Result<()> {
    let g = Golden::open("rope")?;
    for case in ["d8", "d16"] {
        let theta = g.attr(&format!("{case}.theta"))?;
        let start = g.attr(&format!("{case}.start"))? as usize;
        let positions = g.ids(&format!("{case}.positions"))?;
        for dtype in DTYPES {
            let x = g.input(&format!("{case}.x"), dtype)?;
            let (t, d) = (x.dims()[2], x.dims()[3]);
            let rope = Rope::new(d, start + t, theta, dtype, &CPU)?;
            // Our tables hold each angle once ([P, D/2]); HF's cos/sin repeat them ([T, D]).
            let half = |key: &str| -> Result<Tensor> { Ok(g.reference(key)?.narrow(1, 0, d / 2)?) };
            check(
                &format!("rope.{case}.cos"),
                &rope.cos().narrow(0, start, t)?,
                &half(&format!("{case}.cos"))?,
                dtype,
            )?;
            check(
                &format!("rope.{case}.sin"),
                &rope.sin().narrow(0, start, t)?,
                &half(&format!("{case}.sin"))?,
                dtype,
            )?;
            // By offset, and by explicit position ids.
            for (how, by_ids) in [("offset", false), ("ids", true)] {
                let x = x.to_param();
                let y = if by_ids {
                    x.rope_at(&rope, &positions)?
                } else {
                    x.rope(&rope, start)?
                };
                y.backward_with(&g.input(&format!("{case}.gy"), dtype)?)?;
                check(
                    &format!("rope.{case}.{how}.y"),
                    &y,
                    &g.reference(&format!("{case}.y"))?,
                    dtype,
                )?;
                let gx = grad(&x, "x")?;
                check(
                    &format!("rope.{case}.{how}.grad_x"),
                    &gx,
                    &g.reference(&format!("{case}.grad_x"))?,
                    dtype,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn causal_gqa_attention_matches_torch_sdpa() -> Result<()> {
    let g = Golden::open("attention")?;
    for case in ["gqa", "mha", "mqa"] {
        for dtype in DTYPES {
            let q = g.input(&format!("{case}.q"), dtype)?.to_param();
            let k = g.input(&format!("{case}.k"), dtype)?.to_param();
            let v = g.input(&format!("{case}.v"), dtype)?.to_param();
            // The default scale (1/√Dh) for two cases, an explicit one for the third.
            let scale = if case == "mqa" {
                Some(g.attr(&format!("{case}.scale"))?)
            } else {
                None
            };
            let y = q.causal_attention(&k, &v, scale)?;
            y.backward_with(&g.input(&format!("{case}.gy"), dtype)?)?;
            check(
                &format!("attention.{case}.y"),
                &y,
                &g.reference(&format!("{case}.y"))?,
                dtype,
            )?;
            for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
                let label = format!("attention.{case}.grad_{name}");
                check(
                    &label,
                    &grad(t, name)?,
                    &g.reference(&format!("{case}.grad_{name}"))?,
                    dtype,
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn cross_entropy_with_ignore_index_matches_torch() -> Result<()> {
    let g = Golden::open("cross_entropy")?;
    let ignore = g.attr("ignore_index")? as i64;
    assert_eq!(ignore, DEFAULT_IGNORE_INDEX);
    for (name, reduction) in [("mean", Reduction::Mean), ("sum", Reduction::Sum)] {
        for dtype in DTYPES {
            let logits = g.input("logits", dtype)?.to_param();
            let loss = logits.cross_entropy(&g.ids("targets")?, ignore, reduction)?;
            // Upstream gradient 0.75, not 1, so a dropped scale would show.
            loss.backward_with(&g.input("gy", dtype)?)?;
            check(
                &format!("cross_entropy.{name}.loss"),
                &loss,
                &g.reference(&format!("{name}.loss"))?,
                dtype,
            )?;
            let gl = grad(&logits, "logits")?;
            check(
                &format!("cross_entropy.{name}.grad_logits"),
                &gl,
                &g.reference(&format!("{name}.grad_logits"))?,
                dtype,
            )?;
        }
    }
    Ok(())
}
