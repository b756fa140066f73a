//! The optimiser's primitives on any device: AdamW's in-place update of a
//! parameter and its moments, and the sum of squares of many tensors (the
//! global gradient norm of clipping).
//!
//! Both run where the tensors live: on the CPU through moe-kernels'
//! `cpu::optim`, on CUDA through `optim.cu`, whose AdamW kernel rounds every
//! operation as the CPU loop does (same bits). Neither records a graph.

use crate::{DType, Error, Result, Tensor};
use moe_kernels::cpu::optim as cpu;

pub use moe_kernels::cpu::optim::AdamWScalars;

/// One AdamW update, in place, of `param` and its moments `exp_avg` and
/// `exp_avg_sq` from `grad` (converted to contiguous f32 first when it is
/// not). `param` and the moments must be contiguous f32 tensors of one
/// shape on one device, with `grad` there too, and no two of the four may
/// share storage.
pub fn adamw_update(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    k: &AdamWScalars,
) -> Result<()> {
    const OP: &str = "adamw_update";
    let device = param.device();
    for t in [grad, exp_avg, exp_avg_sq] {
        if t.device() != device {
            return Err(Error::DeviceMismatch {
                op: OP,
                lhs: device,
                rhs: t.device(),
            });
        }
        if t.shape() != param.shape() {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: param.shape().clone(),
                rhs: t.shape().clone(),
            });
        }
    }
    for t in [param, exp_avg, exp_avg_sq] {
        if t.dtype() != DType::F32 {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: t.dtype(),
            });
        }
        if t.layout().contiguous_range().is_none() {
            return Err(Error::InvalidShape {
                op: OP,
                msg: "the parameter and its moments are updated in place and must be contiguous".into(),
            });
        }
    }
    let grad = grad.to_dtype(DType::F32)?.contiguous()?;
    let all = [param, &grad, exp_avg, exp_avg_sq];
    for (i, a) in all.iter().enumerate() {
        if all[i + 1..].iter().any(|b| a.same_storage(b)) {
            return Err(Error::InvalidShape {
                op: OP,
                msg: "the parameter, its gradient and its moments must not share storage".into(),
            });
        }
    }
    if !device.is_cpu() {
        return crate::cuda_backend::adamw_update(param, &grad, exp_avg, exp_avg_sq, k);
    }
    grad.with_f32_slice(|g| {
        exp_avg.update_f32_in_place(|m| {
            exp_avg_sq.update_f32_in_place(|v| param.update_f32_in_place(|theta| cpu::adamw_update(theta, m, v, g, k)))
        })
    })????
    // Lengths were checked as shapes above; this is only a safety net.
    .map_err(|e| Error::Kernel {
        op: OP,
        msg: e.to_string(),
    })
}

