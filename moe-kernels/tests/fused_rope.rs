//! RoPE kernels against a reference written from transformers' formula.

mod fused_util;

use fused_util::*;
use moe_kernels::cpu::rope::*;
use moe_kernels::KernelError;

/// transformers' Llama RoPE in f64: emb = cat(freqs, freqs), y = x·cos(emb) + rotate_half(x)·sin(emb)
/// with rotate_half(x) = cat(−x2, x1). x: [O, T, Dh], positions: [G, T].
fn ref_rope(x: &[f64], pos: &[i64], o: usize, t: usize, dh: usize, theta: f64) -> Vec<f64> {
    let half = dh / 2;
    let groups = pos.len() / t;
    let mut y = vec![0.0; x.len()];
    for oi in 0..o {
        for ti in 0..t {
            let p = pos[(oi / (o / groups)) * t + ti] as f64;
            let base = (oi * t + ti) * dh;
            let xv = &x[base..base + dh];
            let rot: Vec<f64> = (0..dh)
                .map(|j| if j < half { -xv[j + half] } else { xv[j - half] })
                .collect();
            for j in 0..dh {
                let inv_freq = 1.0 / theta.powf((2 * (j % half)) as f64 / dh as f64);
                let a = p * inv_freq;
                y[base + j] = xv[j] * a.cos() + rot[j] * a.sin();
            }
        }
    }
    y
}

fn tables(n_pos: usize, dh: usize, theta: f64) -> (Vec<f64>, Vec<f64>) {
    let mut cos = vec![0.0; n_pos * dh / 2];
    let mut sin = vec![0.0; n_pos * dh / 2];
    rope_tables(&mut cos, &mut sin, n_pos, dh, theta).unwrap();
    (cos, sin)
}

#[test]
fn forward_matches_reference_and_backward_inverts() {
    let mut g = rng(20);
    // (O, T, Dh, G, theta)
    for &(o, t, dh, groups, theta) in &[
        (1, 1, 2, 1, 10_000.0),
        (3, 5, 8, 1, 10_000.0),
        (6, 7, 6, 2, 500_000.0),
        (4, 33, 64, 4, 1_000_000.0),
        (64, 40, 32, 8, 10_000.0),
    ] {
        let n_pos = 300;
        let (cos, sin) = tables(n_pos, dh, theta);
        let pos: Vec<i64> = (0..groups * t).map(|i| ((i * 37 + 11) % n_pos) as i64).collect();
        let x = uniform(&mut g, o * t * dh, 1.0);
        let want = ref_rope(&x, &pos, o, t, dh, theta);
        let y = rope_forward(&x, &cos, &sin, &pos, o, t, dh).unwrap();
        assert_close("rope f64", &y, &want, 1e-12, 1e-12);

        // The rotation is orthogonal, so its backward (transpose) is its inverse:
        // check dx against finite differences of Σ dy·rope(x).
        let dy = uniform(&mut g, x.len(), 1.0);
        let dx = rope_backward(&dy, &cos, &sin, &pos, o, t, dh).unwrap();
        if x.len() <= 2000 {
            let fd = fd_grad(|xp| dot(&ref_rope(xp, &pos, o, t, dh, theta), &dy), &x, 1e-6);
            assert_close("rope backward vs fd", &dx, &fd, 1e-8, 1e-7);
        }
        let back = rope_backward(&y, &cos, &sin, &pos, o, t, dh).unwrap();
        assert_close("rope inverse", &back, &x, 1e-12, 1e-12);

        let (cf, sf) = (to_f32(&cos), to_f32(&sin));
        let yf = rope_forward(&to_f32(&x), &cf, &sf, &pos, o, t, dh).unwrap();
        assert_close("rope f32", &to_f64(&yf), &want, 1e-6, 1e-5);
    }
}

#[test]
fn position_zero_is_identity_and_tables_match_formula() {
    let (cos, sin) = tables(3, 4, 10_000.0);
    // angle(p, i) = p · 10000^(−2i/4): i = 1 gives p / 100.
    assert_eq!(&cos[..2], &[1.0, 1.0]);
    assert_eq!(&sin[..2], &[0.0, 0.0]);
    assert!((cos[5] - (2.0f64 / 100.0).cos()).abs() < 1e-15);
    assert!((sin[4] - 2.0f64.sin()).abs() < 1e-15);
}

#[test]
fn bad_positions_and_lengths_are_errors() {
    let (cos, sin) = tables(4, 4, 10_000.0);
    let x = [1.0f64; 2 * 3 * 4];
    let err = rope_forward(&x, &cos, &sin, &[0, 1, 4], 2, 3, 4).unwrap_err();
    assert!(
        matches!(err, KernelError::IndexOutOfBounds { index: 4, size: 4, .. }),
        "{err}"
    );
    let err = rope_forward(&x, &cos, &sin, &[0, -1, 2], 2, 3, 4).unwrap_err();
    assert!(matches!(err, KernelError::IndexOutOfBounds { index: -1, .. }), "{err}");
    // 3 groups of positions do not divide O = 2.
    let err = rope_forward(&x, &cos, &sin, &[0; 9], 2, 3, 4).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::LengthMismatch {
                buffer: "positions",
                ..
            }
        ),
        "{err}"
    );
    let err = rope_forward(&x[..20], &cos, &sin, &[0; 3], 2, 3, 4).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { buffer: "x", .. }), "{err}");
    let err = rope_backward(&x[..20], &cos, &sin, &[0; 3], 2, 3, 4).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::LengthMismatch {
                op: "rope_backward",
                buffer: "x",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rows_read_in_place_give_the_contiguous_bits() {
    // x stored [B, T, H, Dh], rotated as [B, H, T, Dh] through row offsets,
    // against the same rows copied contiguous first; large enough for the
    // parallel path.
    let (b, t, h, dh) = (2, 300, 4, 8);
    let mut g = rng(7);
    let x = uniform(&mut g, b * t * h * dh, 1.0);
    let (cos, sin) = tables(t + 2, dh, 10_000.0);
    let pos: Vec<i64> = (2..t as i64 + 2).collect();
    let mut rows = Vec::new();
    let mut copy = Vec::new();
    for bi in 0..b {
        for hi in 0..h {
            for ti in 0..t {
                let start = ((bi * t + ti) * h + hi) * dh;
                rows.push(start);
                copy.extend_from_slice(&x[start..start + dh]);
            }
        }
    }
    let got = rope_forward_rows(&x, &rows, &cos, &sin, &pos, b * h, t, dh).unwrap();
    let want = rope_forward(&copy, &cos, &sin, &pos, b * h, t, dh).unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
    // A row reaching past x, or too few rows, names the buffer.
    rows[5] = x.len() - 1;
    let e = rope_forward_rows(&x, &rows, &cos, &sin, &pos, b * h, t, dh).unwrap_err();
    assert!(matches!(e, KernelError::LengthMismatch { buffer: "x", .. }), "{e}");
    let e = rope_forward_rows(&x, &rows[1..], &cos, &sin, &pos, b * h, t, dh).unwrap_err();
    assert!(matches!(e, KernelError::LengthMismatch { buffer: "x_rows", .. }), "{e}");
}
