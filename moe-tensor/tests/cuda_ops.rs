//! Every op with a CUDA path, compared with the CPU on every available
//! accelerator (forward and backward, through `device_check`). Without a
//! CUDA device (no `cuda` feature, no driver, no GPU) each test prints
//! "no CUDA device: <reason>; skipping <test>" and passes.
//!
//! Tolerances (see `Tolerance`): elementwise f32 `F32` (1e-5 relative),
//! reductions, softmax, norms, matmul and gated activations (a transcendental
//! times two factors) `F32_REDUCE` (1e-4 relative), bf16 matmul `BF16`
//! (2e-2 relative), f64 kernels `F64` (1e-10 relative); layout copies,
//! casts and moves are exact.

use moe_tensor::device_check::{accelerators_or_skip, compare_with_cpu, Tolerance};
use moe_tensor::init::Rng;
use moe_tensor::{CopyLimit, DType, Device, Error, Reduction, Result, Rope, Tensor, UnaryOp};

/// A comparison under test.
type CmpOp = fn(&Tensor, &Tensor) -> Result<Tensor>;

/// A view-then-copy under test.
type ViewOp = fn(&Tensor) -> Result<Tensor>;

const EXACT: Tolerance = Tolerance { rtol: 0.0, atol: 0.0 };

/// f64 kernels against the CPU's f64 (math libraries differ by an ulp or so).
const F64: Tolerance = Tolerance {
    rtol: 1e-10,
    atol: 1e-12,
};

fn randn(rng: &mut Rng, dims: &[usize]) -> Tensor {
    rng.normal(dims.to_vec(), 0.0, 1.0, DType::F32, &Device::Cpu).unwrap()
}

fn positive(rng: &mut Rng, dims: &[usize]) -> Tensor {
    rng.uniform(dims.to_vec(), 0.5, 2.0, DType::F32, &Device::Cpu).unwrap()
}

fn ids(v: Vec<i64>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(v, dims.to_vec(), &Device::Cpu).unwrap()
}

#[test]
fn moves_round_trip_every_dtype_exactly() -> Result<()> {
    for dev in accelerators_or_skip("moves_round_trip_every_dtype_exactly") {
        let f = Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, -1e-3], (2, 3), &Device::Cpu)?;
        for dtype in [DType::F32, DType::F64, DType::BF16, DType::F16, DType::I64, DType::U8] {
            let x = f.abs()?.to_dtype(dtype)?;
            let back = x.to_device(&dev)?.to_device(&Device::Cpu)?;
            assert_eq!(back.dtype(), dtype);
            assert_eq!(back.to_vec_f64()?, x.to_vec_f64()?, "{dtype:?}");
        }
        // Constructors on the device and reading back.
        let d = Tensor::from_vec(vec![1i64, 2, 3], 3, &dev)?;
        assert_eq!(d.device(), dev);
        assert_eq!(d.to_vec::<i64>()?, vec![1, 2, 3]);
        assert_eq!(
            Tensor::full(2.5, (2, 2), DType::F32, &dev)?.to_vec::<f32>()?,
            vec![2.5; 4]
        );
        assert_eq!(
            Tensor::arange(4, DType::F32, &dev)?.to_vec::<f32>()?,
            vec![0.0, 1.0, 2.0, 3.0]
        );
        assert!(matches!(d.to_vec::<f32>(), Err(Error::DTypeMismatch { .. })));
    }
    Ok(())
}

#[test]
fn views_become_contiguous_exactly() -> Result<()> {
    for dev in accelerators_or_skip("views_become_contiguous_exactly") {
        let mut rng = Rng::seed(1);
        let x = randn(&mut rng, &[4, 5, 6]);
        let cases: [(&str, ViewOp); 4] = [
            ("transpose", |t| t.transpose(0, 2)?.contiguous()),
            ("narrow", |t| t.narrow(1, 1, 3)?.contiguous()),
            ("permute+narrow", |t| t.transpose(1, 2)?.narrow(0, 2, 2)?.contiguous()),
            ("broadcast", |t| {
                t.narrow(0, 0, 1)?.broadcast_as((3, 5, 6))?.contiguous()
            }),
        ];
        for (name, f) in cases {
            // Copies are exact; the backward of a broadcast sums the copies'
            // gradients, in the device's order.
            let backward_tol = if name == "broadcast" {
                Tolerance::F32_REDUCE
            } else {
                EXACT
            };
            compare_with_cpu(name, &dev, |t| f(&t[0]), std::slice::from_ref(&x), false, EXACT)?;
            compare_with_cpu(name, &dev, |t| f(&t[0]), std::slice::from_ref(&x), true, backward_tol)?;
        }
    }
    Ok(())
}

#[test]
fn casts_match_the_cpu() -> Result<()> {
    for dev in accelerators_or_skip("casts_match_the_cpu") {
        let mut rng = Rng::seed(2);
        let x = randn(&mut rng, &[3, 7]).mul_scalar(100.0)?;
        // Round to nearest even on both sides, so bf16 is exact too.
        compare_with_cpu(
            "f32->bf16",
            &dev,
            |t| t[0].to_dtype(DType::BF16),
            std::slice::from_ref(&x),
            true,
            EXACT,
        )?;
        let b = x.to_dtype(DType::BF16)?;
        compare_with_cpu("bf16->f32", &dev, |t| t[0].to_dtype(DType::F32), &[b], false, EXACT)?;
        let d = x.to_dtype(DType::F64)?;
        compare_with_cpu("f64->f32", &dev, |t| t[0].to_dtype(DType::F32), &[d], false, EXACT)?;
        let i = ids(vec![-3, 0, 5, 1 << 20], &[4]);
        compare_with_cpu("i64->f32", &dev, |t| t[0].to_dtype(DType::F32), &[i], false, EXACT)?;
    }
    Ok(())
}

#[test]
fn unary_ops_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("unary_ops_forward_and_backward") {
        let mut rng = Rng::seed(3);
        let x = randn(&mut rng, &[5, 9]);
        let p = positive(&mut rng, &[5, 9]);
        let ops = [
            UnaryOp::Neg,
            UnaryOp::Exp,
            UnaryOp::Abs,
            UnaryOp::Sigmoid,
            UnaryOp::Silu,
            UnaryOp::GeluTanh,
            UnaryOp::GeluErf,
            UnaryOp::Relu,
            UnaryOp::Tanh,
            UnaryOp::Powf(2.0),
            UnaryOp::Affine { mul: 1.5, add: -0.25 },
        ];
        let wide = x.to_dtype(DType::F64)?;
        for op in ops {
            compare_with_cpu(
                &format!("{op:?}"),
                &dev,
                |t| t[0].unary(op),
                std::slice::from_ref(&x),
                true,
                Tolerance::F32,
            )?;
            let f = |t: &[Tensor]| t[0].unary(op);
            compare_with_cpu(&format!("{op:?} f64"), &dev, f, std::slice::from_ref(&wide), true, F64)?;
        }
        // On a transposed view too.
        compare_with_cpu(
            "silu of a view",
            &dev,
            |t| t[0].t()?.silu(),
            std::slice::from_ref(&x),
            true,
            Tolerance::F32,
        )?;
        for op in [UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Recip, UnaryOp::Powf(1.7)] {
            compare_with_cpu(
                &format!("{op:?}"),
                &dev,
                |t| t[0].unary(op),
                std::slice::from_ref(&p),
                true,
                Tolerance::F32,
            )?;
        }
    }
    Ok(())
}

