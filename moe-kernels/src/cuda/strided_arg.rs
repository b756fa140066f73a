//! The strided-view kernel argument shared by the host and `common.cuh`.

/// Most dims a strided kernel argument carries (`MAX_RANK` in `common.cuh`).
pub const MAX_RANK: usize = 8;

/// A view passed by value to a kernel: logical element `i` (row-major over
/// `dims`) lives at `offset + Σ_d idx_d · strides[d]` of the buffer.
///
/// `#[repr(C)]` and laid out exactly like `struct Strided` in `common.cuh`:
/// `i32 rank, i32 pad, i64 offset, i64 dims[8], i64 strides[8]` (144 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StridedArg {
    /// Number of dims used (≤ [`MAX_RANK`]).
    pub rank: i32,
    /// Padding so `offset` is 8-byte aligned, as in C.
    pub pad: i32,
    /// Element offset of the view's first element.
    pub offset: i64,
    /// Sizes; entries past `rank` are 1.
    pub dims: [i64; MAX_RANK],
    /// Element strides; entries past `rank` are 0.
    pub strides: [i64; MAX_RANK],
}

impl StridedArg {
    /// The argument for a view, or `None` when it has more than [`MAX_RANK`]
    /// dims, `dims` and `strides` differ in length, or a number exceeds i64.
    /// Size-1 dims are dropped first (they never move the offset), so a view
    /// of higher rank still fits when its extra dims are 1.
    pub fn new(dims: &[usize], strides: &[usize], offset: usize) -> Option<StridedArg> {
        if dims.len() != strides.len() {
            return None;
        }
        let kept: Vec<(usize, usize)> = dims
            .iter()
            .zip(strides)
            .filter(|(&d, _)| d != 1)
            .map(|(&d, &s)| (d, s))
            .collect();
        if kept.len() > MAX_RANK {
            return None;
        }
        let mut arg = StridedArg {
            rank: kept.len() as i32,
            pad: 0,
            offset: i64::try_from(offset).ok()?,
            dims: [1; MAX_RANK],
            strides: [0; MAX_RANK],
        };
        for (k, (d, s)) in kept.into_iter().enumerate() {
            arg.dims[k] = i64::try_from(d).ok()?;
            arg.strides[k] = i64::try_from(s).ok()?;
        }
        Some(arg)
    }

    /// The storage offset of logical element `i`, computed as the kernel's
    /// `strided_offset` does (used to test the argument on the host).
    pub fn offset_of(&self, mut i: i64) -> i64 {
        let mut off = self.offset;
        for d in (0..self.rank as usize).rev() {
            let n = self.dims[d];
            let q = i / n;
            off += (i - q * n) * self.strides[d];
            i = q;
        }
        off
    }
}
