//! Flash-style causal GQA attention against explicit T×T f64 attention.

mod fused_util;

use fused_util::*;
use moe_kernels::cpu::attention::*;
use moe_kernels::cpu::gemm::ProductPrecision;
use moe_kernels::KernelError;

/// Explicit attention: scores [Tq, Tk] per head, bottom-right causal mask,
/// softmax, P·V. Returns (o, lse, P per head) in f64.
fn ref_forward(q: &[f64], k: &[f64], v: &[f64], d: AttnDims, scale: f64) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let AttnDims { b, hq, hkv, tq, tk, dh } = d;
    let g = hq / hkv;
    let off = tk - tq;
    let mut o = vec![0.0; b * hq * tq * dh];
    let mut lse = vec![0.0; b * hq * tq];
    let mut probs = Vec::new();
    for bi in 0..b {
        for h in 0..hq {
            let qb = (bi * hq + h) * tq * dh;
            let kb = (bi * hkv + h / g) * tk * dh;
            let mut p = vec![0.0; tq * tk];
            for i in 0..tq {
                let s: Vec<f64> = (0..tk)
                    .map(|j| {
                        if j > i + off {
                            f64::NEG_INFINITY
                        } else {
                            scale * dot(&q[qb + i * dh..qb + (i + 1) * dh], &k[kb + j * dh..kb + (j + 1) * dh])
                        }
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                lse[(bi * hq + h) * tq + i] = m + z.ln();
                for j in 0..tk {
                    p[i * tk + j] = (s[j] - m).exp() / z;
                    for e in 0..dh {
                        o[qb + i * dh + e] += p[i * tk + j] * v[kb + j * dh + e];
                    }
                }
            }
            probs.push(p);
        }
    }
    (o, lse, probs)
}

/// Explicit backward from the full P matrices (textbook formulas, no tiling).
fn ref_backward(dout: &[f64], q: &[f64], k: &[f64], v: &[f64], d: AttnDims, scale: f64) -> [Vec<f64>; 3] {
    let AttnDims { b, hq, hkv, tq, tk, dh } = d;
    let g = hq / hkv;
    let (_, _, probs) = ref_forward(q, k, v, d, scale);
    let mut dq = vec![0.0; q.len()];
    let mut dk = vec![0.0; k.len()];
    let mut dv = vec![0.0; v.len()];
    for bi in 0..b {
        for h in 0..hq {
            let p = &probs[bi * hq + h];
            let qb = (bi * hq + h) * tq * dh;
            let kb = (bi * hkv + h / g) * tk * dh;
            for i in 0..tq {
                // dP[i, j] = dO_i · V_j;  dS = P ⊙ (dP − Σ_j P dP)
                let dp: Vec<f64> = (0..tk)
                    .map(|j| {
                        dot(
                            &dout[qb + i * dh..qb + (i + 1) * dh],
                            &v[kb + j * dh..kb + (j + 1) * dh],
                        )
                    })
                    .collect();
                let rowdot: f64 = (0..tk).map(|j| p[i * tk + j] * dp[j]).sum();
                for j in 0..tk {
                    let pij = p[i * tk + j];
                    let ds = pij * (dp[j] - rowdot) * scale;
                    for e in 0..dh {
                        dv[kb + j * dh + e] += pij * dout[qb + i * dh + e];
                        dq[qb + i * dh + e] += ds * k[kb + j * dh + e];
                        dk[kb + j * dh + e] += ds * q[qb + i * dh + e];
                    }
                }
            }
        }
    }
    [dq, dk, dv]
}

fn run<T: moe_kernels::Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    dout: &[T],
    d: AttnDims,
    scale: T,
    precision: ProductPrecision,
) -> (Vec<T>, Vec<T>, [Vec<T>; 3]) {
    let (o, lse) = attention_forward(q, k, v, d, scale, precision).unwrap();
    let (dq, dk, dv) = attention_backward(dout, q, k, v, &o, &lse, d, scale, precision).unwrap();
    (o, lse, [dq, dk, dv])
}

const CASES: &[AttnDims] = &[
    AttnDims {
        b: 1,
        hq: 1,
        hkv: 1,
        tq: 1,
        tk: 1,
        dh: 1,
    },
    AttnDims {
        b: 1,
        hq: 2,
        hkv: 1,
        tq: 5,
        tk: 5,
        dh: 3,
    },
    AttnDims {
        b: 2,
        hq: 4,
        hkv: 2,
        tq: 70,
        tk: 70,
        dh: 7,
    },
    AttnDims {
        b: 1,
        hq: 3,
        hkv: 3,
        tq: 130,
        tk: 130,
        dh: 16,
    },
    AttnDims {
        b: 2,
        hq: 2,
        hkv: 1,
        tq: 3,
        tk: 9,
        dh: 5,
    },
    AttnDims {
        b: 1,
        hq: 2,
        hkv: 2,
        tq: 65,
        tk: 129,
        dh: 8,
    },
    AttnDims {
        b: 1,
        hq: 8,
        hkv: 2,
        tq: 150,
        tk: 150,
        dh: 64,
    },
    // Several tiles per row and column, tiles the mask cuts at every band
    // boundary, and an offset that is no multiple of a band.
    AttnDims {
        b: 1,
        hq: 2,
        hkv: 1,
        tq: 300,
        tk: 333,
        dh: 6,
    },
    // Rows longer than forward's 256-key score chunk, a head size that
    // leaves a partial micro-kernel column panel, and backward tiles that
    // end inside a row panel.
    AttnDims {
        b: 1,
        hq: 4,
        hkv: 2,
        tq: 261,
        tk: 261,
        dh: 40,
    },
];

