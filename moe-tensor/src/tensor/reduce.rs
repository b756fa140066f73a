//! Reductions over dims: sum, mean, max (with keepdim), and `sum_to_shape`,
//! which undoes broadcasting in backward passes.

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::storage::{CpuStorage, Storage};
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::index::Dims3;
use moe_kernels::cpu::reduce;

struct SumBackward {
    x: Tensor,
    /// The output shape with reduced dims kept as 1.
    keep_shape: Shape,
}

impl BackwardOp for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.reshape(&self.keep_shape)?.broadcast_as(self.x.shape())?)])
    }
}

struct MaxBackward {
    x: Tensor,
    dim: usize,
    /// Index of the maximum along `dim`, `[outer · inner]` i64 on `x`'s device.
    argmax: Tensor,
}

impl BackwardOp for MaxBackward {
    fn name(&self) -> &'static str {
        "max"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (outer, dim, inner) = self.x.shape().outer_dim_inner(self.dim);
        if !g.device().is_cpu() {
            // A scatter-add of g into zeros at the maxima (one per output).
            let dims = Dims3::new(outer, dim, inner);
            let dx = crate::cuda_backend::scatter_add(None, dims, &self.argmax, g, 1, "max_backward")?;
            return Ok(vec![Some(Tensor::from_storage(dx, self.x.shape().clone()))]);
        }
        let argmax = self.argmax.to_vec::<i64>()?;
        let g = g.contiguous()?;
        let guard = g.read_storage();
        let off = g.layout().offset();
        let out = crate::map_float!(guard.cpu("max")?, "max", |v: T| {
            let gv = &v[off..off + outer * inner];
            Ok(T::into_storage(reduce::scatter_dim(gv, &argmax, outer, dim, inner)))
        })?;
        Ok(vec![Some(Tensor::from_cpu_no_grad(out, self.x.shape().clone()))])
    }
}

fn resolve_dims(t: &Tensor, dims: &[isize], op: &'static str) -> Result<Vec<usize>> {
    let mut out = dims
        .iter()
        .map(|&d| t.shape().resolve_dim(d, op))
        .collect::<Result<Vec<_>>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Sums a contiguous CPU buffer over the sorted `dims`, keeping them as size 1.
fn sum_dims_storage(x: &Tensor, dims: &[usize]) -> Result<(CpuStorage, Shape)> {
    let x = x.contiguous()?;
    let guard = x.read_storage();
    let off = x.layout().offset();
    let mut shape = x.dims().to_vec();
    let out = crate::map_float!(guard.cpu("sum")?, "sum", |v: T| {
        let mut cur: Vec<T> = v[off..off + x.elem_count()].to_vec();
        for &d in dims.iter().rev() {
            let (outer, n, inner) = Shape::from(shape.clone()).outer_dim_inner(d);
            cur = reduce::sum_dim(&cur, outer, n, inner);
            shape[d] = 1;
        }
        Ok(T::into_storage(cur))
    })?;
    Ok((out, Shape::from(shape)))
}

fn drop_dims(keep_shape: &Shape, dims: &[usize]) -> Shape {
    Shape::from(
        keep_shape
            .dims()
            .iter()
            .enumerate()
            .filter(|(i, _)| !dims.contains(i))
            .map(|(_, &d)| d)
            .collect::<Vec<_>>(),
    )
}

impl Tensor {
    /// Sum over `dims` (negative dims count from the end), keeping them as size 1 if `keepdim`.
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let dims = resolve_dims(self, dims, "sum")?;
        let (out, keep_shape) = if self.device().is_cpu() {
            let (out, keep_shape) = sum_dims_storage(self, &dims)?;
            (Storage::Cpu(out), keep_shape)
        } else {
            crate::cuda_backend::sum_dims(self, &dims)?
        };
        let shape = if keepdim {
            keep_shape.clone()
        } else {
            drop_dims(&keep_shape, &dims)
        };
        Ok(Tensor::from_op(
            out,
            shape,
            SumBackward {
                x: self.clone(),
                keep_shape,
            },
        ))
    }

    /// Sum of all elements as a rank-0 tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum(&dims, false)
    }

    /// Mean over `dims`.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let resolved = resolve_dims(self, dims, "mean")?;
        let n: usize = resolved.iter().map(|&d| self.dims()[d]).product();
        self.sum(dims, keepdim)?.mul_scalar(1.0 / n as f64)
    }

    /// Mean of all elements as a rank-0 tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.elem_count();
        self.sum_all()?.mul_scalar(1.0 / n as f64)
    }

    /// Maximum over one dim; the gradient flows to the first maximal element
    /// (a NaN, the first one, is the maximum). F32/F64, on the CPU or a CUDA
    /// device (the positions of the maxima stay on the device).
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = self.shape().resolve_dim(dim, "max")?;
        let (outer, n, inner) = self.shape().outer_dim_inner(d);
        if n == 0 {
            return Err(Error::InvalidShape {
                op: "max",
                msg: format!("dim {d} of {:?} is empty", self.shape()),
            });
        }
        let (out, argmax) = if self.device().is_cpu() {
            let x = self.contiguous()?;
            let guard = x.read_storage();
            let off = x.layout().offset();
            let mut argmax = Vec::new();
            let out = crate::map_float!(guard.cpu("max")?, "max", |v: T| {
                let (vals, idx) = reduce::max_dim(&v[off..off + x.elem_count()], outer, n, inner);
                argmax = idx;
                Ok(T::into_storage(vals))
            })?;
            (Storage::Cpu(out), Storage::Cpu(CpuStorage::I64(argmax)))
        } else {
            crate::cuda_backend::max_dim(self, d, "max")?
        };
        let argmax = Tensor::from_storage(argmax, Shape::from(vec![outer * inner]));
        let mut shape = self.dims().to_vec();
        if keepdim {
            shape[d] = 1;
        } else {
            shape.remove(d);
        }
        Ok(Tensor::from_op(
            out,
            Shape::from(shape),
            MaxBackward {
                x: self.clone(),
                dim: d,
                argmax,
            },
        ))
    }

    /// Sums broadcast dims away so the result has `shape` (the reverse of broadcasting).
    pub fn sum_to_shape(&self, shape: &Shape) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let (src, dst) = (self.dims(), shape.dims());
        let bad = || Error::BroadcastIncompatible {
            op: "sum_to_shape",
            lhs: self.shape().clone(),
            rhs: shape.clone(),
        };
        if dst.len() > src.len() {
            return Err(bad());
        }
        let lead = src.len() - dst.len();
        let mut dims: Vec<isize> = (0..lead as isize).collect();
        for (i, &d) in dst.iter().enumerate() {
            if d == 1 && src[lead + i] != 1 {
                dims.push((lead + i) as isize);
            } else if d != src[lead + i] {
                return Err(bad());
            }
        }
        self.sum(&dims, true)?.reshape(shape)
    }
}
