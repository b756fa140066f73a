//! The blocked, packed, multithreaded GEMM driver (the BLIS loop nest).
//!
//! ```text
//! for jc in n by nc:                 B panel kc×nc packed once, shared (L3)
//!   for pc in k by kc:
//!     pack B[pc.., jc..]             threads split its NR-panels
//!     parallel over tasks (m block × share of the B panels):
//!       pack A[ic.., pc..]           per thread, into a reused buffer (L2)
//!       for jr: for ir: micro-kernel on an MR×NR tile of C
//! ```
//! Tasks write disjoint tiles of C, so no two threads touch the same element.

use std::cell::Cell;
use std::mem::size_of;

use rayon::prelude::*;

use super::kernel::KernelSpec;
use super::pack::RawRef;
use super::prefetch_bytes;
use super::scratch::{with_scratch, Scratch};
use crate::Real;

/// A mutable strided view by raw pointer: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct RawMut<T> {
    pub ptr: *mut T,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: built from a `&mut` slice held for the whole call; the driver hands
// each task a disjoint set of elements, and T: Send lets them move across threads.
unsafe impl<T: Send> Send for RawMut<T> {}
// SAFETY: as above; shared access only ever touches disjoint elements.
unsafe impl<T: Send> Sync for RawMut<T> {}

impl<T> RawMut<T> {
    /// The base pointer (a method, so closures capture the Send wrapper, not the field).
    pub fn base(self) -> *mut T {
        self.ptr
    }
}

/// A raw pointer to a packed buffer that tasks share.
#[derive(Clone, Copy)]
struct SharedBuf<T>(*mut T);
// SAFETY: the packed B buffer is written by disjoint panel ranges, then only read
// after the parallel pack has joined.
unsafe impl<T: Send> Send for SharedBuf<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedBuf<T> {}

impl<T> SharedBuf<T> {
    /// The pointer (a method, so closures capture the Send wrapper, not the field).
    fn get(self) -> *mut T {
        self.0
    }
}

thread_local! {
    /// Packed A block of the tasks this thread runs.
    static A_BUF: Scratch = const { Cell::new(Vec::new()) };
    /// Packed B panel of the calls this thread drives.
    static B_BUF: Scratch = const { Cell::new(Vec::new()) };
}

/// `[lo, hi)` of part `t` when `len` items are split into `parts` near-equal parts.
fn part(len: usize, parts: usize, t: usize) -> std::ops::Range<usize> {
    (len * t / parts)..(len * (t + 1) / parts)
}

/// Splits `len` into near-equal blocks of at most `max` that are multiples of
/// `unit`, with a block count that is a multiple of `threads` where possible
/// (so no thread idles on the last round). Returns the block size.
fn balanced_block(len: usize, max: usize, unit: usize, threads: usize) -> usize {
    let mut blocks = len.div_ceil(max);
    if threads > 1 {
        blocks = blocks.div_ceil(threads) * threads;
    }
    blocks = blocks.clamp(1, len.div_ceil(unit));
    len.div_ceil(blocks).div_ceil(unit) * unit
}

/// `c = alpha·a·b + beta·c` with the packed algorithm on up to `threads` threads.
///
/// # Safety
/// m, n, k ≥ 1; `a` (m×k), `b` (k×n) and `c` (m×n) lie inside live buffers,
/// `c` does not overlap itself and is not aliased by `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_packed<T: Real>(
    spec: &KernelSpec<T>,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: RawRef<T>,
    b: RawRef<T>,
    beta: T,
    c: RawMut<T>,
    threads: usize,
) {
    if threads > 1 {
        if let Some(split) = Split::choose(m, n, threads) {
            // SAFETY: forwarded contract; the parts write disjoint blocks of C.
            return unsafe { gemm_split(spec, split, m, n, k, alpha, a, b, beta, c, threads) };
        }
    }
    // SAFETY: forwarded contract.
    unsafe { gemm_packed_unsplit(spec, m, n, k, alpha, a, b, beta, c, threads) }
}

