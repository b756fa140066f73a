//! Products into a new buffer, without zeroing it first.
//!
//! A tensor op's matmul writes a fresh output. Filling it with zeros and
//! then running the product with `beta = 0` passes over the whole output
//! twice; on a bf16 training step the zeroing (`memset` of reused heap
//! chunks) took about 4% of the time, most of it on the largest outputs,
//! such as the LM head's logits. The packed driver never reads C when
//! `beta = 0` (the micro-kernels store, and ragged edge tiles are copied in
//! only for `beta != 0`), so here it writes straight into the allocation's
//! spare capacity through raw pointers. The other paths (direct loop,
//! matrix-vector, `k = 0`, bf16 without a bf16 kernel) are small or rare:
//! they get a zeroed buffer and the usual call.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::driver::{self, RawMut};
use super::{
    check, gemm_on, packed_kernel, raw, threads_for, BatchOperands, BatchStrides, MatMut, MatRef, ProductPrecision,
    BATCH_SPLIT_WORK,
};
use crate::cpu::write_once::written_once;
use crate::Real;

/// The `batch` products `alpha · a[i] · b[i]`, each m×n, as one new
/// row-major `[batch, m, n]` vector: the same values, bit for bit, as
/// [`super::gemm_batched`] with `beta = 0` into a zeroed contiguous C, without
/// the pass that zeroes it.
///
/// # Panics
/// If a slice is too short for the last batch entry, or `batch · m · n`
/// overflows.
///
/// # Example
/// ```
/// use moe_kernels::cpu::gemm::{gemm_batched_new, BatchStrides, ProductPrecision};
///
/// // Two 1×2 · 2×1 products.
/// let a = [1.0f32, 2.0, 3.0, 4.0];
/// let b = [5.0f32, 6.0, 7.0, 8.0];
/// let s = BatchStrides { bs: 2, rs: 2, cs: 1 };
/// let bs = BatchStrides { bs: 2, rs: 1, cs: 1 };
/// let c = gemm_batched_new(ProductPrecision::Full, 2, 1, 1, 2, 1.0, &a, s, &b, bs);
/// assert_eq!(c, [17.0, 53.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched_new<T: Real>(
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
) -> Vec<T> {
    new_with_fill(precision, batch, m, n, k, alpha, a, a_s, b, b_s, None)
}

/// [`gemm_batched_new`], with the packed path's buffer first filled with
/// `poison` when given (tests: a NaN there shows any element read before
/// it is written, or never written).
#[allow(clippy::too_many_arguments)]
fn new_with_fill<T: Real>(
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
    poison: Option<T>,
) -> Vec<T> {
    let mn = m
        .checked_mul(n)
        .unwrap_or_else(|| panic!("gemm_batched_new: {m}×{n} overflows"));
    let len = batch
        .checked_mul(mn)
        .unwrap_or_else(|| panic!("gemm_batched_new: a batch of {batch} {m}×{n} matrices overflows"));
    if len == 0 {
        return Vec::new();
    }
    let ops = BatchOperands::checked("gemm_batched_new", batch, m, n, k, a, a_s, b, b_s);
    let threads = rayon::current_num_threads();
    let work = mn.saturating_mul(k);
    let entry = |threads: usize, i: usize, ci: &mut [MaybeUninit<T>]| {
        product_into(threads, precision, m, n, k, alpha, &ops.a(i), &ops.b(i), ci, poison);
    };
    // product_into writes every element of each m·n chunk; the chunks tile the output.
    written_once(len, |out| {
        if threads > 1 && batch > 1 && work < BATCH_SPLIT_WORK {
            out.par_chunks_mut(mn).enumerate().for_each(|(i, ci)| entry(1, i, ci));
        } else {
            out.chunks_mut(mn).enumerate().for_each(|(i, ci)| entry(threads, i, ci));
        }
    })
}

