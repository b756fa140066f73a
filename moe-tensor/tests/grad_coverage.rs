//! Every differentiable op has a finite-difference gradient check.
//!
//! The op names are read from the source (`fn name(..) -> &'static str` bodies in
//! src/tensor/), so a new op that is not exercised below fails this test by name.
//! Each case is a small smoke check; the thorough ones (random shapes, every dim,
//! non-contiguous inputs) live in grad_core.rs, grad_index.rs, grad_fused.rs and
//! grad_grouped.rs.

mod common;

use common::{randn, uniform};
use moe_tensor::init::Rng;
use moe_tensor::testing::{gradcheck, gradcheck_with, GradCheck, GradReport};
use moe_tensor::{DType, Device, Reduction, Result, Rope, Tensor, UnaryOp};
use std::collections::BTreeSet;

/// String literals returned by every `fn name(...) -> &'static str` in src/tensor/.
fn declared_op_names() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tensor");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("src/tensor exists") {
        let src = std::fs::read_to_string(entry.expect("dir entry").path()).expect("readable source");
        let lines: Vec<&str> = src.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !(line.contains("fn name(") && line.contains("&'static str")) {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let close = format!("{}}}", " ".repeat(indent));
            for body in &lines[i + 1..] {
                if *body == close {
                    break;
                }
                let mut parts = body.split('"');
                parts.next();
                while let Some(lit) = parts.next() {
                    names.insert(lit.to_string());
                    parts.next();
                }
            }
        }
    }
    names
}

fn ids(v: Vec<i64>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(v, dims.to_vec(), &Device::Cpu).unwrap()
}