/// [`gemm_packed`] without dividing C into per-thread bands first: for
/// operands whose views the driver must not offset itself (a bf16 A read
/// through a type-punned pointer whose strides count `u16`s: only its
/// packer knows how to step through it).
///
/// # Safety
/// As [`gemm_packed`], with `a` and `b` valid for what `spec`'s packers read.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_packed_unsplit<T: Real>(
    spec: &KernelSpec<T>,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: RawRef<T>,
    b: RawRef<T>,
    beta: T,
    c: RawMut<T>,
    threads: usize,
) {
    // SAFETY: forwarded contract.
    in_pool(threads, || unsafe {
        packed_body(spec, m, n, k, alpha, a, BSource::Raw(b), beta, c, threads)
    })
}

/// Runs `run`, which forks on up to `threads` threads, from inside rayon's
/// pool: entered once, the forks start from a worker thread (a deque push)
/// instead of each injecting from outside and blocking.
pub(crate) fn in_pool<R: Send>(threads: usize, run: impl FnOnce() -> R + Send) -> R {
    if threads > 1 && rayon::current_thread_index().is_none() {
        rayon::scope(|_| run())
    } else {
        run()
    }
}

/// How [`gemm_split`] divides C among threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    /// Bands of rows (each thread packs its own A rows and all of B).
    Rows,
    /// Bands of columns (each thread packs all of A and its own B columns).
    Cols,
}

/// Rows (or columns) per thread below which a split is not worth its
/// duplicated packing.
const MIN_BAND: usize = 96;

impl Split {
    /// Rows when every thread gets a band of at least [`MIN_BAND`] rows (the
    /// duplicated B packing is then at most ~1/MIN_BAND of the work), else
    /// columns likewise, else none. `MOE_GEMM_NO_SPLIT=1` (read once) turns
    /// splitting off, for comparisons.
    fn choose(m: usize, n: usize, threads: usize) -> Option<Split> {
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *OFF.get_or_init(|| std::env::var_os("MOE_GEMM_NO_SPLIT").is_some()) {
            return None;
        }
        if m / threads >= MIN_BAND {
            Some(Split::Rows)
        } else if n / threads >= MIN_BAND {
            Some(Split::Cols)
        } else {
            None
        }
    }
}

/// C split into `threads` independent single-threaded GEMMs, one band each:
/// no barrier between packing and compute, every thread works out of its own
/// caches, at the price of packing the shared operand once per thread.
///
/// # Safety
/// As [`gemm_packed`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_split<T: Real>(
    spec: &KernelSpec<T>,
    split: Split,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: RawRef<T>,
    b: RawRef<T>,
    beta: T,
    c: RawMut<T>,
    threads: usize,
) {
    let (len, unit) = match split {
        Split::Rows => (m, spec.mr),
        Split::Cols => (n, spec.nr),
    };
    // Band edges on micro-tile multiples, so only the last band has a ragged edge.
    let units = len.div_ceil(unit);
    let band = |t: usize| -> std::ops::Range<usize> {
        let r = part(units, threads, t);
        (r.start * unit).min(len)..(r.end * unit).min(len)
    };
    let run = |t: usize| {
        let r = band(t);
        if r.is_empty() {
            return;
        }
        let (m_t, n_t, a_t, b_t, c_t) = match split {
            Split::Rows => (
                r.len(),
                n,
                // SAFETY: rows r of A and C lie inside their buffers.
                RawRef {
                    ptr: unsafe { a.ptr.add(r.start * a.rs) },
                    ..a
                },
                b,
                RawMut {
                    ptr: unsafe { c.base().add(r.start * c.rs) },
                    ..c
                },
            ),
            Split::Cols => (
                m,
                r.len(),
                a,
                // SAFETY: columns r of B and C lie inside their buffers.
                RawRef {
                    ptr: unsafe { b.ptr.add(r.start * b.cs) },
                    ..b
                },
                RawMut {
                    ptr: unsafe { c.base().add(r.start * c.cs) },
                    ..c
                },
            ),
        };
        // SAFETY: a sub-block of the caller's valid, non-overlapping views;
        // bands are disjoint in C.
        unsafe { packed_body(spec, m_t, n_t, k, alpha, a_t, BSource::Raw(b_t), beta, c_t, 1) }
    };
    (0..threads).into_par_iter().for_each(run);
}

