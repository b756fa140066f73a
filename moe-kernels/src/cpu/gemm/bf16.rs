//! bf16 operands for f32 products (mixed precision): the rounding, the
//! rounded copies the f32 kernels multiply where there is no bf16 kernel,
//! and the pair packing the AVX512-BF16 kernel reads.
//!
//! The rounding is `VCVTNEPS2BF16`'s, so every path rounds to the same bits:
//! to nearest even, NaN kept (quieted), and f32 subnormal inputs (below
//! 2^-126 in magnitude) flushed to a signed zero.
//!
//! A pair-packed panel holds, per slot, two bf16 values of consecutive k in
//! one 32-bit word (the even k in the low half), which is what
//! `VDPBF16PS` multiplies pairwise: panels are `[q][i]` / `[q][j]` over
//! `q = k / 2` instead of `[p][i]` / `[p][j]`, with a zero high half when
//! the block's depth is odd. Packing converts the block into a pair matrix
//! first and then lays that out with the f32 packers (32-bit moves only,
//! so the pairs' bits pass through unchanged).

use std::any::TypeId;
use std::cell::Cell;
use std::ops::Range;

use super::pack::{pack_a, pack_b, RawRef};
use super::scratch::{with_scratch, Scratch};
use crate::Real;

thread_local! {
    /// The pair matrix of the block this thread is packing.
    static PAIRS: Scratch = const { Cell::new(Vec::new()) };
}

/// bf16 bits of `x`, rounded as `VCVTNEPS2BF16` does (see the module docs).
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let bits = if bits & 0x7f80_0000 == 0 {
        bits & 0x8000_0000
    } else {
        bits
    };
    // Round to nearest even on the 16 dropped bits (a carry into the
    // exponent rounds up to the next binade or to infinity, as it should).
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// `x` rounded to bf16, as an f32.
#[inline(always)]
pub(crate) fn round_bf16(x: f32) -> f32 {
    f32::from_bits(u32::from(bf16_bits(x)) << 16)
}

/// A copy of the first `len` elements of `data` with every value rounded to
/// bf16 (the operand the f32 kernels multiply in bf16 precision).
/// `T` must be f32; other types are copied unchanged.
pub(crate) fn rounded_copy<T: Real>(data: &[T], len: usize) -> Vec<T> {
    let mut copy = data[..len].to_vec();
    round_in_place(&mut copy);
    copy
}

/// Rounds every value of `data` to bf16 in place when `T` is f32 (other
/// types are left unchanged).
pub(crate) fn round_in_place<T: Real>(data: &mut [T]) {
    if TypeId::of::<T>() != TypeId::of::<f32>() {
        return;
    }
    for x in data {
        // Exact round trip: T is f32.
        *x = T::from_f64_lossy(f64::from(round_bf16(x.to_f64_lossy() as f32)));
    }
}

/// [`bf16_bits`] of every value of `src` into `dst` (same length), with
/// the AVX512-BF16 conversion where the CPU has it.
pub(crate) fn to_bf16_bits(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    // SAFETY: both runs hold src.len() elements.
    unsafe { convert_run(src.as_ptr(), 1, src.len(), dst.as_mut_ptr()) };
}

/// `dst[t] = bf16(src[t·stride])` for `t < len`.
///
/// # Safety
/// The `len` source elements and `len` destination slots are valid.
#[inline(always)]
unsafe fn convert_run(src: *const f32, stride: usize, len: usize, dst: *mut u16) {
    #[cfg(target_arch = "x86_64")]
    if stride == 1 && super::avx512_bf16::supported() {
        // SAFETY: the caller's contract; the CPU has the instructions.
        return unsafe { super::avx512_bf16::convert_contiguous(src, len, dst) };
    }
    for t in 0..len {
        // SAFETY: t < len, inside both runs.
        unsafe { *dst.add(t) = bf16_bits(*src.add(t * stride)) };
    }
}

