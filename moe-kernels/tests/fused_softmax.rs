//! Softmax and log-softmax kernels against naive f64 references and finite differences.

mod fused_util;

type SoftmaxFwd = fn(&mut [f64], &[f64], usize, usize) -> Result<(), KernelError>;
type SoftmaxBwd = fn(&mut [f64], &[f64], &[f64], usize, usize) -> Result<(), KernelError>;

use fused_util::*;
use moe_kernels::cpu::softmax::*;
use moe_kernels::KernelError;

/// Naive softmax of one row in f64 (max-shifted).
fn ref_softmax(x: &[f64], n: usize, c: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * c];
    for r in 0..n {
        let row = &x[r * c..(r + 1) * c];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for j in 0..c {
            y[r * c + j] = (row[j] - m).exp() / s;
        }
    }
    y
}

fn ref_log_softmax(x: &[f64], n: usize, c: usize) -> Vec<f64> {
    ref_softmax(x, n, c).iter().map(|p| p.ln()).collect()
}

/// Explicit Jacobian-transpose product of softmax: dx_i = Σ_j dy_j y_j (δ_ij − y_i).
fn ref_softmax_backward(dy: &[f64], y: &[f64], n: usize, c: usize) -> Vec<f64> {
    let mut dx = vec![0.0; n * c];
    for r in 0..n {
        for i in 0..c {
            let mut acc = 0.0;
            for j in 0..c {
                let delta = if i == j { 1.0 } else { 0.0 };
                acc += dy[r * c + j] * y[r * c + j] * (delta - y[r * c + i]);
            }
            dx[r * c + i] = acc;
        }
    }
    dx
}

/// Explicit Jacobian-transpose product of log-softmax: dx_i = Σ_j dy_j (δ_ij − p_i).
fn ref_log_softmax_backward(dy: &[f64], p: &[f64], n: usize, c: usize) -> Vec<f64> {
    let mut dx = vec![0.0; n * c];
    for r in 0..n {
        for i in 0..c {
            let mut acc = 0.0;
            for j in 0..c {
                let delta = if i == j { 1.0 } else { 0.0 };
                acc += dy[r * c + j] * (delta - p[r * c + i]);
            }
            dx[r * c + i] = acc;
        }
    }
    dx
}

const SHAPES: &[(usize, usize)] = &[(0, 5), (3, 0), (1, 1), (4, 1), (3, 7), (5, 33), (2, 257), (70, 513)];

#[test]
fn softmax_forward_backward_match_reference() {
    let mut g = rng(1);
    for &(n, c) in SHAPES {
        let x = uniform(&mut g, n * c, 8.0);
        let dy = uniform(&mut g, n * c, 1.0);
        let want_y = ref_softmax(&x, n, c);
        let want_dx = ref_softmax_backward(&dy, &want_y, n, c);

        let mut y = vec![0.0; n * c];
        softmax_forward(&mut y, &x, n, c).unwrap();
        assert_close("softmax f64 y", &y, &want_y, 1e-15, 1e-12);
        let mut dx = vec![0.0; n * c];
        softmax_backward(&mut dx, &dy, &y, n, c).unwrap();
        assert_close("softmax f64 dx", &dx, &want_dx, 1e-14, 1e-10);

        let (xf, dyf) = (to_f32(&x), to_f32(&dy));
        let mut yf = vec![0.0f32; n * c];
        softmax_forward(&mut yf, &xf, n, c).unwrap();
        assert_close("softmax f32 y", &to_f64(&yf), &want_y, 1e-7, 1e-5);
        let mut dxf = vec![0.0f32; n * c];
        softmax_backward(&mut dxf, &dyf, &yf, n, c).unwrap();
        assert_close("softmax f32 dx", &to_f64(&dxf), &want_dx, 1e-6, 1e-4);
    }
}