#[test]
fn binary_ops_broadcast_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("binary_ops_broadcast_forward_and_backward") {
        let mut rng = Rng::seed(4);
        let a = randn(&mut rng, &[3, 1, 4]);
        let b = positive(&mut rng, &[2, 4]);
        let ins = [a.clone(), b.clone()];
        compare_with_cpu("add", &dev, |t| t[0].add(&t[1]), &ins, true, Tolerance::F32)?;
        compare_with_cpu("sub", &dev, |t| t[0].sub(&t[1]), &ins, true, Tolerance::F32)?;
        compare_with_cpu("mul", &dev, |t| t[0].mul(&t[1]), &ins, true, Tolerance::F32_REDUCE)?;
        compare_with_cpu("div", &dev, |t| t[0].div(&t[1]), &ins, true, Tolerance::F32_REDUCE)?;
        compare_with_cpu("maximum", &dev, |t| t[0].maximum(&t[1]), &ins, true, Tolerance::F32)?;
        compare_with_cpu("minimum", &dev, |t| t[0].minimum(&t[1]), &ins, true, Tolerance::F32)?;
        let wide = [a.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?];
        compare_with_cpu("div f64", &dev, |t| t[0].div(&t[1]), &wide, true, F64)?;
        compare_with_cpu("maximum f64", &dev, |t| t[0].maximum(&t[1]), &wide, true, F64)?;
        compare_with_cpu("lt f64", &dev, |t| t[0].lt(&t[1]), &wide, false, EXACT)?;
        for (name, f) in [
            ("ge", Tensor::ge as CmpOp),
            ("lt", Tensor::lt),
            ("eq", Tensor::eq),
            ("ne", Tensor::ne),
        ] {
            // Ties included: `a` against itself broadcast.
            compare_with_cpu(name, &dev, |t| f(&t[0], &t[1]), &ins, false, EXACT)?;
            compare_with_cpu(
                name,
                &dev,
                |t| f(&t[0], &t[0].t()?.t()?),
                std::slice::from_ref(&a),
                false,
                EXACT,
            )?;
        }
        let other = Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?;
        let a_dev = a.to_device(&dev)?;
        assert!(matches!(a_dev.add(&other), Err(Error::DeviceMismatch { .. })));
    }
    Ok(())
}

#[test]
fn where_and_masked_fill() -> Result<()> {
    for dev in accelerators_or_skip("where_and_masked_fill") {
        let mut rng = Rng::seed(12);
        let a = randn(&mut rng, &[3, 4]);
        let b = randn(&mut rng, &[4]);
        let m = Tensor::from_vec(vec![1u8, 0, 0], (3, 1), &Device::Cpu)?;
        let f = |t: &[Tensor]| t[0].where_cond(&t[1], &t[2]);
        compare_with_cpu("where_cond", &dev, f, &[m.clone(), a.clone(), b], true, Tolerance::F32)?;
        let g = |t: &[Tensor]| t[1].masked_fill(&t[0], -1e9);
        compare_with_cpu("masked_fill", &dev, g, &[m, a], true, Tolerance::F32)?;
        let i = ids(vec![1, 2, 3, 4], &[2, 2]);
        let mi = Tensor::from_vec(vec![0u8, 1], 2, &Device::Cpu)?;
        let h = |t: &[Tensor]| t[0].masked_fill(&t[1], -7.0);
        compare_with_cpu("masked_fill i64", &dev, h, &[i, mi], false, EXACT)?;
    }
    Ok(())
}

#[test]
fn cat_stack_and_narrow_backward() -> Result<()> {
    for dev in accelerators_or_skip("cat_stack_and_narrow_backward") {
        let mut rng = Rng::seed(13);
        let (a, b, c) = (
            randn(&mut rng, &[2, 3, 4]),
            randn(&mut rng, &[2, 1, 4]),
            randn(&mut rng, &[4, 2]),
        );
        let f = |t: &[Tensor]| Tensor::cat(&[&t[0], &t[1], &t[0]], 1);
        compare_with_cpu("cat dim 1", &dev, f, &[a.clone(), b], true, EXACT)?;
        let g = |t: &[Tensor]| Tensor::cat(&[&t[0].t()?, &t[1]], 0);
        compare_with_cpu("cat of views", &dev, g, &[c.clone(), c.t()?.contiguous()?], true, EXACT)?;
        let h = |t: &[Tensor]| Tensor::stack(&[&t[0], &t[0]], 0);
        compare_with_cpu("stack", &dev, h, std::slice::from_ref(&a), true, EXACT)?;
        let m = Tensor::from_vec(vec![1u8, 0, 1, 1], (2, 2), &Device::Cpu)?;
        let u = |t: &[Tensor]| Tensor::cat(&[&t[0], &t[0]], 0);
        compare_with_cpu("cat u8", &dev, u, &[m], false, EXACT)?;
    }
    Ok(())
}

#[test]
fn topk_values_indices_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("topk_values_indices_and_backward") {
        let mut rng = Rng::seed(14);
        let x = randn(&mut rng, &[5, 3, 16]);
        for k in [1, 2, 8, 16] {
            let v = |t: &[Tensor]| Ok(t[0].topk(k)?.0);
            compare_with_cpu(
                &format!("topk {k} values"),
                &dev,
                v,
                std::slice::from_ref(&x),
                true,
                EXACT,
            )?;
            let i = |t: &[Tensor]| Ok(t[0].topk(k)?.1);
            compare_with_cpu(
                &format!("topk {k} indices"),
                &dev,
                i,
                std::slice::from_ref(&x),
                false,
                EXACT,
            )?;
        }
        // Ties by lower index and NaN first, as on the CPU.
        let t = Tensor::from_vec(vec![1.0f32, 3.0, f32::NAN, 3.0, -1.0, 3.0], (1, 6), &Device::Cpu)?;
        let i = |t: &[Tensor]| Ok(t[0].topk(4)?.1);
        compare_with_cpu("topk ties and NaN", &dev, i, &[t], false, EXACT)?;
    }
    Ok(())
}

#[test]
fn sums_and_means_over_dims() -> Result<()> {
    for dev in accelerators_or_skip("sums_and_means_over_dims") {
        let mut rng = Rng::seed(5);
        let x = randn(&mut rng, &[3, 4, 5]);
        let tol = Tolerance::F32_REDUCE;
        compare_with_cpu(
            "sum dim 0",
            &dev,
            |t| t[0].sum(&[0], false),
            std::slice::from_ref(&x),
            true,
            tol,
        )?;
        compare_with_cpu(
            "sum dims 1,2",
            &dev,
            |t| t[0].sum(&[1, 2], true),
            std::slice::from_ref(&x),
            true,
            tol,
        )?;
        compare_with_cpu("sum_all", &dev, |t| t[0].sum_all(), std::slice::from_ref(&x), true, tol)?;
        compare_with_cpu(
            "mean -1",
            &dev,
            |t| t[0].mean(&[-1], false),
            std::slice::from_ref(&x),
            true,
            tol,
        )?;
        compare_with_cpu(
            "sum of a view",
            &dev,
            |t| t[0].transpose(0, 2)?.sum(&[1], false),
            std::slice::from_ref(&x),
            true,
            tol,
        )?;
        // A long row: several warps and a grid-stride over the row.
        let long = randn(&mut rng, &[2, 5000]);
        compare_with_cpu("sum long rows", &dev, |t| t[0].sum(&[1], false), &[long], true, tol)?;
    }
    Ok(())
}

#[test]
fn matmul_f32_and_bf16() -> Result<()> {
    for dev in accelerators_or_skip("matmul_f32_and_bf16") {
        let mut rng = Rng::seed(6);
        let tol = Tolerance::F32_REDUCE;
        let a = randn(&mut rng, &[5, 7]);
        let b = randn(&mut rng, &[7, 3]);
        let ab = [a.clone(), b.clone()];
        compare_with_cpu("matmul", &dev, |t| t[0].matmul(&t[1]), &ab, true, tol)?;
        let bt = randn(&mut rng, &[3, 7]);
        compare_with_cpu(
            "matmul Bᵀ view",
            &dev,
            |t| t[0].matmul(&t[1].t()?),
            &[a.clone(), bt],
            true,
            tol,
        )?;
        let a3 = randn(&mut rng, &[2, 5, 7]);
        let b3 = randn(&mut rng, &[2, 7, 3]);
        compare_with_cpu("batched", &dev, |t| t[0].matmul(&t[1]), &[a3.clone(), b3], true, tol)?;
        compare_with_cpu("broadcast B", &dev, |t| t[0].matmul(&t[1]), &[a3, b.clone()], true, tol)?;
        // bf16 operands: cuBLAS (f32 accumulation, bf16 result) against the
        // CPU's f32 product of the same bf16-rounded operands.
        let bf = |t: &[Tensor]| {
            let (a, b) = (t[0].to_dtype(DType::BF16)?, t[1].to_dtype(DType::BF16)?);
            if t[0].device().is_cpu() {
                a.to_dtype(DType::F32)?.matmul(&b.to_dtype(DType::F32)?)
            } else {
                a.matmul(&b)?.to_dtype(DType::F32)
            }
        };
        compare_with_cpu("matmul bf16", &dev, bf, &ab, false, Tolerance::BF16)?;
    }
    Ok(())
}