/// `dst[t] = bf16(lo[t·stride]) | bf16(hi[t·stride]) << 16` for `t < len`,
/// with a zero high half when `hi` is `None`.
///
/// # Safety
/// The `len` elements of each source run and `len` destination slots are valid.
#[inline(always)]
unsafe fn interleave_runs(lo: *const f32, hi: Option<*const f32>, stride: usize, len: usize, dst: *mut u32) {
    #[cfg(target_arch = "x86_64")]
    if stride == 1 && super::avx512_bf16::supported() {
        // SAFETY: the caller's contract; the CPU has the instructions.
        return unsafe { super::avx512_bf16::interleave_contiguous(lo, hi, len, dst) };
    }
    for t in 0..len {
        // SAFETY: t < len, inside every run.
        unsafe {
            let high = hi.map_or(0, |h| u32::from(bf16_bits(*h.add(t * stride))));
            *dst.add(t) = u32::from(bf16_bits(*lo.add(t * stride))) | high << 16;
        }
    }
}

/// A `rows × kc` block of an f32 matrix: element (r, p) at
/// `base + r·r_stride + p·k_stride` (k along `k_stride`).
#[derive(Clone, Copy)]
struct Block {
    base: *const f32,
    r_stride: usize,
    k_stride: usize,
    rows: usize,
    kc: usize,
}

/// The pair matrix of `block` written into `pairs`, and the view of it as
/// an f32 `rows × ceil(kc/2)` matrix. Contiguous k (`k_stride == 1`)
/// converts each row's run in place (`[r][q]`); contiguous rows interleave
/// two k columns per slot (`[q][r]`).
///
/// # Safety
/// The block lies inside its matrix; `pairs` holds `rows·ceil(kc/2)` words.
unsafe fn pair_matrix(block: Block, pairs: *mut u32) -> RawRef<f32> {
    #[cfg(target_arch = "x86_64")]
    if super::avx512_bf16::supported() {
        // SAFETY: the caller's contract; the CPU has the instructions.
        return unsafe { pair_matrix_avx512(block, pairs) };
    }
    // SAFETY: the caller's contract.
    unsafe { pair_matrix_body(block, pairs) }
}

/// [`pair_matrix`] compiled with AVX512-BF16, so that the conversion of
/// each short run (attention's head rows are 32 values) is inlined into
/// the loop over them instead of being a call.
///
/// # Safety
/// As [`pair_matrix`], and the CPU has AVX-512F/BW/VL and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pair_matrix_avx512(block: Block, pairs: *mut u32) -> RawRef<f32> {
    // SAFETY: the caller's contract.
    unsafe { pair_matrix_body(block, pairs) }
}

/// The body of [`pair_matrix`].
///
/// # Safety
/// As [`pair_matrix`].
#[inline(always)]
unsafe fn pair_matrix_body(block: Block, pairs: *mut u32) -> RawRef<f32> {
    let Block {
        base,
        r_stride,
        k_stride,
        rows,
        kc,
    } = block;
    let kq = kc.div_ceil(2);
    if k_stride == 1 || r_stride != 1 {
        for r in 0..rows {
            if k_stride == 1 && r_stride >= FAR_ROWS && r + 1 < rows {
                // Rows pages apart (the logits' gradient as A): the next
                // one's run is requested while this one converts.
                prefetch_run(base.wrapping_add((r + 1) * r_stride), kc);
            }
            // SAFETY: row r's kc elements lie in the block; its kq words in `pairs`.
            unsafe {
                let row = pairs.add(r * kq);
                convert_run(base.add(r * r_stride), k_stride, kc, row.cast());
                if kc % 2 == 1 {
                    // The odd depth's missing partner.
                    *row.cast::<u16>().add(kc) = 0;
                }
            }
        }
        RawRef {
            ptr: pairs.cast_const().cast(),
            rs: kq,
            cs: 1,
        }
    } else {
        for q in 0..kq {
            // The source columns are short runs a whole row of the matrix
            // apart (the logits' gradient read transposed), which the
            // hardware prefetcher does not see coming: ask for the runs a
            // few slots ahead.
            for col in [2 * (q + PREFETCH_SLOTS), 2 * (q + PREFETCH_SLOTS) + 1] {
                if col < kc {
                    prefetch_run(base.wrapping_add(col * k_stride), rows);
                }
            }
            // SAFETY: columns 2q and 2q+1 (when < kc) of the block, rows words at q·rows.
            unsafe {
                let lo = base.add(2 * q * k_stride);
                let hi = (2 * q + 1 < kc).then(|| base.add((2 * q + 1) * k_stride));
                interleave_runs(lo, hi, 1, rows, pairs.add(q * rows));
            }
        }
        RawRef {
            ptr: pairs.cast_const().cast(),
            rs: 1,
            cs: rows,
        }
    }
}

