//! Indexing along a dim: `index_select`, `gather` and `scatter_add` (torch
//! semantics), plus the helpers the other indexing files share: reading index
//! tensors, borrowing contiguous data, mapping kernel errors.

use crate::backprop::BackwardOp;
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Error, Result, Shape, Tensor};
use moe_kernels::cpu::index::{self as kernels, Dims3};
use moe_kernels::KernelError;
use std::ops::AddAssign;

/// Maps a kernel error to a tensor error naming `op`.
pub(crate) fn kernel_err(op: &'static str) -> impl Fn(KernelError) -> Error {
    move |e| match e {
        KernelError::IndexOutOfBounds { index, size, .. } => Error::IndexOutOfRange { op, index, size },
        other => Error::Kernel {
            op,
            msg: other.to_string(),
        },
    }
}

/// The elements of an index tensor (dtype I64, on `x`'s device) in row-major order.
pub(crate) fn index_values(op: &'static str, x: &Tensor, index: &Tensor) -> Result<Vec<i64>> {
    if index.dtype() != DType::I64 {
        return Err(Error::DTypeMismatch {
            op,
            lhs: index.dtype(),
            rhs: DType::I64,
        });
    }
    if index.device() != x.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: x.device(),
            rhs: index.device(),
        });
    }
    index.to_vec::<i64>()
}

/// The CPU kernels' index check for the device paths, which read their
/// indices back to the host: the first index outside `0..size` is
/// `IndexOutOfRange`.
fn check_indices(op: &'static str, idx: &[i64], size: usize) -> Result<()> {
    kernels::check_indices(op, idx, size).map_err(kernel_err(op))
}

/// Runs `f` on `t`'s row-major elements: borrowed from the storage (at the
/// returned offset) when `t` is contiguous, copied otherwise.
pub(crate) fn with_contiguous<R>(
    t: &Tensor,
    op: &'static str,
    f: impl FnOnce(&CpuStorage, usize) -> Result<R>,
) -> Result<R> {
    match t.layout().contiguous_range() {
        Some(range) => {
            let guard = t.read_storage();
            f(guard.cpu(op)?, range.start)
        }
        None => f(&super::convert::contiguous_storage(t)?, 0),
    }
}

/// Matches a `CpuStorage` of any dtype, binding `$v` to its vector and
/// wrapping the `Vec` that `$body` returns in the same variant.
macro_rules! map_any {
    ($s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::U8($v) => CpuStorage::U8($body),
            CpuStorage::I64($v) => CpuStorage::I64($body),
            CpuStorage::F16($v) => CpuStorage::F16($body),
            CpuStorage::BF16($v) => CpuStorage::BF16($body),
            CpuStorage::F32($v) => CpuStorage::F32($body),
            CpuStorage::F64($v) => CpuStorage::F64($body),
        }
    };
}
pub(crate) use map_any;

/// `t`'s dims with `dim` resized to `n`.
fn with_dim(t: &Tensor, dim: usize, n: usize) -> Shape {
    let mut dims = t.dims().to_vec();
    dims[dim] = n;
    Shape::from(dims)
}

/// `Dims3` of a shape around `dim` (which the caller has resolved).
pub(crate) fn dims3(shape: &Shape, dim: usize) -> Dims3 {
    let (outer, d, inner) = shape.outer_dim_inner(dim);
    Dims3::new(outer, d, inner)
}

/// Checks that two tensors have the same dtype and device.
pub(crate) fn check_same_kind(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: a.device(),
            rhs: b.device(),
        });
    }
    Ok(())
}

/// An accumulating kernel that turns an output gradient into an input gradient.
pub(crate) enum Accumulate<'a> {
    /// `dst[o, index[j], i] += src[o, j, i]`; `dims` are `dst`'s.
    IndexAdd { index: &'a [i64], dims: Dims3 },
    /// `dst[o, index[o, j, i], i] += src[o, j, i]` for `j < k`; `dims` are `dst`'s.
    ScatterAdd { index: &'a [i64], dims: Dims3, k: usize },
}

impl Accumulate<'_> {
    fn run<T: Copy + AddAssign + Send + Sync>(&self, src: &[T], dst: &mut [T]) -> std::result::Result<(), KernelError> {
        match *self {
            Accumulate::IndexAdd { index, dims } => kernels::index_add(src, index, dims, dst),
            Accumulate::ScatterAdd { index, dims, k } => kernels::scatter_add(dst, dims, index, src, k),
        }
    }
}

