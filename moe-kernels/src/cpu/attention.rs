//! Causal scaled-dot-product attention with grouped-query heads (GQA),
//! flash-attention style: forward and backward work on key tiles with an
//! online softmax and never hold a `T×T` matrix, only `[BR, BC]` score tiles
//! and `[BR, Dh]` accumulators per task. Forward saves the output and the row logsumexp;
//! backward recomputes probabilities per tile from them.
//!
//! ```text
//! q:   [B, Hq,  Tq, Dh]     k, v: [B, Hkv, Tk, Dh]     Hq = G · Hkv
//! o:   [B, Hq,  Tq, Dh]     lse:  [B, Hq, Tq]
//! query head h reads kv head h / G
//! ```
//! Causality is aligned bottom-right: query `i` sees keys `j ≤ i + (Tk − Tq)`,
//! which is the usual mask when `Tq == Tk` and the right one for decoding with
//! a KV cache (the new queries are the last `Tq` positions).
//!
//! Tile products go through [`gemm`](super::gemm::gemm) (below its threading
//! threshold for Dh ≤ 128, so one thread per task): its packed AVX2+FMA micro-kernel needed about half the CPU time of
//! vectorised axpy loops over transposed tiles, which were bound by loads and
//! stores (`examples/attention_speed.rs`, T = 512). The softmax steps run on
//! the score rows between the products. 128×128 tiles measured no slower
//! than 64×64 on small shapes and faster on T = 1024.
//!
//! Forward runs one task per (b, query head); backward one task per (b, kv head), which owns `dk`, `dv` and the `dq` of its G query
//! heads, so no gradient is ever added from two threads: results are bitwise
//! the same for any thread count.

mod backward;

pub use backward::attention_backward;

use rayon::prelude::*;

use super::gemm::{gemm_with, MatMut, MatRef, ProductPrecision};
use super::index::check_len;
use super::softmax::numel;
use super::softmax::vexp::{exp_sub_sum_inplace, row_max};
use crate::{KernelError, Real};

/// Query rows per tile.
const BR: usize = 128;
/// Keys per tile.
const BC: usize = 128;
/// Query rows per band of a tile the causal mask cuts: each band's products
/// stop at the last key its last row sees, which skips most of the masked
/// corner of a diagonal tile (a quarter of its work at 64 of 128 rows).
const BAND: usize = 64;
/// Multiply-adds below which a call stays on the calling thread.
const PAR_MIN_WORK: usize = 1 << 16;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Batch size B.
    pub b: usize,
    /// Query heads Hq (a multiple of `hkv`).
    pub hq: usize,
    /// Key/value heads Hkv.
    pub hkv: usize,
    /// Query length Tq.
    pub tq: usize,
    /// Key length Tk (≥ Tq).
    pub tk: usize,
    /// Head size Dh.
    pub dh: usize,
}

impl AttnDims {
    /// Self-attention over `t` tokens: `Tq = Tk = t`.
    pub fn causal(b: usize, hq: usize, hkv: usize, t: usize, dh: usize) -> Self {
        Self {
            b,
            hq,
            hkv,
            tq: t,
            tk: t,
            dh,
        }
    }

    /// Query heads per kv head.
    pub fn group(&self) -> usize {
        self.hq / self.hkv
    }

    /// Checks the head and length relations (configuration errors: callers
    /// validate them, so this panics) and returns the element counts of
    /// `(q, kv, lse)`.
    pub(crate) fn sizes(&self, op: &'static str) -> Result<(usize, usize, usize), KernelError> {
        assert!(
            self.hkv > 0 && self.hq.is_multiple_of(self.hkv),
            "{op}: Hq = {} is not a multiple of Hkv = {}",
            self.hq,
            self.hkv
        );
        assert!(self.tq <= self.tk, "{op}: Tq = {} exceeds Tk = {}", self.tq, self.tk);
        let q = numel(op, &[self.b, self.hq, self.tq, self.dh])?;
        let kv = numel(op, &[self.b, self.hkv, self.tk, self.dh])?;
        Ok((q, kv, self.b * self.hq * self.tq))
    }