/// [`gemm_packed`] once on the right thread.
///
/// # Safety
/// As [`gemm_packed`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn packed_body<T: Real>(
    spec: &KernelSpec<T>,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: RawRef<T>,
    b: BSource<'_, T>,
    beta: T,
    c: RawMut<T>,
    threads: usize,
) {
    let KernelSpec { mr, nr, .. } = *spec;
    let mcb = balanced_block(m, spec.mc, mr, threads);
    let m_blocks = m.div_ceil(mcb);
    let (kcb, ncb) = b_blocks(spec, k, n);
    let b_bytes = match b {
        BSource::Raw(_) => ncb.div_ceil(nr) * nr * kcb.div_ceil(spec.kpack) * size_of::<T>(),
        BSource::Packed(p) => {
            assert!(
                p.k == k && p.n == n && p.kpack == spec.kpack && p.nr == nr,
                "gemm: B was packed for another product"
            );
            0
        }
    };
    with_scratch(&B_BUF, b_bytes, |b_raw| {
        let scratch = SharedBuf(b_raw.cast::<T>());
        for (jb, jc) in (0..n).step_by(ncb).enumerate() {
            let ncur = ncb.min(n - jc);
            let panels = ncur.div_ceil(nr);
            // With fewer m blocks than threads, threads also split the B panels.
            let n_split = if m_blocks >= threads {
                1
            } else {
                threads.div_ceil(m_blocks).min(panels)
            };
            let tasks = m_blocks * n_split;
            for (pb, pc) in (0..k).step_by(kcb).enumerate() {
                let kcur = kcb.min(k - pc);
                // Packed slots per row of a panel.
                let depth = kcur.div_ceil(spec.kpack);
                let bbuf = match b {
                    BSource::Raw(b) => {
                        // SAFETY: the block lies in `b`; the scratch holds its panels.
                        unsafe { pack_b_block(spec, b, pc, jc, kcur, ncur, threads, scratch) };
                        scratch
                    }
                    BSource::Packed(p) => SharedBuf(p.blocks[jb * p.k_blocks + pb].as_ptr().cast_mut()),
                };
                let beta_now = if pc == 0 { beta } else { T::one() };
                let task = |t: usize| {
                    let i0 = (t / n_split) * mcb;
                    let mcur = mcb.min(m - i0);
                    let cols = part(panels, n_split, t % n_split);
                    let a_bytes = mcur.div_ceil(mr) * mr * depth * size_of::<T>();
                    with_scratch(&A_BUF, a_bytes, |a_raw| {
                        let abuf = a_raw.cast::<T>();
                        // SAFETY: the block lies in `a`; `abuf` holds a_bytes.
                        unsafe { (spec.pack_a)(a, i0, pc, mcur, kcur, mr, abuf) };
                        let blk = Block {
                            i0,
                            j0: jc,
                            mcur,
                            ncur,
                            kcur,
                            depth,
                            alpha,
                            beta: beta_now,
                        };
                        // SAFETY: this task owns rows i0..i0+mcur of C in the
                        // columns of its panels; the buffers are packed.
                        unsafe { macro_kernel(spec, &blk, abuf, bbuf.get(), cols, c) };
                    });
                };
                if threads > 1 && tasks > 1 {
                    (0..tasks).into_par_iter().for_each(task);
                } else {
                    (0..tasks).for_each(task);
                }
            }
        }
    });
}

