//! Backward of causal GQA attention (flash-attention 2 recurrences).
//!
//! With `P = exp(scale·q kᵀ − lse)` rebuilt per key tile and
//! `Δ_i = Σ_d dO[i, d] · O[i, d]`:
//!
//! ```text
//! dV += Pᵀ dO        dP = dO Vᵀ        dS = P ⊙ (dP − Δ)
//! dQ += scale · dS K                   dK += scale · dSᵀ Q
//! ```
//!
//! A task owns one (batch, kv head): its k and v are packed once (kᵀ and vᵀ
//! as B for the score products, k as B for dQ), each of its G query heads
//! packs q and dO once (as A for the score products, as B for dK and dV).
//! The `[QB, KB]` tiles of P and dS are then packed per tile for the three
//! products that read them. dQ, dK and dV accumulate in buffers padded to
//! whole micro-kernel tiles and are copied out at the end.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{row_major, transposed, with_spare, AttnDims, PAR_MIN_WORK};
use crate::cpu::gemm::{Packed, PanelBuf, PanelKernel, ProductPrecision};
use crate::cpu::index::check_len;
use crate::cpu::softmax::vexp::{dot, probs_and_score_grads};
use crate::cpu::write_once::written_once;
use crate::{KernelError, Real};

/// Causal attention backward.
///
/// ```text
/// d_o:  [B, Hq, Tq, Dh]   gradient of o
/// q:    [B, Hq, Tq, Dh]   k, v: [B, Hkv, Tk, Dh]   inputs of forward
/// o:    [B, Hq, Tq, Dh]   lse: [B, Hq, Tq]         saved by forward
/// dq:   [B, Hq, Tq, Dh]   returned
/// dk, dv: [B, Hkv, Tk, Dh] returned, summed over the G query heads of each kv head
/// ```
/// `scale` must be the one forward used; the five tile products read their
/// operands at `precision`, like forward's. The gradients are new vectors
/// written once (no zeroing pass). Errors if an input's length does not
/// match `dims`; panics on an invalid head or length relation (see forward).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn attention_backward<T: Real>(
    d_o: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    lse: &[T],
    dims: AttnDims,
    scale: T,
    precision: ProductPrecision,
) -> Result<(Vec<T>, Vec<T>, Vec<T>), KernelError> {
    let (nq, nkv, nl) = dims.sizes(OP)?;
    for (name, len) in [("d_o", d_o.len()), ("q", q.len()), ("o", o.len())] {
        check_len(OP, name, nq, len)?;
    }
    for (name, len) in [("k", k.len()), ("v", v.len())] {
        check_len(OP, name, nkv, len)?;
    }
    check_len(OP, "lse", nl, lse.len())?;
    let (mut dk_out, mut dv_out) = (Vec::new(), Vec::new());
    let dq_out = written_once(nq, |dq| {
        dk_out = written_once(nkv, |dk| {
            dv_out = written_once(nkv, |dv| {
                backward_into([dq, dk, dv], [d_o, q, k, v, o, lse], dims, scale, precision)
            });
        });
    });
    Ok((dq_out, dk_out, dv_out))
}

/// The op name backward's errors carry.
const OP: &str = "attention_backward";