/// Pair slots ahead that [`pair_matrix`] prefetches when it interleaves columns.
const PREFETCH_SLOTS: usize = 4;

/// Row stride (f32 values, 4 KiB) from which [`pair_matrix`] prefetches the
/// next row's run: nearer rows run on in memory, where the hardware
/// prefetcher already streams them.
const FAR_ROWS: usize = 1024;

/// Prefetches the `len` f32 values at `src`.
#[inline(always)]
fn prefetch_run(src: *const f32, len: usize) {
    super::prefetch_bytes(src.cast(), len * 4);
}

/// Reinterprets a view of `T` (which is f32) as one of f32.
fn as_f32<T: Real>(x: RawRef<T>) -> RawRef<f32> {
    debug_assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    RawRef {
        ptr: x.ptr.cast(),
        rs: x.rs,
        cs: x.cs,
    }
}

/// [`pack_a`] for the bf16 pair kernel: rows `i0..i0+mc`, k `p0..p0+kc` of
/// `a` as `ceil(mc/mr)` panels of `ceil(kc/2)` slots of `mr` pairs.
///
/// # Safety
/// `T` is f32; the block lies inside `a`; `dst` holds
/// `ceil(mc/mr)·mr·ceil(kc/2)` elements.
pub(crate) unsafe fn pack_a_pairs<T: Real>(
    a: RawRef<T>,
    i0: usize,
    p0: usize,
    mc: usize,
    kc: usize,
    mr: usize,
    dst: *mut T,
) {
    let a = as_f32(a);
    let kq = kc.div_ceil(2);
    with_scratch(&PAIRS, mc * kq * 4, |buf| {
        // SAFETY: the block lies inside `a` (caller); `buf` holds mc·kq words.
        unsafe {
            let block = Block {
                base: a.at(i0, p0),
                r_stride: a.rs,
                k_stride: a.cs,
                rows: mc,
                kc,
            };
            let view = pair_matrix(block, buf.cast());
            pack_a::<f32>(view, 0, 0, mc, kq, mr, dst.cast());
        }
    });
}

/// [`pack_b`] for the bf16 pair kernel: k `p0..p0+kc`, columns
/// `j0..j0+nc` of `b` as `ceil(nc/nr)` panels of `ceil(kc/2)` slots of `nr`
/// pairs, packing only the panels in `panels`.
///
/// # Safety
/// `T` is f32; the block lies inside `b`; `dst` holds
/// `ceil(nc/nr)·nr·ceil(kc/2)` elements.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pack_b_pairs<T: Real>(
    b: RawRef<T>,
    p0: usize,
    j0: usize,
    kc: usize,
    nc: usize,
    nr: usize,
    panels: Range<usize>,
    dst: *mut T,
) {
    let b = as_f32(b);
    let kq = kc.div_ceil(2);
    let first = panels.start * nr;
    let cols = (panels.end * nr).min(nc).saturating_sub(first);
    if cols == 0 {
        return;
    }
    with_scratch(&PAIRS, cols * kq * 4, |buf| {
        // SAFETY: the panels' columns lie inside `b` (caller); `buf` holds
        // cols·kq words; the panels start at panels.start·kq·nr in `dst`.
        unsafe {
            // Bᵀ's rows are B's columns: the pair matrix is cols × kq.
            let block = Block {
                base: b.at(p0, j0 + first),
                r_stride: b.cs,
                k_stride: b.rs,
                rows: cols,
                kc,
            };
            let t = pair_matrix(block, buf.cast());
            let view = RawRef {
                ptr: t.ptr,
                rs: t.cs,
                cs: t.rs,
            };
            let out = dst.cast::<f32>().add(panels.start * kq * nr);
            pack_b::<f32>(view, 0, 0, kq, cols, nr, 0..panels.len(), out);
        }
    });
}