/// Random inputs of one case and explicit attention's results on them.
struct Explicit {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    dout: Vec<f64>,
    scale: f64,
    want_o: Vec<f64>,
    want_lse: Vec<f64>,
    want_grads: [Vec<f64>; 3],
}

impl Explicit {
    fn new(g: &mut rand_chacha::ChaCha8Rng, d: AttnDims) -> Self {
        let (nq, nkv) = (d.b * d.hq * d.tq * d.dh, d.b * d.hkv * d.tk * d.dh);
        let q = uniform(g, nq, 1.5);
        let k = uniform(g, nkv, 1.5);
        let v = uniform(g, nkv, 1.0);
        let dout = uniform(g, nq, 1.0);
        let scale = default_scale::<f64>(d.dh);
        let (want_o, want_lse, _) = ref_forward(&q, &k, &v, d, scale);
        let want_grads = ref_backward(&dout, &q, &k, &v, d, scale);
        Explicit {
            q,
            k,
            v,
            dout,
            scale,
            want_o,
            want_lse,
            want_grads,
        }
    }
}

#[test]
fn forward_and_backward_match_explicit_attention() {
    let mut g = rng(40);
    for &d in CASES {
        let Explicit {
            q,
            k,
            v,
            dout,
            scale,
            want_o,
            want_lse,
            want_grads,
        } = Explicit::new(&mut g, d);

        let (o, lse, grads) = run(&q, &k, &v, &dout, d, scale, ProductPrecision::Full);
        assert_close(&format!("{d:?} o f64"), &o, &want_o, 1e-13, 1e-11);
        assert_close(&format!("{d:?} lse f64"), &lse, &want_lse, 1e-13, 1e-12);
        for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip(grads.iter().zip(&want_grads)) {
            assert_close(&format!("{d:?} {name} f64"), got, want, 1e-12, 1e-10);
        }

        let (of, lsef, gradsf) = run(
            &to_f32(&q),
            &to_f32(&k),
            &to_f32(&v),
            &to_f32(&dout),
            d,
            scale as f32,
            ProductPrecision::Full,
        );
        assert_close(&format!("{d:?} o f32"), &to_f64(&of), &want_o, 1e-5, 1e-4);
        assert_close(&format!("{d:?} lse f32"), &to_f64(&lsef), &want_lse, 1e-5, 1e-5);
        for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip(gradsf.iter().zip(&want_grads)) {
            assert_close(&format!("{d:?} {name} f32"), &to_f64(got), want, 1e-4, 1e-3);
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let mut g = rng(41);
    let d = AttnDims {
        b: 1,
        hq: 4,
        hkv: 2,
        tq: 4,
        tk: 6,
        dh: 3,
    };
    let (nq, nkv) = (d.b * d.hq * d.tq * d.dh, d.b * d.hkv * d.tk * d.dh);
    let (q, k, v) = (
        uniform(&mut g, nq, 1.0),
        uniform(&mut g, nkv, 1.0),
        uniform(&mut g, nkv, 1.0),
    );
    let dout = uniform(&mut g, nq, 1.0);
    let scale = 0.7;
    let loss = |q: &[f64], k: &[f64], v: &[f64]| {
        let (o, _) = attention_forward(q, k, v, d, scale, ProductPrecision::Full).unwrap();
        dot(&o, &dout)
    };
    let (_, _, [dq, dk, dv]) = run(&q, &k, &v, &dout, d, scale, ProductPrecision::Full);
    assert_close("dq fd", &dq, &fd_grad(|x| loss(x, &k, &v), &q, 1e-5), 1e-8, 1e-6);
    assert_close("dk fd", &dk, &fd_grad(|x| loss(&q, x, &v), &k, 1e-5), 1e-8, 1e-6);
    assert_close("dv fd", &dv, &fd_grad(|x| loss(&q, &k, x), &v, 1e-5), 1e-8, 1e-6);
}

#[test]
fn results_are_bitwise_deterministic() {
    let mut g = rng(42);
    let d = AttnDims::causal(2, 4, 2, 300, 32);
    let (nq, nkv) = (d.b * d.hq * d.tq * d.dh, d.b * d.hkv * d.tk * d.dh);
    let q = to_f32(&uniform(&mut g, nq, 1.0));
    let k = to_f32(&uniform(&mut g, nkv, 1.0));
    let v = to_f32(&uniform(&mut g, nkv, 1.0));
    let dout = to_f32(&uniform(&mut g, nq, 1.0));
    for precision in [ProductPrecision::Full, ProductPrecision::Bf16] {
        let first = run(&q, &k, &v, &dout, d, 0.2f32, precision);
        for _ in 0..3 {
            assert_eq!(run(&q, &k, &v, &dout, d, 0.2f32, precision), first);
        }
        // The same bits on one thread as on the default pool.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(pool.install(|| run(&q, &k, &v, &dout, d, 0.2f32, precision)), first);
    }
}

/// A thread keeps its attention buffers from call to call: a call after a
/// larger one (stale values in every buffer) gives the bits of the same
/// call on a fresh thread.
#[test]
fn reused_buffers_give_a_fresh_threads_bits() {
    let mut g = rng(44);
    let inputs = |g: &mut rand_chacha::ChaCha8Rng, d: AttnDims| {
        let (nq, nkv) = (d.b * d.hq * d.tq * d.dh, d.b * d.hkv * d.tk * d.dh);
        let mut draw = |n: usize| to_f32(&uniform(g, n, 1.5));
        (draw(nq), draw(nkv), draw(nkv), draw(nq))
    };
    let big = AttnDims::causal(2, 4, 2, 333, 40);
    let small = AttnDims {
        tq: 70,
        ..AttnDims::causal(2, 4, 2, 90, 24)
    };
    let (bq, bk, bv, bd) = inputs(&mut g, big);
    let (q, k, v, dout) = inputs(&mut g, small);
    for precision in [ProductPrecision::Full, ProductPrecision::Bf16] {
        let fresh = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let want = fresh.install(|| run(&q, &k, &v, &dout, small, 0.3f32, precision));
        let reused = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let got = reused.install(|| {
            run(&bq, &bk, &bv, &bd, big, 0.3f32, precision);
            run(&q, &k, &v, &dout, small, 0.3f32, precision)
        });
        assert_eq!(got, want, "{precision:?}");
    }
}

#[test]
fn wrong_lengths_are_errors() {
    let d = AttnDims::causal(1, 2, 1, 3, 4);
    let q = [0.0f32; 24];
    let kv = [0.0f32; 12];
    let full = ProductPrecision::Full;
    let err = attention_forward(&q, &kv[..11], &kv, d, 0.5, full).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { buffer: "k", .. }), "{err}");
    let err = attention_forward(&q[..23], &kv, &kv, d, 0.5, full).unwrap_err();
    assert!(matches!(err, KernelError::LengthMismatch { buffer: "q", .. }), "{err}");
    let (o, lse) = attention_forward(&q, &kv, &kv, d, 0.5, full).unwrap();
    let err = attention_backward(&q[..20], &q, &kv, &kv, &o, &lse, d, 0.5, full).unwrap_err();
    assert!(
        matches!(err, KernelError::LengthMismatch { buffer: "d_o", .. }),
        "{err}"
    );
    let err = attention_backward(&q, &q, &kv, &kv, &o, &lse[..5], d, 0.5, full).unwrap_err();
    assert!(
        matches!(err, KernelError::LengthMismatch { buffer: "lse", .. }),
        "{err}"
    );
}

