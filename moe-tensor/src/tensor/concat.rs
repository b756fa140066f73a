//! Joining and splitting along a dim: `cat`, `stack`, `split`, `chunk`.
//! Only `cat` copies; its backward and the splits are narrow views.

use super::convert::contiguous_storage;
use super::index::{check_same_kind, kernel_err};
use crate::backprop::BackwardOp;
use crate::storage::{CpuStorage, Storage};
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::index as kernels;

struct CatBackward {
    parts: Vec<Tensor>,
    dim: usize,
}

impl BackwardOp for CatBackward {
    fn name(&self) -> &'static str {
        "cat"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        self.parts.iter().collect()
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut start = 0;
        let mut grads = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let len = p.dims()[self.dim];
            grads.push(
                p.requires_grad()
                    .then(|| g.narrow(self.dim as isize, start, len))
                    .transpose()?,
            );
            start += len;
        }
        Ok(grads)
    }
}

/// Runs the concat kernel over parts of one dtype (`$variant`) held in `storages`.
macro_rules! concat_variant {
    ($variant:ident, $storages:expr, $outer:expr, $inner:expr, $total:expr, $op:expr) => {{
        let mut slices = Vec::with_capacity($storages.len());
        for (s, off, n, d) in $storages {
            match s {
                CpuStorage::$variant(v) => slices.push((&v[*off..*off + *n], *d)),
                other => {
                    return Err(Error::UnsupportedDType {
                        op: $op,
                        dtype: other.dtype(),
                    })
                }
            }
        }
        let mut out = vec![Default::default(); $outer * $total * $inner];
        kernels::concat(&slices, $outer, $inner, &mut out).map_err(kernel_err($op))?;
        CpuStorage::$variant(out)
    }};
}

