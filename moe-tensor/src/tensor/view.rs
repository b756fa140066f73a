//! Views: new layouts over the same storage, no copies (reshape copies only
//! when the data is not contiguous, as torch's `reshape` does).

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::{Error, Layout, Result, Shape, Tensor};
use moe_kernels::cpu::elementwise;
use moe_kernels::cpu::strided::{self, Strided};

/// Backward of every view: maps the output gradient back to the input's shape.
enum ViewKind {
    Reshape,
    Permute(Vec<usize>),
    Narrow { dim: usize, start: usize },
    Broadcast,
}

struct ViewBackward {
    x: Tensor,
    kind: ViewKind,
}

impl BackwardOp for ViewBackward {
    fn name(&self) -> &'static str {
        match self.kind {
            ViewKind::Reshape => "reshape",
            ViewKind::Permute(_) => "permute",
            ViewKind::Narrow { .. } => "narrow",
            ViewKind::Broadcast => "broadcast_as",
        }
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gx = match &self.kind {
            ViewKind::Reshape => g.reshape(self.x.shape())?,
            ViewKind::Permute(perm) => {
                let mut inverse = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                g.permute(&inverse)?
            }
            ViewKind::Narrow { dim, start } => g.pad_narrowed(self.x.shape(), *dim, *start)?,
            ViewKind::Broadcast => g.sum_to_shape(self.x.shape())?,
        };
        Ok(vec![Some(gx)])
    }
}

impl Tensor {
    fn view(&self, layout: Layout, kind: ViewKind) -> Tensor {
        self.view_op(layout, ViewBackward { x: self.clone(), kind })
    }

    /// The same elements with another shape; one dim may be `usize::MAX`-free: use
    /// [`Tensor::reshape_infer`] for `-1`. Copies first when not contiguous.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.elem_count() != self.elem_count() {
            return Err(Error::InvalidShape {
                op: "reshape",
                msg: format!(
                    "cannot reshape {:?} ({} elements) to {:?}",
                    self.shape(),
                    self.elem_count(),
                    shape
                ),
            });
        }
        if shape == *self.shape() {
            return Ok(self.clone());
        }
        let src = self.contiguous()?;
        let layout = src.layout().reshape(shape).ok_or_else(|| Error::Autograd {
            msg: "reshape of non-contiguous".into(),
        })?;
        Ok(src.view(layout, ViewKind::Reshape))
    }

    /// Reshape where one entry may be -1 (inferred from the element count).
    pub fn reshape_infer(&self, dims: &[isize]) -> Result<Tensor> {
        let known: usize = dims.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
        let holes = dims.iter().filter(|&&d| d < 0).count();
        let bad = || Error::InvalidShape {
            op: "reshape",
            msg: format!("cannot reshape {:?} to {dims:?}", self.shape()),
        };
        if holes > 1 || dims.iter().any(|&d| d < -1) {
            return Err(bad());
        }
        let shape: Vec<usize> = if holes == 1 {
            if known == 0 || !self.elem_count().is_multiple_of(known) {
                return Err(bad());
            }
            dims.iter()
                .map(|&d| if d < 0 { self.elem_count() / known } else { d as usize })
                .collect()
        } else {
            dims.iter().map(|&d| d as usize).collect()
        };
        self.reshape(shape)
    }

    /// Swaps two dims (negative dims count from the end).
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = self.shape().resolve_dim(d0, "transpose")?;
        let b = self.shape().resolve_dim(d1, "transpose")?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::InvalidShape {
                op: "t",
                msg: format!("needs rank ≥ 2, got {:?}", self.shape()),
            });
        }
        self.transpose(-2, -1)
    }

    /// Reorders dims: output dim i is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let layout = self.layout().permute(perm)?;
        Ok(self.view(layout, ViewKind::Permute(perm.to_vec())))
    }

    /// Elements `start..start + len` of `dim`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.shape().resolve_dim(dim, "narrow")?;
        let layout = self.layout().narrow(d, start, len)?;
        Ok(self.view(layout, ViewKind::Narrow { dim: d, start }))
    }

    /// Expands size-1 or missing leading dims to `shape` without copying.
    pub fn broadcast_as(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape == *self.shape() {
            return Ok(self.clone());
        }
        let layout = self.layout().broadcast_as(&shape)?;
        Ok(self.view(layout, ViewKind::Broadcast))
    }

    /// Inserts a size-1 dim at `dim` (0..=rank; negative counts from the end).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let rank = self.rank() as isize;
        let d = if dim < 0 { dim + rank + 1 } else { dim };
        if d < 0 || d > rank {
            return Err(Error::DimOutOfRange {
                op: "unsqueeze",
                dim,
                rank: self.rank(),
            });
        }
        let mut dims = self.dims().to_vec();
        dims.insert(d as usize, 1);
        self.reshape(dims)
    }

    /// Removes a size-1 dim.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.shape().resolve_dim(dim, "squeeze")?;
        if self.dims()[d] != 1 {
            return Err(Error::InvalidShape {
                op: "squeeze",
                msg: format!("dim {d} of {:?} is not 1", self.shape()),
            });
        }
        let mut dims = self.dims().to_vec();
        dims.remove(d);
        self.reshape(dims)
    }

    /// Merges dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(1);
        }
        let s = self.shape().resolve_dim(start, "flatten")?;
        let e = self.shape().resolve_dim(end, "flatten")?;
        if s > e {
            return Err(Error::InvalidShape {
                op: "flatten",
                msg: format!("start {s} after end {e}"),
            });
        }
        let d = self.dims();
        let mut dims = d[..s].to_vec();
        dims.push(d[s..=e].iter().product());
        dims.extend_from_slice(&d[e + 1..]);
        self.reshape(dims)
    }

    /// Zeros of `shape` with `self` written into `start..` of `dim` (narrow's backward).
    pub(crate) fn pad_narrowed(&self, shape: &Shape, dim: usize, start: usize) -> Result<Tensor> {
        let region = Layout::contiguous(shape.clone()).narrow(dim, start, self.dims()[dim])?;
        if !self.device().is_cpu() {
            let out = crate::cuda_backend::pad_narrowed(self, shape, &region)?;
            return Ok(Tensor::from_storage(out, shape.clone()));
        }
        let dst = strided::offsets(Strided {
            dims: region.dims(),
            strides: region.strides(),
            offset: region.offset(),
        });
        let guard = self.read_storage();
        let out = crate::map_float!(guard.cpu("narrow_backward")?, "narrow_backward", |v: T| {
            let src = elementwise::unary(v, self.strided(), |x| x);
            let mut out = vec![T::default(); shape.elem_count()];
            for (&o, x) in dst.iter().zip(src) {
                out[o] = x;
            }
            Ok(T::into_storage(out))
        })?;
        Ok(Tensor::from_cpu_no_grad(out, shape.clone()))
    }
}
