//! Embedding lookup: rows of a `[V, D]` table picked by integer ids, with a
//! deterministic scatter-add backward into the table.

use super::index::{accumulate_grad, index_values, kernel_err, map_any, with_contiguous, Accumulate};
use crate::backprop::BackwardOp;
use crate::storage::{CpuStorage, Storage};
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::index::{self as kernels, Dims3};

struct EmbeddingBackward {
    weight: Tensor,
    ids: Vec<i64>,
}

impl BackwardOp for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.weight]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (v, d) = (self.weight.dims()[0], self.weight.dims()[1]);
        let acc = Accumulate::IndexAdd {
            index: &self.ids,
            dims: Dims3::new(1, v, d),
        };
        Ok(vec![Some(accumulate_grad(
            g,
            "embedding_backward",
            self.weight.shape(),
            acc,
        )?)])
    }
}

impl Tensor {
    /// Embedding lookup with `self` as the table: `self` is `[V, D]`, `ids` is
    /// I64 of any shape with entries in `0..V`; the result has shape
    /// `ids.dims() ++ [D]` (torch's `F.embedding(ids, weight)`, no padding index).
    /// The gradient scatter-adds rows back into `[V, D]`; repeated ids
    /// accumulate in a fixed order, so it is deterministic.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let op = "embedding";
        if self.rank() != 2 {
            return Err(Error::InvalidShape {
                op,
                msg: format!("weight must be [V, D], got {:?}", self.shape()),
            });
        }
        if !self.device().is_cpu() {
            return crate::cuda_backend::embedding_op(self, ids);
        }
        let (v, d) = (self.dims()[0], self.dims()[1]);
        let idx = index_values(op, self, ids)?;
        let out = with_contiguous(self, op, |s, off| {
            Ok(map_any!(s, |w| {
                let mut out = vec![Default::default(); idx.len() * d];
                kernels::embedding(&w[off..off + v * d], v, d, &idx, &mut out).map_err(kernel_err(op))?;
                out
            }))
        })?;
        let mut dims = ids.dims().to_vec();
        dims.push(d);
        let back = EmbeddingBackward {
            weight: self.clone(),
            ids: idx,
        };
        Ok(Tensor::from_op(Storage::Cpu(out), Shape::from(dims), back))
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Error, Tensor};

    #[test]
    fn embedding_shapes_and_values() {
        let w = Tensor::from_vec((0..8).map(|x| x as f32).collect(), (4, 2), &Device::Cpu).unwrap();
        let ids = Tensor::from_vec(vec![3i64, 0, 3, 1, 2, 2], (2, 3), &Device::Cpu).unwrap();
        let y = w.embedding(&ids).unwrap();
        assert_eq!(y.dims(), &[2, 3, 2]);
        assert_eq!(
            y.to_vec::<f32>().unwrap(),
            vec![6., 7., 0., 1., 6., 7., 2., 3., 4., 5., 4., 5.]
        );
    }

    #[test]
    fn embedding_rejects_bad_ids() {
        let w = Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
        let ids = Tensor::from_vec(vec![0i64, 4], 2, &Device::Cpu).unwrap();
        assert!(matches!(
            w.embedding(&ids),
            Err(Error::IndexOutOfRange { index: 4, size: 4, .. })
        ));
        let fids = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(w.embedding(&fids), Err(Error::DTypeMismatch { .. })));
        let w1 = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(w1.embedding(&ids), Err(Error::InvalidShape { .. })));
    }
}
