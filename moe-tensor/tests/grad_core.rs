//! Finite-difference gradient checks (f64) of the core ops: unary, binary with
//! broadcasting, reductions, matmul, views, layout and dtype copies, each also
//! fed non-contiguous inputs.

mod common;

use common::{randn, random_dims, uniform};
use moe_tensor::init::Rng;
use moe_tensor::testing::{gradcheck, max_abs_diff};
use moe_tensor::{Tensor, UnaryOp};

#[test]
fn unary_ops_match_finite_differences() {
    let mut rng = Rng::seed(1);
    let ops = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::GeluTanh,
        UnaryOp::GeluErf,
        UnaryOp::Tanh,
        UnaryOp::Affine { mul: -1.5, add: 0.25 },
    ];
    for op in ops {
        for _ in 0..3 {
            let dims = random_dims(&mut rng, 3, 4);
            let x = randn(&mut rng, &dims);
            gradcheck(|xs| xs[0].unary(op), std::slice::from_ref(&x)).unwrap_or_else(|e| panic!("{op:?}: {e}"));
            // Non-contiguous input: a transposed view.
            gradcheck(|xs| xs[0].transpose(0, 2)?.unary(op), &[x])
                .unwrap_or_else(|e| panic!("{op:?} (transposed): {e}"));
        }
    }
}

#[test]
fn unary_ops_with_restricted_domain_match_finite_differences() {
    let mut rng = Rng::seed(2);
    // Positive inputs away from 0 for log, sqrt, recip, fractional powers.
    for op in [
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Recip,
        UnaryOp::Powf(1.7),
        UnaryOp::Powf(-0.5),
        UnaryOp::Powf(3.0),
    ] {
        let x = uniform(&mut rng, &[3, 5], 0.3, 2.0);
        gradcheck(|xs| xs[0].t()?.unary(op), &[x]).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
    // Kinks at 0: keep inputs away from it so the finite difference is valid.
    for op in [UnaryOp::Relu, UnaryOp::Abs] {
        let x = uniform(&mut rng, &[4, 4], 0.1, 1.0);
        let sign = uniform(&mut rng, &[4, 4], -1.0, 1.0);
        let x = x
            .mul(
                &sign
                    .gt(&sign.zeros_like().unwrap())
                    .unwrap()
                    .to_dtype(moe_tensor::DType::F64)
                    .unwrap()
                    .affine(2.0, -1.0)
                    .unwrap(),
            )
            .unwrap();
        gradcheck(|xs| xs[0].unary(op), &[x]).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    }
}

#[test]
fn binary_ops_broadcast_and_reduce_gradients() {
    let mut rng = Rng::seed(3);
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 4], &[3, 4]),
        (&[2, 3, 4], &[4]),
        (&[2, 1, 4], &[3, 1]),
        (&[1], &[2, 5]),
        (&[], &[3]),
    ];
    for (da, db) in cases {
        let a = randn(&mut rng, da);
        let b = uniform(&mut rng, db, 0.5, 2.0); // keep divisors away from 0
        gradcheck(|xs| xs[0].add(&xs[1]), &[a.clone(), b.clone()]).unwrap();
        gradcheck(|xs| xs[0].sub(&xs[1]), &[a.clone(), b.clone()]).unwrap();
        gradcheck(|xs| xs[0].mul(&xs[1]), &[a.clone(), b.clone()]).unwrap();
        gradcheck(|xs| xs[0].div(&xs[1]), &[a.clone(), b.clone()]).unwrap();
        gradcheck(|xs| xs[1].div(&xs[0].exp()?), &[a.clone(), b.clone()]).unwrap();
    }
    // Non-contiguous operands: transposed and narrowed views.
    let a = randn(&mut rng, &[5, 3]);
    let b = randn(&mut rng, &[3, 7]);
    gradcheck(|xs| xs[0].t()?.mul(&xs[1].narrow(1, 2, 5)?), &[a, b]).unwrap();
}

#[test]
fn maximum_minimum_route_gradient_to_the_selected_operand() {
    let mut rng = Rng::seed(4);
    let a = randn(&mut rng, &[4, 5]);
    let b = randn(&mut rng, &[5]);
    gradcheck(|xs| xs[0].maximum(&xs[1]), &[a.clone(), b.clone()]).unwrap();
    gradcheck(|xs| xs[0].minimum(&xs[1]), &[a, b]).unwrap();
}

#[test]
fn reductions_match_finite_differences() {
    let mut rng = Rng::seed(5);
    for _ in 0..4 {
        let dims = random_dims(&mut rng, 3, 5);
        let x = randn(&mut rng, &dims);
        for keep in [false, true] {
            gradcheck(|xs| xs[0].sum(&[1], keep), std::slice::from_ref(&x)).unwrap();
            gradcheck(|xs| xs[0].sum(&[0, -1], keep), std::slice::from_ref(&x)).unwrap();
            gradcheck(|xs| xs[0].mean(&[-1], keep), std::slice::from_ref(&x)).unwrap();
            gradcheck(|xs| xs[0].permute(&[2, 0, 1])?.max(1, keep), std::slice::from_ref(&x)).unwrap();
        }
        gradcheck(|xs| xs[0].sum_all(), std::slice::from_ref(&x)).unwrap();
        gradcheck(|xs| xs[0].transpose(0, 1)?.mean_all(), &[x]).unwrap();
    }
}

