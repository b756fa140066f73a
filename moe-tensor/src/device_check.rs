//! Test support: run one op on every available device and compare it with
//! the CPU, forward and backward.
//!
//! [`devices`] lists the CPU and, in a build with the `cuda` feature, CUDA
//! device 0 when it starts; [`cuda_device`] says why there is none.
//! [`compare_with_cpu`] evaluates `f` on CPU copies and on device copies of
//! the inputs, backpropagates `Σ f(x) ⊙ R` for one fixed random probe `R`
//! on both, and checks the output and every float input's gradient within a
//! [`Tolerance`]. The tests written with it run unchanged on every device.

use crate::init::Rng;
use crate::{DType, Device, Error, Result, Tensor};

/// Elementwise tolerance: `|device − cpu| ≤ atol + rtol · |cpu|`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Relative part.
    pub rtol: f64,
    /// Absolute part.
    pub atol: f64,
}

impl Tolerance {
    /// f32 elementwise arithmetic (a few ulp; transcendental functions differ
    /// between CUDA's and the host's math libraries by about that).
    pub const F32: Tolerance = Tolerance { rtol: 1e-5, atol: 1e-6 };
    /// f32 reductions and products (summation order differs).
    pub const F32_REDUCE: Tolerance = Tolerance { rtol: 1e-4, atol: 1e-5 };
    /// bf16 operands with f32 accumulation.
    pub const BF16: Tolerance = Tolerance { rtol: 2e-2, atol: 1e-2 };
}

/// CUDA device 0 if this build has the `cuda` feature and it starts, else
/// the reason (for a "no CUDA device: <reason>; skipping" message).
pub fn cuda_device() -> std::result::Result<Device, String> {
    crate::cuda_backend::device_info(0)
        .map(|_| Device::Cuda(0))
        .map_err(|e| e.to_string())
}

/// Every device op tests run on: the CPU, then CUDA device 0 when available.
pub fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    out.extend(cuda_device().ok());
    out
}

/// The non-CPU devices, printing `no CUDA device: <reason>; skipping <what>`
/// when there is none (so a test over them passes with a clear message).
pub fn accelerators_or_skip(what: &str) -> Vec<Device> {
    match cuda_device() {
        Ok(d) => vec![d],
        Err(reason) => {
            println!("no CUDA device: {reason}; skipping {what}");
            Vec::new()
        }
    }
}

/// What [`compare_with_cpu`] measured.
#[derive(Clone, Debug, Default)]
pub struct DeviceReport {
    /// Largest |device − cpu| over the output.
    pub max_out_err: f64,
    /// Largest |device − cpu| over the gradients.
    pub max_grad_err: f64,
}

/// An op's output and its inputs' gradients (`None` for inputs without one), as f64.
type Values = (Vec<f64>, Vec<Option<Vec<f64>>>);

/// The output and the float inputs' gradients of `Σ f(x) ⊙ probe`, on the
/// host as f64.
fn run(
    f: &impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    device: &Device,
    probe: &Tensor,
    backward: bool,
) -> Result<Values> {
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|t| {
            let d = t.to_device(device)?.detach();
            Ok(if backward && t.dtype().is_float() {
                d.to_param()
            } else {
                d
            })
        })
        .collect::<Result<_>>()?;
    let y = f(&xs)?;
    let out = y.to_device(&Device::Cpu)?.to_vec_f64()?;
    let mut grads = vec![None; xs.len()];
    if backward && y.requires_grad() {
        let p = probe.to_device(device)?;
        y.to_dtype(DType::F32)?.mul(&p)?.sum_all()?.backward()?;
        for (g, x) in grads.iter_mut().zip(&xs) {
            if let Some(gx) = x.grad() {
                *g = Some(gx.to_device(&Device::Cpu)?.to_vec_f64()?);
            }
        }
    }
    Ok((out, grads))
}

fn check(name: &str, what: &str, dev: &[f64], cpu: &[f64], tol: Tolerance) -> Result<f64> {
    if dev.len() != cpu.len() {
        return Err(Error::Autograd {
            msg: format!(
                "{name}: {what}: {} elements on the device, {} on the CPU",
                dev.len(),
                cpu.len()
            ),
        });
    }
    let mut max = 0.0f64;
    for (i, (&d, &c)) in dev.iter().zip(cpu).enumerate() {
        let err = (d - c).abs();
        // Written so that a NaN on one side only fails.
        let ok = err <= tol.atol + tol.rtol * c.abs() || (d.is_nan() && c.is_nan()) || d == c;
        if !ok {
            return Err(Error::Autograd {
                msg: format!("{name}: {what}[{i}]: device {d} vs cpu {c} (|diff| {err:e}, tolerance {tol:?})"),
            });
        }
        if err.is_finite() {
            max = max.max(err);
        }
    }
    Ok(max)
}

/// Runs `f` on `inputs` (CPU tensors) on the CPU and on `device`, and checks
/// that the outputs and, when `backward`, the gradients of every float input
/// agree within `tol`. The probe is f32 normal noise from `seed`.
pub fn compare_with_cpu(
    name: &str,
    device: &Device,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    backward: bool,
    tol: Tolerance,
) -> Result<DeviceReport> {
    let y_shape = f(inputs)?.shape().clone();
    let probe = Rng::seed(0x5eed).normal(y_shape, 0.0, 1.0, DType::F32, &Device::Cpu)?;
    let (cpu_out, cpu_grads) = run(&f, inputs, &Device::Cpu, &probe, backward)?;
    let (dev_out, dev_grads) = run(&f, inputs, device, &probe, backward)?;
    let mut report = DeviceReport {
        max_out_err: check(name, "output", &dev_out, &cpu_out, tol)?,
        ..Default::default()
    };
    for (i, (d, c)) in dev_grads.iter().zip(&cpu_grads).enumerate() {
        match (d, c) {
            (Some(d), Some(c)) => {
                let e = check(name, &format!("grad of input {i}"), d, c, tol)?;
                report.max_grad_err = report.max_grad_err.max(e);
            }
            (None, None) => {}
            _ => {
                return Err(Error::Autograd {
                    msg: format!("{name}: input {i} has a gradient on one device only"),
                })
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_against_itself_is_exact_and_skips_report_a_reason() {
        let x = Tensor::from_vec(vec![1.0f32, -2.0, 3.0, 0.5], (2, 2), &Device::Cpu).unwrap();
        let r = compare_with_cpu("silu", &Device::Cpu, |t| t[0].silu(), &[x], true, Tolerance::F32).unwrap();
        assert_eq!((r.max_out_err, r.max_grad_err), (0.0, 0.0));
        assert_eq!(devices()[0], Device::Cpu);
        if let Err(reason) = cuda_device() {
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn a_mismatch_names_the_op_and_element() {
        let e = check("op", "output", &[1.0, 2.0], &[1.0, 2.5], Tolerance::F32).unwrap_err();
        assert!(e.to_string().contains("op: output[1]"), "{e}");
        assert!(check("op", "output", &[f64::NAN], &[1.0], Tolerance::F32).is_err());
        assert!(check("op", "output", &[1.0], &[1.0, 2.0], Tolerance::F32).is_err());
    }
}
