//! General matrix multiply on strided slices.
//!
//! `C = alpha · A · B + beta · C` where A is m×k, B is k×n and C is m×n, each
//! given by a slice starting at element (0, 0) and a row stride and column
//! stride in elements. Transposed operands are just swapped strides, so no
//! caller ever copies to transpose.
//!
//! # Which implementation, and why
//! A hand-written BLIS-style packed GEMM (`driver.rs`) with an AVX-512F f32
//! micro-kernel (12×32) where the CPU has AVX-512 (about 1.75× the AVX2
//! kernel's GFLOP/s on the Zen 5 VM this project moved to: 393 against 224 at
//! 1024³ on 2 threads), AVX2+FMA micro-kernels (f32 6×16, f64 6×8) otherwise,
//! all runtime-detected, and a portable scalar kernel without SIMD. On this project's 2-core Zen 3 machine it was the fastest
//! of the three candidates at 1024³ and 2048³ f32 on 2 threads (about 140
//! GFLOP/s against about 100 for the `gemm` crate 0.19 and `matrixmultiply`
//! 0.3, and ahead on 1 thread too; BENCHMARKS.md, `tools/bench/gemm_rounds.sh`,
//! `cargo bench -p moe-kernels --bench gemm -- backends`). The blocking is
//! BLIS's for Zen (kc 256, mc 144); sweeping kc 256–1024 and mc 48–240 moved
//! nothing beyond the noise of this shared machine. Owning the code also pins
//! down behaviour the tensor crate relies on: beta == 0 ignores NaNs in C, any
//! strides, results independent of the thread count, no allocation per call
//! (packing buffers are reused per thread).
//!
//! Packing copies each A block and B panel once into the micro-kernel's
//! order; the transposing cases (row-major A, transposed B) go through AVX2
//! in-register 8-wide transposes (`pack_avx2.rs`) instead of a scalar load
//! and store per element, which cost ~1/8 of the micro-kernel's time on the
//! models' K = 256 products.
//!
//! Mixed precision ([`ProductPrecision::Bf16`], [`gemm_with`]): on CPUs with
//! AVX512-BF16 the same driver runs a bf16 pair kernel (`avx512_bf16.rs`)
//! whose panels hold two k values per 32-bit slot (`bf16.rs` converts and
//! packs them), at twice the f32 kernel's multiply-add rate: 290–410 against
//! 170–197 GFLOP/s on the models' products on the 2-core Zen 4 VM
//! (BENCHMARKS.md, `examples/gemm_shapes.rs -- bf16`). Other CPUs, and the
//! direct and matrix-vector paths, multiply rounded copies with the f32
//! kernels: the same products, summed in another order.
//!
//! Paths: tiny products and self-overlapping C go to a direct loop; `m == 1`
//! or `n == 1` to a streaming matrix-vector kernel; the rest to the packed
//! driver, on one thread below [`PAR_MIN_WORK`] multiply-adds and on rayon's
//! current pool (respecting `RAYON_NUM_THREADS`) above it.
//!
//! [`gemm_batched_new`] returns its products in a new buffer (`fresh.rs`):
//! the packed driver never reads C when `beta == 0`, so it writes the
//! allocation's spare capacity once instead of after a zeroing pass.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
mod bf16;
mod bf16_a;
mod driver;
mod fresh;
mod gemv;
mod kernel;
mod naive;
mod pack;
#[cfg(target_arch = "x86_64")]
mod pack_avx2;
mod panels;
mod row_chunks;
mod scratch;

use std::any::TypeId;

use rayon::prelude::*;

pub(crate) use bf16::{bf16_bits, to_bf16_bits};
pub use bf16_a::{gemm_bf16_a, Bf16Ref};
use driver::RawMut;
pub use fresh::gemm_batched_new;
pub(crate) use fresh::product_into;
use pack::RawRef;
pub(crate) use panels::{Packed, PanelBuf, PanelKernel};
pub use row_chunks::gemm_row_chunks;

use crate::Real;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// Backing elements; (0, 0) is `data[0]`.
    pub data: &'a [T],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