#[test]
fn softmax_and_log_softmax() -> Result<()> {
    for dev in accelerators_or_skip("softmax_and_log_softmax") {
        let mut rng = Rng::seed(7);
        let x = randn(&mut rng, &[4, 6, 33]).mul_scalar(3.0)?;
        let tol = Tolerance::F32_REDUCE;
        compare_with_cpu(
            "softmax -1",
            &dev,
            |t| t[0].softmax(-1),
            std::slice::from_ref(&x),
            true,
            tol,
        )?;
        compare_with_cpu(
            "log_softmax -1",
            &dev,
            |t| t[0].log_softmax(-1),
            std::slice::from_ref(&x),
            true,
            tol,
        )?;
        compare_with_cpu(
            "softmax 1",
            &dev,
            |t| t[0].softmax(1),
            std::slice::from_ref(&x),
            true,
            tol,
        )?;
        let wide = randn(&mut rng, &[3, 3000]);
        compare_with_cpu("log_softmax wide", &dev, |t| t[0].log_softmax(-1), &[wide], true, tol)?;
    }
    Ok(())
}

#[test]
fn rms_norm_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("rms_norm_forward_and_backward") {
        let mut rng = Rng::seed(8);
        let x = randn(&mut rng, &[2, 3, 40]);
        let w = positive(&mut rng, &[40]);
        let f = |t: &[Tensor]| t[0].rms_norm(&t[1], 1e-5);
        compare_with_cpu("rms_norm", &dev, f, &[x, w], true, Tolerance::F32_REDUCE)?;
    }
    Ok(())
}

#[test]
fn rope_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("rope_forward_and_backward") {
        let mut rng = Rng::seed(9);
        let x = randn(&mut rng, &[2, 3, 5, 8]);
        let tables = |d: &Device| Rope::new(8, 16, 10_000.0, DType::F32, d);
        let (cpu_rope, dev_rope) = (tables(&Device::Cpu)?, tables(&dev)?);
        let f = |t: &[Tensor]| {
            let rope = if t[0].device().is_cpu() { &cpu_rope } else { &dev_rope };
            t[0].rope(rope, 3)
        };
        compare_with_cpu("rope", &dev, f, std::slice::from_ref(&x), true, Tolerance::F32)?;
        let pos = ids(vec![0, 2, 4, 6, 8, 1, 3, 5, 7, 9], &[2, 5]);
        let g = |t: &[Tensor]| {
            let rope = if t[0].device().is_cpu() { &cpu_rope } else { &dev_rope };
            t[0].rope_at(rope, &t[1])
        };
        compare_with_cpu("rope_at [B, T] ids", &dev, g, &[x, pos], true, Tolerance::F32)?;
    }
    Ok(())
}

#[test]
fn cross_entropy_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("cross_entropy_forward_and_backward") {
        let mut rng = Rng::seed(10);
        let logits = randn(&mut rng, &[2, 3, 50]).mul_scalar(2.0)?;
        let targets = ids(vec![4, -100, 49, 0, 7, -100], &[2, 3]);
        for red in [Reduction::Mean, Reduction::Sum] {
            let f = |t: &[Tensor]| t[0].cross_entropy(&t[1], -100, red);
            let ins = [logits.clone(), targets.clone()];
            compare_with_cpu(
                &format!("cross_entropy {red:?}"),
                &dev,
                f,
                &ins,
                true,
                Tolerance::F32_REDUCE,
            )?;
        }
        let bad = ids(vec![4, 50, 1, 0, 7, 2], &[2, 3]).to_device(&dev)?;
        let l = logits.to_device(&dev)?;
        assert!(matches!(
            l.cross_entropy(&bad, -100, Reduction::Mean),
            Err(Error::IndexOutOfRange {
                index: 50,
                size: 50,
                ..
            })
        ));
    }
    Ok(())
}

#[test]
fn embedding_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("embedding_forward_and_backward") {
        let mut rng = Rng::seed(11);
        let w = randn(&mut rng, &[10, 6]);
        let i = ids(vec![3, 0, 3, 9, 2, 3], &[2, 3]);
        let f = |t: &[Tensor]| t[0].embedding(&t[1]);
        compare_with_cpu("embedding", &dev, f, &[w.clone(), i], true, Tolerance::F32)?;
        let bad = ids(vec![1, 10], &[2]).to_device(&dev)?;
        assert!(matches!(
            w.to_device(&dev)?.embedding(&bad),
            Err(Error::IndexOutOfRange {
                index: 10,
                size: 10,
                ..
            })
        ));
    }
    Ok(())
}

#[test]
fn gated_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("gated_forward_and_backward") {
        let mut rng = Rng::seed(15);
        let (gate, up) = (randn(&mut rng, &[3, 4, 10]), randn(&mut rng, &[3, 4, 10]));
        let tol = Tolerance::F32_REDUCE;
        let acts = [UnaryOp::Silu, UnaryOp::GeluTanh, UnaryOp::GeluErf, UnaryOp::Relu];
        for act in acts {
            let f = |t: &[Tensor]| t[0].gated(&t[1], act);
            compare_with_cpu(
                &format!("gated {act:?}"),
                &dev,
                f,
                &[gate.clone(), up.clone()],
                true,
                tol,
            )?;
            let wide = [gate.to_dtype(DType::F64)?, up.to_dtype(DType::F64)?];
            compare_with_cpu(&format!("gated {act:?} f64"), &dev, f, &wide, true, F64)?;
        }
        // Views read in place: the halves of a packed projection, a transposed gate.
        let h = randn(&mut rng, &[6, 16]);
        let halves = |t: &[Tensor]| t[0].narrow(-1, 0, 8)?.swiglu(&t[0].narrow(-1, 8, 8)?);
        compare_with_cpu("swiglu of narrowed halves", &dev, halves, &[h], true, tol)?;
        let (g2, u2) = (randn(&mut rng, &[5, 7]), randn(&mut rng, &[7, 5]));
        let tr = |t: &[Tensor]| t[0].t()?.geglu(&t[1]);
        compare_with_cpu("geglu of a transposed gate", &dev, tr, &[g2, u2], true, tol)?;
        // bf16 is not a gated dtype on either device.
        let b = gate.to_dtype(DType::BF16)?.to_device(&dev)?;
        assert!(matches!(b.swiglu(&b), Err(Error::UnsupportedDType { .. })));
    }
    Ok(())
}

#[test]
fn gated_packed_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("gated_packed_forward_and_backward") {
        let mut rng = Rng::seed(16);
        let h = randn(&mut rng, &[2, 3, 24]);
        for act in [UnaryOp::Silu, UnaryOp::GeluTanh] {
            let f = |t: &[Tensor]| t[0].gated_packed(act);
            let name = format!("gated_packed {act:?}");
            compare_with_cpu(&name, &dev, f, std::slice::from_ref(&h), true, Tolerance::F32_REDUCE)?;
            let wide = h.to_dtype(DType::F64)?;
            compare_with_cpu(&format!("{name} f64"), &dev, f, &[wide], true, F64)?;
        }
        // A strided input is made contiguous first.
        let ht = randn(&mut rng, &[24, 5]);
        let f = |t: &[Tensor]| t[0].t()?.gated_packed(UnaryOp::Silu);
        compare_with_cpu("gated_packed of a view", &dev, f, &[ht], true, Tolerance::F32_REDUCE)?;
        let odd = Tensor::zeros((2, 5), DType::F32, &dev)?;
        assert!(matches!(
            odd.gated_packed(UnaryOp::Silu),
            Err(Error::InvalidShape { .. })
        ));
    }
    Ok(())
}