/// [`pack_a`] for the bf16 pair kernel when A is already pairs: `a` views
/// an `m × ceil(k/2)` matrix of 32-bit pair words (a row-major bf16 matrix
/// with even k read two at a time, see `bf16_a.rs`), so packing only lays
/// the words out. `p0` and `kc` count bf16 values; `p0` is even.
///
/// # Safety
/// As [`pack_a_pairs`], for the word matrix.
pub(crate) unsafe fn pack_a_words<T: Real>(
    a: RawRef<T>,
    i0: usize,
    p0: usize,
    mc: usize,
    kc: usize,
    mr: usize,
    dst: *mut T,
) {
    debug_assert!(p0.is_multiple_of(2));
    // SAFETY: the caller's contract, in word units.
    unsafe { pack_a::<f32>(as_f32(a), i0, p0 / 2, mc, kc.div_ceil(2), mr, dst.cast()) };
}

/// [`pack_a`] for the bf16 pair kernel when A is a bf16 matrix stored
/// column-wise: `a.ptr` points at `u16` bits (the `T` type is a pun) and
/// element (i, p) is at `i + p·a.cs` in `u16`s (`a.rs` is 1). Each pair slot
/// interleaves two k columns, like the transposed case of [`pair_matrix`].
///
/// # Safety
/// `T` is f32; the block lies inside the `u16` buffer; `dst` holds
/// `ceil(mc/mr)·mr·ceil(kc/2)` elements.
pub(crate) unsafe fn pack_a_bf16_columns<T: Real>(
    a: RawRef<T>,
    i0: usize,
    p0: usize,
    mc: usize,
    kc: usize,
    mr: usize,
    dst: *mut T,
) {
    debug_assert_eq!(a.rs, 1);
    let base = a.ptr.cast::<u16>();
    let kq = kc.div_ceil(2);
    let col = |p: usize| base.wrapping_add(i0 + (p0 + p) * a.cs);
    with_scratch(&PAIRS, mc * kq * 4, |buf| {
        let pairs = buf.cast::<u32>();
        for q in 0..kq {
            // Columns a whole row of the stored matrix apart: ask for the
            // runs a few slots ahead (see `pair_matrix`).
            for p in [2 * (q + PREFETCH_SLOTS), 2 * (q + PREFETCH_SLOTS) + 1] {
                if p < kc {
                    super::prefetch_bytes(col(p).cast(), mc * 2);
                }
            }
            // SAFETY: columns 2q and 2q+1 (when < kc) of the block; mc words at q·mc.
            unsafe {
                let hi = (2 * q + 1 < kc).then(|| col(2 * q + 1));
                interleave_bf16_runs(col(2 * q), hi, mc, pairs.add(q * mc));
            }
        }
        let view = RawRef {
            ptr: pairs.cast_const().cast::<f32>(),
            rs: 1,
            cs: mc,
        };
        // SAFETY: the pair matrix is mc × kq words; dst holds the panels.
        unsafe { pack_a::<f32>(view, 0, 0, mc, kq, mr, dst.cast()) };
    });
}

/// `dst[t] = lo[t] | hi[t] << 16` for `t < len` (bf16 bits; a zero high half
/// when `hi` is `None`).
///
/// # Safety
/// `len` values at `lo` (and `hi`) and `len` words at `dst`.
unsafe fn interleave_bf16_runs(lo: *const u16, hi: Option<*const u16>, len: usize, dst: *mut u32) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512_bf16::supported() {
        // SAFETY: the caller's contract; the CPU has AVX-512 BW.
        return unsafe { super::avx512_bf16::interleave_bf16(lo, hi, len, dst) };
    }
    for t in 0..len {
        // SAFETY: t < len, inside every run.
        unsafe {
            let high = hi.map_or(0, |h| u32::from(*h.add(t)));
            *dst.add(t) = u32::from(*lo.add(t)) | high << 16;
        }
    }
}