#[test]
fn a_weight_used_as_a_transposed_view_gets_a_contiguous_gradient() {
    // A linear layer's `x · wᵀ`: the gradient reaches `w` in w's own layout
    // (optimisers read it in place), with the values of dyᵀ·x, and likewise
    // for a transposed lhs.
    let mut rng = Rng::seed(61);
    let x = randn(&mut rng, &[5, 4]);
    let w = randn(&mut rng, &[3, 4]).to_param();
    let dy = randn(&mut rng, &[5, 3]);
    x.matmul(&w.t().unwrap()).unwrap().backward_with(&dy).unwrap();
    let gw = w.grad().unwrap();
    assert!(gw.is_contiguous());
    let expected = dy.t().unwrap().matmul(&x).unwrap();
    assert!(max_abs_diff(&gw, &expected).unwrap() < 1e-12);
    let a = randn(&mut rng, &[4, 5]).to_param();
    a.t()
        .unwrap()
        .matmul(&w.t().unwrap())
        .unwrap()
        .backward_with(&dy)
        .unwrap();
    let ga = a.grad().unwrap();
    assert!(ga.is_contiguous());
    let expected = w.t().unwrap().matmul(&dy.t().unwrap()).unwrap();
    assert!(max_abs_diff(&ga, &expected).unwrap() < 1e-12);
}

#[test]
fn matmul_matches_finite_differences_with_batches_and_transposes() {
    let mut rng = Rng::seed(6);
    let a = randn(&mut rng, &[3, 4]);
    let b = randn(&mut rng, &[4, 5]);
    gradcheck(|xs| xs[0].matmul(&xs[1]), &[a.clone(), b.clone()]).unwrap();
    // Transposed operands as views.
    gradcheck(|xs| xs[1].t()?.matmul(&xs[0].t()?), &[a, b]).unwrap();
    // Batched with broadcast batch dims: [2, 1, 3, 4] x [5, 4, 2] -> [2, 5, 3, 2].
    let a = randn(&mut rng, &[2, 1, 3, 4]);
    let b = randn(&mut rng, &[5, 4, 2]);
    gradcheck(|xs| xs[0].matmul(&xs[1]), &[a, b]).unwrap();
    // A batch whose layout is not evenly spaced (permuted batch dims).
    let a = randn(&mut rng, &[3, 2, 4, 5]);
    let b = randn(&mut rng, &[2, 3, 5, 2]);
    gradcheck(|xs| xs[0].permute(&[1, 0, 2, 3])?.matmul(&xs[1]), &[a, b]).unwrap();
    // [.., m, k] · [k, n] with a contiguous lhs folds into one GEMM: the values
    // equal the per-batch products, gradients check, non-contiguous lhs too.
    let a = randn(&mut rng, &[2, 3, 4]);
    let b = randn(&mut rng, &[4, 5]);
    gradcheck(|xs| xs[0].matmul(&xs[1]), &[a.clone(), b.clone()]).unwrap();
    gradcheck(|xs| xs[0].transpose(0, 1)?.matmul(&xs[1]), &[a.clone(), b.clone()]).unwrap();
    let y = a.matmul(&b).unwrap();
    assert_eq!(y.dims(), &[2, 3, 5]);
    for i in 0..2 {
        let yi = a.narrow(0, i, 1).unwrap().squeeze(0).unwrap().matmul(&b).unwrap();
        assert_eq!(
            y.narrow(0, i, 1).unwrap().squeeze(0).unwrap().to_vec::<f64>().unwrap(),
            yi.to_vec::<f64>().unwrap()
        );
    }
}

type Case = dyn Fn(&[Tensor]) -> moe_tensor::Result<Tensor>;

#[test]
fn views_and_copies_match_finite_differences() {
    let mut rng = Rng::seed(7);
    let x = randn(&mut rng, &[2, 3, 4]);
    let w = randn(&mut rng, &[6, 4]);
    let checks: Vec<Box<Case>> = vec![
        Box::new(|xs| xs[0].reshape((6, 4))?.mul(&xs[1])),
        Box::new(|xs| xs[0].transpose(0, 2)?.reshape((4, 6))?.t()?.mul(&xs[1])),
        Box::new(|xs| xs[0].narrow(2, 1, 2)?.exp()),
        Box::new(|xs| xs[0].permute(&[1, 2, 0])?.contiguous()?.sqr()),
        Box::new(|xs| xs[0].unsqueeze(1)?.broadcast_as((2, 5, 3, 4))?.tanh()),
        Box::new(|xs| xs[0].narrow(1, 1, 1)?.squeeze(1)?.flatten(0, 1)?.silu()),
        Box::new(|xs| xs[0].reshape_infer(&[-1, 4])?.mul(&xs[1])),
    ];
    for (i, f) in checks.iter().enumerate() {
        gradcheck(f, &[x.clone(), w.clone()]).unwrap_or_else(|e| panic!("view case {i}: {e}"));
    }
}