/// The driver's blocks of k and of n for a k×n B: k blocks hold whole
/// packed slots (a bf16 pair kernel takes k in twos).
fn b_blocks<T>(spec: &KernelSpec<T>, k: usize, n: usize) -> (usize, usize) {
    (
        balanced_block(k, spec.kc, spec.kpack, 1),
        balanced_block(n, spec.nc, spec.nr, 1),
    )
}

/// Packs the panels of B's block at (pc, jc), kcur × ncur, into `dst`, on
/// up to `threads` threads.
///
/// # Safety
/// The block lies inside `b`; `dst` holds `ceil(ncur/nr)·nr·ceil(kcur/kpack)` elements.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_b_block<T: Real>(
    spec: &KernelSpec<T>,
    b: RawRef<T>,
    pc: usize,
    jc: usize,
    kcur: usize,
    ncur: usize,
    threads: usize,
    dst: SharedBuf<T>,
) {
    let (nr, panels) = (spec.nr, ncur.div_ceil(spec.nr));
    let pack = |t: usize, parts: usize| {
        // SAFETY: the block lies in `b`; each part writes its own panels.
        unsafe { (spec.pack_b)(b, pc, jc, kcur, ncur, nr, part(panels, parts, t), dst.get()) }
    };
    if threads > 1 && panels > 1 {
        let parts = threads.min(panels);
        (0..parts).into_par_iter().for_each(|t| pack(t, parts));
    } else {
        pack(0, 1);
    }
}

/// Where [`packed_body`] reads B from.
#[derive(Clone, Copy)]
pub(crate) enum BSource<'a, T> {
    /// Packed block by block as the product runs.
    Raw(RawRef<T>),
    /// Packed beforehand, for several products against the same B.
    Packed(&'a PackedB<T>),
}

/// A k×n B packed once: the panels of every (n block, k block) as
/// [`packed_body`] would pack them, for products of many A's against it
/// (the LM head's weight against each chunk of rows).
pub(crate) struct PackedB<T> {
    k: usize,
    n: usize,
    kpack: usize,
    nr: usize,
    k_blocks: usize,
    /// Indexed `n block · k_blocks + k block`.
    blocks: Vec<Vec<T>>,
}

impl<T: Real> PackedB<T> {
    /// Packs `b` (k×n, k, n ≥ 1) for `spec` on up to `threads` threads.
    ///
    /// # Safety
    /// `b` views k×n elements of a live buffer.
    pub(crate) unsafe fn new(spec: &KernelSpec<T>, k: usize, n: usize, b: RawRef<T>, threads: usize) -> Self {
        let (kcb, ncb) = b_blocks(spec, k, n);
        let mut blocks = Vec::new();
        for jc in (0..n).step_by(ncb) {
            let ncur = ncb.min(n - jc);
            for pc in (0..k).step_by(kcb) {
                let kcur = kcb.min(k - pc);
                let mut buf = vec![T::zero(); ncur.div_ceil(spec.nr) * spec.nr * kcur.div_ceil(spec.kpack)];
                // SAFETY: the block lies in `b` (caller); `buf` holds its panels.
                unsafe { pack_b_block(spec, b, pc, jc, kcur, ncur, threads, SharedBuf(buf.as_mut_ptr())) };
                blocks.push(buf);
            }
        }
        Self {
            k,
            n,
            kpack: spec.kpack,
            nr: spec.nr,
            k_blocks: k.div_ceil(kcb),
            blocks,
        }
    }
}

/// Where one packed block sits in C and how to combine it.
struct Block<T> {
    i0: usize,
    j0: usize,
    mcur: usize,
    ncur: usize,
    kcur: usize,
    /// Packed slots per panel row (`kcur` for one k per slot).
    depth: usize,
    alpha: T,
    beta: T,
}

/// Largest MR·NR of any kernel (f32 AVX-512: 12×32).
const MAX_TILE: usize = 384;

