//! Packing of A and B blocks into the contiguous panel layouts the
//! micro-kernels read, zero-padding the ragged edge panels.
//!
//! Both routines pick the loop order by which source stride is 1, so the
//! reads walk memory contiguously whether the operand is transposed or not.

use crate::Real;

/// A read-only strided view by raw pointer: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct RawRef<T> {
    pub ptr: *const T,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: RawRef is only built from a shared slice borrowed for the whole
// call; T: Sync makes concurrent reads fine.
unsafe impl<T: Sync> Send for RawRef<T> {}
// SAFETY: as above, it only ever reads.
unsafe impl<T: Sync> Sync for RawRef<T> {}

impl<T> RawRef<T> {
    /// Pointer to element (i, j).
    ///
    /// # Safety
    /// (i, j) must lie inside the viewed matrix.
    #[inline(always)]
    pub unsafe fn at(&self, i: usize, j: usize) -> *const T {
        // SAFETY: the caller keeps (i, j) inside the matrix, whose extent
        // was checked against the slice length on entry.
        unsafe { self.ptr.add(i * self.rs + j * self.cs) }
    }
}

/// Packs rows `i0..i0+mc`, columns `p0..p0+kc` of `a` into `dst` as
/// `ceil(mc/mr)` panels, each `kc` steps of `mr` values (`[p][i]`), padding
/// rows past `mc` with zeros.
///
/// # Safety
/// The block must lie inside `a`; `dst` must hold `ceil(mc/mr)·mr·kc` elements.
pub(crate) unsafe fn pack_a<T: Real>(a: RawRef<T>, i0: usize, p0: usize, mc: usize, kc: usize, mr: usize, dst: *mut T) {
    let mut out = dst;
    for ir in (0..mc).step_by(mr) {
        let rows = mr.min(mc - ir);
        // SAFETY (whole block): reads stay in rows i0+ir..i0+ir+rows and
        // columns p0..p0+kc of `a`; writes stay in this panel's kc·mr slots.
        unsafe {
            match (mr, rows == mr) {
                (12, true) => panel_a::<T, 12>(a, i0 + ir, p0, kc, out),
                (6, true) => panel_a::<T, 6>(a, i0 + ir, p0, kc, out),
                (4, true) => panel_a::<T, 4>(a, i0 + ir, p0, kc, out),
                _ => {
                    for i in 0..rows {
                        let src = a.at(i0 + ir + i, p0);
                        for p in 0..kc {
                            *out.add(p * mr + i) = *src.add(p * a.cs);
                        }
                    }
                    for i in rows..mr {
                        for p in 0..kc {
                            *out.add(p * mr + i) = T::zero();
                        }
                    }
                }
            }
            out = out.add(kc * mr);
        }
    }
}