fn all_cases(rng: &mut Rng) -> Result<Vec<GradReport>> {
    let x = randn(rng, &[3, 4]);
    let y = randn(rng, &[3, 4]);
    let pos = uniform(rng, &[3, 4], 0.5, 2.0);
    let mut out = Vec::new();
    let unary = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::GeluTanh,
        UnaryOp::GeluErf,
        UnaryOp::Tanh,
        UnaryOp::Affine { mul: 2.0, add: 1.0 },
    ];
    for op in unary {
        out.push(gradcheck(|t| t[0].unary(op), std::slice::from_ref(&x))?);
    }
    for op in [
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Recip,
        UnaryOp::Powf(1.5),
        UnaryOp::Relu,
        UnaryOp::Abs,
    ] {
        out.push(gradcheck(|t| t[0].unary(op), std::slice::from_ref(&pos))?);
    }
    let xy = [x.clone(), y.clone()];
    out.push(gradcheck(|t| t[0].add(&t[1]), &xy)?);
    out.push(gradcheck(|t| t[0].sub(&t[1]), &xy)?);
    out.push(gradcheck(|t| t[0].mul(&t[1]), &xy)?);
    out.push(gradcheck(|t| t[0].div(&t[1]), &[x.clone(), pos.clone()])?);
    out.push(gradcheck(|t| t[0].maximum(&t[1]), &xy)?);
    out.push(gradcheck(|t| t[0].minimum(&t[1]), &xy)?);
    out.push(gradcheck(|t| t[0].matmul(&t[1].t()?), &xy)?);
    out.push(gradcheck(|t| t[0].sum(&[1], false), std::slice::from_ref(&x))?);
    out.push(gradcheck(|t| t[0].max(0, true), std::slice::from_ref(&x))?);
    out.push(gradcheck(
        |t| t[0].t()?.contiguous()?.reshape(12)?.unsqueeze(0)?.broadcast_as((2, 12)),
        std::slice::from_ref(&x),
    )?);
    out.push(gradcheck(|t| t[0].narrow(1, 1, 2), std::slice::from_ref(&x))?);
    // Through f32 and back: a wide step keeps f32 rounding far below the tolerance.
    let coarse = GradCheck {
        eps: 1e-2,
        atol: 1e-4,
        rtol: 1e-4,
        ..GradCheck::default()
    };
    out.push(gradcheck_with(
        |t| t[0].to_dtype(DType::F32)?.sqr()?.to_dtype(DType::F64),
        std::slice::from_ref(&x),
        coarse,
    )?);
    out.push(gradcheck(|t| t[0].gated(&t[1], UnaryOp::Silu), &xy)?);
    out.push(gradcheck(
        |t| t[0].gated_packed(UnaryOp::Silu),
        std::slice::from_ref(&x),
    )?);
    out.push(gradcheck(|t| t[0].softmax(1), std::slice::from_ref(&x))?);
    out.push(gradcheck(|t| t[0].log_softmax(0), std::slice::from_ref(&x))?);
    let w = randn(rng, &[4]);
    out.push(gradcheck(|t| t[0].rms_norm(&t[1], 1e-6), &[x.clone(), w])?);
    let rope = Rope::new(4, 8, 10_000.0, DType::F64, &Device::Cpu)?;
    out.push(gradcheck(
        |t| t[0].reshape((1, 3, 4))?.rope(&rope, 1),
        std::slice::from_ref(&x),
    )?);
    let targets = ids(vec![1, -100, 3], &[3]);
    out.push(gradcheck(
        |t| t[0].cross_entropy(&t[1], -100, Reduction::Mean),
        &[x.clone(), targets.clone()],
    )?);
    let head = randn(rng, &[5, 4]);
    out.push(gradcheck(
        |t| t[0].linear_cross_entropy(&t[1], &t[2], -100, Reduction::Mean),
        &[x.clone(), head, targets],
    )?);
    let q = randn(rng, &[1, 2, 3, 4]);
    let kv = randn(rng, &[1, 1, 3, 4]);
    out.push(gradcheck(
        |t| t[0].causal_attention(&t[1], &t[2], None),
        &[q, kv.clone(), kv.clone()],
    )?);
    let idx = ids(vec![2, 0], &[2]);
    out.push(gradcheck(|t| t[0].embedding(&t[1]), &[x.clone(), idx.clone()])?);
    out.push(gradcheck(|t| t[0].index_select(1, &t[1]), &[x.clone(), idx])?);
    let gidx = ids(vec![0, 2, 1, 1, 0, 0, 2, 2, 1, 0, 0, 2], &[3, 4]);
    out.push(gradcheck(|t| t[0].gather(0, &t[1]), &[x.clone(), gidx.clone()])?);
    out.push(gradcheck(
        |t| t[0].scatter_add(0, &t[1], &t[2]),
        &[x.clone(), gidx, y.clone()],
    )?);
    out.push(gradcheck(|t| Tensor::cat(&[&t[0], &t[1]], 1), &xy)?);
    out.push(gradcheck(|t| Tensor::stack(&[&t[0], &t[1]], 0), &xy)?);
    let mask = x.gt(&y)?;
    out.push(gradcheck(|t| mask.where_cond(&t[0], &t[1]), &xy)?);
    out.push(gradcheck(|t| t[0].masked_fill(&mask, 0.5), std::slice::from_ref(&x))?);
    out.push(gradcheck(|t| t[0].cumsum(1), std::slice::from_ref(&x))?);
    out.push(gradcheck(|t| Ok(t[0].topk(2)?.0), std::slice::from_ref(&x))?);
    let experts = randn(rng, &[3, 4, 2]);
    out.push(gradcheck(
        |t| t[0].grouped_matmul(&t[1], &[1, 0, 2]),
        &[x.clone(), experts],
    )?);
    Ok(out)
}

#[test]
fn every_declared_backward_op_has_a_gradient_check() {
    let mut rng = Rng::seed(11);
    let reports = all_cases(&mut rng).unwrap();
    let exercised: BTreeSet<String> = reports
        .iter()
        .flat_map(|r| r.ops.iter().map(|s| s.to_string()))
        .collect();
    let declared = declared_op_names();
    assert!(declared.len() > 30, "source scan found only {declared:?}");
    let missing: Vec<_> = declared.difference(&exercised).collect();
    assert!(missing.is_empty(), "ops without a gradient check: {missing:?}");
}