/// Writes every slot of `[dq, dk, dv]` from `[d_o, q, k, v, o, lse]`
/// (lengths checked).
fn backward_into<T: Real>(
    [dq, dk, dv]: [&mut [MaybeUninit<T>]; 3],
    [d_o, q, k, v, o, lse]: [&[T]; 6],
    dims: AttnDims,
    scale: T,
    precision: ProductPrecision,
) {
    let AttnDims { hkv, tq, tk, dh, .. } = dims;
    if dq.is_empty() || dk.is_empty() {
        // Nothing to multiply; every gradient is 0 (or empty).
        for x in dq.iter_mut().chain(dk.iter_mut()).chain(dv.iter_mut()) {
            x.write(T::zero());
        }
        return;
    }
    let g = dims.group();
    let (qg, kvh) = (g * tq * dh, tk * dh); // elements per task of q-like and kv-like buffers
    let kern = PanelKernel::<T>::new(precision);
    #[allow(clippy::type_complexity)]
    let task = |scratch: &mut Tiles<T>, (bk, (dqg, (dkh, dvh))): (usize, (Out<'_, T>, (Out<'_, T>, Out<'_, T>)))| {
        let (qs, ls) = (bk * qg..(bk + 1) * qg, bk * g * tq..(bk + 1) * g * tq);
        let ks = bk * kvh..(bk + 1) * kvh;
        let a = GroupIn {
            d_o: &d_o[qs.clone()],
            q: &q[qs.clone()],
            o: &o[qs],
            lse: &lse[ls],
            k: &k[ks.clone()],
            v: &v[ks],
            g,
            tq,
            tk,
            dh,
            scale,
        };
        backward_group(dqg, dkh, dvh, &a, &kern, scratch);
    };
    let groups = dims.b * hkv;
    if dims.work() >= PAR_MIN_WORK && groups > 1 {
        dq.par_chunks_mut(qg)
            .zip(dk.par_chunks_mut(kvh).zip(dv.par_chunks_mut(kvh)))
            .enumerate()
            .for_each(|item| with_spare(|tiles| task(tiles, item)));
    } else {
        with_spare(|tiles| {
            dq.chunks_mut(qg)
                .zip(dk.chunks_mut(kvh).zip(dv.chunks_mut(kvh)))
                .enumerate()
                .for_each(|item| task(tiles, item))
        });
    }
}

/// Output slots, each written once.
type Out<'a, T> = &'a mut [MaybeUninit<T>];

/// Key rows per tile (a multiple of every kernel's NR and of the pair width).
const KB: usize = 128;
/// Query rows per tile, rounded down to whole row panels of MR.
const QB: usize = 128;

/// A task's buffers, reused from one (b, kv head) to the next: packing
/// writes every slot it hands out, and every tile element a product or the
/// softmax reads is written first in the same tile.
#[derive(Default)]
struct Tiles<T> {
    /// kᵀ and vᵀ as B (depth Dh, one column per key), k as B (depth Tk).
    kt: PanelBuf<T>,
    vt: PanelBuf<T>,
    k: PanelBuf<T>,
    /// A query head's q and dO as A (depth Dh) and as B (depth Tq).
    qa: PanelBuf<T>,
    doa: PanelBuf<T>,
    qb: PanelBuf<T>,
    dob: PanelBuf<T>,
    /// The tile operand being multiplied: Pᵀ, dS or dSᵀ.
    tile: PanelBuf<T>,
    /// Probabilities of a tile: `[QB, KB]`.
    p: Vec<T>,
    /// dP, then dS, of a tile: `[QB, KB]`.
    ds: Vec<T>,
    /// Δ_i = dO_i · O_i: `[Tq]`.
    delta: Vec<T>,
    /// Gradient accumulators in whole tiles, `Dh` padded to NR columns:
    /// dQ of one query head `[Tq + MR, ·]`, dK and dV `[Tk + MR, ·]`.
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
}

/// Inputs of one (b, kv head) task.
struct GroupIn<'a, T> {
    /// `[G, Tq, Dh]` each.
    d_o: &'a [T],
    q: &'a [T],
    o: &'a [T],
    /// `[G, Tq]`.
    lse: &'a [T],
    /// `[Tk, Dh]` each.
    k: &'a [T],
    v: &'a [T],
    g: usize,
    tq: usize,
    tk: usize,
    dh: usize,
    scale: T,
}

/// The packed operands of one query head against its kv head.
struct HeadPanels<T> {
    qa: Packed<T>,
    doa: Packed<T>,
    qb: Packed<T>,
    dob: Packed<T>,
    kt: Packed<T>,
    vt: Packed<T>,
    k: Packed<T>,
}