#[test]
fn log_softmax_forward_backward_match_reference() {
    let mut g = rng(2);
    for &(n, c) in SHAPES {
        let x = uniform(&mut g, n * c, 8.0);
        let dy = uniform(&mut g, n * c, 1.0);
        let want_y = ref_log_softmax(&x, n, c);
        let want_dx = ref_log_softmax_backward(&dy, &ref_softmax(&x, n, c), n, c);

        let mut y = vec![0.0; n * c];
        log_softmax_forward(&mut y, &x, n, c).unwrap();
        assert_close("log_softmax f64 y", &y, &want_y, 1e-13, 1e-12);
        let mut dx = vec![0.0; n * c];
        log_softmax_backward(&mut dx, &dy, &y, n, c).unwrap();
        assert_close("log_softmax f64 dx", &dx, &want_dx, 1e-13, 1e-10);

        let (xf, dyf) = (to_f32(&x), to_f32(&dy));
        let mut yf = vec![0.0f32; n * c];
        log_softmax_forward(&mut yf, &xf, n, c).unwrap();
        assert_close("log_softmax f32 y", &to_f64(&yf), &want_y, 1e-5, 1e-5);
        let mut dxf = vec![0.0f32; n * c];
        log_softmax_backward(&mut dxf, &dyf, &yf, n, c).unwrap();
        assert_close("log_softmax f32 dx", &to_f64(&dxf), &want_dx, 1e-5, 1e-4);
    }
}

#[test]
fn backward_matches_finite_differences() {
    let mut g = rng(3);
    let (n, c) = (3, 6);
    let x = uniform(&mut g, n * c, 3.0);
    let dy = uniform(&mut g, n * c, 1.0);
    let fwd = |f: SoftmaxFwd, x: &[f64]| {
        let mut y = vec![0.0; n * c];
        f(&mut y, x, n, c).unwrap();
        y
    };
    for (name, f, b) in [
        (
            "softmax",
            softmax_forward::<f64> as SoftmaxFwd,
            softmax_backward::<f64> as SoftmaxBwd,
        ),
        ("log_softmax", log_softmax_forward::<f64>, log_softmax_backward::<f64>),
    ] {
        let want = fd_grad(|xp| dot(&fwd(f, xp), &dy), &x, 1e-5);
        let y = fwd(f, &x);
        let mut dx = vec![0.0; n * c];
        b(&mut dx, &dy, &y, n, c).unwrap();
        assert_close(name, &dx, &want, 1e-8, 1e-6);
    }
}

#[test]
fn extreme_inputs_stay_finite_and_all_neg_inf_row_is_nan() {
    // Large logits would overflow a naive exp.
    let x = [1000.0f32, 999.0, -1000.0, 0.0];
    let mut y = [0.0f32; 4];
    softmax_forward(&mut y, &x, 1, 4).unwrap();
    let e = (-1.0f64).exp();
    let want = [1.0 / (1.0 + e), e / (1.0 + e), 0.0, 0.0];
    assert_close("large logits", &to_f64(&y), &want, 1e-7, 1e-6);
    let mut ly = [0.0f32; 4];
    log_softmax_forward(&mut ly, &x, 1, 4).unwrap();
    assert!((ly[0] as f64 + (1.0 + e).ln()).abs() < 1e-5 && ly[2] < -1999.0);
    // torch: softmax of a row of -inf is NaN.
    let x = [f32::NEG_INFINITY; 3];
    softmax_forward(&mut y[..3], &x, 1, 3).unwrap();
    assert!(y[..3].iter().all(|v| v.is_nan()));
}

#[test]
fn parallel_path_is_bitwise_deterministic() {
    let mut g = rng(4);
    let (n, c) = (300, 1000);
    let x = to_f32(&uniform(&mut g, n * c, 5.0));
    let mut a = vec![0.0f32; n * c];
    let mut b = vec![0.0f32; n * c];
    softmax_forward(&mut a, &x, n, c).unwrap();
    // Row 7 alone takes the sequential path; it must equal its row of the big call.
    softmax_forward(&mut b[..c], &x[7 * c..8 * c], 1, c).unwrap();
    assert_eq!(&a[7 * c..8 * c], &b[..c]);
    softmax_forward(&mut b, &x, n, c).unwrap();
    assert_eq!(a, b);
}

#[test]
fn wrong_lengths_are_errors() {
    let x = [0.0f32; 6];
    let mut y = [0.0f32; 5];
    let err = softmax_forward(&mut y, &x, 2, 3).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::LengthMismatch {
                buffer: "y",
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
    let mut dx = [0.0f32; 6];
    let err = log_softmax_backward(&mut dx, &x[..4], &x, 2, 3).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { buffer: "dy", .. }), "{err}");
    let err = softmax_forward(&mut y, &x, usize::MAX, 3).unwrap_err();
    assert!(matches!(err, KernelError::ShapeOverflow { .. }), "{err}");
}