/// A mutable strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    /// Backing elements; (0, 0) is `data[0]`.
    pub data: &'a mut [T],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

/// How a product reads its f32 operands.
///
/// `Bf16` is mixed precision as `torch.set_float32_matmul_precision("medium")`
/// and the GPU's bf16 tensor cores do it: each f32 operand is rounded to bf16
/// (to nearest even; f32 subnormals flush to zero), the products are exact
/// and they accumulate in f32. On CPUs with AVX512-BF16 a pair kernel
/// multiplies the rounded values at twice the f32 rate (`VDPBF16PS`, which
/// also flushes subnormal results); elsewhere the f32 kernels multiply
/// rounded copies, with the same products up to the order of the f32 sums.
/// f64 products ignore it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProductPrecision {
    /// The operands as they are.
    #[default]
    Full,
    /// f32 operands rounded to bf16, f32 accumulation.
    Bf16,
}

/// Multiply-adds (m·n·k) below which a product runs on one thread: forking
/// costs a few microseconds, about what 128³ takes on one core.
pub const PAR_MIN_WORK: usize = 1 << 21;

/// Multiply-adds below which the direct loop beats packing.
const NAIVE_MAX_WORK: usize = 4096;

/// `c = alpha · a · b + beta · c` for `a`: m×k, `b`: k×n, `c`: m×n.
///
/// When `beta == 0` the old contents of `c` are ignored (NaNs included), as BLAS
/// does; when `alpha == 0` or `k == 0`, `a` and `b` are not read.
/// Multithreaded on rayon's current pool above [`PAR_MIN_WORK`].
///
/// # Panics
/// If a slice is too short for its dims and strides (callers check shapes).
///
/// # Example
/// ```
/// use moe_kernels::cpu::gemm::{gemm, MatMut, MatRef};
///
/// // A: 2×3 row-major; B: 3×2 read as the transpose of a row-major 2×3 buffer.
/// let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let bt = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0];
/// let mut c = [f32::NAN; 4]; // beta = 0 ignores the old contents
/// gemm(
///     2, 2, 3,
///     1.0,
///     MatRef { data: &a, rs: 3, cs: 1 },
///     MatRef { data: &bt, rs: 1, cs: 3 },
///     0.0,
///     MatMut { data: &mut c, rs: 2, cs: 1 },
/// );
/// assert_eq!(c, [4.0, 2.0, 10.0, 5.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
) {
    gemm_with(ProductPrecision::Full, m, n, k, alpha, a, b, beta, c);
}

/// [`gemm`] with the operands read at `precision`.
///
/// # Example
/// ```
/// use moe_kernels::cpu::gemm::{gemm_with, MatMut, MatRef, ProductPrecision};
///
/// // 1 + 2^-10 has more bits than bf16 keeps: it is read as 1.
/// let a = [1.0f32 + 1.0 / 1024.0, 3.0];
/// let b = [1.0f32, 1.0 / 4096.0];
/// let mut c = [0.0f32];
/// gemm_with(
///     ProductPrecision::Bf16,
///     1, 1, 2,
///     1.0,
///     MatRef { data: &a, rs: 2, cs: 1 },
///     MatRef { data: &b, rs: 1, cs: 1 },
///     0.0,
///     MatMut { data: &mut c, rs: 1, cs: 1 },
/// );
/// assert_eq!(c[0], 1.0 + 3.0 / 4096.0);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm_with<T: Real>(
    precision: ProductPrecision,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    mut c: MatMut<'_, T>,
) {
    gemm_on(
        rayon::current_num_threads(),
        precision,
        m,
        n,
        k,
        alpha,
        &a,
        &b,
        beta,
        &mut c,
    );
}

/// Element count a `rows`×`cols` view with strides `rs`, `cs` reaches, or None on overflow.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// Panics unless `len` elements cover the view.
fn check(name: &str, rows: usize, cols: usize, rs: usize, cs: usize, len: usize) {
    match extent(rows, cols, rs, cs) {
        Some(need) if need <= len => {}
        need => panic!("gemm: {name} ({rows}×{cols}, strides {rs}, {cs}) needs {need:?} elements, slice has {len}"),
    }
}

