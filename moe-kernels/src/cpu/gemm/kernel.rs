//! Micro-kernels and their blocking parameters, chosen once per call by CPU feature.
//!
//! A micro-kernel computes one MR×NR tile of C from a packed MR×kc panel of A
//! (layout `[p][i]`) and a packed kc×NR panel of B (layout `[p][j]`):
//! `C_tile = alpha · A_panel · B_panel + beta · C_tile`, with `beta == 0`
//! meaning C is write-only.

use std::any::TypeId;
use std::ops::Range;

use super::pack::{pack_a, pack_b, RawRef};

use crate::Real;

/// `ukr(kc, a, b, c, rs_c, cs_c, alpha, beta)` on one full MR×NR tile.
///
/// # Safety (for callers)
/// `a` points to `kc·MR` and `b` to `kc·NR` readable elements, both aligned to
/// 32 bytes; every `c + i·rs_c + j·cs_c` for `i < MR`, `j < NR` is valid for
/// reads and writes and no other thread touches those elements meanwhile.
pub(crate) type MicroKernel<T> = unsafe fn(usize, *const T, *const T, *mut T, isize, isize, T, T);

/// `pack_a(a, i0, p0, mc, kc, mr, dst)`: the A block's panels in the kernel's
/// layout (see [`super::pack::pack_a`]).
pub(crate) type PackA<T> = unsafe fn(RawRef<T>, usize, usize, usize, usize, usize, *mut T);

/// `pack_b(b, p0, j0, kc, nc, nr, panels, dst)`: the B block's panels in the
/// kernel's layout (see [`super::pack::pack_b`]).
pub(crate) type PackB<T> = unsafe fn(RawRef<T>, usize, usize, usize, usize, usize, Range<usize>, *mut T);

/// A micro-kernel together with the cache blocking that suits it.
#[derive(Clone, Copy)]
pub(crate) struct KernelSpec<T> {
    /// Rows of the C tile.
    pub mr: usize,
    /// Columns of the C tile.
    pub nr: usize,
    /// Rows of A packed at once (the packed block lives in L2).
    pub mc: usize,
    /// Depth of one packed block (a kc×NR panel of B lives in L1).
    pub kc: usize,
    /// Columns of B packed at once (the packed panel lives in L3).
    pub nc: usize,
    /// k values per packed slot: 1, or 2 for kernels that read bf16 pairs
    /// (a panel of depth kc then holds ceil(kc/2) slots per row).
    pub kpack: usize,
    /// The tile kernel.
    pub ukr: MicroKernel<T>,
    /// Packs A blocks for `ukr`.
    pub pack_a: PackA<T>,
    /// Packs B panels for `ukr`.
    pub pack_b: PackB<T>,
    /// Name for benchmarks and debugging.
    pub name: &'static str,
}

impl<T: Real> KernelSpec<T> {
    /// A kernel that reads one k value per slot from the plain packers
    /// ([`pack_a`], [`pack_b`]): every kernel but the bf16 pair one.
    pub(crate) fn plain(
        (mr, nr): (usize, usize),
        (mc, kc, nc): (usize, usize, usize),
        ukr: MicroKernel<T>,
        name: &'static str,
    ) -> Self {
        KernelSpec {
            mr,
            nr,
            mc,
            kc,
            nc,
            kpack: 1,
            ukr,
            pack_a: pack_a::<T>,
            pack_b: pack_b::<T>,
            name,
        }
    }
}

/// The fastest kernel this CPU supports for `T`: AVX-512F (f32), else
/// AVX2+FMA, else portable. `MOE_GEMM_NO_AVX512=1` (read once) skips the
/// AVX-512 kernel, e.g. to compare the two on one machine.
pub(crate) fn select<T: Real>() -> KernelSpec<T> {
    #[cfg(target_arch = "x86_64")]
    if use_avx512() {
        if let Some(spec) = super::avx512::spec::<T>() {
            return spec;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if super::avx2::available() {
        if let Some(spec) = super::avx2::spec::<T>() {
            return spec;
        }
    }
    portable::<T>()
}

/// The kernel for products whose f32 operands are read as bf16, where this
/// CPU has one (AVX512-BF16); None for other types and CPUs, which then
/// multiply rounded copies with [`select`]'s kernel.
pub(crate) fn select_bf16<T: Real>() -> Option<KernelSpec<T>> {
    #[cfg(target_arch = "x86_64")]
    if super::avx512_bf16::available() {
        return super::avx512_bf16::spec::<T>();
    }
    None
}

/// Whether the AVX-512 kernel may be used (CPU support, not switched off).
#[cfg(target_arch = "x86_64")]
fn use_avx512() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| super::avx512::available() && std::env::var_os("MOE_GEMM_NO_AVX512").is_none())
}

/// The portable scalar kernel; LLVM vectorises the fixed-size inner loops with
/// whatever SIMD the target baseline has (SSE2 on x86_64).
pub(crate) fn portable<T: Real>() -> KernelSpec<T> {
    let is_f32 = TypeId::of::<T>() == TypeId::of::<f32>();
    KernelSpec::plain(
        (PMR, PNR),
        (if is_f32 { 128 } else { 64 }, 256, 2048),
        portable_ukr::<T>,
        "portable",
    )
}

const PMR: usize = 4;
const PNR: usize = 8;

/// Scalar 4×8 tile kernel for any [`Real`].
///
/// # Safety
/// See [`MicroKernel`] (alignment is not needed here).
#[allow(clippy::too_many_arguments)]
unsafe fn portable_ukr<T: Real>(
    kc: usize,
    a: *const T,
    b: *const T,
    c: *mut T,
    rs_c: isize,
    cs_c: isize,
    alpha: T,
    beta: T,
) {
    let mut acc = [[T::zero(); PNR]; PMR];
    for p in 0..kc {
        // SAFETY: the caller guarantees kc·MR elements at `a` and kc·NR at `b`.
        let (ap, bp) = unsafe { (a.add(p * PMR), b.add(p * PNR)) };
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: i < MR and p < kc, inside the panel.
            let ai = unsafe { *ap.add(i) };
            for (j, x) in row.iter_mut().enumerate() {
                // SAFETY: j < NR and p < kc, inside the panel.
                *x += ai * unsafe { *bp.add(j) };
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, x) in row.iter().enumerate() {
            // SAFETY: the caller guarantees the MR×NR tile at `c` is ours.
            let dst = unsafe { &mut *c.offset(i as isize * rs_c + j as isize * cs_c) };
            *dst = if beta == T::zero() {
                alpha * *x
            } else {
                alpha * *x + beta * *dst
            };
        }
    }
}