/// One (b, kv head): every slot of `dq: [G, Tq, Dh]`, `dk, dv: [Tk, Dh]` written.
fn backward_group<T: Real>(
    dq: Out<'_, T>,
    dk: Out<'_, T>,
    dv: Out<'_, T>,
    a: &GroupIn<'_, T>,
    kern: &PanelKernel<T>,
    t: &mut Tiles<T>,
) {
    let GroupIn { tq, tk, dh, .. } = *a;
    let (mr, nr) = (kern.mr(), kern.nr());
    let dhp = dh.div_ceil(nr) * nr;
    let kt = kern.pack_b(transposed(a.k, dh), dh, tk, &mut t.kt);
    let vt = kern.pack_b(transposed(a.v, dh), dh, tk, &mut t.vt);
    let kk = kern.pack_b(row_major(a.k, dh), tk, dh, &mut t.k);
    let qb_rows = (QB / mr).max(1) * mr;
    t.p.resize(qb_rows * KB, T::zero());
    t.ds.resize(qb_rows * KB, T::zero());
    t.delta.resize(tq, T::zero());
    t.dq.resize((tq + mr) * dhp, T::zero());
    for acc in [&mut t.dk, &mut t.dv] {
        acc.clear();
        acc.resize((tk + mr) * dhp, T::zero());
    }
    for gi in 0..a.g {
        let rows = gi * tq * dh..(gi + 1) * tq * dh;
        let (qh, doh, oh) = (&a.q[rows.clone()], &a.d_o[rows.clone()], &a.o[rows.clone()]);
        let lh = &a.lse[gi * tq..(gi + 1) * tq];
        for (i, dl) in t.delta.iter_mut().enumerate() {
            *dl = dot(&doh[i * dh..(i + 1) * dh], &oh[i * dh..(i + 1) * dh]);
        }
        let panels = HeadPanels {
            qa: kern.pack_a(row_major(qh, dh), tq, dh, &mut t.qa),
            doa: kern.pack_a(row_major(doh, dh), tq, dh, &mut t.doa),
            qb: kern.pack_b(row_major(qh, dh), tq, dh, &mut t.qb),
            dob: kern.pack_b(row_major(doh, dh), tq, dh, &mut t.dob),
            kt,
            vt,
            k: kk,
        };
        t.dq.fill(T::zero());
        let off = tk - tq;
        for kb0 in (0..tk).step_by(KB) {
            // Queries from kb0 − off on see key kb0; the first tile starts
            // at the row panel that holds that query.
            let first = kb0.saturating_sub(off);
            for qb0 in (first - first % mr..tq).step_by(qb_rows) {
                let tile = TileAt {
                    qb0,
                    qbw: qb_rows.min(tq - qb0),
                    kb0,
                    kbw: KB.min(tk - kb0),
                    off,
                    dh,
                    dhp,
                };
                backward_tile(&tile, &panels, lh, a.scale, kern, t);
            }
        }
        write_rows(&mut dq[rows], &t.dq, dh, dhp);
    }
    write_rows(dk, &t.dk, dh, dhp);
    write_rows(dv, &t.dv, dh, dhp);
}

/// The first `dh` values of each `dhp`-wide row of `acc` into the rows of
/// `out` (as many as `out` holds).
fn write_rows<T: Copy>(out: Out<'_, T>, acc: &[T], dh: usize, dhp: usize) {
    for (dst, src) in out.chunks_exact_mut(dh).zip(acc.chunks(dhp)) {
        for (d, &s) in dst.iter_mut().zip(&src[..dh]) {
            d.write(s);
        }
    }
}

/// Where a tile lies: queries `qb0..qb0+qbw` (qb0 a multiple of MR), keys
/// `kb0..kb0+kbw` (kb0 a multiple of KB), `off` = Tk − Tq, the head size
/// and the accumulators' padded width `dhp`.
struct TileAt {
    qb0: usize,
    qbw: usize,
    kb0: usize,
    kbw: usize,
    off: usize,
    dh: usize,
    dhp: usize,
}

impl TileAt {
    /// Keys of the tile that query `i` sees (0 past the last query).
    fn seen(&self, i: usize) -> usize {
        if i >= self.qb0 + self.qbw {
            return 0;
        }
        (i + self.off + 1).saturating_sub(self.kb0).min(self.kbw)
    }

    /// Queries of the tile before the first one that sees key `j`, rounded
    /// down to a whole slot of `kpack` (those see none of keys ≥ j).
    fn blind(&self, j: usize, kpack: usize) -> usize {
        let q = (j.saturating_sub(self.off)).saturating_sub(self.qb0).min(self.qbw);
        q - q % kpack
    }
}