/// A zero gradient of `shape` (g's float dtype) with `g` accumulated into it by `acc`.
pub(crate) fn accumulate_grad(g: &Tensor, op: &'static str, shape: &Shape, acc: Accumulate<'_>) -> Result<Tensor> {
    let n = g.elem_count();
    let out = with_contiguous(g, op, |gs, off| {
        Ok(match gs {
            CpuStorage::F32(v) => {
                let mut dst = vec![0f32; shape.elem_count()];
                acc.run(&v[off..off + n], &mut dst).map_err(kernel_err(op))?;
                CpuStorage::F32(dst)
            }
            CpuStorage::F64(v) => {
                let mut dst = vec![0f64; shape.elem_count()];
                acc.run(&v[off..off + n], &mut dst).map_err(kernel_err(op))?;
                CpuStorage::F64(dst)
            }
            other => {
                return Err(Error::UnsupportedDType {
                    op,
                    dtype: other.dtype(),
                })
            }
        })
    })?;
    Ok(Tensor::from_cpu_no_grad(out, shape.clone()))
}

struct IndexSelectBackward {
    x: Tensor,
    dim: usize,
    index: Vec<i64>,
}

impl BackwardOp for IndexSelectBackward {
    fn name(&self) -> &'static str {
        "index_select"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        if !g.device().is_cpu() {
            let dx = crate::cuda_backend::index_add(g, &self.index, dims3(self.x.shape(), self.dim))?;
            return Ok(vec![Some(Tensor::from_storage(dx, self.x.shape().clone()))]);
        }
        let acc = Accumulate::IndexAdd {
            index: &self.index,
            dims: dims3(self.x.shape(), self.dim),
        };
        Ok(vec![Some(accumulate_grad(
            g,
            "index_select_backward",
            self.x.shape(),
            acc,
        )?)])
    }
}

struct GatherBackward {
    x: Tensor,
    dim: usize,
    index: Vec<i64>,
    index_dim: usize,
}

impl BackwardOp for GatherBackward {
    fn name(&self) -> &'static str {
        "gather"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dims = dims3(self.x.shape(), self.dim);
        if !g.device().is_cpu() {
            let dx = crate::cuda_backend::gather_backward(g, &self.index, dims, self.index_dim)?;
            return Ok(vec![Some(Tensor::from_storage(dx, self.x.shape().clone()))]);
        }
        let acc = Accumulate::ScatterAdd {
            index: &self.index,
            dims,
            k: self.index_dim,
        };
        Ok(vec![Some(accumulate_grad(g, "gather_backward", self.x.shape(), acc)?)])
    }
}

struct ScatterAddBackward {
    x: Tensor,
    src: Tensor,
    dim: usize,
    /// The indices on the host (the CPU's gather reads them) and as the
    /// tensor given, on `x`'s device (a CUDA gather reads them there).
    index: Vec<i64>,
    index_tensor: Tensor,
}

impl BackwardOp for ScatterAddBackward {
    fn name(&self) -> &'static str {
        "scatter_add"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x, &self.src]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // d out / d src is a gather of g at the same index.
        let gsrc = if self.src.requires_grad() {
            let op = "scatter_add_backward";
            let out = if g.device().is_cpu() {
                Storage::Cpu(gather_storage(g, self.dim, &self.index, self.src.shape(), op)?)
            } else {
                let k = self.src.dims()[self.dim];
                crate::cuda_backend::gather(g, dims3(g.shape(), self.dim), &self.index_tensor, k)?
            };
            Some(Tensor::from_storage(out, self.src.shape().clone()))
        } else {
            None
        };
        Ok(vec![Some(g.clone()), gsrc])
    }
}

/// `x.gather(dim, index)` on raw data, not recorded; `index` has `out_shape`,
/// which matches `x`'s shape in every dim but `dim`.
fn gather_storage(x: &Tensor, dim: usize, index: &[i64], out_shape: &Shape, op: &'static str) -> Result<CpuStorage> {
    let d = dims3(x.shape(), dim);
    let k = out_shape.dims()[dim];
    with_contiguous(x, op, |s, off| {
        Ok(map_any!(s, |v| {
            let mut out = vec![Default::default(); index.len()];
            kernels::gather(&v[off..off + x.elem_count()], d, index, k, &mut out).map_err(kernel_err(op))?;
            out
        }))
    })
}

/// Narrows `t` to `extent` in every dim except `skip` (a view when smaller).
fn narrow_to(t: &Tensor, extent: &[usize], skip: Option<usize>) -> Result<Tensor> {
    let mut out = t.clone();
    for (d, (&have, &want)) in t.dims().iter().zip(extent).enumerate() {
        if Some(d) != skip && want < have {
            out = out.narrow(d as isize, 0, want)?;
        }
    }
    Ok(out)
}