/// `Σ x²` over every element of every tensor, in f64, deterministically (the
/// same inputs give the same bits). All tensors must be on one device; an
/// empty list sums to 0.
///
/// On the CPU each tensor is summed in fixed chunks and the tensors are added
/// in order. On CUDA each tensor leaves f64 partial sums of fixed chunks and
/// one block adds them all in a fixed order; the total is then read back,
/// which waits for the device (one 8-byte read per call).
pub fn sum_of_squares(tensors: &[Tensor]) -> Result<f64> {
    const OP: &str = "sum_of_squares";
    let Some(first) = tensors.first() else {
        return Ok(0.0);
    };
    let device = first.device();
    if let Some(t) = tensors.iter().find(|t| t.device() != device) {
        return Err(Error::DeviceMismatch {
            op: OP,
            lhs: device,
            rhs: t.device(),
        });
    }
    if device.is_cpu() {
        let mut total = 0.0f64;
        for t in tensors {
            // Borrowed when possible; the same f64 sum in the same order either way.
            total += if t.is_contiguous_cpu_f32() {
                t.with_f32_slice(cpu::sum_sq_f64)?
            } else {
                cpu::sum_sq_f64(&t.to_vec_f64()?)
            };
        }
        return Ok(total);
    }
    let ready = tensors
        .iter()
        .map(|t| match t.dtype() {
            DType::F32 | DType::F64 => t.contiguous(),
            _ => t.to_dtype(DType::F32)?.contiguous(),
        })
        .collect::<Result<Vec<_>>>()?;
    crate::cuda_backend::sum_of_squares(&ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn t(v: Vec<f32>, dims: &[usize]) -> Tensor {
        Tensor::from_vec(v, dims.to_vec(), &Device::Cpu).unwrap()
    }

    #[test]
    fn adamw_updates_the_parameter_and_moments_in_place() {
        let k = AdamWScalars::for_step(1e-2, 0.9, 0.95, 1e-8, 0.1, 1);
        let p = t(vec![0.5, -0.5, 1.0, 0.0], &[2, 2]);
        let alias = p.clone();
        let (m, v) = (p.zeros_like().unwrap(), p.zeros_like().unwrap());
        let g = t(vec![1.0, -2.0, 0.5, 3.0], &[2, 2]);
        adamw_update(&p, &g, &m, &v, &k).unwrap();
        let (mut th, mut mm, mut vv) = (vec![0.5f32, -0.5, 1.0, 0.0], vec![0.0f32; 4], vec![0.0f32; 4]);
        cpu::adamw_update(&mut th, &mut mm, &mut vv, &[1.0, -2.0, 0.5, 3.0], &k).unwrap();
        assert_eq!(alias.to_vec::<f32>().unwrap(), th);
        assert_eq!((m.to_vec::<f32>().unwrap(), v.to_vec::<f32>().unwrap()), (mm, vv));
        // A transposed gradient is read in its logical order.
        let gt = t(vec![1.0, 0.5, -2.0, 3.0], &[2, 2]).t().unwrap();
        let p2 = t(vec![0.5, -0.5, 1.0, 0.0], &[2, 2]);
        let (m2, v2) = (p2.zeros_like().unwrap(), p2.zeros_like().unwrap());
        adamw_update(&p2, &gt, &m2, &v2, &k).unwrap();
        assert_eq!(p2.to_vec::<f32>().unwrap(), th);
    }

    #[test]
    fn adamw_refuses_what_it_cannot_update_in_place() {
        let k = AdamWScalars::for_step(1e-2, 0.9, 0.95, 1e-8, 0.0, 1);
        let p = t(vec![1.0; 6], &[2, 3]);
        let z = || p.zeros_like().unwrap();
        let e = adamw_update(&p, &t(vec![1.0; 3], &[3]), &z(), &z(), &k).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let m = z();
        let e = adamw_update(&p, &z(), &m, &m, &k).unwrap_err();
        assert!(e.to_string().contains("share storage"), "{e}");
        let e = adamw_update(
            &p.t().unwrap(),
            &z().t().unwrap(),
            &z().t().unwrap(),
            &z().t().unwrap(),
            &k,
        );
        assert!(e.unwrap_err().to_string().contains("contiguous"));
        let p64 = p.to_dtype(DType::F64).unwrap();
        let e = adamw_update(&p64, &z(), &z(), &z(), &k).unwrap_err();
        assert!(matches!(e, Error::UnsupportedDType { .. }), "{e}");
    }

    #[test]
    fn sum_of_squares_adds_tensors_in_order_in_f64() {
        assert_eq!(sum_of_squares(&[]).unwrap(), 0.0);
        let a = t(vec![3.0, 4.0], &[2]);
        let b = t(vec![1.0, 2.0, 2.0, 0.0], &[2, 2]).t().unwrap();
        let c = Tensor::from_vec(vec![12.0f64], 1, &Device::Cpu).unwrap();
        assert_eq!(sum_of_squares(&[a, b, c]).unwrap(), 25.0 + 9.0 + 144.0);
    }
}
