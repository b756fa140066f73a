//! Strided views of flat buffers and iteration over their element offsets.
//!
//! A `Strided` describes a logical row-major array of `dims` whose element
//! (i0, i1, ...) lives at `offset + Σ ik · strides[k]` of a flat slice. Strides
//! of 0 repeat (broadcast) an element.

/// A strided view description (no data).
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub dims: &'a [usize],
    pub strides: &'a [usize],
    pub offset: usize,
}

impl<'a> Strided<'a> {
    /// Number of logical elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when elements are row-major without gaps (size-1 dims ignored).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for (&d, &s) in self.dims.iter().zip(self.strides).rev() {
            if d != 1 && s != acc {
                return false;
            }
            acc *= d;
        }
        true
    }

    /// Offsets of the first element of every row (all dims but the last), in order.
    pub fn row_offsets(&self) -> Vec<usize> {
        let rank = self.dims.len();
        if rank == 0 {
            return vec![self.offset];
        }
        let outer = &self.dims[..rank - 1];
        let n: usize = outer.iter().product();
        let mut out = Vec::with_capacity(n);
        let mut index = vec![0usize; outer.len()];
        let mut off = self.offset;
        for _ in 0..n {
            out.push(off);
            // Odometer increment over the outer dims.
            for d in (0..outer.len()).rev() {
                index[d] += 1;
                off += self.strides[d];
                if index[d] < outer[d] {
                    break;
                }
                off -= self.strides[d] * outer[d];
                index[d] = 0;
            }
        }
        out
    }

    /// Length and stride of the last dim (1, 0 for a scalar).
    pub fn last(&self) -> (usize, usize) {
        match (self.dims.last(), self.strides.last()) {
            (Some(&d), Some(&s)) => (d, s),
            _ => (1, 0),
        }
    }
}

/// Every element offset of `s` in logical order.
pub fn offsets(s: Strided<'_>) -> Vec<usize> {
    if s.is_empty() {
        return Vec::new();
    }
    let (n, st) = s.last();
    let rows = s.row_offsets();
    let mut out = Vec::with_capacity(rows.len() * n);
    for r in rows {
        out.extend((0..n).map(|j| r + j * st));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_view_walks_columns() {
        let s = Strided {
            dims: &[3, 2],
            strides: &[1, 3],
            offset: 0,
        };
        assert_eq!(offsets(s), vec![0, 3, 1, 4, 2, 5]);
        assert!(!s.is_contiguous());
    }

    #[test]
    fn broadcast_rows_repeat() {
        let s = Strided {
            dims: &[2, 3],
            strides: &[0, 1],
            offset: 4,
        };
        assert_eq!(offsets(s), vec![4, 5, 6, 4, 5, 6]);
    }
}