/// Whether distinct (i, j) of a rows×cols view with strides rs, cs always reach
/// distinct elements (sufficient test: the larger stride clears the span of the smaller).
fn non_overlapping(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    let mut dims: Vec<(usize, usize)> = [(rs, rows), (cs, cols)].into_iter().filter(|&(_, d)| d > 1).collect();
    dims.sort_unstable();
    match dims.as_slice() {
        [] => true,
        [(s, _)] => *s >= 1,
        [(s0, d0), (s1, _)] => *s0 >= 1 && *s1 > (d0 - 1) * s0,
        _ => unreachable!("two dims at most"),
    }
}

/// Threads worth using for `work` multiply-adds, at most `max`.
fn threads_for(work: usize, max: usize) -> usize {
    if work < PAR_MIN_WORK {
        1
    } else {
        max.min(work / PAR_MIN_WORK).max(1)
    }
}

/// [`gemm_with`] on at most `threads` threads.
#[allow(clippy::too_many_arguments)]
fn gemm_on<T: Real>(
    threads: usize,
    precision: ProductPrecision,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: &mut MatMut<'_, T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    check("C", m, n, c.rs, c.cs, c.data.len());
    if k == 0 || alpha == T::zero() {
        return naive::scale(m, n, beta, c);
    }
    check("A", m, k, a.rs, a.cs, a.data.len());
    check("B", k, n, b.rs, b.cs, b.data.len());
    let work = m.saturating_mul(n).saturating_mul(k);
    let naive = work <= NAIVE_MAX_WORK || !non_overlapping(m, n, c.rs, c.cs);
    let bf16 = is_bf16::<T>(precision);
    let spec = if naive {
        None
    } else {
        packed_kernel::<T>(precision, m, n, work)
    };
    // The packed driver has a bf16 kernel on some CPUs; every other bf16
    // product multiplies rounded copies of what its views reach.
    if bf16 && spec.is_none() {
        let ra = bf16::rounded_copy(a.data, extent(m, k, a.rs, a.cs).unwrap_or(0));
        let rb = bf16::rounded_copy(b.data, extent(k, n, b.rs, b.cs).unwrap_or(0));
        let (ra, rb) = (MatRef { data: &ra, ..*a }, MatRef { data: &rb, ..*b });
        return gemm_on(threads, ProductPrecision::Full, m, n, k, alpha, &ra, &rb, beta, c);
    }
    if naive {
        return naive::gemm_naive(m, n, k, alpha, a, b, beta, c);
    }
    // Column-major C: compute Cᵀ = Bᵀ·Aᵀ so the micro-kernel stores along rows.
    let transpose = c.cs != 1 && c.rs == 1;
    let (m, n, a, b, c_rs, c_cs) = if transpose {
        (n, m, tr(b), tr(a), c.cs, c.rs)
    } else {
        (m, n, raw(a), raw(b), c.rs, c.cs)
    };
    let c = RawMut {
        ptr: c.data.as_mut_ptr(),
        rs: c_rs,
        cs: c_cs,
    };
    // SAFETY: every view was checked against its slice above; C does not
    // overlap itself, and as a `&mut` it aliases neither A nor B.
    unsafe {
        if n == 1 {
            let threads = threads_for(m.saturating_mul(k) * 16, threads);
            gemv::gemv(m, k, alpha, a, b, beta, c, threads);
        } else if m == 1 {
            // Row vector times matrix: cᵀ = Bᵀ·aᵀ.
            let ct = RawMut {
                ptr: c.ptr,
                rs: c.cs,
                cs: c.rs,
            };
            let threads = threads_for(n.saturating_mul(k) * 16, threads);
            gemv::gemv(n, k, alpha, tr_raw(b), tr_raw(a), beta, ct, threads);
        } else {
            let spec = spec.unwrap_or_else(kernel::select::<T>);
            driver::gemm_packed(&spec, m, n, k, alpha, a, b, beta, c, threads_for(work, threads));
        }
    }
}

