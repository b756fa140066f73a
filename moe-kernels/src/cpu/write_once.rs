//! New vectors written once, without a zeroing pass first.

use std::mem::MaybeUninit;

/// A new vector of `n` elements, written by `fill` into the allocation's
/// spare capacity. `fill` must write every one of the `n` slots it is given
/// (the kernels that use this write each output element exactly once).
pub(crate) fn written_once<U>(n: usize, fill: impl FnOnce(&mut [MaybeUninit<U>])) -> Vec<U> {
    let mut out = Vec::with_capacity(n);
    fill(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: `fill` initialised the first `n` slots (its contract above).
    unsafe { out.set_len(n) };
    out
}

/// `x` seen as slots to write into, so that one kernel body serves both a
/// caller's buffer and a [`written_once`] vector. The kernels write only
/// initialised values through it (never `MaybeUninit::uninit()`), so `x`
/// stays initialised.
pub(crate) fn as_slots<T>(x: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: MaybeUninit<T> has the layout of T; see above for why `x`
    // remains initialised after the borrow ends.
    unsafe { &mut *(x as *mut [T] as *mut [MaybeUninit<T>]) }
}