/// Zero-pads `t` at the end of each dim up to `shape` (differentiable, via cat).
fn pad_end_to(t: &Tensor, shape: &Shape) -> Result<Tensor> {
    let mut out = t.clone();
    for (d, &want) in shape.dims().iter().enumerate() {
        let have = out.dims()[d];
        if have < want {
            let zeros = Tensor::zeros(with_dim(&out, d, want - have), out.dtype(), &out.device())?;
            out = Tensor::cat(&[&out, &zeros], d as isize)?;
        }
    }
    Ok(out)
}

/// Checks `index` has `x`'s rank and fits `limit` in every dim (except `skip`).
fn check_index_shape(op: &'static str, index: &Tensor, limit: &Tensor, skip: Option<usize>) -> Result<()> {
    let fits = index.rank() == limit.rank()
        && index
            .dims()
            .iter()
            .zip(limit.dims())
            .enumerate()
            .all(|(d, (&i, &l))| Some(d) == skip || i <= l);
    if fits {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            lhs: limit.shape().clone(),
            rhs: index.shape().clone(),
        })
    }
}

impl Tensor {
    /// Entries `index[j]` along `dim`: `out[.., j, ..] = self[.., index[j], ..]`
    /// (torch.index_select). `index` is I64 of rank 0 or 1 with entries in
    /// `0..size(dim)`; the output has `dim` resized to `index.len()`.
    /// Differentiable in `self` (the gradient scatter-adds back, deterministically).
    /// On a CUDA device (any dtype forward, f32/f64 backward) the indices are
    /// read back once to be checked and grouped on the host (a sync).
    pub fn index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        let op = "index_select";
        let d = self.shape().resolve_dim(dim, op)?;
        if index.rank() > 1 {
            return Err(Error::InvalidShape {
                op,
                msg: format!("index must have rank 0 or 1, got {:?}", index.shape()),
            });
        }
        let idx = index_values(op, self, index)?;
        let x_dims = dims3(self.shape(), d);
        if !self.device().is_cpu() {
            // The indices were read back above (one sync) and are checked on
            // the host; the kernel reads the device copy.
            check_indices(op, &idx, x_dims.dim)?;
            let out = crate::cuda_backend::index_select(self, x_dims, index)?;
            let back = IndexSelectBackward {
                x: self.clone(),
                dim: d,
                index: idx,
            };
            return Ok(Tensor::from_op(out, with_dim(self, d, index.elem_count()), back));
        }
        let out = with_contiguous(self, op, |s, off| {
            Ok(map_any!(s, |v| {
                let mut out = vec![Default::default(); x_dims.with_dim(idx.len()).numel(op).map_err(kernel_err(op))?];
                kernels::index_select(&v[off..off + self.elem_count()], x_dims, &idx, &mut out)
                    .map_err(kernel_err(op))?;
                out
            }))
        })?;
        let shape = with_dim(self, d, idx.len());
        let back = IndexSelectBackward {
            x: self.clone(),
            dim: d,
            index: idx,
        };
        Ok(Tensor::from_op(Storage::Cpu(out), shape, back))
    }

    /// torch.gather: `out[i][j][k] = self[i][index[i][j][k]][k]` for `dim = 1`,
    /// likewise for any dim. `index` is I64 with `self`'s rank, no larger than
    /// `self` in the other dims (only their leading part is read); the output
    /// has `index`'s shape. Differentiable in `self`. On a CUDA device (any
    /// dtype forward, f32/f64 backward) the indices are read back once to be
    /// checked on the host (a sync).
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        let op = "gather";
        let d = self.shape().resolve_dim(dim, op)?;
        check_index_shape(op, index, self, Some(d))?;
        let idx = index_values(op, self, index)?;
        let x = narrow_to(self, index.dims(), Some(d))?;
        if !x.device().is_cpu() {
            let x_dims = dims3(x.shape(), d);
            check_indices(op, &idx, x_dims.dim)?;
            let out = crate::cuda_backend::gather(&x, x_dims, index, index.dims()[d])?;
            let back = GatherBackward {
                x,
                dim: d,
                index: idx,
                index_dim: index.dims()[d],
            };
            return Ok(Tensor::from_op(out, index.shape().clone(), back));
        }
        let out = gather_storage(&x, d, &idx, index.shape(), op)?;
        let back = GatherBackward {
            x,
            dim: d,
            index: idx,
            index_dim: index.dims()[d],
        };
        Ok(Tensor::from_op(Storage::Cpu(out), index.shape().clone(), back))
    }

    /// torch.scatter_add: a copy of `self` with `src[i][j][k]` added at
    /// `[i][index[i][j][k]][k]` for `dim = 1`, likewise for any dim. `index` is
    /// I64; `self`, `index` and `src` have one rank; `index` is no larger than
    /// `src` in any dim nor than `self` in the other dims (only the leading part
    /// of `src` is read). Contributions to one element add in a fixed order, so
    /// results are deterministic. Differentiable in `self` and `src`. On a
    /// CUDA device (f32/f64) the indices are read back once to be checked on
    /// the host (a sync); the sums are the CPU's, in its order.
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let op = "scatter_add";
        let d = self.shape().resolve_dim(dim, op)?;
        check_same_kind(op, self, src)?;
        check_index_shape(op, index, src, None)?;
        check_index_shape(op, index, self, Some(d))?;
        let idx = index_values(op, self, index)?;
        let src = narrow_to(src, index.dims(), None)?;
        // Scatter into the part of `self` the index covers, then pad back if smaller.
        let region = {
            let mut dims = index.dims().to_vec();
            dims[d] = self.dims()[d];
            Shape::from(dims)
        };
        if &region != self.shape() {
            let zeros = Tensor::zeros(region, self.dtype(), &self.device())?;
            let part = zeros.scatter_add(dim, index, &src)?;
            return self.add(&pad_end_to(&part, self.shape())?);
        }
        let x_dims = dims3(self.shape(), d);
        let k = index.dims()[d];
        if !self.device().is_cpu() {
            // Checked on the host as index_select's; the kernel reads the device copy.
            check_indices(op, &idx, x_dims.dim)?;
            let out = crate::cuda_backend::scatter_add(Some(self), x_dims, index, &src, k, op)?;
            let back = ScatterAddBackward {
                x: self.clone(),
                src,
                dim: d,
                index: idx,
                index_tensor: index.clone(),
            };
            return Ok(Tensor::from_op(out, self.shape().clone(), back));
        }
        let out = with_contiguous(self, op, |s, off| {
            with_contiguous(&src, op, |ss, soff| {
                let n = src.elem_count();
                macro_rules! run {
                    ($x:expr, $s:expr) => {{
                        let mut out = $x[off..off + self.elem_count()].to_vec();
                        kernels::scatter_add(&mut out, x_dims, &idx, &$s[soff..soff + n], k).map_err(kernel_err(op))?;
                        out
                    }};
                }
                Ok(match (s, ss) {
                    (CpuStorage::U8(x), CpuStorage::U8(s)) => CpuStorage::U8(run!(x, s)),
                    (CpuStorage::I64(x), CpuStorage::I64(s)) => CpuStorage::I64(run!(x, s)),
                    (CpuStorage::F32(x), CpuStorage::F32(s)) => CpuStorage::F32(run!(x, s)),
                    (CpuStorage::F64(x), CpuStorage::F64(s)) => CpuStorage::F64(run!(x, s)),
                    (x, _) => return Err(Error::UnsupportedDType { op, dtype: x.dtype() }),
                })
            })
        })?;
        let back = ScatterAddBackward {
            x: self.clone(),
            src,
            dim: d,
            index: idx,
            index_tensor: index.clone(),
        };
        Ok(Tensor::from_op(Storage::Cpu(out), self.shape().clone(), back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    #[test]
    fn index_select_copies_rows_of_any_dtype() {
        let x = Tensor::from_vec((0..6i64).collect(), (3, 2), &Device::Cpu).unwrap();
        let idx = Tensor::from_vec(vec![2i64, 0, 2], 3, &Device::Cpu).unwrap();
        let y = x.index_select(0, &idx).unwrap();
        assert_eq!(y.dims(), &[3, 2]);
        assert_eq!(y.to_vec::<i64>().unwrap(), vec![4, 5, 0, 1, 4, 5]);
        let y = x
            .index_select(1, &Tensor::from_vec(vec![1i64], 1, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(y.to_vec::<i64>().unwrap(), vec![1, 3, 5]);
    }

    #[test]
    fn scatter_add_counts_integer_ids() {
        let counts = Tensor::zeros(4, DType::I64, &Device::Cpu).unwrap();
        let ids = Tensor::from_vec(vec![3i64, 1, 3, 3], 4, &Device::Cpu).unwrap();
        let ones = Tensor::ones(4, DType::I64, &Device::Cpu).unwrap();
        let c = counts.scatter_add(0, &ids, &ones).unwrap();
        assert_eq!(c.to_vec::<i64>().unwrap(), vec![0, 1, 0, 3]);
    }
}
