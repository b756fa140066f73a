//! Fused cross-entropy against a naive f64 reference and finite differences.

mod fused_util;

use fused_util::*;
use moe_kernels::cpu::cross_entropy::*;
use moe_kernels::KernelError;

/// torch semantics: per-row −log_softmax(x)[t], ignored rows skipped, mean over kept rows.
fn ref_loss(x: &[f64], tg: &[i64], v: usize, ignore: i64, red: Reduction) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for (r, &t) in tg.iter().enumerate() {
        if t == ignore {
            continue;
        }
        let row = &x[r * v..(r + 1) * v];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|a| (a - m).exp()).sum::<f64>().ln();
        total += lse - row[t as usize];
        count += 1;
    }
    match red {
        Reduction::Sum => total,
        Reduction::Mean => total / count as f64,
    }
}

fn run<T: moe_kernels::Real>(
    x: &[T],
    tg: &[i64],
    n: usize,
    v: usize,
    ignore: i64,
    red: Reduction,
    dloss: T,
) -> (CrossEntropyLoss<T>, Vec<T>, Vec<T>) {
    let mut lse = vec![T::zero(); n];
    let out = cross_entropy_forward(&mut lse, x, tg, n, v, ignore, red).unwrap();
    let mut dx = vec![T::zero(); n * v];
    let scale = grad_scale(red, out.n_valid, dloss);
    cross_entropy_backward(&mut dx, x, &lse, tg, n, v, ignore, scale).unwrap();

    // The one-pass training variant: the same loss and lse bits, and the
    // gradient for an upstream 1 (returned scaled by dloss, to be checked
    // like backward's).
    let (mut lse1, mut dx1) = (vec![T::zero(); n], vec![T::zero(); n * v]);
    let out1 = cross_entropy_forward_with_grad(&mut lse1, &mut dx1, x, tg, n, v, ignore, red).unwrap();
    assert_eq!(out1.n_valid, out.n_valid);
    let bits = |v: &[T]| v.iter().map(|x| x.to_f64_lossy().to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&[out1.loss]), bits(&[out.loss]));
    assert_eq!(bits(&lse1), bits(&lse));
    dx1.iter_mut().for_each(|g| *g *= dloss);
    (out, dx, dx1)
}