#[test]
fn index_select_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("index_select_forward_and_backward") {
        let mut rng = Rng::seed(17);
        // The MoE permute: token rows in expert order, tokens repeated.
        // Backward adds in the CPU's order, so both directions are exact.
        let x = randn(&mut rng, &[6, 8]);
        let rows = ids(vec![0, 3, 3, 5, 1, 0, 2, 3, 4], &[9]);
        let f = |t: &[Tensor]| t[0].index_select(0, &t[1]);
        compare_with_cpu("index_select rows", &dev, f, &[x.clone(), rows.clone()], true, EXACT)?;
        let wide = x.to_dtype(DType::F64)?;
        compare_with_cpu("index_select f64", &dev, f, &[wide, rows.clone()], true, EXACT)?;
        let x3 = randn(&mut rng, &[3, 5, 4]);
        let sel = ids(vec![2, 0, 2], &[3]);
        for dim in 0..3isize {
            let g = |t: &[Tensor]| t[0].index_select(dim, &t[1]);
            let name = format!("index_select dim {dim}");
            compare_with_cpu(&name, &dev, g, &[x3.clone(), sel.clone()], true, EXACT)?;
        }
        let v = |t: &[Tensor]| t[0].transpose(0, 2)?.index_select(1, &t[1]);
        compare_with_cpu("index_select of a view", &dev, v, &[x3, sel.clone()], true, EXACT)?;
        let one = |t: &[Tensor]| t[0].index_select(0, &t[1]);
        let scalar = Tensor::from_vec(vec![4i64], (), &Device::Cpu)?;
        compare_with_cpu(
            "index_select rank-0 index",
            &dev,
            one,
            &[x.clone(), scalar],
            true,
            EXACT,
        )?;
        let data = ids((0..12).collect(), &[4, 3]);
        compare_with_cpu("index_select i64", &dev, f, &[data, sel], false, EXACT)?;
        // Errors as on the CPU: a bad index, an index on another device.
        let xd = x.to_device(&dev)?;
        let bad = ids(vec![0, 8], &[2]).to_device(&dev)?;
        assert!(matches!(
            xd.index_select(1, &bad),
            Err(Error::IndexOutOfRange { index: 8, size: 8, .. })
        ));
        assert!(matches!(xd.index_select(0, &rows), Err(Error::DeviceMismatch { .. })));
    }
    Ok(())
}

#[test]
fn gather_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("gather_forward_and_backward") {
        let mut rng = Rng::seed(18);
        // Router scores at the top-k ids, an id repeated within a row.
        let scores = randn(&mut rng, &[5, 6]);
        let top = ids(vec![1, 4, 0, 0, 5, 2, 3, 3, 2, 1], &[5, 2]);
        let f = |t: &[Tensor]| t[0].gather(1, &t[1]);
        compare_with_cpu("gather dim 1", &dev, f, &[scores.clone(), top.clone()], true, EXACT)?;
        let wide = scores.to_dtype(DType::F64)?;
        compare_with_cpu("gather f64", &dev, f, &[wide, top], true, EXACT)?;
        // An index smaller than the source in another dim reads a narrowed view.
        let x3 = randn(&mut rng, &[3, 5, 4]);
        let i0 = ids((0..24).map(|i| i * 7 % 3).collect(), &[2, 3, 4]);
        let g0 = |t: &[Tensor]| t[0].gather(0, &t[1]);
        compare_with_cpu("gather dim 0, narrowed", &dev, g0, &[x3.clone(), i0], true, EXACT)?;
        let i2 = ids((0..90).map(|i| (i * 5 + i / 7) % 4).collect(), &[3, 5, 6]);
        let g2 = |t: &[Tensor]| t[0].gather(2, &t[1]);
        compare_with_cpu("gather dim 2, k > dim", &dev, g2, &[x3.clone(), i2], true, EXACT)?;
        let v = |t: &[Tensor]| t[0].transpose(0, 1)?.gather(1, &t[1]);
        let iv = ids((0..30).map(|i| i % 3).collect(), &[5, 2, 3]);
        compare_with_cpu("gather of a view", &dev, v, &[x3, iv], true, EXACT)?;
        let bad = ids(vec![0, 6], &[1, 2]).to_device(&dev)?;
        assert!(matches!(
            scores.to_device(&dev)?.gather(1, &bad),
            Err(Error::IndexOutOfRange { index: 6, size: 6, .. })
        ));
    }
    Ok(())
}

#[test]
fn cumsum_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("cumsum_forward_and_backward") {
        let mut rng = Rng::seed(21);
        // Every dim of a 3-d tensor, both float dtypes; the device adds in the
        // CPU's order, so forward and backward (the suffix sum) are exact.
        let x = randn(&mut rng, &[3, 4, 5]);
        for dim in [0isize, 1, 2, -1] {
            let f = |t: &[Tensor]| t[0].cumsum(dim);
            compare_with_cpu(
                &format!("cumsum dim {dim}"),
                &dev,
                f,
                std::slice::from_ref(&x),
                true,
                EXACT,
            )?;
            let wide = x.to_dtype(DType::F64)?;
            compare_with_cpu(&format!("cumsum f64 dim {dim}"), &dev, f, &[wide], true, EXACT)?;
        }
        // Views read in place: a transpose, a narrowed slice, a broadcast.
        let t = |t: &[Tensor]| t[0].transpose(0, 2)?.cumsum(1);
        compare_with_cpu("cumsum of a transpose", &dev, t, std::slice::from_ref(&x), true, EXACT)?;
        let n = |t: &[Tensor]| t[0].narrow(1, 1, 2)?.cumsum(0);
        compare_with_cpu("cumsum of a narrow", &dev, n, std::slice::from_ref(&x), true, EXACT)?;
        let row = randn(&mut rng, &[1, 6]);
        let b = |t: &[Tensor]| t[0].broadcast_as((4, 6))?.cumsum(0);
        // The broadcast's backward sums 4 gradients in the device's order.
        let tol = Tolerance::F32_REDUCE;
        compare_with_cpu("cumsum of a broadcast", &dev, b, &[row], true, tol)?;
        // A long column (one thread sums it) and a leading -0.0 (copied, not added to 0).
        let long = randn(&mut rng, &[3000, 2]);
        let c0 = |t: &[Tensor]| t[0].cumsum(0);
        compare_with_cpu("cumsum long dim", &dev, c0, &[long], true, EXACT)?;
        let neg_zero = Tensor::from_vec(vec![-0.0f32, 1.0, -1.0], 3, &Device::Cpu)?;
        let back = neg_zero.to_device(&dev)?.cumsum(0)?.to_vec::<f32>()?;
        assert!(back[0] == 0.0 && back[0].is_sign_negative(), "{back:?}");
        // Integers: i64 in i64, u8 masks into i64 (positions of the set entries).
        let counts = ids(vec![3, -1, 4, 1, -5, 9, 2, 6], &[4, 2]);
        compare_with_cpu("cumsum i64", &dev, c0, &[counts], false, EXACT)?;
        let mask = Tensor::from_vec(vec![1u8, 0, 1, 1, 0, 1], (3, 2), &Device::Cpu)?;
        let pos = mask.to_device(&dev)?.cumsum(0)?;
        assert_eq!(pos.dtype(), DType::I64);
        assert_eq!(pos.to_vec::<i64>()?, vec![1, 0, 2, 1, 2, 2]);
        let bf = x.to_dtype(DType::BF16)?.to_device(&dev)?;
        assert!(matches!(bf.cumsum(0), Err(Error::UnsupportedDType { .. })));
    }
    Ok(())
}