impl Tensor {
    /// Concatenates tensors along `dim` (torch.cat). All must share dtype,
    /// device, rank and every size but `dim`'s. Differentiable in each input.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let op = "cat";
        let first = tensors.first().ok_or(Error::InvalidShape {
            op,
            msg: "no tensors given".into(),
        })?;
        let d = first.shape().resolve_dim(dim, op)?;
        for t in &tensors[1..] {
            check_same_kind(op, first, t)?;
            let same_rest = t.rank() == first.rank()
                && t.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            if !same_rest {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: first.shape().clone(),
                    rhs: t.shape().clone(),
                });
            }
        }
        if tensors.len() == 1 {
            return Ok((*first).clone());
        }
        let (outer, _, inner) = first.shape().outer_dim_inner(d);
        let total: usize = tensors.iter().map(|t| t.dims()[d]).sum();
        if !first.device().is_cpu() {
            let mut dims = first.dims().to_vec();
            dims[d] = total;
            let shape = Shape::from(dims);
            let out = crate::cuda_backend::cat(tensors, d, &shape)?;
            let back = CatBackward {
                parts: tensors.iter().map(|t| (*t).clone()).collect(),
                dim: d,
            };
            return Ok(Tensor::from_op(out, shape, back));
        }
        // Contiguous parts are borrowed, others copied once.
        let owned: Vec<Option<CpuStorage>> = tensors
            .iter()
            .map(|t| (!t.is_contiguous()).then(|| contiguous_storage(t)).transpose())
            .collect::<Result<_>>()?;
        let guards: Vec<_> = tensors.iter().map(|t| t.read_storage()).collect();
        let mut storages = Vec::with_capacity(tensors.len());
        for ((t, g), own) in tensors.iter().zip(&guards).zip(&owned) {
            let (s, off) = match own {
                Some(s) => (s, 0),
                None => (g.cpu(op)?, t.layout().offset()),
            };
            storages.push((s, off, t.elem_count(), t.dims()[d]));
        }
        let out = match first.dtype() {
            crate::DType::U8 => concat_variant!(U8, &storages, outer, inner, total, op),
            crate::DType::I64 => concat_variant!(I64, &storages, outer, inner, total, op),
            crate::DType::F16 => concat_variant!(F16, &storages, outer, inner, total, op),
            crate::DType::BF16 => concat_variant!(BF16, &storages, outer, inner, total, op),
            crate::DType::F32 => concat_variant!(F32, &storages, outer, inner, total, op),
            crate::DType::F64 => concat_variant!(F64, &storages, outer, inner, total, op),
        };
        drop(guards);
        let mut dims = first.dims().to_vec();
        dims[d] = total;
        let back = CatBackward {
            parts: tensors.iter().map(|t| (*t).clone()).collect(),
            dim: d,
        };
        Ok(Tensor::from_op(Storage::Cpu(out), Shape::from(dims), back))
    }

    /// Stacks equally shaped tensors along a new dim `dim` (0..=rank; negative
    /// counts from the end, as torch.stack). Differentiable in each input.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let op = "stack";
        let first = tensors.first().ok_or(Error::InvalidShape {
            op,
            msg: "no tensors given".into(),
        })?;
        for t in &tensors[1..] {
            if t.shape() != first.shape() {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: first.shape().clone(),
                    rhs: t.shape().clone(),
                });
            }
        }
        let rank = first.rank() as isize;
        let d = if dim < 0 { dim + rank + 1 } else { dim };
        if d < 0 || d > rank {
            return Err(Error::DimOutOfRange {
                op,
                dim,
                rank: first.rank(),
            });
        }
        let parts = tensors.iter().map(|t| t.unsqueeze(d)).collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), d)
    }

    /// Splits `dim` into consecutive pieces of the given sizes, which must sum
    /// to the dim's size (torch.split with a list). Each piece is a view.
    pub fn split(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        let op = "split";
        let d = self.shape().resolve_dim(dim, op)?;
        let total: usize = sizes.iter().sum();
        if total != self.dims()[d] {
            return Err(Error::InvalidShape {
                op,
                msg: format!(
                    "sizes {sizes:?} sum to {total}, but dim {d} of {:?} has {}",
                    self.shape(),
                    self.dims()[d]
                ),
            });
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let piece = self.narrow(d as isize, start, len);
                start += len;
                piece
            })
            .collect()
    }

    /// Splits `dim` into `n` views of `ceil(size / n)` elements, the last one
    /// smaller, as torch.chunk (so fewer than `n` pieces when the size does not
    /// fill them, and `n` empty pieces for an empty dim).
    pub fn chunk(&self, n: usize, dim: isize) -> Result<Vec<Tensor>> {
        let op = "chunk";
        let d = self.shape().resolve_dim(dim, op)?;
        if n == 0 {
            return Err(Error::InvalidShape {
                op,
                msg: "number of chunks must be at least 1".into(),
            });
        }
        let size = self.dims()[d];
        let step = size.div_ceil(n).max(1);
        let mut sizes = Vec::new();
        let mut start = 0;
        while start < size {
            sizes.push(step.min(size - start));
            start += step;
        }
        if sizes.is_empty() {
            // torch gives `n` empty pieces for an empty dim.
            sizes = vec![0; n];
        }
        self.split(&sizes, d as isize)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    fn t(v: Vec<i64>, dims: &[usize]) -> Tensor {
        Tensor::from_vec(v, dims.to_vec(), &Device::Cpu).unwrap()
    }

    #[test]
    fn cat_and_stack_values() {
        let a = t(vec![0, 1, 2, 3], &[2, 2]);
        let b = t(vec![4, 5], &[2, 1]);
        let c = Tensor::cat(&[&a, &b], 1).unwrap();
        assert_eq!(c.dims(), &[2, 3]);
        assert_eq!(c.to_vec::<i64>().unwrap(), vec![0, 1, 4, 2, 3, 5]);
        let s = Tensor::stack(&[&a, &a.t().unwrap()], -1).unwrap();
        assert_eq!(s.dims(), &[2, 2, 2]);
        assert_eq!(s.to_vec::<i64>().unwrap(), vec![0, 0, 1, 2, 2, 1, 3, 3]);
    }

    #[test]
    fn chunk_follows_torch_sizes() {
        let x = t((0..5).collect(), &[5]);
        let sizes = |n| x.chunk(n, 0).unwrap().iter().map(|p| p.dims()[0]).collect::<Vec<_>>();
        assert_eq!(sizes(2), vec![3, 2]);
        assert_eq!(sizes(3), vec![2, 2, 1]);
        assert_eq!(sizes(4), vec![2, 2, 1]);
        assert_eq!(sizes(5), vec![1, 1, 1, 1, 1]);
        assert_eq!(sizes(9), vec![1, 1, 1, 1, 1]);
        assert_eq!(x.chunk(2, 0).unwrap()[1].to_vec::<i64>().unwrap(), vec![3, 4]);
        let empty = t(vec![], &[0, 2]);
        assert_eq!(empty.chunk(3, 0).unwrap().len(), 3);
    }
}
