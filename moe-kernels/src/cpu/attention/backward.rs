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

use super::tile::{axpy, has_avx2_fma, row_times_tt, transpose_into};
use super::{AttnDims, BC, PAR_MIN_WORK};
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
/// `scale` must be the one forward used. Errors if a buffer length does not
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
    let avx = has_avx2_fma();
    #[allow(clippy::type_complexity)]
    let task = |(bk, (dqg, (dkh, dvh))): (usize, (&mut [T], (&mut [T], &mut [T])))| {
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
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX2 and FMA support was detected above.
            unsafe { backward_group_avx2(dqg, dkh, dvh, &a) };
            return;
        }
        let _ = avx;
        backward_group::<T, false>(dqg, dkh, dvh, &a);
    };
    let groups = dims.b * hkv;
    if dims.work() >= PAR_MIN_WORK && groups > 1 {
        dq.par_chunks_mut(qg)
            .zip(dk.par_chunks_mut(kvh).zip(dv.par_chunks_mut(kvh)))
            .enumerate()
            .for_each(task);
    } else {
        dq.chunks_mut(qg)
            .zip(dk.chunks_mut(kvh).zip(dv.chunks_mut(kvh)))
            .enumerate()
            .for_each(task);
    }
    Ok(())
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: callers check that the CPU supports AVX2 and FMA first.
unsafe fn backward_group_avx2<T: Real>(dq: &mut [T], dk: &mut [T], dv: &mut [T], a: &GroupIn<'_, T>) {
    backward_group::<T, true>(dq, dk, dv, a);
}

/// One (b, kv head): `dq: [G, Tq, Dh]`, `dk, dv: [Tk, Dh]`, all zeroed on entry.
#[inline(always)]
fn backward_group<T: Real, const FMA: bool>(dq: &mut [T], dk: &mut [T], dv: &mut [T], a: &GroupIn<'_, T>) {
    let GroupIn { tq, tk, dh, scale, .. } = *a;
    let off = tk - tq;
    let mut kt = vec![T::zero(); dh * BC]; // K tile transposed: [Dh, BC]
    let mut vt = vec![T::zero(); dh * BC]; // V tile transposed: [Dh, BC]
    let mut delta = vec![T::zero(); tq]; // Δ_i = dO_i · O_i
    let mut p = [T::zero(); BC]; // probabilities of one row
    let mut dp = [T::zero(); BC]; // dO_i · V_jᵀ of one row
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
            transpose_into(&mut kt, &a.k[j0 * dh..], bc, dh, BC);
            transpose_into(&mut vt, &a.v[j0 * dh..], bc, dh, BC);
            // Query i sees key j0 once i + off ≥ j0.
            for qi in j0.saturating_sub(off)..tq {
                let nvis = (qi + off + 1 - j0).min(bc);
                let (qr, dor) = (&qh[qi * dh..(qi + 1) * dh], &doh[qi * dh..(qi + 1) * dh]);
                let pr = &mut p[..nvis];
                row_times_tt::<T, FMA>(pr, qr, &kt, BC);
                pr.iter_mut().for_each(|x| *x *= scale);
                exp_sub_sum_inplace(pr, lh[qi]);
                let dpr = &mut dp[..nvis];
                row_times_tt::<T, FMA>(dpr, dor, &vt, BC);
                let dqr = &mut dqh[qi * dh..(qi + 1) * dh];
                for c in 0..nvis {
                    let j = j0 + c;
                    let ds = pr[c] * (dpr[c] - delta[qi]) * scale;
                    axpy::<T, FMA>(&mut dv[j * dh..(j + 1) * dh], pr[c], dor);
                    axpy::<T, FMA>(dqr, ds, &a.k[j * dh..(j + 1) * dh]);
                    axpy::<T, FMA>(&mut dk[j * dh..(j + 1) * dh], ds, qr);
                }
            }
        }
    }
}
