//! Products on operands packed once and multiplied many times.
//!
//! Attention multiplies the same small matrices (a head's q, k, v, dO) in
//! hundreds of tile products of depth Dh; through [`super::gemm_with`] each
//! of them packed both operands again and went through the driver, which
//! cost as much as the multiply-adds at Dh = 32. [`PanelKernel`] exposes the
//! micro-kernel and its packers directly: a caller packs each operand once
//! into a [`PanelBuf`], then multiplies any panel of A by any panel of B
//! from any slot on, one MR×NR tile per call.
//!
//! Precision is [`ProductPrecision`]'s: bf16 products on a CPU without a
//! bf16 kernel round the packed f32 values in place and run the f32 kernel,
//! as the driver multiplies rounded copies.

use std::marker::PhantomData;

use super::bf16::round_in_place;
use super::kernel::{self, KernelSpec};
use super::scratch::Line;
use super::{check, is_bf16, raw, MatRef, ProductPrecision};
use crate::Real;

/// The micro-kernel and packers for one element type and precision.
#[derive(Clone, Copy)]
pub(crate) struct PanelKernel<T> {
    spec: KernelSpec<T>,
    /// Round packed values to bf16 (bf16 precision on the f32 kernel).
    round: bool,
}

/// A packed operand: `panels` panels of `slots` slots of `width` values
/// (MR for A, NR for B) each; a slot holds `kpack` k values.
#[derive(Clone, Copy)]
pub(crate) struct Packed<T> {
    ptr: *const T,
    slots: usize,
    width: usize,
}

impl<T> Packed<T> {
    /// Start of panel `index`, from slot `slot` on.
    ///
    /// # Safety
    /// `index` is below the packed panel count and `slot` at most `slots`.
    #[inline(always)]
    pub(crate) unsafe fn panel(&self, index: usize, slot: usize) -> *const T {
        // SAFETY: inside the packed buffer by the caller's bounds.
        unsafe { self.ptr.add((index * self.slots + slot) * self.width) }
    }
}

/// A 64-byte aligned, growable buffer for packed panels, reused between
/// packs (its old contents are never read: packing writes every slot).
pub(crate) struct PanelBuf<T> {
    lines: Vec<Line>,
    _elem: PhantomData<T>,
}

impl<T> Default for PanelBuf<T> {
    fn default() -> Self {
        Self {
            lines: Vec::new(),
            _elem: PhantomData,
        }
    }
}

impl<T: Real> PanelBuf<T> {
    /// A pointer to at least `len` writable elements.
    fn reserve(&mut self, len: usize) -> *mut T {
        let lines = (len * size_of::<T>()).div_ceil(64);
        if self.lines.len() < lines {
            self.lines = vec![Line([0; 64]); lines];
        }
        self.lines.as_mut_ptr().cast()
    }
}

impl<T: Real> PanelKernel<T> {
    /// The kernel [`super::gemm_with`]'s packed driver would use at `precision`.
    pub(crate) fn new(precision: ProductPrecision) -> Self {
        let bf16 = is_bf16::<T>(precision);
        match bf16.then(kernel::select_bf16::<T>).flatten() {
            Some(spec) => Self { spec, round: false },
            None => Self {
                spec: kernel::select::<T>(),
                round: bf16,
            },
        }
    }

    /// Rows of a tile (and of an A panel).
    pub(crate) fn mr(&self) -> usize {
        self.spec.mr
    }

    /// Columns of a tile (and of a B panel).
    pub(crate) fn nr(&self) -> usize {
        self.spec.nr
    }

    /// k values per packed slot (1, or 2 for the bf16 pair kernel): a
    /// product that starts at slot `s` starts at k = `s · kpack`.
    pub(crate) fn kpack(&self) -> usize {
        self.spec.kpack
    }

    /// Rows `0..m`, depth `0..k` of `a` packed as A panels (`ceil(m/MR)`
    /// of them, rows past `m` zero).
    pub(crate) fn pack_a(&self, a: MatRef<'_, T>, m: usize, k: usize, buf: &mut PanelBuf<T>) -> Packed<T> {
        check("A panel", m, k, a.rs, a.cs, a.data.len());
        let (mr, slots) = (self.spec.mr, k.div_ceil(self.spec.kpack));
        let len = m.div_ceil(mr) * mr * slots;
        let dst = buf.reserve(len);
        if m > 0 && k > 0 {
            // SAFETY: the block was checked against `a`; `dst` holds `len`
            // elements, the packer's output size.
            unsafe { (self.spec.pack_a)(raw(&a), 0, 0, m, k, mr, dst) };
            self.round_packed(dst, len);
        }
        Packed {
            ptr: dst,
            slots,
            width: mr,
        }
    }

    /// Depth `0..k`, columns `0..n` of `b` packed as B panels (`ceil(n/NR)`
    /// of them, columns past `n` zero).
    pub(crate) fn pack_b(&self, b: MatRef<'_, T>, k: usize, n: usize, buf: &mut PanelBuf<T>) -> Packed<T> {
        check("B panel", k, n, b.rs, b.cs, b.data.len());
        let (nr, slots) = (self.spec.nr, k.div_ceil(self.spec.kpack));
        let panels = n.div_ceil(nr);
        let len = panels * nr * slots;
        let dst = buf.reserve(len);
        if n > 0 && k > 0 {
            // SAFETY: as in pack_a.
            unsafe { (self.spec.pack_b)(raw(&b), 0, 0, k, n, nr, 0..panels, dst) };
            self.round_packed(dst, len);
        }
        Packed {
            ptr: dst,
            slots,
            width: nr,
        }
    }

    /// Rounds `len` packed values in place where this precision multiplies
    /// rounded copies.
    fn round_packed(&self, dst: *mut T, len: usize) {
        if self.round {
            // SAFETY: `dst` holds the `len` values just packed.
            round_in_place(unsafe { std::slice::from_raw_parts_mut(dst, len) });
        }
    }

    /// `C = alpha · A·B + beta · C` on one MR×NR tile of depth `k` (`beta`
    /// 0: C is write-only) from panels [`Packed::panel`] gave.
    ///
    /// # Safety
    /// `a` and `b` hold `ceil(k/kpack)` slots of their panels; `b` is a
    /// panel start plus whole slots (the kernels load B aligned; A is only
    /// broadcast from); the MR rows of NR values from `c` on, `rs_c` apart,
    /// are valid for reads and writes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn tile(&self, k: usize, a: *const T, b: *const T, c: *mut T, rs_c: usize, alpha: T, beta: T) {
        // SAFETY: the caller's contract is the micro-kernel's.
        unsafe { (self.spec.ukr)(k, a, b, c, rs_c as isize, 1, alpha, beta) }
    }
}
