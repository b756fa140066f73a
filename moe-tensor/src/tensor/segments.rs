//! How the rows of a grouped matmul split into expert segments: host counts,
//! or segment offsets that stay on the device (the dispatch plan's).

use crate::{DType, Error, Result, Tensor};

/// The expert segments of [`Tensor::grouped_matmul`]'s rows, in order.
#[derive(Clone, Debug)]
pub enum Segments {
    /// Rows per expert, host data (`Σ ≤ M`).
    Counts(Vec<usize>),
    /// Segment starts and the end, `[E + 1]` I64 on the rows' device
    /// (`0 = o[0] ≤ o[1] ≤ … ≤ o[E] ≤ M`), as [`crate::DispatchPlan`]
    /// makes them. On CUDA they are read only by the kernels, so the host
    /// never waits for routing; there they cannot be validated either, and
    /// a bad tensor gives wrong rows (clamped into `0..=M`, never read
    /// outside the operands). On the CPU they are checked.
    Offsets(Tensor),
}

impl Segments {
    /// E: the number of segments.
    pub fn num_experts(&self) -> usize {
        match self {
            Segments::Counts(c) => c.len(),
            Segments::Offsets(o) => o.elem_count().saturating_sub(1),
        }
    }

    /// Checks what can be checked without reading device memory: offsets
    /// are an I64 `[E + 1]` on `device`; counts sum to at most `rows`.
    pub(crate) fn check(&self, rows: usize, device: &crate::Device, op: &'static str) -> Result<()> {
        match self {
            Segments::Counts(counts) => {
                let total = counts.iter().try_fold(0usize, |a, &c| a.checked_add(c));
                if total.is_none_or(|t| t > rows) {
                    return Err(Error::InvalidShape {
                        op,
                        msg: format!("segment counts {counts:?} sum to more than the {rows} rows of x"),
                    });
                }
            }
            Segments::Offsets(o) => {
                if o.dtype() != DType::I64 || o.rank() != 1 || o.elem_count() == 0 {
                    return Err(Error::InvalidShape {
                        op,
                        msg: format!(
                            "segment offsets must be I64 [E + 1], got {:?} {:?}",
                            o.dtype(),
                            o.shape()
                        ),
                    });
                }
                if o.device() != *device {
                    return Err(Error::DeviceMismatch {
                        op,
                        lhs: *device,
                        rhs: o.device(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Host counts: the given ones, or the offsets read back (a device read)
    /// and validated against `rows`.
    pub(crate) fn host_counts(&self, rows: usize, op: &'static str) -> Result<Vec<usize>> {
        let o = match self {
            Segments::Counts(c) => return Ok(c.clone()),
            Segments::Offsets(o) => o.to_vec::<i64>()?,
        };
        let valid = o.first() == Some(&0)
            && o.last()
                .and_then(|&l| usize::try_from(l).ok())
                .is_some_and(|l| l <= rows)
            && o.windows(2).all(|w| w[0] <= w[1]);
        if !valid {
            return Err(Error::InvalidShape {
                op,
                msg: format!("segment offsets {o:?} are not non-decreasing from 0 to at most {rows}"),
            });
        }
        Ok(o.windows(2).map(|w| (w[1] - w[0]) as usize).collect())
    }
}

impl From<Vec<usize>> for Segments {
    fn from(c: Vec<usize>) -> Self {
        Segments::Counts(c)
    }
}
impl From<&[usize]> for Segments {
    fn from(c: &[usize]) -> Self {
        Segments::Counts(c.to_vec())
    }
}
impl From<&Vec<usize>> for Segments {
    fn from(c: &Vec<usize>) -> Self {
        Segments::Counts(c.clone())
    }
}
impl<const N: usize> From<&[usize; N]> for Segments {
    fn from(c: &[usize; N]) -> Self {
        Segments::Counts(c.to_vec())
    }
}
impl From<&Segments> for Segments {
    fn from(s: &Segments) -> Self {
        s.clone()
    }
}