/// One full MR-row panel of A: for each p the MR values of column p. A
/// transposed (unit row stride) is one contiguous MR-element copy per p;
/// row-major f32 A goes through the AVX2 transposing copy where the CPU has
/// it; otherwise MR row cursors are read and written in order.
///
/// # Safety
/// Rows i..i+MR and columns p0..p0+kc lie inside `a`; `out` holds kc·MR elements.
#[inline(always)]
unsafe fn panel_a<T: Real, const MR: usize>(a: RawRef<T>, i: usize, p0: usize, kc: usize, out: *mut T) {
    // SAFETY: the caller keeps every (row, p) inside `a` and kc·MR slots in `out`.
    unsafe {
        if a.rs == 1 {
            for p in 0..kc {
                std::ptr::copy_nonoverlapping(a.at(i, p0 + p), out.add(p * MR), MR);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if a.cs == 1 && super::pack_avx2::transpose_panel::<T, MR>(a.at(i, p0), a.rs, kc, out) {
            return;
        }
        let rows: [*const T; MR] = std::array::from_fn(|r| a.at(i + r, p0));
        for p in 0..kc {
            let o = out.add(p * MR);
            for (r, src) in rows.iter().enumerate() {
                *o.add(r) = *src.add(p * a.cs);
            }
        }
    }
}

/// Packs rows `p0..p0+kc`, columns `j0..j0+nc` of `b` into `dst` as
/// `ceil(nc/nr)` panels, each `kc` steps of `nr` values (`[p][j]`), padding
/// columns past `nc` with zeros. `first_panel..last_panel` selects which
/// panels to pack, so threads can split the work.
///
/// # Safety
/// The block must lie inside `b`; `dst` must hold `ceil(nc/nr)·nr·kc` elements.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pack_b<T: Real>(
    b: RawRef<T>,
    p0: usize,
    j0: usize,
    kc: usize,
    nc: usize,
    nr: usize,
    panels: std::ops::Range<usize>,
    dst: *mut T,
) {
    // Full panels of row-major B go row by row (one sequential read stream
    // per row of B); the rest panel by panel.
    let full_end = if b.cs == 1 && (nr == 32 || nr == 16 || nr == 8) {
        panels.end.min(nc / nr).max(panels.start)
    } else {
        panels.start
    };
    // SAFETY: panels below full_end are whole NR-column panels inside the block.
    unsafe {
        match nr {
            32 => rows_b::<T, 32>(b, p0, j0, kc, panels.start..full_end, dst),
            16 => rows_b::<T, 16>(b, p0, j0, kc, panels.start..full_end, dst),
            8 => rows_b::<T, 8>(b, p0, j0, kc, panels.start..full_end, dst),
            _ => {}
        }
    }
    for panel in full_end..panels.end {
        let jr = panel * nr;
        let cols = nr.min(nc - jr);
        // SAFETY (whole block): reads stay in rows p0..p0+kc and columns
        // j0+jr..j0+jr+cols of `b`; writes stay in panel `panel` of `dst`.
        unsafe {
            let out = dst.add(panel * kc * nr);
            #[cfg(target_arch = "x86_64")]
            if b.rs == 1 && cols == nr && transposed_b_panel(b, p0, j0 + jr, kc, nr, out) {
                continue;
            }
            if b.cs == 1 {
                for p in 0..kc {
                    let src = b.at(p0 + p, j0 + jr);
                    for j in 0..nr {
                        *out.add(p * nr + j) = if j < cols { *src.add(j) } else { T::zero() };
                    }
                }
            } else {
                // Columns contiguous along p (B transposed) or general strides:
                // walk p innermost per column.
                for j in 0..cols {
                    let src = b.at(p0, j0 + jr + j);
                    for p in 0..kc {
                        *out.add(p * nr + j) = *src.add(p * b.rs);
                    }
                }
                for j in cols..nr {
                    for p in 0..kc {
                        *out.add(p * nr + j) = T::zero();
                    }
                }
            }
        }
    }
}

/// One full panel of B with unit row stride (columns contiguous along p)
/// through the AVX2 transposing copy; false where that does not apply.
///
/// # Safety
/// Rows p0..p0+kc and columns j..j+nr lie inside `b`; `out` holds kc·nr elements.
#[cfg(target_arch = "x86_64")]
unsafe fn transposed_b_panel<T: Real>(b: RawRef<T>, p0: usize, j: usize, kc: usize, nr: usize, out: *mut T) -> bool {
    use super::pack_avx2::transpose_panel;
    // SAFETY: column l of the panel is kc elements from b.at(p0, j + l) = that
    // pointer + l·cs, all inside `b` (the caller's contract).
    unsafe {
        let src = b.at(p0, j);
        match nr {
            32 => transpose_panel::<T, 32>(src, b.cs, kc, out),
            16 => transpose_panel::<T, 16>(src, b.cs, kc, out),
            8 => transpose_panel::<T, 8>(src, b.cs, kc, out),
            _ => false,
        }
    }
}

/// Full NR-column panels `panels` of row-major B, row by row: each row of the
/// block is read once left to right and scattered in fixed-size pieces (a
/// constant length, so no memcpy call per piece).
///
/// # Safety
/// Rows p0..p0+kc and the panels' columns lie inside `b` (with `b.cs == 1`);
/// `dst` holds the panels at `panel·kc·NR`.
#[inline(always)]
unsafe fn rows_b<T: Real, const NR: usize>(
    b: RawRef<T>,
    p0: usize,
    j0: usize,
    kc: usize,
    panels: std::ops::Range<usize>,
    dst: *mut T,
) {
    if panels.is_empty() {
        return;
    }
    for p in 0..kc {
        // SAFETY: the caller keeps the row segment inside `b` and the panels inside `dst`.
        unsafe {
            let src = b.at(p0 + p, j0 + panels.start * NR);
            for (q, panel) in panels.clone().enumerate() {
                std::ptr::copy_nonoverlapping(src.add(q * NR), dst.add(panel * kc * NR + p * NR), NR);
            }
        }
    }
}