    /// Multiply-adds of the forward pass (half the `Tq×Tk` pairs are masked).
    fn work(&self) -> usize {
        self.b
            .saturating_mul(self.hq)
            .saturating_mul(self.tq)
            .saturating_mul(self.tk)
            .saturating_mul(self.dh.max(1))
    }
}

/// Calls `f(first row, rows, keys)` for the bands of query rows `i0..i0+br`
/// (of Tq, `off` = Tk − Tq) against key tile `j0..j0+bc`: `keys` is how
/// many of the tile's keys the band's last row sees under the causal mask,
/// so the band's products read only those. Bands from the first whose rows
/// all see the whole tile are merged into one; bands that see no key are
/// skipped.
fn for_each_band(i0: usize, br: usize, j0: usize, bc: usize, off: usize, mut f: impl FnMut(usize, usize, usize)) {
    let keys = |row: usize| (i0 + row + off + 1).saturating_sub(j0).min(bc);
    let mut s0 = 0;
    while s0 < br {
        let mut end = (s0 + BAND).min(br);
        let kv = keys(end - 1);
        if kv == bc {
            // Later rows see at least as many keys.
            end = br;
        }
        if kv > 0 {
            f(s0, end - s0, kv);
        }
        s0 = end;
    }
}

/// A row-major view with `dh` columns starting at `data[0]`.
pub(crate) fn mat<T>(data: &[T], dh: usize) -> MatRef<'_, T> {
    MatRef { data, rs: dh, cs: 1 }
}

/// The default softmax scale, `1 / sqrt(Dh)`.
pub fn default_scale<T: Real>(dh: usize) -> T {
    T::from_f64_lossy(1.0 / (dh as f64).sqrt())
}

/// Causal attention forward.
///
/// ```text
/// q: [B, Hq, Tq, Dh]   k, v: [B, Hkv, Tk, Dh]
/// o: [B, Hq, Tq, Dh]   written: softmax(scale · q kᵀ + causal mask) v
/// lse: [B, Hq, Tq]     written: logsumexp of each masked score row, for backward
/// ```
/// The tile products (`q kᵀ` and `p v`) read their operands at `precision`
/// (bf16: as the GPU's tensor-core attention rounds them, with f32 softmax
/// statistics and probabilities). Errors if a buffer length does not match
/// `dims`; panics if `Hq % Hkv != 0` or `Tq > Tk` (callers validate the
/// configuration).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: Real>(
    o: &mut [T],
    lse: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    dims: AttnDims,
    scale: T,
    precision: ProductPrecision,
) -> Result<(), KernelError> {
    const OP: &str = "attention";
    let (nq, nkv, nl) = dims.sizes(OP)?;
    check_len(OP, "q", nq, q.len())?;
    check_len(OP, "k", nkv, k.len())?;
    check_len(OP, "v", nkv, v.len())?;
    check_len(OP, "o", nq, o.len())?;
    check_len(OP, "lse", nl, lse.len())?;
    let AttnDims {
        hq, hkv, tq, tk, dh, ..
    } = dims;
    if nl == 0 {
        return Ok(());
    }
    let g = dims.group();
    let head = |tiles: &mut Tiles<T>, (bh, (oh, lh)): (usize, (&mut [T], &mut [T]))| {
        let (b, h) = (bh / hq, bh % hq);
        let kv0 = (b * hkv + h / g) * tk * dh;
        let qh = &q[bh * tq * dh..(bh + 1) * tq * dh];
        let (kh, vh) = (&k[kv0..kv0 + tk * dh], &v[kv0..kv0 + tk * dh]);
        forward_head(oh, lh, qh, kh, vh, tq, tk, dh, scale, precision, tiles);
    };
    if dh == 0 {
        // Empty heads: every visible score is 0, so lse = ln(#visible keys).
        for (i, l) in lse.iter_mut().enumerate() {
            *l = T::from_f64_lossy((((i % tq) + tk - tq + 1) as f64).ln());
        }
        return Ok(());
    }
    if dims.work() >= PAR_MIN_WORK && dims.b * hq > 1 {
        o.par_chunks_mut(tq * dh)
            .zip(lse.par_chunks_mut(tq))
            .enumerate()
            .for_each_init(|| Tiles::new(dh), head);
    } else {
        let mut tiles = Tiles::new(dh);
        o.chunks_mut(tq * dh)
            .zip(lse.chunks_mut(tq))
            .enumerate()
            .for_each(|item| head(&mut tiles, item));
    }
    Ok(())
}

