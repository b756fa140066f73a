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
