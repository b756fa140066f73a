//! A real learning test: a two-layer MLP trained with plain SGD through this
//! autograd must fit a smooth 2-D function well below the loss of predicting
//! the mean.

use moe_tensor::init::Rng;
use moe_tensor::{no_grad, DType, Device, Result, Tensor};

fn target(x0: f32, x1: f32) -> f32 {
    (2.0 * x0).sin() * (1.5 * x1).cos()
}

#[test]
fn mlp_learns_a_2d_function_with_sgd() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::seed(42);
    let n = 256;
    let x = rng.uniform((n, 2), -1.5, 1.5, DType::F32, &dev)?;
    let xv = x.to_vec::<f32>()?;
    let y: Vec<f32> = xv.chunks(2).map(|p| target(p[0], p[1])).collect();
    let y = Tensor::from_vec(y, (n, 1), &dev)?;

    let hidden = 32;
    let w1 = rng.normal((2, hidden), 0.0, 1.0, DType::F32, &dev)?.to_param();
    let b1 = Tensor::zeros(hidden, DType::F32, &dev)?.to_param();
    let w2 = rng
        .normal((hidden, 1), 0.0, (1.0 / hidden as f64).sqrt(), DType::F32, &dev)?
        .to_param();
    let b2 = Tensor::zeros(1, DType::F32, &dev)?.to_param();
    let params = [&w1, &b1, &w2, &b2];

    let mse = |pred: &Tensor| -> Result<Tensor> { pred.sub(&y)?.sqr()?.mean_all() };
    let forward = || -> Result<Tensor> { x.matmul(&w1)?.add(&b1)?.tanh()?.matmul(&w2)?.add(&b2) };

    // The loss of the best constant predictor (the variance of y).
    let baseline = no_grad(|| mse(&y.mean_all()?.broadcast_as((n, 1))?))?.to_scalar_f64()?;
    let lr = 0.1;
    let mut last = f64::INFINITY;
    for _ in 0..1500 {
        let loss = mse(&forward()?)?;
        last = loss.to_scalar_f64()?;
        loss.backward()?;
        no_grad(|| -> Result<()> {
            for p in params {
                let g = p.grad().expect("every parameter gets a gradient");
                p.assign(&p.sub(&g.mul_scalar(lr)?)?)?;
                p.zero_grad();
            }
            Ok(())
        })?;
    }
    assert!(
        last < 0.05 * baseline,
        "final MSE {last} vs constant-predictor MSE {baseline}"
    );
    Ok(())
}
