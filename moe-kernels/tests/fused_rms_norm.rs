//! RMSNorm kernels against a naive f64 reference and finite differences.

mod fused_util;

use fused_util::*;
use moe_kernels::cpu::rms_norm::*;
use moe_kernels::KernelError;

/// y = x / sqrt(mean(x²) + eps) · w, row by row, in f64.
fn ref_forward(x: &[f64], w: &[f64], n: usize, d: usize, eps: f64) -> Vec<f64> {
    let mut y = vec![0.0; n * d];
    for r in 0..n {
        let row = &x[r * d..(r + 1) * d];
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        for j in 0..d {
            y[r * d + j] = row[j] / (ms + eps).sqrt() * w[j];
        }
    }
    y
}

const SHAPES: &[(usize, usize)] = &[(0, 4), (1, 1), (3, 5), (7, 33), (2, 129), (200, 300)];

#[test]
fn forward_and_backward_match_reference() {
    let mut g = rng(10);
    let eps = 1e-5;
    for &(n, d) in SHAPES {
        let x = uniform(&mut g, n * d, 2.0);
        let w = uniform(&mut g, d, 1.5);
        let dy = uniform(&mut g, n * d, 1.0);
        let want_y = ref_forward(&x, &w, n, d, eps);

        let (y, rstd) = rms_norm_forward(&x, &w, n, d, eps).unwrap();
        assert_close("rms_norm f64 y", &y, &want_y, 1e-14, 1e-12);

        // Backward against finite differences of the reference on small shapes,
        // and against the f64 kernel (checked there) for the large one.
        let mut dx = vec![0.0; n * d];
        let mut dw = vec![0.5; d]; // dw accumulates: start from a non-zero value
        rms_norm_backward(&mut dx, &mut dw, &dy, &x, &w, &rstd, n, d).unwrap();
        if n * d <= 300 {
            let want_dx = fd_grad(|xp| dot(&ref_forward(xp, &w, n, d, eps), &dy), &x, 1e-6);
            let want_dw: Vec<f64> = fd_grad(|wp| dot(&ref_forward(&x, wp, n, d, eps), &dy), &w, 1e-6)
                .iter()
                .map(|g| g + 0.5)
                .collect();
            assert_close("rms_norm dx", &dx, &want_dx, 1e-7, 1e-6);
            assert_close("rms_norm dw", &dw, &want_dw, 1e-7, 1e-6);
        }

        let (xf, wf, dyf) = (to_f32(&x), to_f32(&w), to_f32(&dy));
        let (yf, rf) = rms_norm_forward(&xf, &wf, n, d, eps as f32).unwrap();
        assert_close("rms_norm f32 y", &to_f64(&yf), &want_y, 1e-6, 1e-5);
        let mut dxf = vec![0.0f32; n * d];
        let mut dwf = vec![0.5f32; d];
        rms_norm_backward(&mut dxf, &mut dwf, &dyf, &xf, &wf, &rf, n, d).unwrap();
        assert_close("rms_norm f32 dx", &to_f64(&dxf), &dx, 1e-5, 1e-4);
        assert_close("rms_norm f32 dw", &to_f64(&dwf), &dw, 1e-4, 1e-4);
    }
}

#[test]
fn dw_is_bitwise_deterministic() {
    let mut g = rng(11);
    let (n, d) = (1000, 96);
    let x = to_f32(&uniform(&mut g, n * d, 2.0));
    let w = to_f32(&uniform(&mut g, d, 1.0));
    let dy = to_f32(&uniform(&mut g, n * d, 1.0));
    let (_, rstd) = rms_norm_forward(&x, &w, n, d, 1e-6).unwrap();
    let run = || {
        let mut dx = vec![0.0f32; n * d];
        let mut dw = vec![0.0f32; d];
        rms_norm_backward(&mut dx, &mut dw, &dy, &x, &w, &rstd, n, d).unwrap();
        (dx, dw)
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first);
    }
    // The same bits on one thread as on the default pool.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    assert_eq!(pool.install(run), first);
}

#[test]
fn wrong_lengths_are_errors() {
    let x = [1.0f32; 6];
    let err = rms_norm_forward(&x[..5], &[1.0; 3], 2, 3, 1e-6).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { buffer: "x", .. }), "{err}");
    let err = rms_norm_forward(&x, &[1.0; 2], 2, 3, 1e-6).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { buffer: "w", .. }), "{err}");
    let rstd = [0.0f32; 2];
    let mut dw = [0.0f32; 2];
    let mut dx = [0.0f32; 6];
    let err = rms_norm_backward(&mut dx, &mut dw, &x, &x, &[1.0; 3], &rstd, 2, 3).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { buffer: "dw", .. }), "{err}");
}
