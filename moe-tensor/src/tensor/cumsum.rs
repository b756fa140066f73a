//! Inclusive prefix sum along a dim; its backward is the suffix sum.

use super::index::{dims3, kernel_err, with_contiguous};
use crate::backprop::BackwardOp;
use crate::storage::{CpuStorage, Storage};
use crate::{Error, Result, Tensor};
use moe_kernels::cpu::index::{self as kernels, Dims3};
use std::ops::Add;

struct CumsumBackward {
    x: Tensor,
    dim: usize,
}

impl BackwardOp for CumsumBackward {
    fn name(&self) -> &'static str {
        "cumsum"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let out = scan(g, self.dim, true, "cumsum_backward")?;
        Ok(vec![Some(Tensor::from_storage(out, g.shape().clone()))])
    }
}

fn run<T: Copy + Add<Output = T> + Send + Sync + Default>(
    x: &[T],
    d: Dims3,
    reverse: bool,
    op: &'static str,
) -> Result<Vec<T>> {
    let mut out = vec![T::default(); x.len()];
    if reverse {
        kernels::cumsum_reverse(x, d, &mut out)
    } else {
        kernels::cumsum(x, d, &mut out)
    }
    .map_err(kernel_err(op))?;
    Ok(out)
}

/// Prefix (or, `reverse`, suffix) sums of `t`'s elements along `dim`, on
/// `t`'s device; U8 sums into I64.
fn scan(t: &Tensor, dim: usize, reverse: bool, op: &'static str) -> Result<Storage> {
    if !t.device().is_cpu() {
        return crate::cuda_backend::cumsum(t, dim, reverse, op);
    }
    let (d, n) = (dims3(t.shape(), dim), t.elem_count());
    with_contiguous(t, op, |s, off| {
        Ok(match s {
            CpuStorage::F32(v) => CpuStorage::F32(run(&v[off..off + n], d, reverse, op)?),
            CpuStorage::F64(v) => CpuStorage::F64(run(&v[off..off + n], d, reverse, op)?),
            CpuStorage::I64(v) => CpuStorage::I64(run(&v[off..off + n], d, reverse, op)?),
            CpuStorage::U8(v) => {
                let wide: Vec<i64> = v[off..off + n].iter().map(|&b| b as i64).collect();
                CpuStorage::I64(run(&wide, d, reverse, op)?)
            }
            other => {
                return Err(Error::UnsupportedDType {
                    op,
                    dtype: other.dtype(),
                })
            }
        })
    })
    .map(Storage::Cpu)
}

impl Tensor {
    /// Inclusive cumulative sum along `dim` (torch.cumsum): element `i` is the
    /// sum of elements `0..=i`, added in that order. F32/F64 (differentiable),
    /// I64, and U8 masks (summed into I64, as torch does for bool), so
    /// `mask.cumsum(0)` gives 1-based positions of the set entries. On a
    /// CUDA device the same dtypes, read from any view, summed in the same
    /// order (one thread per column: meant for routing-sized dims).
    pub fn cumsum(&self, dim: isize) -> Result<Tensor> {
        let op = "cumsum";
        let d = self.shape().resolve_dim(dim, op)?;
        let out = scan(self, d, false, op)?;
        if self.dtype().is_float() {
            Ok(Tensor::from_op(
                out,
                self.shape().clone(),
                CumsumBackward {
                    x: self.clone(),
                    dim: d,
                },
            ))
        } else {
            debug_assert_eq!(out.dtype(), crate::DType::I64);
            Ok(Tensor::from_storage(out, self.shape().clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Tensor};

    #[test]
    fn cumsum_of_a_mask_counts_positions() {
        let m = Tensor::from_vec(vec![1u8, 0, 1, 1], 4, &Device::Cpu).unwrap();
        let c = m.cumsum(0).unwrap();
        assert_eq!(c.dtype(), DType::I64);
        assert_eq!(c.to_vec::<i64>().unwrap(), vec![1, 1, 2, 3]);
    }

    #[test]
    fn cumsum_on_a_transposed_view() {
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), &Device::Cpu).unwrap();
        // x.t() is [[1, 4], [2, 5], [3, 6]]; cumsum over rows.
        let c = x.t().unwrap().cumsum(0).unwrap();
        assert_eq!(c.to_vec::<f64>().unwrap(), vec![1., 4., 3., 9., 6., 15.]);
    }
}
