//! Autograd semantics: accumulation, zeroing, no_grad, detach, graph freeing,
//! and clear errors for misuse.

use moe_tensor::{no_grad, DType, Device, Error, Tensor};

fn param(v: Vec<f64>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(v, dims.to_vec(), &Device::Cpu).unwrap().to_param()
}

#[test]
fn gradients_accumulate_until_zeroed() {
    let w = param(vec![1.0, 2.0], &[2]);
    for _ in 0..2 {
        w.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    }
    // d/dw Σ w² = 2w, twice.
    assert_eq!(w.grad().unwrap().to_vec::<f64>().unwrap(), vec![4.0, 8.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
    w.sum_all().unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec::<f64>().unwrap(), vec![1.0, 1.0]);
}

#[test]
fn a_tensor_used_twice_gets_both_contributions() {
    let w = param(vec![3.0], &[1]);
    // y = w·w + w  ⇒ dy/dw = 2w + 1 = 7
    w.mul(&w)
        .unwrap()
        .add(&w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(w.grad().unwrap().to_vec::<f64>().unwrap(), vec![7.0]);
}

#[test]
fn no_grad_and_detach_cut_the_graph() {
    let w = param(vec![1.0, 2.0], &[2]);
    let y = no_grad(|| w.mul_scalar(2.0).unwrap());
    assert!(!y.requires_grad());
    assert!(matches!(y.sum_all().unwrap().backward(), Err(Error::BackwardNoGrad)));
    let d = w.detach();
    assert!(!d.requires_grad() && d.same_storage(&w));
    // Only the non-detached path contributes.
    w.mul(&d).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec::<f64>().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn graph_is_freed_after_backward() {
    let w = param(vec![1.0], &[1]);
    let loss = w.exp().unwrap().sum_all().unwrap();
    loss.backward().unwrap();
    let err = loss.backward().unwrap_err();
    assert!(err.to_string().contains("already freed"), "{err}");
}

#[test]
fn deep_graphs_do_not_overflow_the_stack() {
    let w = param(vec![0.5], &[1]);
    let mut y = w.clone();
    for _ in 0..100_000 {
        y = y.add_scalar(1e-6).unwrap();
    }
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec::<f64>().unwrap(), vec![1.0]);
}

#[test]
fn backward_misuse_gives_clear_errors() {
    let w = param(vec![1.0, 2.0], &[2]);
    let y = w.mul_scalar(2.0).unwrap();
    let err = y.backward().unwrap_err();
    assert!(matches!(err, Error::BackwardNonScalar { .. }), "{err}");
    assert!(err.to_string().contains("backward_with"));
    let bad_seed = Tensor::ones(3, DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(y.backward_with(&bad_seed), Err(Error::ShapeMismatch { .. })));
    let seed32 = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(y.backward_with(&seed32), Err(Error::DTypeMismatch { .. })));
    // A correct seed works: d(Σ seed·2w)/dw = 2·seed.
    let seed = Tensor::from_vec(vec![1.0, -1.0], 2, &Device::Cpu).unwrap();
    y.backward_with(&seed).unwrap();
    assert_eq!(w.grad().unwrap().to_vec::<f64>().unwrap(), vec![2.0, -2.0]);
}

#[test]
fn bad_input_gives_errors_naming_op_and_shapes() {
    let dev = Device::Cpu;
    let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((4, 5), DType::F32, &dev).unwrap();
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("add") && e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
    let e = a.matmul(&b).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
    let c = Tensor::zeros((2, 3), DType::F64, &dev).unwrap();
    let e = a.mul(&c).unwrap_err().to_string();
    assert!(e.contains("mul") && e.contains("F32") && e.contains("F64"), "{e}");
    let idx = Tensor::zeros(3, DType::I64, &dev).unwrap();
    assert!(matches!(idx.exp(), Err(Error::UnsupportedDType { op: "exp", .. })));
    assert!(matches!(a.reshape(7), Err(Error::InvalidShape { .. })));
    assert!(matches!(a.narrow(1, 2, 2), Err(Error::RangeOutOfBounds { .. })));
    assert!(matches!(a.sum(&[2], false), Err(Error::DimOutOfRange { .. })));
    assert!(matches!(
        Tensor::from_vec(vec![1.0f32; 5], (2, 3), &dev),
        Err(Error::ElementCount { .. })
    ));
    assert!(matches!(
        Tensor::zeros(2, DType::F32, &Device::Cuda(0)),
        Err(Error::DeviceUnavailable { .. })
    ));
    assert!(a.permute(&[0, 0]).is_err());
}

#[test]
fn assign_updates_parameters_in_place_for_every_view() {
    let w = param(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let view = w.t().unwrap();
    w.assign(&Tensor::from_vec(vec![5.0, 6.0, 7.0, 8.0], (2, 2), &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(view.to_vec::<f64>().unwrap(), vec![5.0, 7.0, 6.0, 8.0]);
    assert!(view.assign(&w).is_err(), "non-contiguous destination must be refused");
}

#[test]
fn dropping_a_deep_graph_without_backward_does_not_overflow_the_stack() {
    let w = param(vec![0.5], &[1]);
    let mut y = w.clone();
    for _ in 0..200_000 {
        y = y.add_scalar(1e-6).unwrap();
    }
    drop(y);
}