/// In bf16 precision every tile product reads its operands rounded to bf16
/// (8 significant bits): results stay within bf16's error of explicit f64
/// attention, and differ from the f32 products' (the rounding happened).
#[test]
fn bf16_products_stay_within_bf16_error_of_explicit_attention() {
    let mut g = rng(43);
    for &d in &CASES[1..] {
        let Explicit {
            q,
            k,
            v,
            dout,
            scale,
            want_o,
            want_lse,
            want_grads,
        } = Explicit::new(&mut g, d);
        let inputs = [&q, &k, &v, &dout].map(|x| to_f32(x));
        let go = |precision| {
            run(
                &inputs[0],
                &inputs[1],
                &inputs[2],
                &inputs[3],
                d,
                scale as f32,
                precision,
            )
        };
        let (o, lse, grads) = go(ProductPrecision::Bf16);
        assert_close(&format!("{d:?} o bf16"), &to_f64(&o), &want_o, 2e-2, 2e-2);
        assert_close(&format!("{d:?} lse bf16"), &to_f64(&lse), &want_lse, 2e-2, 2e-2);
        for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip(grads.iter().zip(&want_grads)) {
            assert_close(&format!("{d:?} {name} bf16"), &to_f64(got), want, 3e-2, 3e-2);
        }
        let (of, _, gradsf) = go(ProductPrecision::Full);
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(max_diff(&o, &of) > 1e-4, "{d:?}: bf16 forward equals f32");
        assert!(
            max_diff(&grads[0], &gradsf[0]) > 1e-4,
            "{d:?}: bf16 backward equals f32"
        );
    }
}
