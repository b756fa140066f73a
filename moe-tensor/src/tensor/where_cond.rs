//! Selection by a mask: `where_cond` (torch.where with three tensors) and
//! `masked_fill`, both broadcasting.

use super::index::map_any;
use crate::backprop::BackwardOp;
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Error, Result, Shape, Tensor};
use moe_kernels::cpu::elementwise;
use moe_kernels::cpu::strided::Strided;

struct WhereBackward {
    mask: Tensor,
    on_true: Tensor,
    on_false: Tensor,
}

impl BackwardOp for WhereBackward {
    fn name(&self) -> &'static str {
        "where_cond"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.on_true, &self.on_false]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Selecting exact zeros (not multiplying by the mask) keeps an inf or NaN
        // in g from leaking into the branch that was not taken.
        let zero = Tensor::zeros((), g.dtype(), &g.device())?;
        let gt = self
            .on_true
            .requires_grad()
            .then(|| self.mask.where_cond(g, &zero)?.sum_to_shape(self.on_true.shape()))
            .transpose()?;
        let gf = self
            .on_false
            .requires_grad()
            .then(|| self.mask.where_cond(&zero, g)?.sum_to_shape(self.on_false.shape()))
            .transpose()?;
        Ok(vec![gt, gf])
    }
}

/// `t` broadcast to `shape` and copied row-major.
fn broadcast_storage(t: &Tensor, shape: &Shape) -> Result<CpuStorage> {
    let layout = t.layout().broadcast_as(shape)?;
    let view = Strided {
        dims: layout.dims(),
        strides: layout.strides(),
        offset: layout.offset(),
    };
    let guard = t.read_storage();
    Ok(map_any!(guard.cpu("where_cond")?, |v| elementwise::unary(
        v,
        view,
        |x| x
    )))
}

fn pick<T: Copy + Send + Sync + Default>(mask: &[u8], a: &[T], b: &[T]) -> Vec<T> {
    elementwise::ternary_contiguous(mask, a, b, |m, a, b| if m != 0 { a } else { b })
}

impl Tensor {
    /// Elementwise `if self { on_true } else { on_false }` with `self` a U8 mask
    /// (nonzero = true); all three broadcast together (torch.where). Call it as
    /// `mask.where_cond(&a, &b)` or `Tensor::where_cond(&mask, &a, &b)`.
    /// Differentiable in `on_true` and `on_false`.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        let op = "where_cond";
        if self.dtype() != DType::U8 {
            return Err(Error::DTypeMismatch {
                op,
                lhs: self.dtype(),
                rhs: DType::U8,
            });
        }
        if on_true.dtype() != on_false.dtype() {
            return Err(Error::DTypeMismatch {
                op,
                lhs: on_true.dtype(),
                rhs: on_false.dtype(),
            });
        }
        for t in [on_true, on_false] {
            if t.device() != self.device() {
                return Err(Error::DeviceMismatch {
                    op,
                    lhs: self.device(),
                    rhs: t.device(),
                });
            }
        }
        let shape = self
            .shape()
            .broadcast_with(on_true.shape(), op)?
            .broadcast_with(on_false.shape(), op)?;
        let back = || WhereBackward {
            mask: self.clone(),
            on_true: on_true.clone(),
            on_false: on_false.clone(),
        };
        if !self.device().is_cpu() {
            let (lm, la, lb) = (
                self.layout().broadcast_as(&shape)?,
                on_true.layout().broadcast_as(&shape)?,
                on_false.layout().broadcast_as(&shape)?,
            );
            let out = crate::cuda_backend::where_cond((self, &lm), (on_true, &la), (on_false, &lb))?;
            return Ok(Tensor::from_op(out, shape, back()));
        }
        let m = match broadcast_storage(self, &shape)? {
            CpuStorage::U8(m) => m,
            other => {
                return Err(Error::UnsupportedDType {
                    op,
                    dtype: other.dtype(),
                })
            }
        };
        let out = match (
            broadcast_storage(on_true, &shape)?,
            broadcast_storage(on_false, &shape)?,
        ) {
            (CpuStorage::U8(a), CpuStorage::U8(b)) => CpuStorage::U8(pick(&m, &a, &b)),
            (CpuStorage::I64(a), CpuStorage::I64(b)) => CpuStorage::I64(pick(&m, &a, &b)),
            (CpuStorage::F16(a), CpuStorage::F16(b)) => CpuStorage::F16(pick(&m, &a, &b)),
            (CpuStorage::BF16(a), CpuStorage::BF16(b)) => CpuStorage::BF16(pick(&m, &a, &b)),
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(pick(&m, &a, &b)),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(pick(&m, &a, &b)),
            (a, b) => {
                return Err(Error::DTypeMismatch {
                    op,
                    lhs: a.dtype(),
                    rhs: b.dtype(),
                })
            }
        };
        Ok(Tensor::from_op(Storage::Cpu(out), shape, back()))
    }

    /// `value` where the U8 `mask` is nonzero, `self` elsewhere; `mask` must
    /// broadcast to `self`'s shape (torch.masked_fill). Differentiable in `self`.
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        let op = "masked_fill";
        let shape = mask.shape().broadcast_with(self.shape(), op)?;
        if &shape != self.shape() {
            return Err(Error::BroadcastIncompatible {
                op,
                lhs: self.shape().clone(),
                rhs: mask.shape().clone(),
            });
        }
        let fill = Tensor::full(value, (), self.dtype(), &self.device())?;
        mask.where_cond(&fill, self).map_err(|e| match e {
            Error::DTypeMismatch { lhs, rhs, .. } => Error::DTypeMismatch { op, lhs, rhs },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    #[test]
    fn where_cond_broadcasts_all_three() {
        let m = Tensor::from_vec(vec![1u8, 0, 1], (3, 1), &Device::Cpu).unwrap();
        let a = Tensor::from_vec(vec![1.0f32, 2.0], 2, &Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![-1.0f32], (), &Device::Cpu).unwrap();
        let y = m.where_cond(&a, &b).unwrap();
        assert_eq!(y.dims(), &[3, 2]);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![1., 2., -1., -1., 1., 2.]);
    }

    #[test]
    fn masked_fill_keeps_shape_and_dtype() {
        let x = Tensor::from_vec(vec![1i64, 2, 3, 4], (2, 2), &Device::Cpu).unwrap();
        let m = Tensor::from_vec(vec![0u8, 1], 2, &Device::Cpu).unwrap();
        assert_eq!(
            x.masked_fill(&m, -7.0).unwrap().to_vec::<i64>().unwrap(),
            vec![1, -7, 3, -7]
        );
        let big = Tensor::from_vec(vec![0u8; 8], (2, 2, 2), &Device::Cpu).unwrap();
        assert!(x.masked_fill(&big, 0.0).is_err());
    }
}