#[test]
fn max_over_a_dim_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("max_over_a_dim_forward_and_backward") {
        let mut rng = Rng::seed(22);
        // Values are copied and the gradient is placed, not computed: exact.
        let x = randn(&mut rng, &[3, 5, 4]);
        for dim in [0isize, 1, 2] {
            for keepdim in [false, true] {
                let f = |t: &[Tensor]| t[0].max(dim, keepdim);
                let name = format!("max dim {dim} keepdim {keepdim}");
                compare_with_cpu(&name, &dev, f, std::slice::from_ref(&x), true, EXACT)?;
            }
            let wide = x.to_dtype(DType::F64)?;
            let f = |t: &[Tensor]| t[0].max(dim, false);
            compare_with_cpu(&format!("max f64 dim {dim}"), &dev, f, &[wide], true, EXACT)?;
        }
        let kept = x.to_device(&dev)?.max(1, true)?;
        assert_eq!(kept.dims(), &[3, 1, 4]);
        // A transposed view, and rows longer than a warp (lanes loop, then shuffle).
        let t = |t: &[Tensor]| t[0].transpose(0, 2)?.max(1, false);
        compare_with_cpu("max of a transpose", &dev, t, std::slice::from_ref(&x), true, EXACT)?;
        let long = randn(&mut rng, &[3, 5000]);
        let last = |t: &[Tensor]| t[0].max(-1, true);
        compare_with_cpu("max long rows", &dev, last, &[long], true, EXACT)?;
        // Ties go to the first maximum and a NaN (the first one) wins, also
        // when the candidates sit in different lanes of the warp (d mod 32).
        let mut tied = vec![0.5f32; 3 * 40];
        tied[35] = 2.0; // row 0: 2.0 at 35 (lane 3) and 4 (lane 4): 4 wins
        tied[4] = 2.0;
        tied[40 + 39] = f32::NAN; // row 1: NaN at 39 (lane 7) and 37 (lane 5): 37 wins
        tied[40 + 37] = f32::NAN;
        tied[40 + 2] = 9.0;
        let ties = Tensor::from_vec(tied, (3, 40), &Device::Cpu)?; // row 2: all equal, 0 wins
        let at = ties.to_device(&dev)?.argmax(1, false)?.to_vec::<i64>()?;
        assert_eq!(at, vec![4, 37, 0]);
        compare_with_cpu("max ties and NaN", &dev, last, std::slice::from_ref(&ties), true, EXACT)?;
        // A broadcast view (stride 0 along the dim): every entry ties.
        let row = randn(&mut rng, &[1, 6]);
        let b = |t: &[Tensor]| t[0].broadcast_as((4, 6))?.max(0, false);
        compare_with_cpu("max of a broadcast", &dev, b, &[row], true, EXACT)?;
        let empty = Tensor::zeros((2, 0), DType::F32, &dev)?;
        assert!(matches!(empty.max(1, false), Err(Error::InvalidShape { .. })));
        let bf = x.to_dtype(DType::BF16)?.to_device(&dev)?;
        assert!(matches!(bf.max(0, false), Err(Error::UnsupportedDType { .. })));
    }
    Ok(())
}

#[test]
fn argmax_matches_the_cpu_ties_and_nan() -> Result<()> {
    for dev in accelerators_or_skip("argmax_matches_the_cpu_ties_and_nan") {
        let mut rng = Rng::seed(23);
        let x = randn(&mut rng, &[3, 5, 4]);
        for dim in [0isize, 1, 2] {
            let f = |t: &[Tensor]| t[0].argmax(dim, false);
            compare_with_cpu(
                &format!("argmax dim {dim}"),
                &dev,
                f,
                std::slice::from_ref(&x),
                false,
                EXACT,
            )?;
            let wide = x.to_dtype(DType::F64)?;
            compare_with_cpu(&format!("argmax f64 dim {dim}"), &dev, f, &[wide], false, EXACT)?;
        }
        let a = x.to_device(&dev)?.argmax(2, true)?;
        assert_eq!(a.dims(), &[3, 5, 1]);
        assert_eq!(a.dtype(), DType::I64);
        assert_eq!(a.device(), dev, "the positions stay on the device");
        let t = |t: &[Tensor]| t[0].t()?.argmax(0, false);
        let m = randn(&mut rng, &[6, 70]);
        compare_with_cpu("argmax of a transpose", &dev, t, &[m], false, EXACT)?;
        // First of equal values, first NaN, -0.0 and 0.0 equal (the first wins).
        let v = vec![
            1.0f64,
            3.0,
            3.0,
            -1.0,
            2.0,
            f64::NAN,
            7.0,
            f64::NAN,
            -0.0,
            0.0,
            -0.0,
            -1.0,
        ];
        let ties = Tensor::from_vec(v, (3, 4), &Device::Cpu)?;
        let rows = |t: &[Tensor]| t[0].argmax(1, false);
        compare_with_cpu(
            "argmax ties and NaN",
            &dev,
            rows,
            std::slice::from_ref(&ties),
            false,
            EXACT,
        )?;
        assert_eq!(ties.to_device(&dev)?.argmax(1, false)?.to_vec::<i64>()?, vec![1, 1, 0]);
        let empty = Tensor::zeros((0, 3), DType::F32, &dev)?;
        assert!(matches!(empty.argmax(0, false), Err(Error::InvalidShape { .. })));
    }
    Ok(())
}

#[test]
fn scatter_add_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("scatter_add_forward_and_backward") {
        let mut rng = Rng::seed(24);
        // Repeated targets in a column add in ascending source position, as on
        // the CPU, so both directions are exact.
        let x = randn(&mut rng, &[4, 3]);
        let src = randn(&mut rng, &[6, 3]);
        let idx0 = ids(vec![0, 3, 3, 1, 0, 2, 3, 3, 3, 2, 1, 0, 0, 0, 1, 3, 2, 2], &[6, 3]);
        let f0 = |t: &[Tensor]| t[0].scatter_add(0, &t[1], &t[2]);
        let ins = [x.clone(), idx0.clone(), src.clone()];
        compare_with_cpu("scatter_add dim 0", &dev, f0, &ins, true, EXACT)?;
        let wide = [x.to_dtype(DType::F64)?, idx0.clone(), src.to_dtype(DType::F64)?];
        compare_with_cpu("scatter_add f64", &dev, f0, &wide, true, EXACT)?;
        let x1 = randn(&mut rng, &[2, 3, 5]);
        let src1 = randn(&mut rng, &[2, 3, 7]);
        let idx2 = ids((0..42).map(|i| (i * 3 + i / 5) % 5).collect(), &[2, 3, 7]);
        let f2 = |t: &[Tensor]| t[0].scatter_add(2, &t[1], &t[2]);
        compare_with_cpu(
            "scatter_add dim 2, k > dim",
            &dev,
            f2,
            &[x1.clone(), idx2, src1.clone()],
            true,
            EXACT,
        )?;
        // An index smaller than src (only its leading part is read) and than
        // self in another dim (the rest of self is passed through).
        let idx_small = ids(vec![4, 0, 4, 1, 2, 2], &[1, 2, 3]);
        let f_small = |t: &[Tensor]| t[0].scatter_add(2, &t[1], &t[2]);
        compare_with_cpu(
            "scatter_add small index",
            &dev,
            f_small,
            &[x1, idx_small, src1],
            true,
            EXACT,
        )?;
        // Views read in place: self and src transposed.
        let xt = randn(&mut rng, &[3, 4]);
        let st = randn(&mut rng, &[3, 6]);
        let v = |t: &[Tensor]| t[0].t()?.scatter_add(0, &t[1], &t[2].t()?);
        compare_with_cpu("scatter_add of views", &dev, v, &[xt, idx0.clone(), st], true, EXACT)?;
        // Errors as on the CPU: a bad index, indices on another device.
        let (xd, sd) = (x.to_device(&dev)?, src.to_device(&dev)?);
        let mut bad = vec![0i64; 18];
        bad[7] = 4;
        let bad = ids(bad, &[6, 3]).to_device(&dev)?;
        assert!(matches!(
            xd.scatter_add(0, &bad, &sd),
            Err(Error::IndexOutOfRange { index: 4, size: 4, .. })
        ));
        assert!(matches!(
            xd.scatter_add(0, &idx0, &sd),
            Err(Error::DeviceMismatch { .. })
        ));
        // Integer data as on the CPU: i64 counts and u8 sums.
        let few = ids(vec![3, 1, 3], &[3]);
        let counts = Tensor::zeros(4, DType::I64, &Device::Cpu)?;
        let ones = Tensor::ones(3, DType::I64, &Device::Cpu)?;
        let want = counts.scatter_add(0, &few, &ones)?.to_vec::<i64>()?;
        let got = counts
            .to_device(&dev)?
            .scatter_add(0, &few.to_device(&dev)?, &ones.to_device(&dev)?)?;
        assert_eq!((got.device(), got.to_vec::<i64>()?), (dev, want));
        let bytes = Tensor::full(200.0, 4, DType::U8, &Device::Cpu)?;
        let add = Tensor::full(25.0, 3, DType::U8, &Device::Cpu)?;
        let want = bytes.scatter_add(0, &few, &add)?.to_vec::<u8>()?;
        let got = bytes
            .to_device(&dev)?
            .scatter_add(0, &few.to_device(&dev)?, &add.to_device(&dev)?)?;
        assert_eq!(got.to_vec::<u8>()?, want);
    }
    Ok(())
}

