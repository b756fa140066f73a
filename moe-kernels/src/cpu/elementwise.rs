//! Elementwise maps over strided inputs, written into fresh contiguous outputs.
//!
//! Contiguous inputs take a flat (parallel) fast path; strided ones walk rows
//! (all dims but the last) and stride along the last dim, so a broadcast row
//! vector or a transposed matrix costs one offset computation per row.
//! Outputs are written once into a new allocation's spare capacity, not
//! zeroed first (on a training step the zeroing was a pass of its own over
//! every elementwise result, including each layout copy).

use std::mem::MaybeUninit;

use super::strided::Strided;
use super::write_once::written_once;
use rayon::prelude::*;

/// A chunk of a fresh output, written once per element.
type Out<'a, U> = &'a mut [MaybeUninit<U>];

/// Below this many elements threads cost more than they save.
pub const PAR_THRESHOLD: usize = 1 << 15;
const CHUNK: usize = 1 << 13;

/// `out[i] = f(x[i])` for every logical element of `x`.
pub fn unary<T, U, F>(x: &[T], xs: Strided<'_>, f: F) -> Vec<U>
where
    T: Copy + Send + Sync,
    U: Copy + Send + Sync,
    F: Fn(T) -> U + Sync + Send,
{
    let n = xs.len();
    if n == 0 {
        return Vec::new();
    }
    if xs.is_contiguous() {
        let src = &x[xs.offset..xs.offset + n];
        return written_once(n, |out| {
            if n >= PAR_THRESHOLD {
                out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| {
                    o.iter_mut().zip(s).for_each(|(o, &v)| {
                        o.write(f(v));
                    });
                });
            } else {
                out.iter_mut().zip(src).for_each(|(o, &v)| {
                    o.write(f(v));
                });
            }
        });
    }
    let (len, st) = xs.last();
    let rows = xs.row_offsets();
    let row = |o: Out<'_, U>, r: usize| {
        if st == 1 {
            // Unit stride (a head transpose, a narrowed row): a slice walk
            // the compiler vectorises, one bounds check per row.
            o.iter_mut().zip(&x[r..r + len]).for_each(|(o, &v)| {
                o.write(f(v));
            });
        } else {
            o.iter_mut().enumerate().for_each(|(j, o)| {
                o.write(f(x[r + j * st]));
            });
        }
    };
    let body = |(o, rs): (Out<'_, U>, &[usize])| o.chunks_mut(len).zip(rs).for_each(|(o, &r)| row(o, r));
    let g = rows_per_task(len);
    written_once(n, |out| {
        if n >= PAR_THRESHOLD {
            out.par_chunks_mut(len * g).zip(rows.par_chunks(g)).for_each(body);
        } else {
            body((out, &rows));
        }
    })
}

/// Rows of `len` elements per parallel task: about `CHUNK` elements, so that
/// short rows (a head of 32) are not one rayon task each.
fn rows_per_task(len: usize) -> usize {
    (CHUNK / len.max(1)).max(1)
}

/// `out[i] = f(a[i], b[i])`; `a` and `b` must already be broadcast to the same dims.
pub fn binary<A, B, U, F>(a: &[A], as_: Strided<'_>, b: &[B], bs: Strided<'_>, f: F) -> Vec<U>
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    U: Copy + Send + Sync,
    F: Fn(A, B) -> U + Sync + Send,
{
    debug_assert_eq!(as_.dims, bs.dims);
    let n = as_.len();
    if n == 0 {
        return Vec::new();
    }
    if as_.is_contiguous() && bs.is_contiguous() {
        let (sa, sb) = (&a[as_.offset..as_.offset + n], &b[bs.offset..bs.offset + n]);
        let body = |((o, x), y): ((Out<'_, U>, &[A]), &[B])| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                o.write(f(x, y));
            }
        };
        return written_once(n, |out| {
            if n >= PAR_THRESHOLD {
                out.par_chunks_mut(CHUNK)
                    .zip(sa.par_chunks(CHUNK))
                    .zip(sb.par_chunks(CHUNK))
                    .for_each(body);
            } else {
                body(((out, sa), sb));
            }
        });
    }
    let ((len, sta), (_, stb)) = (as_.last(), bs.last());
    let (ra, rb) = (as_.row_offsets(), bs.row_offsets());
    let row = |o: Out<'_, U>, oa: usize, ob: usize| {
        if sta == 1 && stb == 1 {
            // Both rows contiguous (e.g. a bias row broadcast over rows): vectorised.
            let (x, y) = (&a[oa..oa + len], &b[ob..ob + len]);
            o.iter_mut().zip(x).zip(y).for_each(|((o, &x), &y)| {
                o.write(f(x, y));
            });
        } else {
            o.iter_mut().enumerate().for_each(|(j, o)| {
                o.write(f(a[oa + j * sta], b[ob + j * stb]));
            });
        }
    };
    let body = |((o, ra), rb): ((Out<'_, U>, &[usize]), &[usize])| {
        o.chunks_mut(len)
            .zip(ra.iter().zip(rb))
            .for_each(|(o, (&oa, &ob))| row(o, oa, ob));
    };
    let g = rows_per_task(len);
    written_once(n, |out| {
        if n >= PAR_THRESHOLD {
            out.par_chunks_mut(len * g)
                .zip(ra.par_chunks(g))
                .zip(rb.par_chunks(g))
                .for_each(body);
        } else {
            body(((out, &ra), &rb));
        }
    })
}

