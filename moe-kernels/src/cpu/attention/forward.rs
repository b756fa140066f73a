//! Forward of one (batch, query head), a row panel of MR queries at a time.
//!
//! The head's q (as A), kᵀ and v (as B) are packed once. For each row panel
//! the scores of up to [`KEY_CHUNK`] keys go into one `[MR, KEY_CHUNK]`
//! buffer, tile by tile straight from the packed panels; the online softmax
//! turns them into probabilities, which are packed as A for `P · V`. Key
//! panels the panel's last query does not see are never multiplied.

use std::mem::MaybeUninit;

use crate::cpu::gemm::{PanelBuf, PanelKernel};
use crate::cpu::softmax::vexp::{exp_sub_sum_inplace, row_max};
use crate::Real;

use super::{row_major, transposed, HeadIn, KEY_CHUNK};

/// A forward task's buffers, reused from one head to the next (each head
/// packs every operand again and writes every element it reads).
#[derive(Default)]
pub(super) struct ForwardTiles<T> {
    q: PanelBuf<T>,
    kt: PanelBuf<T>,
    v: PanelBuf<T>,
    p: PanelBuf<T>,
    /// Scores, then probabilities, of one row panel: `[MR, chunk]`.
    s: Vec<T>,
    /// Unnormalised output rows: `[MR, Dh rounded up to NR]`.
    acc: Vec<T>,
    /// Running row maxima and sums of `exp(s − max)`: `[MR]`.
    m: Vec<T>,
    l: Vec<T>,
}

/// One head: every slot of `o: [Tq, Dh]` and every `lse: [Tq]` written.
pub(super) fn forward_head<T: Real>(
    o: &mut [MaybeUninit<T>],
    lse: &mut [T],
    h: &HeadIn<'_, T>,
    kern: &PanelKernel<T>,
    t: &mut ForwardTiles<T>,
) {
    let HeadIn {
        q,
        k,
        v,
        tq,
        tk,
        dh,
        scale,
    } = *h;
    let (mr, nr, kp) = (kern.mr(), kern.nr(), kern.kpack());
    let dhp = dh.div_ceil(nr) * nr;
    let chunk = KEY_CHUNK.div_ceil(nr) * nr;
    debug_assert!(chunk.is_multiple_of(kp));
    let off = tk - tq;
    let qa = kern.pack_a(row_major(q, dh), tq, dh, &mut t.q);
    let kb = kern.pack_b(transposed(k, dh), dh, tk, &mut t.kt);
    let vb = kern.pack_b(row_major(v, dh), tk, dh, &mut t.v);
    t.s.resize(mr * chunk, T::zero());
    t.acc.resize(mr * dhp, T::zero());
    t.m.resize(mr, T::zero());
    t.l.resize(mr, T::zero());
    let (s, acc, m, l) = (&mut t.s, &mut t.acc, &mut t.m, &mut t.l);
    for (panel, i0) in (0..tq).step_by(mr).enumerate() {
        let rows = mr.min(tq - i0);
        // Keys 0..vis(r) are the ones query i0 + r sees.
        let vis = |r: usize| (i0 + r + off + 1).min(tk);
        let kend = vis(rows - 1);
        acc.fill(T::zero());
        m.fill(T::neg_infinity());
        l.fill(T::zero());
        for j0 in (0..kend).step_by(chunk) {
            let cw = chunk.min(kend - j0);
            for (c, jp) in (j0..j0 + cw).step_by(nr).enumerate() {
                // s[:, c·NR..] = scale · Q_panel K[jp..jp+NR]ᵀ.
                // SAFETY: panel < ceil(tq/MR) and jp/NR < ceil(tk/NR) of
                // the packed operands, read over their full depth Dh; the
                // tile's MR rows of NR from c·NR ≤ chunk − NR lie in `s`.
                unsafe {
                    kern.tile(
                        dh,
                        qa.panel(panel, 0),
                        kb.panel(jp / nr, 0),
                        s.as_mut_ptr().add(c * nr),
                        chunk,
                        scale,
                        T::zero(),
                    )
                };
            }
            for r in 0..mr {
                let row = &mut s[r * chunk..r * chunk + cw];
                let nvis = if r < rows { vis(r).saturating_sub(j0).min(cw) } else { 0 };
                // Masked keys (and the padding rows) get probability 0.
                row[nvis..].fill(T::zero());
                if nvis == 0 {
                    continue;
                }
                let seen = &mut row[..nvis];
                let m_new = m[r].max(row_max(seen));
                let alpha = (m[r] - m_new).exp();
                l[r] = l[r] * alpha + exp_sub_sum_inplace(seen, m_new);
                if alpha != T::one() {
                    acc[r * dhp..r * dhp + dh].iter_mut().for_each(|x| *x *= alpha);
                }
                m[r] = m_new;
            }
            let pa = kern.pack_a(row_major(s, chunk), mr, cw, &mut t.p);
            for dp in 0..dhp / nr {
                // acc[:, dp·NR..] += P V[j0..j0+cw, dp·NR..].
                // SAFETY: the one packed P panel holds ceil(cw/kpack) slots;
                // V's panel dp from slot j0/kpack (j0 is a multiple of the
                // chunk, so of kpack) holds them too, as j0 + cw ≤ tk; the
                // tile's MR rows of NR from dp·NR lie in `acc` (dhp wide).
                unsafe {
                    kern.tile(
                        cw,
                        pa.panel(0, 0),
                        vb.panel(dp, j0 / kp),
                        acc.as_mut_ptr().add(dp * nr),
                        dhp,
                        T::one(),
                        T::one(),
                    )
                };
            }
        }
        for r in 0..rows {
            let qi = i0 + r;
            let inv = T::one() / l[r];
            for (ov, &av) in o[qi * dh..(qi + 1) * dh].iter_mut().zip(&acc[r * dhp..r * dhp + dh]) {
                ov.write(av * inv);
            }
            lse[qi] = m[r] + l[r].ln();
        }
    }
}