#[test]
fn expert_combine_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("expert_combine_forward_and_backward") {
        let mut rng = Rng::seed(19);
        // 5 tokens, top-2 over 8 expert rows: two dropped copies (-1), row 5
        // read twice, row 7 read by none.
        let rows = ids(vec![0, 1, 2, -1, 3, 4, 5, 5, -1, 6], &[5, 2]);
        let f = |t: &[Tensor]| t[0].expert_combine(&t[1], &t[2]);
        for d in [6, 100] {
            let y = randn(&mut rng, &[8, d]);
            let w = positive(&mut rng, &[5, 2]);
            let ins = [y.clone(), rows.clone(), w.clone()];
            let name = format!("expert_combine d {d}");
            compare_with_cpu(&name, &dev, f, &ins, true, Tolerance::F32_REDUCE)?;
            let wide = [y.to_dtype(DType::F64)?, rows.clone(), w.to_dtype(DType::F64)?];
            compare_with_cpu(&format!("{name} f64"), &dev, f, &wide, true, F64)?;
        }
        let y = randn(&mut rng, &[8, 6]).to_device(&dev)?;
        let w = positive(&mut rng, &[5, 2]).to_device(&dev)?;
        let bad = ids(vec![0, 1, 2, -1, 3, 8, 5, 5, -1, 6], &[5, 2]).to_device(&dev)?;
        assert!(matches!(
            y.expert_combine(&bad, &w),
            Err(Error::IndexOutOfRange { index: 8, size: 8, .. })
        ));
    }
    Ok(())
}

#[test]
fn grouped_matmul_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("grouped_matmul_forward_and_backward") {
        let mut rng = Rng::seed(20);
        // Four experts, one with no rows (a zero weight gradient).
        let counts = [3usize, 0, 4, 1];
        let x = randn(&mut rng, &[8, 5]);
        let w = randn(&mut rng, &[4, 5, 6]);
        let tol = Tolerance::F32_REDUCE;
        let f = |t: &[Tensor]| t[0].grouped_matmul(&t[1], &counts);
        compare_with_cpu("grouped_matmul", &dev, f, &[x.clone(), w.clone()], true, tol)?;
        let wide = [x.to_dtype(DType::F64)?, w.to_dtype(DType::F64)?];
        compare_with_cpu("grouped_matmul f64", &dev, f, &wide, true, F64)?;
        // Operands read through their strides: the HF [E, F, D] stack as its
        // transpose, x as a transposed view and as a narrowed half.
        let w_efd = randn(&mut rng, &[4, 6, 5]);
        let hf = |t: &[Tensor]| t[0].grouped_matmul(&t[1].transpose(1, 2)?, &counts);
        compare_with_cpu(
            "grouped_matmul HF stack",
            &dev,
            hf,
            &[x.clone(), w_efd.clone()],
            true,
            tol,
        )?;
        let xt = randn(&mut rng, &[5, 8]);
        let tr = |t: &[Tensor]| t[0].t()?.grouped_matmul(&t[1].transpose(1, 2)?, &counts);
        compare_with_cpu("grouped_matmul x view", &dev, tr, &[xt, w_efd.clone()], true, tol)?;
        let h = randn(&mut rng, &[8, 10]);
        let half = |t: &[Tensor]| t[0].narrow(1, 5, 5)?.grouped_matmul(&t[1], &counts);
        compare_with_cpu("grouped_matmul narrowed x", &dev, half, &[h, w.clone()], true, tol)?;
        // Layouts cuBLAS cannot read (broadcast rows) are copied; a broadcast
        // weight (expert stride 0) is read in place.
        let row = randn(&mut rng, &[1, 5]);
        let bx = |t: &[Tensor]| t[0].broadcast_as((8, 5))?.grouped_matmul(&t[1], &counts);
        compare_with_cpu("grouped_matmul broadcast x", &dev, bx, &[row, w.clone()], true, tol)?;
        let w1 = randn(&mut rng, &[1, 5, 6]);
        let bw = |t: &[Tensor]| t[0].grouped_matmul(&t[1].broadcast_as((4, 5, 6))?, &counts);
        compare_with_cpu("grouped_matmul broadcast w", &dev, bw, &[x.clone(), w1], true, tol)?;
        // The HF stack's gradient arrives contiguous in [E, F, D], as on the CPU.
        let w_dev = w_efd.to_device(&dev)?.to_param();
        let y = x.to_device(&dev)?.grouped_matmul(&w_dev.transpose(1, 2)?, &counts)?;
        y.sum_all()?.backward()?;
        let g = w_dev.grad().expect("w has a gradient");
        assert_eq!(g.device(), dev);
        assert!(g.is_contiguous());
    }
    Ok(())
}

/// `[E + 1]` segment offsets of `counts` on `dev`.
fn offsets_on(counts: &[usize], dev: &Device) -> Result<Tensor> {
    let mut o = vec![0i64];
    for &c in counts {
        o.push(o[o.len() - 1] + c as i64);
    }
    Tensor::from_vec(o, counts.len() + 1, dev)
}

#[test]
fn grouped_matmul_over_device_offsets() -> Result<()> {
    use moe_tensor::{with_matmul_precision, MatmulPrecision, Segments};
    for dev in accelerators_or_skip("grouped_matmul_over_device_offsets") {
        let mut rng = Rng::seed(23);
        // Segments empty, under and over one 64-row tile; D and F not
        // multiples of the kernel's tiles.
        let counts = [3usize, 0, 130, 64];
        let x = randn(&mut rng, &[197, 20]);
        let w_efd = randn(&mut rng, &[4, 70, 20]);
        let by_offsets = |t: &[Tensor]| {
            let o = offsets_on(&counts, &t[0].device())?;
            t[0].grouped_matmul(&t[1].transpose(1, 2)?, Segments::Offsets(o))
        };
        let ins = [x.clone(), w_efd.clone()];
        compare_with_cpu(
            "grouped offsets f32",
            &dev,
            by_offsets,
            &ins,
            true,
            Tolerance::F32_REDUCE,
        )?;
        let wide = [x.to_dtype(DType::F64)?, w_efd.to_dtype(DType::F64)?];
        compare_with_cpu("grouped offsets f64", &dev, by_offsets, &wide, true, F64)?;
        let low = |t: &[Tensor]| with_matmul_precision(MatmulPrecision::Bf16, || by_offsets(t));
        compare_with_cpu("grouped offsets bf16", &dev, low, &ins, true, BF16_MATMUL)?;
        // The same rows through cuBLAS (host counts) and the offsets kernel.
        let (dx, dw) = (x.to_device(&dev)?, w_efd.to_device(&dev)?.transpose(1, 2)?);
        let a = dx.grouped_matmul(&dw, &counts)?.to_vec_f64()?;
        let b = dx
            .grouped_matmul(&dw, Segments::Offsets(offsets_on(&counts, &dev)?))?
            .to_vec_f64()?;
        let diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-3, "cuBLAS and offsets kernels differ by {diff}");
    }
    Ok(())
}