#[test]
fn forward_values_match_hand_computed_results() {
    let dev = moe_tensor::Device::Cpu;
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), &dev).unwrap();
    let b = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], 3, &dev).unwrap();
    assert_eq!(
        a.add(&b).unwrap().to_vec::<f32>().unwrap(),
        vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    assert_eq!(
        a.t().unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
    assert_eq!(
        a.sum(&[0], false).unwrap().to_vec::<f32>().unwrap(),
        vec![5.0, 7.0, 9.0]
    );
    assert_eq!(a.max(1, false).unwrap().to_vec::<f32>().unwrap(), vec![3.0, 6.0]);
    // [[1,2,3],[4,5,6]] · [[1,4],[2,5],[3,6]] = [[14, 32], [32, 77]]
    assert_eq!(
        a.matmul(&a.t().unwrap()).unwrap().to_vec::<f32>().unwrap(),
        vec![14.0, 32.0, 32.0, 77.0]
    );
}

#[test]
fn to_dtype_passes_gradients_back_in_the_source_dtype() {
    // f32 rounding makes finite differences meaningless here, so check exactly:
    // d/dx Σ 3·f32(x) = 3 for every element, delivered as f64.
    let mut rng = Rng::seed(8);
    let x = randn(&mut rng, &[3, 2]).to_param();
    x.to_dtype(moe_tensor::DType::F32)
        .unwrap()
        .mul_scalar(3.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = x.grad().unwrap();
    assert_eq!(g.dtype(), moe_tensor::DType::F64);
    assert_eq!(g.to_vec::<f64>().unwrap(), vec![3.0; 6]);
}

#[test]
fn fused_gated_activations_match_finite_differences_and_unfused_ops() {
    let mut rng = Rng::seed(9);
    let gate = randn(&mut rng, &[4, 6]);
    let up = randn(&mut rng, &[6, 4]);
    for act in [UnaryOp::Silu, UnaryOp::GeluTanh, UnaryOp::GeluErf] {
        // `up` enters transposed, so one operand is non-contiguous.
        gradcheck(|xs| xs[0].gated(&xs[1].t()?, act), &[gate.clone(), up.clone()]).unwrap();
        let fused = gate.gated(&up.t().unwrap(), act).unwrap();
        let unfused = gate.unary(act).unwrap().mul(&up.t().unwrap()).unwrap();
        assert!(moe_tensor::testing::max_abs_diff(&fused, &unfused).unwrap() < 1e-15);
    }
    assert!(gate.swiglu(&up).is_err(), "shape mismatch must be refused");
}

#[test]
fn packed_gated_activation_matches_finite_differences_and_the_halves() {
    // h [.., 2F]: gate then up in the last dim, as a fused gate/up projection.
    let mut rng = Rng::seed(10);
    let h = randn(&mut rng, &[2, 3, 8]);
    for act in [UnaryOp::Silu, UnaryOp::GeluTanh] {
        gradcheck(|xs| xs[0].gated_packed(act), std::slice::from_ref(&h)).unwrap();
        // A non-contiguous input: the permuted view of a [8, 3, 2] tensor.
        let ht = h.permute(&[2, 1, 0]).unwrap().contiguous().unwrap();
        gradcheck(|xs| xs[0].permute(&[2, 1, 0])?.gated_packed(act), &[ht]).unwrap();
        let packed = h.gated_packed(act).unwrap();
        let halves = h
            .narrow(-1, 0, 4)
            .unwrap()
            .gated(&h.narrow(-1, 4, 4).unwrap(), act)
            .unwrap();
        assert_eq!(packed.dims(), &[2, 3, 4]);
        assert!(moe_tensor::testing::max_abs_diff(&packed, &halves).unwrap() < 1e-15);
    }
    // f32 through the SIMD kernel: the same values as the two-halves op.
    let h32 = h.to_dtype(moe_tensor::DType::F32).unwrap();
    let packed = h32.gated_packed(UnaryOp::Silu).unwrap();
    let halves = h32
        .narrow(-1, 0, 4)
        .unwrap()
        .swiglu(&h32.narrow(-1, 4, 4).unwrap())
        .unwrap();
    assert_eq!(packed.to_vec::<f32>().unwrap(), halves.to_vec::<f32>().unwrap());
    assert!(
        randn(&mut rng, &[2, 5]).gated_packed(UnaryOp::Silu).is_err(),
        "odd width must be refused"
    );
}
