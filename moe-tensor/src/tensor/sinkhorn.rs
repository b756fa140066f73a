//! Sinkhorn–Knopp balancing of router logits as a tensor op, on the logits'
//! device: the iterations and their convergence test run where the data
//! is (one kernel on CUDA, sinkhorn.cu), and the iteration count comes back
//! as a tensor, so a router can use the result without waiting for the
//! device. The arithmetic is [`moe_kernels::cpu::sinkhorn`]'s on every
//! device.

use super::index::{kernel_err, with_contiguous};
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Error, Result, Shape, Tensor};
use moe_kernels::cpu::sinkhorn::{sinkhorn as sinkhorn_kernel, SINKHORN_THREADS};

impl Tensor {
    /// Balances these logits (`[N, E]`, f32 or f64) so rows sum to about
    /// `1/N` and columns to about `1/E` (Megatron-LM's `sinkhorn`, each row
    /// shifted by its maximum before `exp`): iterates until the mean change
    /// of the column scaling is at most `tolerance`, or `max_iters` times.
    /// Returns the balanced matrix (no gradient) and the iterations run
    /// (`[1]`, I64, on the same device; read it only when needed). At most
    /// 1024 experts.
    pub fn sinkhorn(&self, tolerance: f64, max_iters: usize) -> Result<(Tensor, Tensor)> {
        const OP: &str = "sinkhorn";
        if self.rank() != 2 || !matches!(self.dtype(), DType::F32 | DType::F64) {
            return Err(Error::InvalidShape {
                op: OP,
                msg: format!(
                    "needs f32 or f64 logits [N, E], got {:?} {:?}",
                    self.dtype(),
                    self.shape()
                ),
            });
        }
        let (n, e) = (self.dims()[0], self.dims()[1]);
        if e > SINKHORN_THREADS {
            return Err(Error::InvalidShape {
                op: OP,
                msg: format!("{e} experts; at most {SINKHORN_THREADS}"),
            });
        }
        let x = self.detach();
        let (out, iters) = if x.device().is_cpu() {
            with_contiguous(&x, OP, |s, off| {
                let len = n * e;
                let (out, iters) = match s {
                    CpuStorage::F32(v) => {
                        let mut out = vec![0f32; len];
                        let it = sinkhorn_kernel(&mut out, &v[off..off + len], n, e, tolerance, max_iters);
                        (CpuStorage::F32(out), it)
                    }
                    CpuStorage::F64(v) => {
                        let mut out = vec![0f64; len];
                        let it = sinkhorn_kernel(&mut out, &v[off..off + len], n, e, tolerance, max_iters);
                        (CpuStorage::F64(out), it)
                    }
                    _ => unreachable!("dtype checked above"),
                };
                let iters = iters.map_err(kernel_err(OP))? as i64;
                Ok((Storage::Cpu(out), Storage::Cpu(CpuStorage::I64(vec![iters]))))
            })?
        } else {
            crate::cuda_backend::sinkhorn(&x.contiguous()?, tolerance, max_iters)?
        };
        Ok((
            Tensor::from_storage(out, Shape::from(vec![n, e])),
            Tensor::from_storage(iters, Shape::from(vec![1])),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    #[test]
    fn balances_views_and_counts_iterations() {
        // A transposed view is read in its logical order.
        let x = Tensor::from_vec(vec![2.0f64, 0.0, -1.0, 0.5, 1.0, 3.0], (2, 3), &Device::Cpu).unwrap();
        let (p, iters) = x.t().unwrap().sinkhorn(1e-6, 1000).unwrap();
        assert_eq!(p.dims(), [3, 2]);
        let it = iters.to_vec::<i64>().unwrap()[0];
        assert!(it > 1 && it < 1000, "{it}");
        let rows = p.sum(&[1], false).unwrap().to_vec::<f64>().unwrap();
        assert!(rows.iter().all(|r| (r * 3.0 - 1.0).abs() < 1e-5), "{rows:?}");
        let (_, capped) = x.sinkhorn(0.0, 3).unwrap();
        assert_eq!(capped.to_vec::<i64>().unwrap(), vec![3]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ints = Tensor::from_vec(vec![1i64, 2], (1, 2), &Device::Cpu).unwrap();
        assert!(ints.sinkhorn(1e-4, 10).is_err());
        let flat = Tensor::from_vec(vec![1f32, 2.0], 2, &Device::Cpu).unwrap();
        assert!(flat.sinkhorn(1e-4, 10).is_err());
        let wide = Tensor::zeros((1, 1025), DType::F32, &Device::Cpu).unwrap();
        assert!(wide
            .sinkhorn(1e-4, 10)
            .unwrap_err()
            .to_string()
            .contains("1025 experts"));
    }
}
