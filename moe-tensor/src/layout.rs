//! How a tensor's logical elements map onto its storage: shape, strides, offset.
//! Views (transpose, narrow, broadcast...) change the layout, never the data.

use crate::{Error, Result, Shape};

/// Shape + element strides + start offset into the storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Shape,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// A row-major layout starting at `offset`.
    pub fn contiguous_with_offset(shape: Shape, offset: usize) -> Self {
        let strides = shape.contiguous_strides();
        Layout { shape, strides, offset }
    }

    /// A row-major layout starting at 0.
    pub fn contiguous(shape: Shape) -> Self {
        Self::contiguous_with_offset(shape, 0)
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// True when elements are laid out row-major without gaps (size-1 dims ignored).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for (&d, &s) in self.dims().iter().zip(self.strides.iter()).rev() {
            if d != 1 && s != acc {
                return false;
            }
            acc *= d;
        }
        true
    }

    /// The range of storage elements a contiguous layout covers.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous()
            .then(|| self.offset..self.offset + self.shape.elem_count())
    }

    /// True when this is a transposed view of a contiguous tensor: not
    /// contiguous itself, but contiguous with dims `d0` and `d1` swapped back
    /// (a linear layer's `w.t()`, an HF expert stack's `transpose(1, 2)`).
    pub fn is_transposed_contiguous(&self, d0: usize, d1: usize) -> bool {
        !self.is_contiguous() && self.transpose(d0, d1).is_contiguous()
    }

    /// Swaps two dims.
    pub fn transpose(&self, d0: usize, d1: usize) -> Layout {
        let mut dims = self.dims().to_vec();
        let mut strides = self.strides.clone();
        dims.swap(d0, d1);
        strides.swap(d0, d1);
        Layout {
            shape: Shape::from(dims),
            strides,
            offset: self.offset,
        }
    }

    /// Reorders dims: new dim i is old dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.shape.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::InvalidShape {
                op: "permute",
                msg: format!("{perm:?} is not a permutation of the {rank} dims of {:?}", self.shape),
            });
        }
        let dims = perm.iter().map(|&p| self.dims()[p]).collect::<Vec<_>>();
        let strides = perm.iter().map(|&p| self.strides[p]).collect();
        Ok(Layout {
            shape: Shape::from(dims),
            strides,
            offset: self.offset,
        })
    }

    /// Restricts `dim` to `start..start + len`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        let size = self.dims()[dim];
        if start + len > size {
            return Err(Error::RangeOutOfBounds {
                op: "narrow",
                dim,
                start,
                end: start + len,
                size,
            });
        }
        let mut dims = self.dims().to_vec();
        dims[dim] = len;
        Ok(Layout {
            shape: Shape::from(dims),
            strides: self.strides.clone(),
            offset: self.offset + start * self.strides[dim],
        })
    }

    /// Expands size-1 (or missing leading) dims to `shape` with stride 0.
    pub fn broadcast_as(&self, shape: &Shape) -> Result<Layout> {
        let (src, dst) = (self.dims(), shape.dims());
        let err = || Error::BroadcastIncompatible {
            op: "broadcast_as",
            lhs: self.shape.clone(),
            rhs: shape.clone(),
        };
        if dst.len() < src.len() {
            return Err(err());
        }
        let lead = dst.len() - src.len();
        let mut strides = vec![0; dst.len()];
        for i in 0..src.len() {
            if src[i] == dst[lead + i] {
                strides[lead + i] = self.strides[i];
            } else if src[i] == 1 {
                strides[lead + i] = 0;
            } else {
                return Err(err());
            }
        }
        Ok(Layout {
            shape: shape.clone(),
            strides,
            offset: self.offset,
        })
    }

    /// Same data seen with a new shape; only for contiguous layouts.
    pub fn reshape(&self, shape: Shape) -> Option<Layout> {
        self.is_contiguous()
            .then(|| Layout::contiguous_with_offset(shape, self.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(l: &Layout) -> Vec<usize> {
        moe_kernels::cpu::strided::offsets(moe_kernels::cpu::strided::Strided {
            dims: l.dims(),
            strides: l.strides(),
            offset: l.offset(),
        })
    }

    #[test]
    fn transposed_offsets_walk_columns() {
        let l = Layout::contiguous(Shape::from([2, 3])).transpose(0, 1);
        assert_eq!(offsets(&l), vec![0, 3, 1, 4, 2, 5]);
        assert!(!l.is_contiguous());
    }

    #[test]
    fn broadcast_repeats_with_zero_stride() {
        let l = Layout::contiguous(Shape::from([3]))
            .broadcast_as(&Shape::from([2, 3]))
            .unwrap();
        assert_eq!(offsets(&l), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn narrow_moves_the_offset() {
        let l = Layout::contiguous(Shape::from([4, 2])).narrow(0, 1, 2).unwrap();
        assert_eq!(offsets(&l), vec![2, 3, 4, 5]);
        assert!(l.is_contiguous());
        assert!(Layout::contiguous(Shape::from([4])).narrow(0, 3, 2).is_err());
    }

    #[test]
    fn empty_layout_yields_nothing() {
        let l = Layout::contiguous(Shape::from([0, 3]));
        assert!(offsets(&l).is_empty());
    }
}