/// Runs the micro-kernel over every tile of the packed A block against B
/// panels `panels`, clipping the ragged edge tiles through a local tile.
///
/// # Safety
/// `abuf`/`bbuf` hold the packed block and panel; the C tiles named by `blk`
/// and `panels` lie in `c` and belong to this task only.
unsafe fn macro_kernel<T: Real>(
    spec: &KernelSpec<T>,
    blk: &Block<T>,
    abuf: *const T,
    bbuf: *const T,
    panels: std::ops::Range<usize>,
    c: RawMut<T>,
) {
    let KernelSpec { mr, nr, ukr, .. } = *spec;
    debug_assert!(mr * nr <= MAX_TILE);
    let (rs, cs) = (c.rs as isize, c.cs as isize);
    for panel in panels {
        let j = panel * nr;
        let cols = nr.min(blk.ncur - j);
        // SAFETY: panel < ceil(ncur/nr), inside the packed B panel.
        let bp = unsafe { bbuf.add(panel * blk.depth * nr) };
        for ir in (0..blk.mcur).step_by(mr) {
            let rows = mr.min(blk.mcur - ir);
            // SAFETY: the offsets stay inside the packed A block and inside C's
            // extent (rows and cols are clipped to the matrix).
            unsafe {
                let ap = abuf.add(ir * blk.depth);
                let cp = c.ptr.add((blk.i0 + ir) * c.rs + (blk.j0 + j) * c.cs);
                prefetch_tile(cp, rows, cols, c.rs, c.cs);
                if rows == mr && cols == nr {
                    ukr(blk.kcur, ap, bp, cp, rs, cs, blk.alpha, blk.beta);
                } else {
                    // Ragged edge: run the same kernel on a local copy of the
                    // tile, so edge elements round exactly like interior ones
                    // and results do not depend on how threads split C.
                    let mut tile = [T::zero(); MAX_TILE];
                    let at = |i: usize, jj: usize| cp.offset(i as isize * rs + jj as isize * cs);
                    if blk.beta != T::zero() {
                        for i in 0..rows {
                            for jj in 0..cols {
                                tile[i * nr + jj] = *at(i, jj);
                            }
                        }
                    }
                    ukr(blk.kcur, ap, bp, tile.as_mut_ptr(), nr as isize, 1, blk.alpha, blk.beta);
                    for i in 0..rows {
                        for jj in 0..cols {
                            *at(i, jj) = tile[i * nr + jj];
                        }
                    }
                }
            }
        }
    }
}

/// Asks for the cache lines of a C tile the micro-kernel is about to
/// compute, so that its stores at the end (and, for `beta != 0`, its loads)
/// find them in cache: a fresh output the size of the LM head's logits is
/// not cached, and each tile's rows lie a full row of C apart.
#[inline(always)]
fn prefetch_tile<T>(cp: *mut T, rows: usize, cols: usize, rs: usize, cs: usize) {
    if cs == 1 {
        for i in 0..rows {
            prefetch_bytes(cp.wrapping_add(i * rs).cast_const().cast(), cols * size_of::<T>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_blocks_cover_and_balance() {
        for &(len, max, unit, threads) in &[
            (1024, 144, 6, 2),
            (4096, 144, 6, 2),
            (7, 144, 6, 2),
            (1, 256, 1, 1),
            (300, 256, 1, 1),
        ] {
            let bs = balanced_block(len, max, unit, threads);
            assert_eq!(bs % unit, 0);
            assert!(bs <= max.div_ceil(unit) * unit, "{len} {max}: {bs}");
            let blocks = len.div_ceil(bs);
            assert!(blocks * bs >= len);
            if len >= max * threads {
                assert_eq!(blocks % threads, 0, "{len}: {blocks} blocks of {bs}");
            }
        }
    }

    #[test]
    fn parts_tile_the_range() {
        for len in 0..20 {
            for parts in 1..5 {
                let total: usize = (0..parts).map(|t| part(len, parts, t).len()).sum();
                assert_eq!(total, len);
            }
        }
    }
}