#[test]
fn dispatch_plan_matches_the_cpu() -> Result<()> {
    for dev in accelerators_or_skip("dispatch_plan_matches_the_cpu") {
        let mut rng = Rng::seed(24);
        // 300 tokens, top-2 of 8 experts, skewed: more copies than one
        // 256-thread chunk, an expert with none.
        let probs = randn(&mut rng, &[300, 8]).add(&Tensor::from_vec(
            vec![3.0f32, 2.0, 1.0, 0.5, 0.0, 0.0, 0.0, -50.0],
            (1, 8),
            &Device::Cpu,
        )?)?;
        let ids = probs.topk(2)?.1;
        // Scores with ties (rounded to 1/8), for the score policy in f32 and f64.
        let rounded: Vec<f64> = randn(&mut rng, &[300, 2])
            .to_vec_f64()?
            .iter()
            .map(|x| (x * 8.0).round() / 8.0)
            .collect();
        let scores64 = Tensor::from_vec(rounded, (300, 2), &Device::Cpu)?;
        let scores32 = scores64.to_dtype(DType::F32)?;
        // Dropless, and capacities under and over the busiest expert's load,
        // by position and by score.
        let on_dev = |t: &Tensor| t.to_device(&dev);
        let (dev_scores32, dev_scores64) = (on_dev(&scores32)?, on_dev(&scores64)?);
        let limits: Vec<(String, CopyLimit, CopyLimit)> = vec![
            ("dropless".into(), CopyLimit::None, CopyLimit::None),
            (
                "first 40".into(),
                CopyLimit::FirstCopies(40),
                CopyLimit::FirstCopies(40),
            ),
            (
                "first 1000".into(),
                CopyLimit::FirstCopies(1000),
                CopyLimit::FirstCopies(1000),
            ),
            (
                "top 40 f32".into(),
                CopyLimit::TopScores {
                    capacity: 40,
                    scores: &scores32,
                },
                CopyLimit::TopScores {
                    capacity: 40,
                    scores: &dev_scores32,
                },
            ),
            (
                "top 40 f64".into(),
                CopyLimit::TopScores {
                    capacity: 40,
                    scores: &scores64,
                },
                CopyLimit::TopScores {
                    capacity: 40,
                    scores: &dev_scores64,
                },
            ),
            (
                "top 1000 f32".into(),
                CopyLimit::TopScores {
                    capacity: 1000,
                    scores: &scores32,
                },
                CopyLimit::TopScores {
                    capacity: 1000,
                    scores: &dev_scores32,
                },
            ),
        ];
        for (case, on_cpu, on_gpu) in limits {
            let want = ids.dispatch_plan_limited(8, on_cpu)?;
            let got = ids.to_device(&dev)?.dispatch_plan_limited(8, on_gpu)?;
            for (name, w, g) in [
                ("selected", &want.selected, &got.selected),
                ("counts", &want.counts, &got.counts),
                ("offsets", &want.offsets, &got.offsets),
                ("token_of_row", &want.token_of_row, &got.token_of_row),
                ("copy_of_row", &want.copy_of_row, &got.copy_of_row),
                ("row_of_copy", &want.row_of_copy, &got.row_of_copy),
                ("invalid_ids", &want.invalid_ids, &got.invalid_ids),
            ] {
                assert_eq!(g.device(), dev, "{name}");
                assert_eq!(g.to_vec::<i64>()?, w.to_vec::<i64>()?, "{name} {case}");
            }
            assert_eq!(got.dropped.to_vec::<u8>()?, want.dropped.to_vec::<u8>()?, "{case}");
        }
        // An id out of range is counted on the device, not written anywhere.
        let bad = Tensor::from_vec(vec![0i64, 9, 1, 1], (2, 2), &dev)?.dispatch_plan(8)?;
        assert_eq!(bad.invalid_ids.to_vec::<i64>()?, vec![1]);
        assert_eq!(bad.row_of_copy.to_vec::<i64>()?, vec![0, -1, 1, 2]);
    }
    Ok(())
}

#[test]
fn sinkhorn_matches_the_cpu_bit_for_bit() -> Result<()> {
    for dev in accelerators_or_skip("sinkhorn_matches_the_cpu_bit_for_bit") {
        let mut rng = Rng::seed(26);
        // More rows than the block's threads; E = 8 and E = 7 (groups of
        // 128 and 146 rows: the column sums' tree is exact and ragged).
        for (n, e) in [(3000, 8), (513, 7), (64, 1024), (1, 1)] {
            let x = randn(&mut rng, &[n, e]).mul_scalar(2.0)?;
            for (tol, cap) in [(1e-4, 1000), (0.0, 7)] {
                let (want, want_iters) = x.sinkhorn(tol, cap)?;
                let (got, got_iters) = x.to_device(&dev)?.sinkhorn(tol, cap)?;
                let tag = format!("n {n} e {e} tol {tol} cap {cap}");
                assert_eq!(got_iters.to_vec::<i64>()?, want_iters.to_vec::<i64>()?, "{tag}");
                // The arithmetic is the CPU's, rounding for rounding. (Only
                // the f64 exp of the two math libraries may differ, by an
                // ulp, which the rounding to f32 hides but for about one
                // value in 2^29.)
                let (a, b) = (got.to_vec::<f32>()?, want.to_vec::<f32>()?);
                let differ = a.iter().zip(&b).filter(|(p, q)| p.to_bits() != q.to_bits()).count();
                assert_eq!(differ, 0, "{tag}: {differ} of {} values differ in bits", a.len());
                let wide = x.to_dtype(DType::F64)?;
                let (w64, _) = wide.sinkhorn(tol, cap)?;
                let (g64, _) = wide.to_device(&dev)?.sinkhorn(tol, cap)?;
                let worst = g64
                    .to_vec::<f64>()?
                    .iter()
                    .zip(&w64.to_vec::<f64>()?)
                    .map(|(p, q)| (p - q).abs() / q.abs().max(1e-300))
                    .fold(0.0, f64::max);
                assert!(worst < 1e-12, "{tag} f64: relative difference {worst}");
            }
        }
    }
    Ok(())
}

#[test]
fn planned_dispatch_and_combine_match_the_cpu() -> Result<()> {
    for dev in accelerators_or_skip("planned_dispatch_and_combine_match_the_cpu") {
        let mut rng = Rng::seed(25);
        // 7 tokens, top-2 of 4 experts (expert 3 unused).
        let ids = vec![0i64, 2, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2, 0, 2];
        let plan_on = |d: &Device| Tensor::from_vec(ids.clone(), (7, 2), d)?.dispatch_plan(4);
        let x = randn(&mut rng, &[7, 5]);
        let gather = |t: &[Tensor]| t[0].dispatch_rows(&plan_on(&t[0].device())?);
        compare_with_cpu(
            "dispatch_rows",
            &dev,
            gather,
            std::slice::from_ref(&x),
            true,
            Tolerance::F32_REDUCE,
        )?;
        let (y, w) = (randn(&mut rng, &[14, 5]), randn(&mut rng, &[7, 2]));
        let combine = |t: &[Tensor]| t[0].combine_rows(&plan_on(&t[0].device())?, &t[1]);
        compare_with_cpu(
            "combine_rows",
            &dev,
            combine,
            &[y.clone(), w.clone()],
            true,
            Tolerance::F32_REDUCE,
        )?;
        let wide = [y.to_dtype(DType::F64)?, w.to_dtype(DType::F64)?];
        compare_with_cpu("combine_rows f64", &dev, combine, &wide, true, F64)?;
        // With a capacity of 3 copies per expert: dropped copies read no row;
        // the 9 kept copies fill the first rows, the rest belong to no
        // expert and are left out (their gradient is not defined).
        let capped =
            |d: &Device| Tensor::from_vec(ids.clone(), (7, 2), d)?.dispatch_plan_limited(4, CopyLimit::FirstCopies(3));
        let gather = |t: &[Tensor]| t[0].dispatch_rows(&capped(&t[0].device())?)?.narrow(0, 0, 9);
        compare_with_cpu("dispatch_rows capped", &dev, gather, &[x], true, Tolerance::F32_REDUCE)?;
        let combine = |t: &[Tensor]| t[0].combine_rows(&capped(&t[0].device())?, &t[1]);
        compare_with_cpu(
            "combine_rows capped",
            &dev,
            combine,
            &[y, w],
            true,
            Tolerance::F32_REDUCE,
        )?;
    }
    Ok(())
}

/// bf16-rounded operands on both devices: equal up to the f32 sums' order
/// (and cuBLAS's rounding of the operands, if it is not to nearest even).
const BF16_MATMUL: Tolerance = Tolerance { rtol: 2e-3, atol: 1e-3 };

#[test]
fn bf16_matmul_precision_matches_the_cpu_emulation() -> Result<()> {
    use moe_tensor::{with_matmul_precision, MatmulPrecision};
    for dev in accelerators_or_skip("bf16_matmul_precision_matches_the_cpu_emulation") {
        let mut rng = Rng::seed(22);
        let (a, b) = (randn(&mut rng, &[3, 37, 64]), randn(&mut rng, &[64, 48]));
        let f = |t: &[Tensor]| with_matmul_precision(MatmulPrecision::Bf16, || t[0].matmul(&t[1]));
        compare_with_cpu("bf16 matmul", &dev, f, &[a.clone(), b.clone()], true, BF16_MATMUL)?;
        let (x, w) = (randn(&mut rng, &[9, 16]), randn(&mut rng, &[3, 16, 8]));
        let g = |t: &[Tensor]| with_matmul_precision(MatmulPrecision::Bf16, || t[0].grouped_matmul(&t[1], &[4, 0, 5]));
        compare_with_cpu("bf16 grouped_matmul", &dev, g, &[x, w], true, BF16_MATMUL)?;
        // The setting takes effect on the device: results move by about
        // bf16's 2^-9 relative rounding.
        let (da, db) = (a.to_device(&dev)?, b.to_device(&dev)?);
        let full = da.matmul(&db)?.to_vec_f64()?;
        let low = with_matmul_precision(MatmulPrecision::Bf16, || da.matmul(&db))?.to_vec_f64()?;
        let moved = full.iter().zip(&low).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(moved > 1e-4, "bf16 products equal the f32 ones (max diff {moved})");
    }
    Ok(())
}

