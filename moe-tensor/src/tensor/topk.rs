//! `topk` along the last dim (gradient through the values) and `argmax`.
//!
//! Ranking is fixed and documented: larger first, NaN above every number,
//! equal values by lower index. torch leaves topk's tie order unspecified, so
//! only tie-free inputs are comparable with it index for index.

use super::index::{accumulate_grad, dims3, kernel_err, with_contiguous, Accumulate};
use crate::backprop::BackwardOp;
use crate::storage::{CpuStorage, Storage};
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::index::{self as kernels, Dims3};

struct TopkBackward {
    x: Tensor,
    /// Chosen positions along the last dim, `[rows, k]`.
    indices: Vec<i64>,
    k: usize,
}

impl BackwardOp for TopkBackward {
    fn name(&self) -> &'static str {
        "topk"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Each chosen element receives its value's gradient; the rest get zero.
        let n = self.x.dims().last().copied().unwrap_or(1);
        let rows = self.x.elem_count().checked_div(n).unwrap_or(0);
        let acc = Accumulate::ScatterAdd {
            index: &self.indices,
            dims: Dims3::new(rows, n, 1),
            k: self.k,
        };
        Ok(vec![Some(accumulate_grad(g, "topk_backward", self.x.shape(), acc)?)])
    }
}

impl Tensor {
    /// The `k` largest entries along the last dim, largest first, and their
    /// positions as I64 (torch.topk with `largest=True, sorted=True`). Ties go
    /// to the lower index; NaN ranks above every number. Gradients flow through
    /// the values to the chosen entries. F32/F64; `k` may be 0 but not exceed
    /// the last dim's size.
    pub fn topk(&self, k: usize) -> Result<(Tensor, Tensor)> {
        let op = "topk";
        let n = *self.dims().last().ok_or(Error::InvalidShape {
            op,
            msg: "needs rank ≥ 1, got a scalar".into(),
        })?;
        if k > n {
            return Err(Error::InvalidShape {
                op,
                msg: format!("k = {k} exceeds the last dim of {:?}", self.shape()),
            });
        }
        if !self.device().is_cpu() {
            return crate::cuda_backend::topk_op(self, k);
        }
        let rows = self.elem_count().checked_div(n).unwrap_or(0);
        let mut indices = vec![0i64; rows * k];
        let values = with_contiguous(self, op, |s, off| {
            macro_rules! run {
                ($v:expr) => {{
                    let mut vals = vec![Default::default(); rows * k];
                    kernels::topk(&$v[off..off + rows * n], rows, n, k, &mut vals, &mut indices)
                        .map_err(kernel_err(op))?;
                    vals
                }};
            }
            Ok(match s {
                CpuStorage::F32(v) => CpuStorage::F32(run!(v)),
                CpuStorage::F64(v) => CpuStorage::F64(run!(v)),
                other => {
                    return Err(Error::UnsupportedDType {
                        op,
                        dtype: other.dtype(),
                    })
                }
            })
        })?;
        let mut dims = self.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = k;
        }
        let shape = Shape::from(dims);
        let idx = Tensor::from_cpu_no_grad(CpuStorage::I64(indices.clone()), shape.clone());
        let back = TopkBackward {
            x: self.clone(),
            indices,
            k,
        };
        Ok((Tensor::from_op(Storage::Cpu(values), shape, back), idx))
    }

    /// Position (I64) of the largest entry along `dim`; the first one on ties,
    /// a NaN if there is one (as torch.argmax). The dim is kept as size 1 when
    /// `keepdim`. F32/F64; an empty dim is an error. Not differentiable. On a
    /// CUDA device the positions stay there.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let op = "argmax";
        let d = self.shape().resolve_dim(dim, op)?;
        let x_dims = dims3(self.shape(), d);
        if x_dims.dim == 0 {
            return Err(Error::InvalidShape {
                op,
                msg: format!("dim {d} of {:?} is empty", self.shape()),
            });
        }
        let mut dims = self.dims().to_vec();
        if keepdim {
            dims[d] = 1;
        } else {
            dims.remove(d);
        }
        if !self.device().is_cpu() {
            let (_, positions) = crate::cuda_backend::max_dim(self, d, op)?;
            return Ok(Tensor::from_storage(positions, Shape::from(dims)));
        }
        let mut out = vec![0i64; x_dims.outer * x_dims.inner];
        with_contiguous(self, op, |s, off| {
            let n = self.elem_count();
            match s {
                CpuStorage::F32(v) => kernels::argmax(&v[off..off + n], x_dims, &mut out),
                CpuStorage::F64(v) => kernels::argmax(&v[off..off + n], x_dims, &mut out),
                other => {
                    return Err(Error::UnsupportedDType {
                        op,
                        dtype: other.dtype(),
                    })
                }
            }
            .map_err(kernel_err(op))
        })?;
        Ok(Tensor::from_cpu_no_grad(CpuStorage::I64(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    #[test]
    fn topk_values_indices_and_ties() {
        let x = Tensor::from_vec(vec![1.0f32, 3.0, 3.0, 0.5, 2.0, -1.0, 2.0, 7.0], (2, 4), &Device::Cpu).unwrap();
        let (v, i) = x.topk(2).unwrap();
        assert_eq!(v.dims(), &[2, 2]);
        assert_eq!(v.to_vec::<f32>().unwrap(), vec![3.0, 3.0, 7.0, 2.0]);
        assert_eq!(i.to_vec::<i64>().unwrap(), vec![1, 2, 3, 0]);
    }

    #[test]
    fn argmax_keepdim_and_first_tie() {
        let x = Tensor::from_vec(vec![1.0f64, 5.0, 5.0, 9.0, 0.0, 9.0], (2, 3), &Device::Cpu).unwrap();
        let a = x.argmax(1, false).unwrap();
        assert_eq!(a.dims(), &[2]);
        assert_eq!(a.to_vec::<i64>().unwrap(), vec![1, 0]);
        let a = x.argmax(0, true).unwrap();
        assert_eq!(a.dims(), &[1, 3]);
        assert_eq!(a.to_vec::<i64>().unwrap(), vec![1, 0, 1]);
    }
}
