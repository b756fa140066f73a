//! Products whose A operand is stored in bf16 (its bits, as `u16`), in bf16
//! precision: what the fused LM-head cross-entropy's backward multiplies.
//! Stored as bf16, the logits' gradient takes half the memory and half the
//! reads of f32, and its packing skips the conversion.
//!
//! The result is bit for bit [`gemm_with`] in [`ProductPrecision::Bf16`] on
//! the same values widened to f32 (bf16 → f32 is exact and rounding it back
//! is the identity), which is also the fallback on CPUs without the bf16
//! kernel and for shapes the packed driver does not take.

use super::bf16::{pack_a_bf16_columns, pack_a_words};
use super::driver::{gemm_packed, gemm_packed_unsplit, RawMut};
use super::pack::RawRef;
use super::{check, gemm_with, naive, non_overlapping, packed_kernel, raw, threads_for};
use super::{MatMut, MatRef, ProductPrecision};

/// A strided matrix of bf16 bits: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Bf16Ref<'a> {
    /// The bits, as `half::bf16::to_bits` gives them.
    pub data: &'a [u16],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

/// `c = alpha · a · b + beta · c` with `a` (m×k) in bf16 and `b` (k×n)
/// rounded to bf16, f32 accumulation: [`gemm_with`] in bf16 precision with
/// A widened to f32, to the bit. Fast where A is row-major with an even row
/// stride and even k (pairs along k are then 32-bit words) or column-major
/// (`rs == 1`) and C row-major. Panics, like [`gemm_with`], when a view
/// reaches past its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_a(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Bf16Ref<'_>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
) {
    if m == 0 || n == 0 {
        return;
    }
    check("C", m, n, c.rs, c.cs, c.data.len());
    check("A", m, k, a.rs, a.cs, a.data.len());
    check("B", k, n, b.rs, b.cs, b.data.len());
    let work = m.saturating_mul(n).saturating_mul(k);
    let spec = if k == 0 || alpha == 0.0 || c.cs != 1 || !non_overlapping(m, n, c.rs, c.cs) {
        None
    } else {
        packed_kernel::<f32>(ProductPrecision::Bf16, m, n, work)
    };
    let threads = threads_for(work, rayon::current_num_threads());
    let words =
        a.cs == 1 && a.rs.is_multiple_of(2) && k.is_multiple_of(2) && a.data.as_ptr().cast::<u32>().is_aligned();
    let (spec, b_raw) = match spec {
        Some(spec) if words || a.rs == 1 => (spec, raw(&b)),
        _ => return widened(m, n, k, alpha, a, b, beta, c),
    };
    let c_raw = RawMut {
        ptr: c.data.as_mut_ptr(),
        rs: c.rs,
        cs: c.cs,
    };
    // SAFETY: every view was checked against its slice; C is row-major, does
    // not overlap itself and, as a `&mut`, aliases neither operand. The A
    // views below are what their packers read: words within the checked
    // extent (k even, rows even in length), or u16 columns stepped by `a.cs`.
    unsafe {
        if words {
            let a_words = RawRef {
                ptr: a.data.as_ptr().cast::<f32>(),
                rs: a.rs / 2,
                cs: 1,
            };
            let spec = super::kernel::KernelSpec {
                pack_a: pack_a_words::<f32>,
                ..spec
            };
            gemm_packed(&spec, m, n, k, alpha, a_words, b_raw, beta, c_raw, threads);
        } else {
            let a_cols = RawRef {
                ptr: a.data.as_ptr().cast::<f32>(),
                rs: 1,
                cs: a.cs,
            };
            let spec = super::kernel::KernelSpec {
                pack_a: pack_a_bf16_columns::<f32>,
                ..spec
            };
            // Unsplit: a band split would offset A's pointer in f32 units.
            gemm_packed_unsplit(&spec, m, n, k, alpha, a_cols, b_raw, beta, c_raw, threads);
        }
    }
}

/// The reference path: A widened to f32 over the extent its view reaches.
#[allow(clippy::too_many_arguments)]
fn widened(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Bf16Ref<'_>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
) {
    if k == 0 || alpha == 0.0 {
        let mut c = c;
        return naive::scale(m, n, beta, &mut c);
    }
    let len = super::extent(m, k, a.rs, a.cs).unwrap_or(0);
    let wide: Vec<f32> = a.data[..len]
        .iter()
        .map(|&x| f32::from_bits(u32::from(x) << 16))
        .collect();
    let a = MatRef {
        data: &wide,
        rs: a.rs,
        cs: a.cs,
    };
    gemm_with(ProductPrecision::Bf16, m, n, k, alpha, a, b, beta, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::bf16::bf16_bits;

    /// bf16 bits of varied finite values.
    fn bits(n: usize, seed: usize) -> Vec<u16> {
        (0..n)
            .map(|i| bf16_bits(((i * 7919 + seed * 104_729) % 4001) as f32 / 400.0 - 5.0))
            .collect()
    }

    fn floats(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 6007 + seed * 7717) % 3001) as f32 / 300.0 - 5.0)
            .collect()
    }

    /// `gemm_bf16_a` against `gemm_with` on A widened to f32, to the bit, for
    /// A row-major (`col_major` false, row stride `k + pad`) or column-major.
    fn same_bits(m: usize, n: usize, k: usize, col_major: bool, pad: usize, alpha: f32, beta: f32) {
        let (rs, cs, len) = if col_major {
            (1, m + pad, (m + pad) * k)
        } else {
            (k + pad, 1, (k + pad) * m)
        };
        let a = bits(len, m + n);
        let wide: Vec<f32> = a.iter().map(|&x| f32::from_bits(u32::from(x) << 16)).collect();
        let b = floats(k * n, k);
        let c0 = floats(m * n, 3);
        let (mut got, mut want) = (c0.clone(), c0);
        let bref = MatRef { data: &b, rs: n, cs: 1 };
        gemm_bf16_a(
            m,
            n,
            k,
            alpha,
            Bf16Ref { data: &a, rs, cs },
            bref,
            beta,
            MatMut {
                data: &mut got,
                rs: n,
                cs: 1,
            },
        );
        gemm_with(
            ProductPrecision::Bf16,
            m,
            n,
            k,
            alpha,
            MatRef { data: &wide, rs, cs },
            bref,
            beta,
            MatMut {
                data: &mut want,
                rs: n,
                cs: 1,
            },
        );
        let b = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(b(&got), b(&want), "m {m} n {n} k {k} col_major {col_major} pad {pad}");
    }

    #[test]
    fn matches_the_widened_product_on_every_path() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            for col_major in [false, true] {
                // Packed and split (large m), ragged edges, several k blocks,
                // odd k (widened path when row-major), small (direct loop),
                // vectors, k = 0.
                for (m, n, k) in [
                    (300, 70, 1100),
                    (37, 45, 64),
                    (64, 33, 1031),
                    (5, 3, 4),
                    (1, 40, 50),
                    (40, 1, 50),
                    (20, 20, 0),
                ] {
                    for pad in [0, 2, 3] {
                        same_bits(m, n, k, col_major, pad, 1.0, 0.0);
                    }
                    same_bits(m, n, k, col_major, 0, -0.5, 0.75);
                }
            }
        });
    }
}