/// Attention sums up to G·Tq products per gradient element in another order
/// than the CPU's tiles; the absolute floor covers cancellation near zero.
const ATTENTION_F32: Tolerance = Tolerance { rtol: 1e-4, atol: 5e-5 };
const ATTENTION_F64: Tolerance = Tolerance {
    rtol: 1e-9,
    atol: 1e-11,
};

#[test]
fn causal_attention_forward_and_backward() -> Result<()> {
    for dev in accelerators_or_skip("causal_attention_forward_and_backward") {
        let mut rng = Rng::seed(21);
        // (B, Hq, Hkv, Tq, Tk, Dh): GQA with rows that fill no tile evenly,
        // a KV-cache call (Tq < Tk), multi-head attention, and each head-size
        // class of the kernels (d64, d128, d256).
        let cases = [
            (2, 4, 2, 37, 37, 24),
            (1, 2, 1, 5, 40, 64),
            (2, 3, 3, 17, 17, 100),
            (1, 2, 2, 33, 33, 160),
        ];
        for (b, hq, hkv, tq, tk, dh) in cases {
            let q = randn(&mut rng, &[b, hq, tq, dh]);
            let k = randn(&mut rng, &[b, hkv, tk, dh]);
            let v = randn(&mut rng, &[b, hkv, tk, dh]);
            let f = |t: &[Tensor]| t[0].causal_attention(&t[1], &t[2], None);
            let name = format!("causal_attention B{b} Hq{hq} Hkv{hkv} Tq{tq} Tk{tk} Dh{dh}");
            let ins = [q.clone(), k.clone(), v.clone()];
            compare_with_cpu(&name, &dev, f, &ins, true, ATTENTION_F32)?;
            let wide = [q, k, v].map(|t| t.to_dtype(DType::F64).unwrap());
            compare_with_cpu(&format!("{name} f64"), &dev, f, &wide, true, ATTENTION_F64)?;
        }
        // Inputs behind views (a transposed [B, T, H, Dh] projection) and a scale.
        let x = randn(&mut rng, &[2, 9, 2, 8]);
        let g = |t: &[Tensor]| {
            let h = t[0].transpose(1, 2)?;
            h.causal_attention(&h, &h, Some(0.3))
        };
        compare_with_cpu("causal_attention of views", &dev, g, &[x], true, ATTENTION_F32)?;
        // Heads beyond the kernels' limit are a clear error, not a wrong answer.
        let big = Tensor::zeros((1, 1, 2, 300), DType::F32, &dev)?;
        assert!(matches!(
            big.causal_attention(&big, &big, None),
            Err(Error::InvalidShape { .. })
        ));
    }
    Ok(())
}

/// Tensor-core attention (bf16 operands, P and dS rounded to bf16) against
/// the CPU's attention under the same precision, whose tile products round
/// the same operands (Q, K, V and dO to the same bits; P and dS come from
/// tiles of another size, so they round differently) and which stays within
/// 2e-2 of an f64 reference (moe-kernels' fused_attention test). bf16's
/// unit roundoff is 2^-9 ≈ 2e-3 per operand;
/// scores of N(0, 1) inputs move by up to about 2^-8 · scale · Σ|q||k| ≈
/// 1e-2 (Dh 64–128), P relatively as much, and outputs are sums of such
/// terms: the CPU emulator's run of these kernels (tools/cuda_emu,
/// attention_tc) differs from an f64 reference by up to 0.019 on shapes like
/// these, within this tolerance.
const ATTENTION_BF16: Tolerance = Tolerance { rtol: 3e-2, atol: 3e-2 };

#[test]
fn causal_attention_on_tensor_cores_under_bf16_precision() -> Result<()> {
    use moe_tensor::{with_matmul_precision, MatmulPrecision};
    for dev in accelerators_or_skip("causal_attention_on_tensor_cores_under_bf16_precision") {
        let mut rng = Rng::seed(23);
        // (B, Hq, Hkv, Tq, Tk, Dh): GQA with lengths off the 64-row tiles, a
        // KV-cache call (Tq < Tk) over several key tiles; both head sizes.
        let cases = [
            (1, 4, 2, 70, 70, 64),
            (1, 2, 1, 37, 150, 64),
            (1, 4, 1, 65, 65, 128),
            (1, 2, 2, 5, 100, 128),
        ];
        for (b, hq, hkv, tq, tk, dh) in cases {
            let q = randn(&mut rng, &[b, hq, tq, dh]);
            let k = randn(&mut rng, &[b, hkv, tk, dh]);
            let v = randn(&mut rng, &[b, hkv, tk, dh]);
            let f = |t: &[Tensor]| t[0].causal_attention(&t[1], &t[2], None);
            let name = format!("bf16 causal_attention B{b} Hq{hq} Hkv{hkv} Tq{tq} Tk{tk} Dh{dh}");
            let ins = [q, k, v];
            // The whole comparison (forward and backward) runs under Bf16: the
            // backward reads the precision of the thread that runs it.
            with_matmul_precision(MatmulPrecision::Bf16, || {
                compare_with_cpu(&name, &dev, f, &ins, true, ATTENTION_BF16)
            })?;
            // The tensor-core kernels ran: output and gradients move off the
            // f32 (SIMT) ones by about bf16's rounding.
            let highest = attention_and_grads(&dev, &ins)?;
            let bf16 = with_matmul_precision(MatmulPrecision::Bf16, || attention_and_grads(&dev, &ins))?;
            for (what, (x, y)) in ["o", "dq", "dk", "dv"].iter().zip(highest.iter().zip(&bf16)) {
                let moved = x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(
                    moved > 1e-4,
                    "{name}: {what} equals the f32 kernels' (max diff {moved})"
                );
            }
        }
    }
    Ok(())
}

/// `[o, dq, dk, dv]` of causal attention on `dev` with the output gradient 1.
fn attention_and_grads(dev: &Device, ins: &[Tensor; 3]) -> Result<Vec<Vec<f64>>> {
    let [q, k, v] = ins.clone().map(|t| t.to_device(dev).unwrap().to_param());
    let o = q.causal_attention(&k, &v, None)?;
    o.sum_all()?.backward()?;
    let mut out = vec![o.to_vec_f64()?];
    for t in [&q, &k, &v] {
        out.push(t.grad().expect("a gradient").to_vec_f64()?);
    }
    Ok(out)
}

#[test]
fn assign_writes_in_place_from_any_view() -> Result<()> {
    for dev in accelerators_or_skip("assign_writes_in_place_from_any_view") {
        let dst = Tensor::zeros((2, 3), DType::F32, &dev)?;
        let src = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (3, 2), &Device::Cpu)?;
        dst.assign(&src.t()?.to_device(&dev)?)?;
        assert_eq!(dst.to_vec::<f32>()?, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        // Self-assignment from a view of its own storage is safe.
        dst.assign(&dst.narrow(0, 1, 1)?.broadcast_as((2, 3))?)?;
        assert_eq!(dst.to_vec::<f32>()?, vec![2.0, 4.0, 6.0, 2.0, 4.0, 6.0]);
    }
    Ok(())
}

#[test]
fn freed_buffers_are_reused_by_the_allocator() -> Result<()> {
    for dev in accelerators_or_skip("freed_buffers_are_reused_by_the_allocator") {
        let Device::Cuda(ordinal) = dev else { continue };
        // 3 * 2^20 + 1 f32 = a 14 MiB bucket no other test of this binary uses
        // (tests run on parallel threads and share the device's pool).
        let n = (3 << 20) + 1;
        let x = Tensor::zeros(n, DType::F32, &dev)?;
        drop(x.exp()?);
        let before = moe_tensor::cuda_backend::pool_stats(ordinal)?;
        assert!(before.cached_bytes >= 14 << 20, "{before:?}");
        let z = x.exp()?;
        let after = moe_tensor::cuda_backend::pool_stats(ordinal)?;
        assert!(after.hits > before.hits, "{before:?} -> {after:?}");
        assert!(z.to_vec::<f32>()?.iter().all(|&v| v == 1.0));
    }
    Ok(())
}