/// One tile's five products and its softmax gradient.
fn backward_tile<T: Real>(
    at: &TileAt,
    h: &HeadPanels<T>,
    lse: &[T],
    scale: T,
    kern: &PanelKernel<T>,
    t: &mut Tiles<T>,
) {
    let (mr, nr, kp) = (kern.mr(), kern.nr(), kern.kpack());
    let TileAt {
        qb0,
        qbw,
        kb0,
        kbw,
        dh,
        dhp,
        ..
    } = *at;
    let (zero, one) = (T::zero(), T::one());
    let kcols = kbw.div_ceil(nr) * nr;
    // P = exp(scale · Q Kᵀ − lse) and dS = P ⊙ (dO Vᵀ − Δ) · scale, by row
    // panel; key panels the panel's last query does not see are skipped
    // (their elements are zeroed below with the masked ones).
    for (rp, i0) in (qb0..qb0 + qbw).step_by(mr).enumerate() {
        let last = (i0 + mr).min(qb0 + qbw) - 1;
        let see = at.seen(last);
        for cp in 0..see.div_ceil(nr) {
            let (jp, c) = ((kb0 + cp * nr) / nr, rp * mr * KB + cp * nr);
            // SAFETY: row panel i0/MR < ceil(tq/MR) and key panel jp <
            // ceil(tk/NR) of the packed operands, at full depth Dh; the
            // tile's MR rows of NR from c lie in p and ds (QB_rows × KB,
            // cp·NR + NR ≤ KB).
            unsafe {
                let (qa, da) = (h.qa.panel(i0 / mr, 0), h.doa.panel(i0 / mr, 0));
                kern.tile(dh, qa, h.kt.panel(jp, 0), t.p.as_mut_ptr().add(c), KB, scale, zero);
                kern.tile(dh, da, h.vt.panel(jp, 0), t.ds.as_mut_ptr().add(c), KB, one, zero);
            }
        }
        for r in 0..mr {
            let i = i0 + r;
            let nvis = at.seen(i);
            let row = (rp * mr + r) * KB;
            let (pr, dr) = (&mut t.p[row..row + kcols], &mut t.ds[row..row + kcols]);
            if nvis > 0 {
                probs_and_score_grads(&mut pr[..nvis], &mut dr[..nvis], lse[i], t.delta[i], scale);
            }
            pr[nvis..].fill(zero);
            dr[nvis..].fill(zero);
        }
    }
    let (p, ds) = (&t.p[..], &t.ds[..]);
    // dV[keys] += Pᵀ dO and dK[keys] += dSᵀ Q: key panels of the tile as
    // rows, from the first query that sees the panel.
    for (tile, b, acc) in [(p, &h.dob, &mut t.dv), (ds, &h.qb, &mut t.dk)] {
        let pa = kern.pack_a(transposed(tile, KB), kbw, qbw, &mut t.tile);
        for (kpi, j) in (kb0..kb0 + kbw).step_by(mr).enumerate() {
            let q_lo = at.blind(j, kp);
            for dp in 0..dhp / nr {
                // SAFETY: the packed tile has ceil(qbw/kpack) slots per
                // panel and B ceil(tq/kpack) from (qb0 + q_lo)/kpack (qb0
                // and q_lo are multiples of kpack), both read up to query
                // qb0 + qbw ≤ tq; the MR rows from j ≤ tk of `acc` exist
                // (it has Tk + MR rows of dhp).
                unsafe {
                    kern.tile(
                        qbw - q_lo,
                        pa.panel(kpi, q_lo / kp),
                        b.panel(dp, (qb0 + q_lo) / kp),
                        acc.as_mut_ptr().add(j * dhp + dp * nr),
                        dhp,
                        one,
                        one,
                    )
                };
            }
        }
    }
    // dQ[queries] += dS K: up to the last key each row panel sees.
    let dsa = kern.pack_a(row_major(ds, KB), qbw, kbw, &mut t.tile);
    for (rp, i0) in (qb0..qb0 + qbw).step_by(mr).enumerate() {
        let see = at.seen((i0 + mr).min(qb0 + qbw) - 1);
        if see == 0 {
            continue;
        }
        for dp in 0..dhp / nr {
            // SAFETY: ceil(see/kpack) ≤ ceil(kbw/kpack) slots of the packed
            // tile and of K's panel from kb0/kpack (kb0 + kbw ≤ tk); the MR
            // rows from i0 < tq of `t.dq` exist (Tq + MR rows of dhp).
            unsafe {
                kern.tile(
                    see,
                    dsa.panel(rp, 0),
                    h.k.panel(dp, kb0 / kp),
                    t.dq.as_mut_ptr().add(i0 * dhp + dp * nr),
                    dhp,
                    one,
                    one,
                )
            };
        }
    }
}
