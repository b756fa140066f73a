//! Backward of causal GQA attention (flash-attention 2 recurrences).
//!
//! With `P = exp(scale·q kᵀ − lse)` rebuilt per key tile and
//! `Δ_i = Σ_d dO[i, d] · O[i, d]`:
//!
//! ```text
//! dV += Pᵀ dO        dP = dO Vᵀ        dS = P ⊙ (dP − Δ)
//! dQ += scale · dS K                   dK += scale · dSᵀ Q
//! ```

use rayon::prelude::*;

use super::{for_each_band, mat, AttnDims, BC, BR, PAR_MIN_WORK};
use crate::cpu::gemm::{gemm_with, MatMut, MatRef, ProductPrecision};
use crate::cpu::index::check_len;
use crate::cpu::softmax::vexp::{dot, exp_sub_sum_inplace};
use crate::{KernelError, Real};

/// Causal attention backward.
///
/// ```text
/// d_o:  [B, Hq, Tq, Dh]   gradient of o
/// q:    [B, Hq, Tq, Dh]   k, v: [B, Hkv, Tk, Dh]   inputs of forward
/// o:    [B, Hq, Tq, Dh]   lse: [B, Hq, Tq]         saved by forward
/// dq:   [B, Hq, Tq, Dh]   written
/// dk, dv: [B, Hkv, Tk, Dh] written, summed over the G query heads of each kv head
/// ```
/// `scale` must be the one forward used; the five tile products read their
/// operands at `precision`, like forward's. Errors if a buffer length does not
/// match `dims`; panics on an invalid head or length relation (see forward).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    d_o: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    lse: &[T],
    dims: AttnDims,
    scale: T,
    precision: ProductPrecision,
) -> Result<(), KernelError> {
    const OP: &str = "attention_backward";
    let (nq, nkv, nl) = dims.sizes(OP)?;
    for (name, len) in [("dq", dq.len()), ("d_o", d_o.len()), ("q", q.len()), ("o", o.len())] {
        check_len(OP, name, nq, len)?;
    }
    for (name, len) in [("dk", dk.len()), ("dv", dv.len()), ("k", k.len()), ("v", v.len())] {
        check_len(OP, name, nkv, len)?;
    }
    check_len(OP, "lse", nl, lse.len())?;
    let AttnDims { hkv, tq, tk, dh, .. } = dims;
    dq.iter_mut().for_each(|x| *x = T::zero());
    dk.iter_mut().for_each(|x| *x = T::zero());
    dv.iter_mut().for_each(|x| *x = T::zero());
    if nq == 0 || nkv == 0 {
        return Ok(());
    }
    let g = dims.group();
    let (qg, kvh) = (g * tq * dh, tk * dh); // elements per task of q-like and kv-like buffers
    #[allow(clippy::type_complexity)]
    let task = |scratch: &mut Tiles<T>, (bk, (dqg, (dkh, dvh))): (usize, (&mut [T], (&mut [T], &mut [T])))| {
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
            precision,
        };
        backward_group(dqg, dkh, dvh, &a, scratch);
    };
    let groups = dims.b * hkv;
    if dims.work() >= PAR_MIN_WORK && groups > 1 {
        dq.par_chunks_mut(qg)
            .zip(dk.par_chunks_mut(kvh).zip(dv.par_chunks_mut(kvh)))
            .enumerate()
            .for_each_init(|| Tiles::new(tq), task);
    } else {
        let mut scratch = Tiles::new(tq);
        dq.chunks_mut(qg)
            .zip(dk.chunks_mut(kvh).zip(dv.chunks_mut(kvh)))
            .enumerate()
            .for_each(|item| task(&mut scratch, item));
    }
    Ok(())
}

/// A task's tile buffers, reused from one (b, kv head) to the next: every
/// element a product or the softmax reads is written first in that task.
struct Tiles<T> {
    /// Probabilities of a tile: [BR, BC].
    p: Vec<T>,
    /// dP, then dS, of a tile: [BR, BC].
    ds: Vec<T>,
    /// Δ_i = dO_i · O_i: [Tq].
    delta: Vec<T>,
}

impl<T: Real> Tiles<T> {
    fn new(tq: usize) -> Self {
        Self {
            p: vec![T::zero(); BR * BC],
            ds: vec![T::zero(); BR * BC],
            delta: vec![T::zero(); tq],
        }
    }
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
    /// How the tile products read their operands.
    precision: ProductPrecision,
}

