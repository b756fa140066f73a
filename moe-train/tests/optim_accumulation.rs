//! Gradient accumulation: k micro-batches with losses scaled by 1/k give the gradient
//! of the full batch's mean loss.

use moe_tensor::{Device, Params, Tensor};

fn data(n: usize, seed: u32) -> Vec<f32> {
    // A fixed pseudo-random sequence (LCG), so the test needs no RNG crate.
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// MLP (4 → 6, SiLU, 6 → 3) with squared error averaged over rows and outputs.
fn loss(params: &Params, x: &Tensor, y: &Tensor) -> Tensor {
    let w1 = params.get("w1").unwrap();
    let w2 = params.get("w2").unwrap();
    let h = x.matmul(w1).unwrap().silu().unwrap();
    h.matmul(w2).unwrap().sub(y).unwrap().sqr().unwrap().mean_all().unwrap()
}

fn grads(params: &Params) -> Vec<Vec<f32>> {
    params
        .iter()
        .map(|(_, p)| p.grad().unwrap().to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn accumulated_micro_batches_equal_the_full_batch() {
    let dev = Device::Cpu;
    let mut params = Params::new();
    params
        .insert("w1", &Tensor::from_vec(data(24, 1), (4, 6), &dev).unwrap())
        .unwrap();
    params
        .insert("w2", &Tensor::from_vec(data(18, 2), (6, 3), &dev).unwrap())
        .unwrap();
    let x = Tensor::from_vec(data(32, 3), (8, 4), &dev).unwrap();
    let y = Tensor::from_vec(data(24, 4), (8, 3), &dev).unwrap();

    loss(&params, &x, &y).backward().unwrap();
    let full = grads(&params);
    params.zero_grad();

    let k = 4;
    for i in 0..k {
        let (xb, yb) = (x.narrow(0, i * 2, 2).unwrap(), y.narrow(0, i * 2, 2).unwrap());
        loss(&params, &xb, &yb)
            .mul_scalar(1.0 / k as f64)
            .unwrap()
            .backward()
            .unwrap();
    }
    let acc = grads(&params);
    let mut worst = 0.0f32;
    for (a, f) in acc.iter().flatten().zip(full.iter().flatten()) {
        worst = worst.max((a - f).abs() / f.abs().max(1e-3));
    }
    assert!(worst < 1e-5, "max relative difference {worst:e}");
    // One micro-batch alone is not the full gradient, so the check can fail.
    params.zero_grad();
    loss(&params, &x.narrow(0, 0, 2).unwrap(), &y.narrow(0, 0, 2).unwrap())
        .backward()
        .unwrap();
    let one = grads(&params);
    assert!(one
        .iter()
        .flatten()
        .zip(full.iter().flatten())
        .any(|(a, f)| (a - f).abs() > 1e-3));
}
