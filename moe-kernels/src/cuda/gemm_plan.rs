//! How a row-major matrix product is handed to column-major cuBLAS, without
//! copying transposed operands.
//!
//! Row-major `C[m, n] = A[m, k] · B[k, n]` is, read column-major,
//! `Cᵀ[n, m] = Bᵀ[n, k] · Aᵀ[k, m]`; so cuBLAS gets (m', n', k) = (n, m, k),
//! its first operand from B and its second from A, and `ldc = n`. Each
//! operand is a strided view `[r, c]` with row stride `rs` and column stride
//! `cs`, which cuBLAS must see as the column-major transpose `[c, r]`:
//! - `cs == 1` (rows contiguous): the memory already is column-major `[c, r]`
//!   with leading dimension `rs` → no transpose;
//! - `rs == 1` (a transposed view): the memory is column-major `[r, c]` with
//!   leading dimension `cs` → transpose;
//! - anything else (or a leading dimension cuBLAS rejects) → the caller copies
//!   the operand to row-major first.

/// How cuBLAS reads one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperandPlan {
    /// Whether cuBLAS applies a transpose (`CUBLAS_OP_T`) to the stored matrix.
    pub transpose: bool,
    /// The leading dimension of the stored column-major matrix.
    pub ld: usize,
}

/// The plan for a row-major `[r, c]` view with strides `(rs, cs)`, or `None`
/// when it must be copied first. cuBLAS needs `ld ≥ max(1, stored rows)`;
/// strides of size-1 dims never matter and are replaced.
pub fn operand(r: usize, c: usize, rs: usize, cs: usize) -> Option<OperandPlan> {
    // A size-1 dim's stride is never used: each reading gives it the value
    // that reading needs (a single row with strided columns is a transposed
    // column-major matrix, not a copy).
    let (row_rs, row_cs) = (if r == 1 { c.max(1) } else { rs }, if c == 1 { 1 } else { cs });
    if row_cs == 1 && row_rs >= c.max(1) {
        return Some(OperandPlan {
            transpose: false,
            ld: row_rs,
        });
    }
    let (col_rs, col_cs) = (if r == 1 { 1 } else { rs }, if c == 1 { r.max(1) } else { cs });
    if col_rs == 1 && col_cs >= r.max(1) {
        return Some(OperandPlan {
            transpose: true,
            ld: col_cs,
        });
    }
    None
}

/// The distance between consecutive matrices of a batch whose storage
/// offsets are `offsets`, when it is constant (`Some(0)` for one matrix or
/// a broadcast operand), else `None` (the caller copies the operand).
pub fn uniform_stride(offsets: &[usize]) -> Option<usize> {
    match offsets {
        [] | [_] => Some(0),
        [a, b, ..] => {
            let step = b.checked_sub(*a)?;
            offsets.windows(2).all(|w| w[1] == w[0] + step).then_some(step)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element (i, j) of the column-major matrix cuBLAS sees, after its op,
    /// read from memory laid out by a plan: must equal the view's (j, i).
    fn seen(p: OperandPlan, i: usize, j: usize) -> usize {
        // op(M)[i, j] = M[i, j] (no transpose) or M[j, i]; M[x, y] = x + y·ld.
        if p.transpose {
            j + i * p.ld
        } else {
            i + j * p.ld
        }
    }

    #[test]
    fn plans_read_the_transpose_of_the_view() {
        // (r, c, rs, cs): a row-major [2, 3], its transpose view [3, 2], a
        // narrowed [2, 3] out of [2, 5], a single row and a single column,
        // a single row of a transposed view, a single strided column.
        for (r, c, rs, cs) in [
            (2, 3, 3, 1),
            (3, 2, 1, 3),
            (2, 3, 5, 1),
            (1, 4, 0, 1),
            (4, 1, 1, 7),
            (1, 4, 9, 3),
            (4, 1, 5, 0),
        ] {
            let p = operand(r, c, rs, cs).unwrap_or_else(|| panic!("{r}x{c} {rs},{cs}"));
            for row in 0..r {
                for col in 0..c {
                    // The op'd matrix is the view's transpose [c, r].
                    let want = row * if r == 1 { 0 } else { rs } + col * if c == 1 { 0 } else { cs };
                    assert_eq!(seen(p, col, row), want, "{r}x{c} strides {rs},{cs} at ({row},{col})");
                }
            }
        }
    }

    #[test]
    fn by_hand() {
        assert_eq!(
            operand(2, 3, 3, 1),
            Some(OperandPlan {
                transpose: false,
                ld: 3
            })
        );
        assert_eq!(operand(3, 2, 1, 3), Some(OperandPlan { transpose: true, ld: 3 }));
        // Broadcast rows (stride 0) or a permuted 3-d view: copy.
        assert_eq!(operand(2, 3, 0, 1), None);
        assert_eq!(operand(2, 3, 6, 2), None);
    }

    #[test]
    fn batch_strides() {
        assert_eq!(uniform_stride(&[]), Some(0));
        assert_eq!(uniform_stride(&[5]), Some(0));
        assert_eq!(uniform_stride(&[0, 6, 12]), Some(6));
        assert_eq!(uniform_stride(&[4, 4, 4]), Some(0));
        assert_eq!(uniform_stride(&[0, 6, 13]), None);
        assert_eq!(uniform_stride(&[6, 0]), None);
    }
}