#[test]
fn loss_and_grad_match_reference() {
    let mut g = rng(30);
    for &(n, v) in &[(1, 1), (1, 5), (4, 3), (9, 17), (3, 130), (70, 1000)] {
        let x = uniform(&mut g, n * v, 6.0);
        // Every third row ignored (with the default index), the rest spread over classes.
        let tg: Vec<i64> = (0..n)
            .map(|r| {
                if r % 3 == 2 {
                    DEFAULT_IGNORE_INDEX
                } else {
                    ((r * 7 + 3) % v) as i64
                }
            })
            .collect();
        for red in [Reduction::Mean, Reduction::Sum] {
            let want = ref_loss(&x, &tg, v, DEFAULT_IGNORE_INDEX, red);
            let (out, dx, dx1) = run(&x, &tg, n, v, DEFAULT_IGNORE_INDEX, red, 1.7);
            assert!(
                (out.loss - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{red:?}: {} vs {want}",
                out.loss
            );
            assert_eq!(out.n_valid, tg.iter().filter(|&&t| t != -100).count());
            if n * v <= 200 {
                let fd = fd_grad(|xp| 1.7 * ref_loss(xp, &tg, v, DEFAULT_IGNORE_INDEX, red), &x, 1e-5);
                assert_close("ce dx vs fd", &dx, &fd, 1e-7, 1e-6);
                assert_close("ce one-pass dx vs fd", &dx1, &fd, 1e-7, 1e-6);
            }
            assert_close("ce one-pass dx f64", &dx1, &dx, 1e-14, 1e-12);
            let (outf, dxf, dx1f) = run(&to_f32(&x), &tg, n, v, DEFAULT_IGNORE_INDEX, red, 1.7f32);
            assert!((outf.loss as f64 - want).abs() <= 1e-5 * want.abs().max(1.0));
            assert_close("ce f32 dx", &to_f64(&dxf), &dx, 1e-6, 1e-4);
            assert_close("ce f32 one-pass dx", &to_f64(&dx1f), &dx, 1e-6, 1e-4);
        }
    }
}

#[test]
fn custom_ignore_index_and_all_ignored_rows() {
    let x = [1.0f64, 2.0, 3.0, 0.5, 0.25, 4.0];
    // ignore_index 1 is also a valid class: rows with target 1 are skipped.
    let (out, dx, dx1) = run(&x, &[1, 2], 2, 3, 1, Reduction::Mean, 1.0);
    assert_eq!(out.n_valid, 1);
    assert!((out.loss - ref_loss(&x, &[1, 2], 3, 1, Reduction::Mean)).abs() < 1e-14);
    assert!(dx[..3].iter().chain(&dx1[..3]).all(|&g| g == 0.0));
    // torch: mean over zero kept rows is NaN and the gradient is zero.
    let (out, dx, dx1) = run(&x, &[-100, -100], 2, 3, -100, Reduction::Mean, 1.0);
    assert!(out.loss.is_nan() && out.n_valid == 0);
    assert!(dx.iter().chain(&dx1).all(|&g| g == 0.0));
    let (out, _, _) = run(&x, &[-100, -100], 2, 3, -100, Reduction::Sum, 1.0);
    assert_eq!(out.loss, 0.0);
}

#[test]
fn large_logits_do_not_overflow() {
    let x = [1000.0f32, -1000.0, 0.0, 999.0];
    let (out, dx, dx1) = run(&x, &[0], 1, 4, -100, Reduction::Sum, 1.0f32);
    let want = (1.0 + (-1.0f64).exp()).ln();
    assert!((out.loss as f64 - want).abs() < 1e-5, "{}", out.loss);
    assert!(dx.iter().all(|g| g.is_finite()));
    // d/dx_0 = softmax_0 − 1 = −1/(1 + e): backward's exp(x − lse) carries
    // the rounding of lse ≈ 1000 (about 6e-5 here), the one-pass softmax
    // exp(x − max)/Σ does not.
    let exact = -1.0 / (1.0 + std::f64::consts::E);
    assert!((dx[0] as f64 - exact).abs() < 1e-4, "{}", dx[0]);
    assert!((dx1[0] as f64 - exact).abs() < 1e-7, "{}", dx1[0]);
    assert!(((dx1[3] as f64) - (-exact)).abs() < 1e-7, "{}", dx1[3]);
}

#[test]
fn bad_targets_and_lengths_are_errors() {
    let x = [0.0f32; 6];
    let mut lse = [0.0f32; 2];
    let err = cross_entropy_forward(&mut lse, &x, &[0, 3], 2, 3, -100, Reduction::Mean).unwrap_err();
    assert!(
        matches!(err, KernelError::IndexOutOfBounds { index: 3, size: 3, .. }),
        "{err}"
    );
    let err = cross_entropy_forward(&mut lse, &x, &[-1, 0], 2, 3, -100, Reduction::Mean).unwrap_err();
    assert!(matches!(err, KernelError::IndexOutOfBounds { index: -1, .. }), "{err}");
    let err = cross_entropy_forward(&mut lse, &x[..5], &[0, 0], 2, 3, -100, Reduction::Sum).unwrap_err();
    assert!(
        matches!(err, KernelError::LengthMismatch { buffer: "logits", .. }),
        "{err}"
    );
    let mut dx = [0.0f32; 6];
    let err = cross_entropy_backward(&mut dx, &x, &lse, &[0, 7], 2, 3, -100, 1.0).unwrap_err();
    assert!(matches!(err, KernelError::IndexOutOfBounds { index: 7, .. }), "{err}");
    let err =
        cross_entropy_forward_with_grad(&mut lse, &mut dx[..5], &x, &[0, 0], 2, 3, -100, Reduction::Mean).unwrap_err();
    assert!(
        matches!(err, KernelError::LengthMismatch { buffer: "dlogits", .. }),
        "{err}"
    );
    let err = cross_entropy_forward_with_grad(&mut lse, &mut dx, &x, &[0, 3], 2, 3, -100, Reduction::Sum).unwrap_err();
    assert!(matches!(err, KernelError::IndexOutOfBounds { index: 3, .. }), "{err}");
}

#[test]
fn rows_in_chunks_give_the_whole_batch_loss_and_gradient() {
    // 300 rows split at multiples of LOSS_BLOCK_ROWS (the last chunk ragged),
    // the batch's scale given to every chunk: the summed block losses and the
    // gradient rows are the one-call forward's, and the bf16 gradient is its
    // round-to-nearest-even bits.
    let (n, v) = (300, 257);
    let mut g = rng(31);
    let x = to_f32(&uniform(&mut g, n * v, 6.0));
    let tg: Vec<i64> = (0..n)
        .map(|r| {
            if r % 5 == 4 {
                DEFAULT_IGNORE_INDEX
            } else {
                ((r * 11 + 1) % v) as i64
            }
        })
        .collect();
    let mut lse = vec![0.0f32; n];
    let mut want = vec![0.0f32; n * v];
    let out = cross_entropy_forward_with_grad(
        &mut lse,
        &mut want,
        &x,
        &tg,
        n,
        v,
        DEFAULT_IGNORE_INDEX,
        Reduction::Mean,
    )
    .unwrap();
    let scale = grad_scale(Reduction::Mean, out.n_valid, 1.0f32);
    let chunk = 2 * LOSS_BLOCK_ROWS;
    let (mut full, mut bits) = (vec![f32::NAN; n * v], vec![0u16; n * v]);
    let mut parts = Vec::new();
    for r0 in (0..n).step_by(chunk) {
        let r1 = (r0 + chunk).min(n);
        let (xs, ts) = (&x[r0 * v..r1 * v], &tg[r0..r1]);
        let p = cross_entropy_rows(
            xs,
            ts,
            v,
            DEFAULT_IGNORE_INDEX,
            scale,
            GradOut::Full(&mut full[r0 * v..r1 * v]),
        )
        .unwrap();
        let q = cross_entropy_rows(
            xs,
            ts,
            v,
            DEFAULT_IGNORE_INDEX,
            scale,
            GradOut::Bf16(&mut bits[r0 * v..r1 * v]),
        )
        .unwrap();
        let none = cross_entropy_rows(xs, ts, v, DEFAULT_IGNORE_INDEX, scale, GradOut::None).unwrap();
        assert_eq!(p, q);
        assert_eq!(p, none);
        parts.extend(p);
    }
    let loss = (parts.iter().sum::<f64>() / out.n_valid as f64) as f32;
    assert_eq!(loss.to_bits(), out.loss.to_bits());
    let b = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(b(&full), b(&want));
    let rounded: Vec<u16> = want.iter().map(|&w| half::bf16::from_f32(w).to_bits()).collect();
    assert_eq!(bits, rounded);
    // A wrong gradient length names it.
    let e = cross_entropy_rows(&x[..v], &tg[..1], v, -100, scale, GradOut::Bf16(&mut bits[..3])).unwrap_err();
    assert!(e.to_string().contains("grad"), "{e}");
}