/// Asks the cache for every line of the `bytes` bytes at `start` (on
/// x86-64; nothing elsewhere). Prefetches never fault; callers keep the
/// range inside one allocation so the address arithmetic stays defined.
#[inline(always)]
fn prefetch_bytes(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    if bytes > 0 {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // Every line from the one holding the first byte to the one holding the last.
        let skew = start as usize % 64;
        let lines = (skew + bytes).div_ceil(64);
        for l in 0..lines {
            // SAFETY: a prefetch only hints; wrapping_add keeps the
            // arithmetic defined even for the aligned-down first line.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(l * 64).wrapping_sub(skew).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// Whether `precision` rounds this element type's operands (f32 only).
fn is_bf16<T: 'static>(precision: ProductPrecision) -> bool {
    precision == ProductPrecision::Bf16 && TypeId::of::<T>() == TypeId::of::<f32>()
}

/// The micro-kernel the packed driver runs an m×n product of `work`
/// multiply-adds on, or None where another path takes it: a vector
/// (`m` or `n` is 1), a product small enough for the direct loop, or bf16
/// precision on a CPU without a bf16 kernel (which multiplies rounded copies).
fn packed_kernel<T: Real>(
    precision: ProductPrecision,
    m: usize,
    n: usize,
    work: usize,
) -> Option<kernel::KernelSpec<T>> {
    if m <= 1 || n <= 1 || work <= NAIVE_MAX_WORK {
        None
    } else if is_bf16::<T>(precision) {
        kernel::select_bf16::<T>()
    } else {
        Some(kernel::select::<T>())
    }
}

/// Name of the micro-kernel [`gemm_with`] uses for `T` at `precision` on
/// this CPU (for benchmark labels and bug reports), e.g.
/// `"avx2-fma f32 6x16"` or `"portable"`; bf16 products without a bf16
/// kernel name the f32 kernel that multiplies their rounded copies.
pub fn selected_kernel<T: Real>(precision: ProductPrecision) -> &'static str {
    match is_bf16::<T>(precision).then(kernel::select_bf16::<T>).flatten() {
        Some(spec) => spec.name,
        None => kernel::select::<T>().name,
    }
}

/// Whether bf16 products run on a bf16 kernel on this CPU (AVX512-BF16,
/// not switched off by `MOE_GEMM_NO_BF16`); without one they multiply
/// rounded copies with the f32 kernel, slower than f32 products.
pub fn bf16_kernel_available() -> bool {
    kernel::select_bf16::<f32>().is_some()
}

/// Raw view of a matrix.
fn raw<T>(x: &MatRef<'_, T>) -> RawRef<T> {
    RawRef {
        ptr: x.data.as_ptr(),
        rs: x.rs,
        cs: x.cs,
    }
}

/// Raw view of a matrix's transpose.
fn tr<T>(x: &MatRef<'_, T>) -> RawRef<T> {
    RawRef {
        ptr: x.data.as_ptr(),
        rs: x.cs,
        cs: x.rs,
    }
}

/// Transpose of a raw view.
fn tr_raw<T>(x: RawRef<T>) -> RawRef<T> {
    RawRef {
        ptr: x.ptr,
        rs: x.cs,
        cs: x.rs,
    }
}

/// Strides of one operand across the batch: element (b, i, j) is
/// `data[b * bs + i * rs + j * cs]`. A batch stride of 0 broadcasts the operand.
#[derive(Clone, Copy, Debug)]
pub struct BatchStrides {
    /// Batch stride in elements (0 broadcasts).
    pub bs: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

/// The A and B operands of a batch of products, checked to cover every entry.
struct BatchOperands<'a, T> {
    a: &'a [T],
    a_s: BatchStrides,
    b: &'a [T],
    b_s: BatchStrides,
}

impl<'a, T> BatchOperands<'a, T> {
    /// Panics (naming `op`) unless `a` and `b` cover `batch` entries of
    /// (m×k)·(k×n); with `k == 0` they are never read and may be empty.
    #[allow(clippy::too_many_arguments)]
    fn checked(
        op: &str,
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
        a: &'a [T],
        a_s: BatchStrides,
        b: &'a [T],
        b_s: BatchStrides,
    ) -> Self {
        let span = |s: BatchStrides, rows, cols| {
            extent(rows, cols, s.rs, s.cs)
                .and_then(|e| (batch - 1).checked_mul(s.bs)?.checked_add(e))
                .unwrap_or(usize::MAX)
        };
        let (a_need, b_need) = if k == 0 || batch == 0 {
            (0, 0)
        } else {
            (span(a_s, m, k), span(b_s, k, n))
        };
        assert!(
            a_need <= a.len() && b_need <= b.len(),
            "{op}: batch of {batch} ({m}×{k})·({k}×{n}) needs A {a_need}, B {b_need} elements; \
             slices have {}, {}",
            a.len(),
            b.len()
        );
        Self { a, a_s, b, b_s }
    }

    /// Entry `i` of A (empty past the slice, which only happens when k == 0).
    fn a(&self, i: usize) -> MatRef<'a, T> {
        MatRef {
            data: self.a.get(i * self.a_s.bs..).unwrap_or(&[]),
            rs: self.a_s.rs,
            cs: self.a_s.cs,
        }
    }

    /// Entry `i` of B (empty past the slice, which only happens when k == 0).
    fn b(&self, i: usize) -> MatRef<'a, T> {
        MatRef {
            data: self.b.get(i * self.b_s.bs..).unwrap_or(&[]),
            rs: self.b_s.rs,
            cs: self.b_s.cs,
        }
    }
}