/// `c = alpha · a · b` for a contiguous row-major m×n `c` (m, n ≥ 1) whose
/// elements may be uninitialised; every one of them is written. `poison`
/// (tests) fills the packed path's buffer first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_into<T: Real>(
    threads: usize,
    precision: ProductPrecision,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: &mut [MaybeUninit<T>],
    poison: Option<T>,
) {
    debug_assert_eq!(c.len(), m * n);
    let work = m.saturating_mul(n).saturating_mul(k);
    let spec = if k == 0 || alpha == T::zero() {
        None
    } else {
        packed_kernel::<T>(precision, m, n, work)
    };
    let Some(spec) = spec else {
        c.fill(MaybeUninit::new(T::zero()));
        // SAFETY: every element was just initialised, and MaybeUninit<T> has T's layout.
        let data = unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr().cast::<T>(), c.len()) };
        let mut cm = MatMut { data, rs: n, cs: 1 };
        return gemm_on(threads, precision, m, n, k, alpha, a, b, T::zero(), &mut cm);
    };
    if let Some(p) = poison {
        c.fill(MaybeUninit::new(p));
    }
    check("A", m, k, a.rs, a.cs, a.data.len());
    check("B", k, n, b.rs, b.cs, b.data.len());
    let c = RawMut {
        ptr: c.as_mut_ptr().cast::<T>(),
        rs: n,
        cs: 1,
    };
    // SAFETY: A and B were checked against their slices; C is this call's
    // own m×n chunk, which aliases neither. With beta = 0 the driver stores
    // each element before any read of it (see the module comment).
    unsafe {
        driver::gemm_packed(
            &spec,
            m,
            n,
            k,
            alpha,
            raw(a),
            raw(b),
            T::zero(),
            c,
            threads_for(work, threads),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::gemm_batched;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Every path (direct loop, both vector shapes, k = 0, alpha = 0, packed
    /// with ragged edges, several k blocks, a parallel batch, a transposed
    /// operand, bf16) gives gemm_batched's bits into a zeroed C, and the
    /// packed path writes every element of a NaN-poisoned buffer before
    /// reading it.
    #[test]
    fn matches_gemm_batched_into_zeros_on_every_path() {
        // (batch, m, n, k, alpha, A transposed)
        let cases = [
            (1, 3, 4, 5, 1.0, false),
            (1, 1, 300, 64, 1.0, false),
            (1, 300, 1, 64, 0.5, true),
            (2, 40, 50, 0, 1.0, false),
            (1, 40, 50, 60, 0.0, false),
            (1, 130, 70, 33, 1.0, false),
            (1, 300, 520, 600, 0.25, true),
            (3, 37, 45, 29, 1.0, false),
            (4, 64, 96, 1100, 1.0, true),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for precision in [ProductPrecision::Full, ProductPrecision::Bf16] {
            for (case, &(batch, m, n, k, alpha, a_t)) in cases.iter().enumerate() {
                let a = values(batch * m * k, 2 * case as u64 + 1);
                let b = values(batch * k * n, 2 * case as u64 + 2);
                let a_s = if a_t {
                    BatchStrides {
                        bs: m * k,
                        rs: 1,
                        cs: m,
                    }
                } else {
                    BatchStrides {
                        bs: m * k,
                        rs: k,
                        cs: 1,
                    }
                };
                let b_s = BatchStrides {
                    bs: k * n,
                    rs: n,
                    cs: 1,
                };
                let c_s = BatchStrides {
                    bs: m * n,
                    rs: n,
                    cs: 1,
                };
                let label = format!("{precision:?} case {case}: {batch}×({m}×{k})·({k}×{n})");
                pool.install(|| {
                    let mut want = vec![0.0f32; batch * m * n];
                    gemm_batched(precision, batch, m, n, k, alpha, &a, a_s, &b, b_s, 0.0, &mut want, c_s);
                    let got = new_with_fill(precision, batch, m, n, k, alpha, &a, a_s, &b, b_s, Some(f32::NAN));
                    let plain = gemm_batched_new(precision, batch, m, n, k, alpha, &a, a_s, &b, b_s);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{label} (poisoned)");
                    assert_eq!(bits(&plain), bits(&want), "{label}");
                });
            }
        }
    }

    #[test]
    fn empty_products_are_empty() {
        let s = BatchStrides { bs: 0, rs: 0, cs: 0 };
        assert!(gemm_batched_new::<f32>(ProductPrecision::Full, 0, 3, 3, 3, 1.0, &[], s, &[], s).is_empty());
        assert!(gemm_batched_new::<f32>(ProductPrecision::Full, 2, 0, 3, 3, 1.0, &[], s, &[], s).is_empty());
    }

    #[test]
    #[should_panic(expected = "gemm_batched_new: batch of 2")]
    fn short_operands_panic_with_the_shapes() {
        let s = BatchStrides { bs: 4, rs: 2, cs: 1 };
        gemm_batched_new::<f32>(ProductPrecision::Full, 2, 2, 2, 2, 1.0, &[0.0; 4], s, &[0.0; 8], s);
    }
}
