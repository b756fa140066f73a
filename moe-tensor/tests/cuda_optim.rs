//! The optimiser primitives of `moe_tensor::optim` on CUDA against the CPU.
//! Without a CUDA device (no `cuda` feature, no driver, no GPU) each test
//! prints "no CUDA device: <reason>; skipping <test>" and passes.
//!
//! AdamW is compared bit for bit (optim.cu rounds every operation as the CPU
//! loop does); the sum of squares within 1e-12 relative (f64 partial sums in
//! another order) and bit-identical between two runs on the device.

use moe_kernels::cuda::launch::SUM_SQ_CHUNK;
use moe_tensor::device_check::accelerators_or_skip;
use moe_tensor::init::Rng;
use moe_tensor::optim::{adamw_update, sum_of_squares, AdamWScalars};
use moe_tensor::{DType, Device, Result, Tensor};

fn randn(rng: &mut Rng, n: usize, std: f64) -> Tensor {
    rng.normal(vec![n], 0.0, std, DType::F32, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    let v = t.to_device(&Device::Cpu).unwrap().to_vec::<f32>().unwrap();
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn adamw_update_is_the_cpu_update_bit_for_bit() -> Result<()> {
    for dev in accelerators_or_skip("adamw_update_is_the_cpu_update_bit_for_bit") {
        let mut rng = Rng::seed(5);
        // Sizes around the launch grid and the CPU's parallel chunks, and empty.
        for n in [0usize, 1, 255, 257, 16_385, 300_001] {
            let pc = randn(&mut rng, n, 1.0);
            let pd = pc.to_device(&dev)?;
            let (mc, vc) = (pc.zeros_like()?, pc.zeros_like()?);
            let (md, vd) = (pd.zeros_like()?, pd.zeros_like()?);
            for t in 1..=3u64 {
                // Gradients with zeros, tiny (subnormal squares) and large values.
                let mut g = randn(&mut rng, n, 2.0).to_vec::<f32>()?;
                for (i, x) in g.iter_mut().enumerate() {
                    match i % 7 {
                        0 => *x = 0.0,
                        1 => *x *= 1e-22,
                        2 => *x *= 1e6,
                        _ => {}
                    }
                }
                let g = Tensor::from_vec(g, vec![n], &Device::Cpu)?;
                // The third step reads the gradient through a clipping factor.
                let k = AdamWScalars::for_step(1e-3 * t as f64, 0.9, 0.95, 1e-8, 0.1, t).with_grad_scale(if t == 3 {
                    0.3
                } else {
                    1.0
                });
                adamw_update(&pc, &g, &mc, &vc, &k)?;
                adamw_update(&pd, &g.to_device(&dev)?, &md, &vd, &k)?;
            }
            assert_eq!(bits(&pd), bits(&pc), "param, n = {n}");
            assert_eq!(bits(&md), bits(&mc), "exp_avg, n = {n}");
            assert_eq!(bits(&vd), bits(&vc), "exp_avg_sq, n = {n}");
        }
        // A transposed gradient is made contiguous on the device first.
        let p = Tensor::zeros((3, 4), DType::F32, &dev)?;
        let (m, v) = (p.zeros_like()?, p.zeros_like()?);
        let g = Tensor::from_vec((0..12).map(|i| i as f32).collect::<Vec<_>>(), (4, 3), &Device::Cpu)?;
        let k = AdamWScalars::for_step(1e-2, 0.9, 0.95, 1e-8, 0.0, 1);
        adamw_update(&p, &g.to_device(&dev)?.t()?, &m, &v, &k)?;
        let expect = g.t()?.contiguous()?.mul_scalar(k.w1 as f64)?;
        assert_eq!(bits(&m), bits(&expect));
        // Mixed devices are refused.
        assert!(adamw_update(&p, &g.t()?, &m, &v, &k).is_err());
    }
    Ok(())
}

#[test]
fn sum_of_squares_matches_the_cpu_and_repeats_exactly() -> Result<()> {
    for dev in accelerators_or_skip("sum_of_squares_matches_the_cpu_and_repeats_exactly") {
        let mut rng = Rng::seed(9);
        let mut host: Vec<Tensor> = [0usize, 1, 1000, SUM_SQ_CHUNK, SUM_SQ_CHUNK + 3, 3 * SUM_SQ_CHUNK + 1]
            .iter()
            .map(|&n| randn(&mut rng, n, 1.5))
            .collect();
        // An f64 tensor, a bf16 one (summed as f32) and a transposed view.
        host.push(randn(&mut rng, 777, 1.0).to_dtype(DType::F64)?);
        host.push(randn(&mut rng, 513, 1.0).to_dtype(DType::BF16)?);
        host.push(rng.normal((30, 70), 0.0, 1.0, DType::F32, &Device::Cpu)?.t()?);
        let on_dev = host.iter().map(|t| t.to_device(&dev)).collect::<Result<Vec<_>>>()?;
        let cpu = sum_of_squares(&host)?;
        let gpu = sum_of_squares(&on_dev)?;
        assert!(((gpu - cpu) / cpu).abs() < 1e-12, "device {gpu} vs cpu {cpu}");
        assert_eq!(sum_of_squares(&on_dev)?.to_bits(), gpu.to_bits(), "deterministic");
        assert_eq!(sum_of_squares(&on_dev[..1])?, 0.0, "an empty tensor sums to 0");
        assert!(
            sum_of_squares(&[on_dev[1].clone(), host[1].clone()]).is_err(),
            "mixed devices"
        );
        let nan = Tensor::from_vec(vec![1.0f32, f32::NAN], 2, &dev)?;
        assert!(sum_of_squares(&[nan])?.is_nan());
    }
    Ok(())
}