/// Per-matrix work below which a batch runs one matrix per thread rather than
/// splitting each matrix across threads.
const BATCH_SPLIT_WORK: usize = 1 << 24;

/// Batched `c[b] = alpha · a[b] · b[b] + beta · c[b]` for `batch` independent
/// products, with the operands read at `precision`.
///
/// Small matrices run in parallel across the batch (each on one thread); large
/// ones one after another, each split across threads. If the C matrices of
/// different batch entries overlap (`c_s.bs` smaller than one matrix), the
/// batch runs in order, as the sequential definition implies.
///
/// # Panics
/// If a slice is too short for the last batch entry.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched<T: Real>(
    precision: ProductPrecision,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    a_s: BatchStrides,
    b: &[T],
    b_s: BatchStrides,
    beta: T,
    c: &mut [T],
    c_s: BatchStrides,
) {
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    let ops = BatchOperands::checked("gemm_batched", batch, m, n, k, a, a_s, b, b_s);
    let c_len = extent(m, n, c_s.rs, c_s.cs).unwrap_or(usize::MAX);
    let c_need = (batch - 1).checked_mul(c_s.bs).and_then(|o| o.checked_add(c_len));
    assert!(
        c_need.is_some_and(|need| need <= c.len()),
        "gemm_batched: batch of {batch} ({m}×{k})·({k}×{n}) needs C {c_need:?} elements; slice has {}",
        c.len()
    );
    let disjoint = batch == 1 || c_s.bs >= c_len;
    let threads = rayon::current_num_threads();
    let work = m.saturating_mul(n).saturating_mul(k);
    if disjoint && threads > 1 && batch > 1 && work < BATCH_SPLIT_WORK {
        let c_ptr = RawMut {
            ptr: c.as_mut_ptr(),
            rs: c_s.rs,
            cs: c_s.cs,
        };
        (0..batch).into_par_iter().for_each(|i| {
            // SAFETY: entry i's C occupies [i·bs, i·bs + c_len), inside `c` (checked)
            // and disjoint from every other entry's because bs ≥ c_len.
            let data = unsafe { std::slice::from_raw_parts_mut(c_ptr.base().add(i * c_s.bs), c_len) };
            let mut ci = MatMut {
                data,
                rs: c_s.rs,
                cs: c_s.cs,
            };
            gemm_on(1, precision, m, n, k, alpha, &ops.a(i), &ops.b(i), beta, &mut ci);
        });
    } else {
        for i in 0..batch {
            let mut ci = MatMut {
                data: &mut c[i * c_s.bs..],
                rs: c_s.rs,
                cs: c_s.cs,
            };
            gemm_on(threads, precision, m, n, k, alpha, &ops.a(i), &ops.b(i), beta, &mut ci);
        }
    }
}

#[cfg(test)]
mod tests;