/// One (b, kv head): `dq: [G, Tq, Dh]`, `dk, dv: [Tk, Dh]`, all zeroed on entry.
fn backward_group<T: Real>(dq: &mut [T], dk: &mut [T], dv: &mut [T], a: &GroupIn<'_, T>, tiles: &mut Tiles<T>) {
    let GroupIn {
        tq,
        tk,
        dh,
        scale,
        precision,
        ..
    } = *a;
    let off = tk - tq;
    let Tiles { p, ds, delta } = tiles;
    let one = T::one();
    for gi in 0..a.g {
        let rows = gi * tq * dh..(gi + 1) * tq * dh;
        let (qh, doh, oh) = (&a.q[rows.clone()], &a.d_o[rows.clone()], &a.o[rows.clone()]);
        let dqh = &mut dq[rows];
        let lh = &a.lse[gi * tq..(gi + 1) * tq];
        for (i, dl) in delta.iter_mut().enumerate() {
            *dl = dot(&doh[i * dh..(i + 1) * dh], &oh[i * dh..(i + 1) * dh]);
        }
        for j0 in (0..tk).step_by(BC) {
            let bc = BC.min(tk - j0);
            let (kj, vj) = (&a.k[j0 * dh..], &a.v[j0 * dh..]);
            // Queries from i + off ≥ j0 on see at least key j0.
            let kj_t = MatRef {
                data: kj,
                rs: 1,
                cs: dh,
            };
            let vj_t = MatRef {
                data: vj,
                rs: 1,
                cs: dh,
            };
            for i0 in (j0.saturating_sub(off)..tq).step_by(BR) {
                let br = BR.min(tq - i0);
                for_each_band(i0, br, j0, bc, off, |s0, sn, kv| {
                    let first = i0 + s0;
                    let (qi, doi) = (mat(&qh[first * dh..], dh), mat(&doh[first * dh..], dh));
                    // P = exp(scale · Q_band K_jᵀ − lse), 0 where masked
                    gemm_with(precision, sn, kv, dh, scale, qi, kj_t, T::zero(), tile(p));
                    for r in 0..sn {
                        let row = &mut p[r * BC..r * BC + kv];
                        let nvis = (first + r + off + 1 - j0).min(kv);
                        exp_sub_sum_inplace(&mut row[..nvis], lh[first + r]);
                        row[nvis..].iter_mut().for_each(|x| *x = T::zero());
                    }
                    // dV_j[:kv] += Pᵀ dO_band
                    gemm_with(precision, kv, dh, sn, one, tile_t(p), doi, one, rows_from(dv, j0, dh));
                    // dP = dO_band V_jᵀ, then dS = P ⊙ (dP − Δ) · scale in place
                    gemm_with(precision, sn, kv, dh, one, doi, vj_t, T::zero(), tile(ds));
                    for r in 0..sn {
                        let d = delta[first + r];
                        let (dr, pr) = (&mut ds[r * BC..r * BC + kv], &p[r * BC..r * BC + kv]);
                        for (x, &pv) in dr.iter_mut().zip(pr) {
                            *x = pv * (*x - d) * scale;
                        }
                    }
                    // dQ_band += dS K_j[:kv];  dK_j[:kv] += dSᵀ Q_band
                    let dsm = MatRef {
                        data: &ds[..],
                        rs: BC,
                        cs: 1,
                    };
                    gemm_with(
                        precision,
                        sn,
                        dh,
                        kv,
                        one,
                        dsm,
                        mat(kj, dh),
                        one,
                        rows_from(dqh, first, dh),
                    );
                    gemm_with(precision, kv, dh, sn, one, tile_t(ds), qi, one, rows_from(dk, j0, dh));
                });
            }
        }
    }
}

/// A `[BR, BC]` tile buffer as the output of a product.
fn tile<T>(buf: &mut [T]) -> MatMut<'_, T> {
    MatMut {
        data: buf,
        rs: BC,
        cs: 1,
    }
}

/// The transpose of a `[BR, BC]` tile buffer.
fn tile_t<T>(buf: &[T]) -> MatRef<'_, T> {
    MatRef {
        data: buf,
        rs: 1,
        cs: BC,
    }
}

/// Rows from `first` on of a row-major `[_, dh]` buffer, as a product's output.
fn rows_from<T>(buf: &mut [T], first: usize, dh: usize) -> MatMut<'_, T> {
    MatMut {
        data: &mut buf[first * dh..],
        rs: dh,
        cs: 1,
    }
}
