//! A product handed out a few rows at a time, for a consumer that needs only
//! one chunk of C at once: the LM head's logits, which the fused
//! cross-entropy turns into a loss and a gradient while they are still in
//! cache, never writing all `[N, V]` of them to memory.
//!
//! B is packed once for all chunks, and every chunk runs the packed driver
//! on it, so each value has the bits one [`gemm_with`] call over all rows
//! gives: a value depends on the k blocking and the micro-kernel, which the
//! chunking does not change.

use super::driver::{in_pool, packed_body, BSource, PackedB, RawMut};
use super::{check, gemm_with, packed_kernel, raw, threads_for, MatMut, MatRef, ProductPrecision};
use crate::Real;

/// Calls `f(first_row, rows, c)` for `A · B` (m×k times k×n) in chunks of
/// `rows` rows (the last one shorter), `c` holding the chunk's `rows × n`
/// products row-major: the values [`gemm_with`] gives with `alpha = 1`,
/// `beta = 0`, to the bit. Stops at and returns `f`'s first error. Panics,
/// like [`gemm_with`], when a view reaches past its slice, and on `rows == 0`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_row_chunks<T: Real, E: Send>(
    precision: ProductPrecision,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    rows: usize,
    mut f: impl FnMut(usize, usize, &[T]) -> Result<(), E> + Send,
) -> Result<(), E> {
    assert!(rows > 0, "gemm_row_chunks: chunks of 0 rows");
    check("A", m, k, a.rs, a.cs, a.data.len());
    check("B", k, n, b.rs, b.cs, b.data.len());
    let work = m.saturating_mul(n).saturating_mul(k);
    let spec = if k == 0 || m == 0 {
        None
    } else {
        packed_kernel::<T>(precision, m, n, work)
    };
    let Some(spec) = spec else {
        // Small or degenerate: one product as gemm_with computes it, handed out in chunks.
        let mut c = vec![T::zero(); m * n];
        let cm = MatMut {
            data: &mut c,
            rs: n,
            cs: 1,
        };
        gemm_with(precision, m, n, k, T::one(), a, b, T::zero(), cm);
        for r0 in (0..m).step_by(rows) {
            let len = rows.min(m - r0);
            f(r0, len, &c[r0 * n..(r0 + len) * n])?;
        }
        return Ok(());
    };
    let threads = threads_for(work, rayon::current_num_threads());
    // Enter the pool once for all chunks.
    in_pool(threads, || {
        // SAFETY: B was checked against its slice.
        let packed = unsafe { PackedB::new(&spec, k, n, raw(&b), threads) };
        let mut c = vec![T::zero(); rows.min(m) * n];
        for r0 in (0..m).step_by(rows) {
            let len = rows.min(m - r0);
            let a_rows = MatRef {
                data: &a.data[r0 * a.rs..],
                ..a
            };
            let out = RawMut {
                ptr: c.as_mut_ptr(),
                rs: n,
                cs: 1,
            };
            let chunk_threads = threads_for(len.saturating_mul(n).saturating_mul(k), threads);
            // SAFETY: rows r0.. of A lie in its checked extent; `c` holds
            // len × n elements and is aliased by nothing; B is packed for
            // this spec, k and n.
            unsafe {
                packed_body(
                    &spec,
                    len,
                    n,
                    k,
                    T::one(),
                    raw(&a_rows),
                    BSource::Packed(&packed),
                    T::zero(),
                    out,
                    chunk_threads,
                )
            };
            f(r0, len, &c[..len * n])?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 6007 + seed * 7717) % 3001) as f32 / 300.0 - 5.0)
            .collect()
    }

    /// The chunks, concatenated, against one gemm_with call, to the bit.
    fn same_bits(precision: ProductPrecision, m: usize, n: usize, k: usize, b_transposed: bool, rows: usize) {
        let a = floats(m * k, 1);
        let b = floats(k * n, 2);
        let bref = if b_transposed {
            MatRef { data: &b, rs: 1, cs: k }
        } else {
            MatRef { data: &b, rs: n, cs: 1 }
        };
        let aref = MatRef { data: &a, rs: k, cs: 1 };
        let mut want = vec![0.0f32; m * n];
        let cm = MatMut {
            data: &mut want,
            rs: n,
            cs: 1,
        };
        gemm_with(precision, m, n, k, 1.0, aref, bref, 0.0, cm);
        let mut got = Vec::new();
        let mut next = 0;
        gemm_row_chunks::<f32, ()>(precision, m, n, k, aref, bref, rows, |r0, len, c| {
            assert_eq!((r0, c.len()), (next, len * n));
            assert!(len <= rows && len > 0);
            next += len;
            got.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(next, m);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got),
            bits(&want),
            "{precision:?} {m}×{n}×{k} rows {rows} bᵀ {b_transposed}"
        );
    }

    #[test]
    fn chunks_have_the_bits_of_one_product() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            for precision in [ProductPrecision::Full, ProductPrecision::Bf16] {
                for b_transposed in [false, true] {
                    // Packed (several k blocks, ragged edges; chunks smaller
                    // than, equal to and larger than m), the direct loop,
                    // vectors and k = 0.
                    for (m, n, k) in [
                        (300, 70, 1100),
                        (64, 300, 48),
                        (5, 3, 4),
                        (1, 40, 50),
                        (40, 1, 50),
                        (20, 20, 0),
                    ] {
                        for rows in [7, 64, 300, 1000] {
                            same_bits(precision, m, n, k, b_transposed, rows);
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn the_first_error_stops_the_chunks() {
        let a = floats(300 * 40, 3);
        let b = floats(40 * 50, 4);
        let mut seen = 0;
        let r = gemm_row_chunks(
            ProductPrecision::Full,
            300,
            50,
            40,
            MatRef {
                data: &a,
                rs: 40,
                cs: 1,
            },
            MatRef {
                data: &b,
                rs: 50,
                cs: 1,
            },
            64,
            |r0, _, _| {
                seen += 1;
                if r0 == 64 {
                    Err("stop")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!((r, seen), (Err("stop"), 2));
    }
}