/// `out[i] = f(a[i], b[i], c[i])` on contiguous, equally long slices.
pub fn ternary_contiguous<A, B, C, U, F>(a: &[A], b: &[B], c: &[C], f: F) -> Vec<U>
where
    A: Copy + Send + Sync,
    B: Copy + Send + Sync,
    C: Copy + Send + Sync,
    U: Copy + Send + Sync,
    F: Fn(A, B, C) -> U + Sync + Send,
{
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "ternary_contiguous: length mismatch"
    );
    let n = a.len();
    // Each chunk knows its start index, so one closure serves serial and parallel runs.
    let body = |(ci, o): (usize, Out<'_, U>)| {
        let start = ci * CHUNK;
        for (j, o) in o.iter_mut().enumerate() {
            let i = start + j;
            o.write(f(a[i], b[i], c[i]));
        }
    };
    written_once(n, |out| {
        if n >= PAR_THRESHOLD {
            out.par_chunks_mut(CHUNK).enumerate().for_each(body);
        } else {
            out.chunks_mut(CHUNK).enumerate().for_each(body);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_broadcasts_a_row_over_a_transposed_matrix() {
        // a: [[0,1,2],[3,4,5]] seen transposed as 3×2; b: a row [10, 20] broadcast.
        let a: Vec<f64> = (0..6).map(|v| v as f64).collect();
        let b = vec![10.0, 20.0];
        let out = binary(
            &a,
            Strided {
                dims: &[3, 2],
                strides: &[1, 3],
                offset: 0,
            },
            &b,
            Strided {
                dims: &[3, 2],
                strides: &[0, 1],
                offset: 0,
            },
            |x, y| x + y,
        );
        assert_eq!(out, vec![10.0, 23.0, 11.0, 24.0, 12.0, 25.0]);
    }

    /// Large strided views (the parallel path, a ragged last task), with a
    /// unit last stride (a head transpose [B, T, H, K] → [B, H, T, K]) and a
    /// non-unit one, against the element offsets `offsets` walks.
    #[test]
    fn large_strided_maps_match_the_offset_walk() {
        let (b, t, h, k) = (3, 67, 5, 37);
        let x: Vec<f64> = (0..b * t * h * k).map(|v| v as f64 * 0.5).collect();
        let views = [
            // [B, H, T, K] over [B, T, H, K] storage: unit last stride.
            ([b, h, t, k], [t * h * k, k, h * k, 1]),
            // [B, H, K, T]: the last dim walks T with stride H·K.
            ([b, h, k, t], [t * h * k, k, 1, h * k]),
        ];
        for (dims, strides) in views {
            let xs = Strided {
                dims: &dims,
                strides: &strides,
                offset: 0,
            };
            assert!(xs.len() >= PAR_THRESHOLD);
            let want: Vec<f64> = super::super::strided::offsets(xs).iter().map(|&o| x[o] + 1.0).collect();
            assert_eq!(unary(&x, xs, |v| v + 1.0), want, "unary over {dims:?}");
            let pair: Vec<f64> = want.iter().map(|&v| 2.0 * v - 1.0).collect();
            assert_eq!(binary(&x, xs, &x, xs, |p, q| p + q + 1.0), pair, "binary over {dims:?}");
        }
    }

    #[test]
    fn large_contiguous_unary_matches_serial() {
        let x: Vec<f32> = (0..100_000).map(|v| v as f32).collect();
        let out = unary(
            &x,
            Strided {
                dims: &[100_000],
                strides: &[1],
                offset: 0,
            },
            |v| v * 2.0,
        );
        assert!(out.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32));
    }

    /// Every map writes each element of its fresh output exactly once: small
    /// and large (parallel, ragged last chunk) contiguous inputs, against
    /// serial maps.
    #[test]
    fn contiguous_maps_write_every_element() {
        for n in [0, 1, 17, PAR_THRESHOLD + 3, 3 * CHUNK + 5 + PAR_THRESHOLD] {
            let a: Vec<f64> = (0..n).map(|v| v as f64 * 0.25).collect();
            let b: Vec<f64> = (0..n).map(|v| 1.0 - v as f64).collect();
            let c: Vec<i64> = (0..n as i64).collect();
            let s = Strided {
                dims: &[n],
                strides: &[1],
                offset: 0,
            };
            let want: Vec<f64> = a.iter().map(|v| v * 3.0).collect();
            assert_eq!(unary(&a, s, |v| v * 3.0), want, "unary, n = {n}");
            let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            assert_eq!(binary(&a, s, &b, s, |x, y| x - y), want, "binary, n = {n}");
            let want: Vec<f64> = (0..n).map(|i| a[i] * b[i] + c[i] as f64).collect();
            let got = ternary_contiguous(&a, &b, &c, |x, y, z| x * y + z as f64);
            assert_eq!(got, want, "ternary, n = {n}");
        }
    }
}