/// A forward task's buffers, reused from one (b, h) to the next (on the
/// heap: 64 KiB of scores in f32, 128 KiB in f64, too much for a worker
/// thread's stack frame). Each query tile zeroes `acc` and writes every score
/// it reads.
struct Tiles<T> {
    /// Scores, then probabilities: [BR, BC].
    s: Vec<T>,
    /// Unnormalised output rows: [BR, Dh].
    acc: Vec<T>,
}

impl<T: Real> Tiles<T> {
    fn new(dh: usize) -> Self {
        Self {
            s: vec![T::zero(); BR * BC],
            acc: vec![T::zero(); BR * dh],
        }
    }
}

/// One (b, h): `q, o: [Tq, Dh]`, `k, v: [Tk, Dh]`, `lse: [Tq]`.
#[allow(clippy::too_many_arguments)]
fn forward_head<T: Real>(
    o: &mut [T],
    lse: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    tq: usize,
    tk: usize,
    dh: usize,
    scale: T,
    precision: ProductPrecision,
    tiles: &mut Tiles<T>,
) {
    let off = tk - tq;
    let Tiles { s, acc } = tiles;
    let mut m = [T::neg_infinity(); BR]; // running row max
    let mut l = [T::zero(); BR]; // running row sum of exp(s − m)
    for i0 in (0..tq).step_by(BR) {
        let br = BR.min(tq - i0);
        acc.iter_mut().for_each(|a| *a = T::zero());
        m.iter_mut().for_each(|a| *a = T::neg_infinity());
        l.iter_mut().for_each(|a| *a = T::zero());
        // The tile's last query sees keys < i0 + br + off.
        let kend = (i0 + br + off).min(tk);
        for j0 in (0..kend).step_by(BC) {
            let bc = BC.min(kend - j0);
            let kj_t = MatRef {
                data: &k[j0 * dh..],
                rs: 1,
                cs: dh,
            };
            let vj = mat(&v[j0 * dh..], dh);
            for_each_band(i0, br, j0, bc, off, |s0, sn, kv| {
                // s[s0.., :kv] = scale · Q_band K_jᵀ
                gemm_with(
                    precision,
                    sn,
                    kv,
                    dh,
                    scale,
                    mat(&q[(i0 + s0) * dh..], dh),
                    kj_t,
                    T::zero(),
                    MatMut {
                        data: &mut s[s0 * BC..],
                        rs: BC,
                        cs: 1,
                    },
                );
                for r in s0..s0 + sn {
                    let row = &mut s[r * BC..r * BC + kv];
                    let nvis = (i0 + r + off + 1).saturating_sub(j0).min(kv);
                    // Masked keys get probability 0; a row with none visible adds nothing.
                    row[nvis..].iter_mut().for_each(|x| *x = T::zero());
                    if nvis == 0 {
                        continue;
                    }
                    let vis = &mut row[..nvis];
                    let m_new = m[r].max(row_max(vis));
                    let alpha = (m[r] - m_new).exp();
                    l[r] = l[r] * alpha + exp_sub_sum_inplace(vis, m_new);
                    if alpha != T::one() {
                        acc[r * dh..(r + 1) * dh].iter_mut().for_each(|x| *x *= alpha);
                    }
                    m[r] = m_new;
                }
                // acc[band] += P_band V_j[:kv]
                gemm_with(
                    precision,
                    sn,
                    dh,
                    kv,
                    T::one(),
                    MatRef {
                        data: &s[s0 * BC..],
                        rs: BC,
                        cs: 1,
                    },
                    vj,
                    T::one(),
                    MatMut {
                        data: &mut acc[s0 * dh..],
                        rs: dh,
                        cs: 1,
                    },
                );
            });
        }
        for r in 0..br {
            let qi = i0 + r;
            let inv = T::one() / l[r];
            for (ov, &av) in o[qi * dh..(qi + 1) * dh].iter_mut().zip(&acc[r * dh..(r + 1) * dh]) {
                *ov = av * inv;
            }
            lse[qi] = m[r] + l[r].ln();
        }
    }
}
