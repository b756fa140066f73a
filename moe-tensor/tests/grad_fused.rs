//! The fused ops (softmax, log_softmax, RMSNorm, RoPE, cross-entropy, causal
//! attention): gradient checks against central finite differences in f64 on
//! random shapes, contiguous and non-contiguous inputs; forward values against
//! the same computation composed from unfused tensor ops; and bad input.

mod common;

use common::{randn, random_dims, uniform};
use moe_tensor::init::Rng;
use moe_tensor::testing::{gradcheck, max_abs_diff};
use moe_tensor::{DType, Device, Error, Reduction, Rope, Tensor, DEFAULT_IGNORE_INDEX};

fn ids(v: Vec<i64>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(v, dims.to_vec(), &Device::Cpu).unwrap()
}

#[test]
fn softmax_and_log_softmax_gradients_on_every_dim() {
    let mut rng = Rng::seed(100);
    for rank in 1..=3 {
        for _ in 0..2 {
            let dims = random_dims(&mut rng, rank, 5);
            let x = randn(&mut rng, &dims);
            for dim in -(rank as isize)..rank as isize {
                gradcheck(|xs| xs[0].softmax(dim), std::slice::from_ref(&x))
                    .unwrap_or_else(|e| panic!("softmax {dims:?} dim {dim}: {e}"));
                gradcheck(|xs| xs[0].log_softmax(dim), std::slice::from_ref(&x))
                    .unwrap_or_else(|e| panic!("log_softmax {dims:?} dim {dim}: {e}"));
            }
        }
    }
    // Non-contiguous input: a transposed view.
    let x = randn(&mut rng, &[3, 4, 5]);
    gradcheck(|xs| xs[0].transpose(0, 2)?.softmax(-1), std::slice::from_ref(&x)).unwrap();
    gradcheck(|xs| xs[0].transpose(1, 2)?.log_softmax(1), &[x]).unwrap();
}

#[test]
fn softmax_matches_composed_ops() {
    let mut rng = Rng::seed(101);
    let x = randn(&mut rng, &[4, 3, 6]).affine(3.0, 0.0).unwrap();
    for dim in [0isize, 1, 2] {
        let e = x.exp().unwrap();
        let want = e.div(&e.sum(&[dim], true).unwrap()).unwrap();
        assert!(max_abs_diff(&x.softmax(dim).unwrap(), &want).unwrap() < 1e-14);
        let want_log = want.log().unwrap();
        assert!(max_abs_diff(&x.log_softmax(dim).unwrap(), &want_log).unwrap() < 1e-12);
    }
    // f32 follows the same path.
    let xf = x.to_dtype(DType::F32).unwrap();
    let d = max_abs_diff(
        &xf.softmax(1).unwrap().to_dtype(DType::F64).unwrap(),
        &x.softmax(1).unwrap(),
    )
    .unwrap();
    assert!(d < 1e-6, "{d}");
}

#[test]
fn rms_norm_gradients_and_value() {
    let mut rng = Rng::seed(102);
    for rank in 1..=3 {
        let dims = random_dims(&mut rng, rank, 6);
        let x = randn(&mut rng, &dims);
        let w = randn(&mut rng, &dims[rank - 1..]);
        gradcheck(|xs| xs[0].rms_norm(&xs[1], 1e-5), &[x.clone(), w.clone()])
            .unwrap_or_else(|e| panic!("rms_norm {dims:?}: {e}"));
        // y = x · (mean(x²) + eps)^(−1/2) · w from unfused ops.
        let ms = x.powf(2.0).unwrap().mean(&[-1], true).unwrap();
        let want = x
            .mul(&ms.affine(1.0, 1e-5).unwrap().powf(-0.5).unwrap())
            .unwrap()
            .mul(&w)
            .unwrap();
        assert!(max_abs_diff(&x.rms_norm(&w, 1e-5).unwrap(), &want).unwrap() < 1e-13);
    }
    // Non-contiguous x: [D, N] transposed to [N, D]; weight from a strided view.
    let x = randn(&mut rng, &[5, 3]);
    let w2 = randn(&mut rng, &[5, 2]);
    gradcheck(
        |xs| xs[0].t()?.rms_norm(&xs[1].narrow(1, 1, 1)?.squeeze(1)?, 1e-6),
        &[x, w2],
    )
    .unwrap();
}

#[test]
fn rope_gradients_offsets_and_positions() {
    let mut rng = Rng::seed(103);
    let dev = Device::Cpu;
    for &(b, h, t, dh, theta) in &[
        (1usize, 1usize, 1usize, 2usize, 10_000.0),
        (2, 3, 5, 6, 10_000.0),
        (1, 2, 7, 8, 500_000.0),
    ] {
        let rope = Rope::new(dh, 32, theta, DType::F64, &dev).unwrap();
        let x = randn(&mut rng, &[b, h, t, dh]);
        gradcheck(|xs| xs[0].rope(&rope, 3), std::slice::from_ref(&x))
            .unwrap_or_else(|e| panic!("rope {b} {h} {t} {dh}: {e}"));
        // offset o equals explicit positions o..o+T; [B, T] ids give one row per sequence.
        let shared = ids((3..3 + t as i64).collect(), &[t]);
        assert_eq!(
            max_abs_diff(&x.rope(&rope, 3).unwrap(), &x.rope_at(&rope, &shared).unwrap()).unwrap(),
            0.0
        );
        let per_seq: Vec<i64> = (0..b * t).map(|i| ((i * 7) % 32) as i64).collect();
        let per_seq = ids(per_seq, &[b, t]);
        gradcheck(|xs| xs[0].rope_at(&rope, &per_seq), std::slice::from_ref(&x)).unwrap();
        for bi in 0..b {
            let xb = x.narrow(0, bi, 1).unwrap();
            let pb = per_seq.narrow(0, bi, 1).unwrap().squeeze(0).unwrap();
            let got = x.rope_at(&rope, &per_seq).unwrap().narrow(0, bi, 1).unwrap();
            assert_eq!(max_abs_diff(&got, &xb.rope_at(&rope, &pb).unwrap()).unwrap(), 0.0);
        }
    }
    // Non-contiguous input in the model's natural layout: [B, T, H, Dh] → [B, H, T, Dh].
    let rope = Rope::new(4, 16, 10_000.0, DType::F64, &dev).unwrap();
    let x = randn(&mut rng, &[2, 5, 3, 4]);
    gradcheck(|xs| xs[0].transpose(1, 2)?.rope(&rope, 0), &[x]).unwrap();
    // A view with contiguous head vectors is rotated in place of a copy:
    // the same bits and gradient as rotating the copy (f32, parallel size).
    let rope32 = Rope::new(8, 300, 10_000.0, DType::F32, &dev).unwrap();
    let xs = randn(&mut Rng::seed(93), &[2, 300, 4, 8]).to_dtype(DType::F32).unwrap();
    let run = |copy: bool| {
        let p = xs.detach().to_param();
        let v = p.transpose(1, 2).unwrap();
        let v = if copy { v.contiguous().unwrap() } else { v };
        let y = v.rope(&rope32, 0).unwrap();
        y.mul(&y).unwrap().sum_all().unwrap().backward().unwrap();
        (y.to_vec::<f32>().unwrap(), p.grad().unwrap().to_vec::<f32>().unwrap())
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn rope_rotates_pairs_by_the_hf_angle() {
    // Dh = 4, position 2, theta 100: angles 2·100^0 = 2 and 2·100^(−1/2) = 0.2.
    let rope = Rope::new(4, 3, 100.0, DType::F64, &Device::Cpu).unwrap();
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], (1, 1, 4), &Device::Cpu).unwrap();
    let y = x.rope(&rope, 2).unwrap().to_vec::<f64>().unwrap();
    let (a0, a1) = (2.0f64, 0.2f64);
    let want = [
        1.0 * a0.cos() - 3.0 * a0.sin(),
        2.0 * a1.cos() - 4.0 * a1.sin(),
        3.0 * a0.cos() + 1.0 * a0.sin(),
        4.0 * a1.cos() + 2.0 * a1.sin(),
    ];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{y:?} vs {want:?}");
    }
}

#[test]
fn rope_from_given_tables() {
    // Tables for Dh = 4 at positions 0..3 with angles picked by hand (not a theta
    // formula): position 2 has angles 0.5 and 1.5.
    let dev = Device::Cpu;
    let angles = [0.0f64, 0.0, 0.3, 0.7, 0.5, 1.5];
    let cos = Tensor::from_vec(angles.iter().map(|a| a.cos()).collect(), (3, 2), &dev).unwrap();
    let sin = Tensor::from_vec(angles.iter().map(|a| a.sin()).collect(), (3, 2), &dev).unwrap();
    let rope = Rope::from_tables(cos.clone(), sin.clone(), 10_000.0).unwrap();
    assert_eq!((rope.head_dim(), rope.max_pos()), (4, 3));
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], (1, 1, 4), &dev).unwrap();
    let y = x.rope(&rope, 2).unwrap().to_vec::<f64>().unwrap();
    let (a0, a1) = (0.5f64, 1.5f64);
    let want = [
        1.0 * a0.cos() - 3.0 * a0.sin(),
        2.0 * a1.cos() - 4.0 * a1.sin(),
        3.0 * a0.cos() + 1.0 * a0.sin(),
        4.0 * a1.cos() + 2.0 * a1.sin(),
    ];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{y:?} vs {want:?}");
    }
    let mut rng = Rng::seed(105);
    let x = randn(&mut rng, &[2, 3, 2, 4]);
    gradcheck(|xs| xs[0].rope(&rope, 1), std::slice::from_ref(&x)).unwrap();
    // Misshapen or mismatched tables are rejected.
    assert!(Rope::from_tables(cos.clone(), sin.narrow(0, 0, 2).unwrap(), 1.0).is_err());
    assert!(Rope::from_tables(cos.reshape(6).unwrap(), sin.reshape(6).unwrap(), 1.0).is_err());
    assert!(Rope::from_tables(cos, sin.to_dtype(DType::F32).unwrap(), 1.0).is_err());
}

#[test]
fn cross_entropy_gradients_and_value() {
    let mut rng = Rng::seed(104);
    let (n, v) = (7, 5);
    let x = randn(&mut rng, &[n, v]).affine(2.0, 0.0).unwrap();
    let tg = ids(vec![0, 4, -100, 2, 2, 1, -100], &[n]);
    for red in [Reduction::Mean, Reduction::Sum] {
        gradcheck(
            |xs| xs[0].cross_entropy(&tg, DEFAULT_IGNORE_INDEX, red),
            std::slice::from_ref(&x),
        )
        .unwrap_or_else(|e| panic!("{red:?}: {e}"));
    }
    // Transposed logits [V, N] → [N, V]; 3-d logits [B, T, V] with [B, T] targets.
    let xt = randn(&mut rng, &[v, n]);
    gradcheck(|xs| xs[0].t()?.cross_entropy(&tg, -100, Reduction::Mean), &[xt]).unwrap();
    let x3 = randn(&mut rng, &[2, 3, 4]);
    let t3 = ids(vec![3, 0, 1, 7, 2, 2], &[2, 3]);
    gradcheck(|xs| xs[0].cross_entropy(&t3, 7, Reduction::Mean), &[x3]).unwrap();

    // Value: −mean of log_softmax at the kept targets, from unfused ops.
    let kept = ids(vec![0, 4, 2, 2, 1], &[5, 1]);
    let rows = ids(vec![0, 1, 3, 4, 5], &[5]);
    let unfused_loss = |x: &Tensor| {
        x.index_select(0, &rows)
            .unwrap()
            .log_softmax(1)
            .unwrap()
            .gather(1, &kept)
            .unwrap()
            .mean_all()
            .unwrap()
            .neg()
            .unwrap()
    };
    let want = unfused_loss(&x);
    let got = x.cross_entropy(&tg, -100, Reduction::Mean).unwrap();
    assert!(got.dims().is_empty());
    assert!((got.to_scalar_f64().unwrap() - want.to_scalar_f64().unwrap()).abs() < 1e-14);

    // Gradient with an upstream gradient of exactly 1 (the one that reuses
    // forward's gradient as it is), against the unfused ops' backward.
    let grad_of = |loss: &dyn Fn(&Tensor) -> Tensor| {
        let p = x.detach().to_param();
        loss(&p).backward().unwrap();
        p.grad().unwrap().to_vec_f64().unwrap()
    };
    let fused = grad_of(&|p| p.cross_entropy(&tg, -100, Reduction::Mean).unwrap());
    let unfused = grad_of(&unfused_loss);
    for (a, b) in fused.iter().zip(&unfused) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
}

#[test]
fn cross_entropy_with_every_target_ignored_is_nan_with_zero_grad() {
    let x = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.0], (2, 2), &Device::Cpu)
        .unwrap()
        .to_param();
    let tg = ids(vec![-100, -100], &[2]);
    let loss = x.cross_entropy(&tg, -100, Reduction::Mean).unwrap();
    assert!(loss.to_scalar_f64().unwrap().is_nan());
    loss.backward().unwrap();
    assert!(x.grad().unwrap().to_vec::<f32>().unwrap().iter().all(|&g| g == 0.0));
}

/// Causal GQA attention from unfused ops: explicit [Tq, Tk] scores, a
/// bottom-right causal mask, softmax, and a matmul with V (heads repeated).
fn composed_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
    let (b, hq, tq, dh) = (q.dims()[0], q.dims()[1], q.dims()[2], q.dims()[3]);
    let (hkv, tk) = (k.dims()[1], k.dims()[2]);
    let g = hq / hkv;
    let rep = |t: &Tensor| {
        let idx = ids((0..hq).map(|h| (h / g) as i64).collect(), &[hq]);
        t.index_select(1, &idx).unwrap()
    };
    let (k, v) = (rep(k), rep(v));
    let s = q
        .matmul(&k.transpose(2, 3).unwrap())
        .unwrap()
        .affine(scale, 0.0)
        .unwrap();
    let mask: Vec<u8> = (0..tq)
        .flat_map(|i| (0..tk).map(move |j| (j > i + tk - tq) as u8))
        .collect();
    let mask = Tensor::from_vec(mask, (tq, tk), &Device::Cpu).unwrap();
    let p = s.masked_fill(&mask, f64::NEG_INFINITY).unwrap().softmax(-1).unwrap();
    let o = p.matmul(&v).unwrap();
    assert_eq!(o.dims(), &[b, hq, tq, dh]);
    o
}

#[test]
fn causal_attention_gradients_and_value() {
    let mut rng = Rng::seed(105);
    // (B, Hq, Hkv, Tq, Tk, Dh)
    for &(b, hq, hkv, tq, tk, dh) in &[
        (1usize, 1usize, 1usize, 1usize, 1usize, 1usize),
        (2, 2, 1, 4, 4, 3),
        (1, 4, 2, 5, 5, 4),
        (1, 2, 2, 3, 6, 2),
    ] {
        let q = randn(&mut rng, &[b, hq, tq, dh]);
        let k = randn(&mut rng, &[b, hkv, tk, dh]);
        let v = randn(&mut rng, &[b, hkv, tk, dh]);
        gradcheck(
            |xs| xs[0].causal_attention(&xs[1], &xs[2], None),
            &[q.clone(), k.clone(), v.clone()],
        )
        .unwrap_or_else(|e| panic!("attention {:?}: {e}", (b, hq, hkv, tq, tk, dh)));
        let scale = 0.37;
        let got = q.causal_attention(&k, &v, Some(scale)).unwrap();
        let want = composed_attention(&q, &k, &v, scale);
        assert!(max_abs_diff(&got, &want).unwrap() < 1e-13);
    }
    // One tensor as q, k and v (its storage is read three times at once).
    let x = randn(&mut rng, &[1, 2, 4, 3]);
    let want = composed_attention(&x, &x, &x, 0.5);
    assert!(max_abs_diff(&x.causal_attention(&x, &x, Some(0.5)).unwrap(), &want).unwrap() < 1e-13);
    gradcheck(
        |xs| xs[0].causal_attention(&xs[0], &xs[0], None),
        std::slice::from_ref(&x),
    )
    .unwrap();
    // Non-contiguous inputs in the model's layout: [B, T, H, Dh] → [B, H, T, Dh].
    let q = randn(&mut rng, &[1, 5, 4, 3]);
    let k = randn(&mut rng, &[1, 5, 2, 3]);
    let v = randn(&mut rng, &[1, 5, 2, 3]);
    gradcheck(
        |xs| {
            xs[0]
                .transpose(1, 2)?
                .causal_attention(&xs[1].transpose(1, 2)?, &xs[2].transpose(1, 2)?, Some(0.5))
        },
        &[q, k, v],
    )
    .unwrap();
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dev = Device::Cpu;
    let mut rng = Rng::seed(106);
    let x = randn(&mut rng, &[2, 3]);
    // softmax: bad dim, integer input.
    assert!(matches!(x.softmax(2), Err(Error::DimOutOfRange { .. })));
    assert!(matches!(
        ids(vec![1, 2], &[2]).softmax(0),
        Err(Error::UnsupportedDType { .. })
    ));
    // rms_norm: weight of the wrong size or dtype.
    assert!(matches!(
        x.rms_norm(&randn(&mut rng, &[2]), 1e-6),
        Err(Error::ShapeMismatch { .. })
    ));
    let wf = Tensor::ones(3, DType::F32, &dev).unwrap();
    assert!(matches!(x.rms_norm(&wf, 1e-6), Err(Error::DTypeMismatch { .. })));
    // rope: odd head_dim, positions past the table, wrong head size, wrong dtype.
    assert!(matches!(
        Rope::new(3, 8, 1e4, DType::F64, &dev),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        Rope::new(4, 8, -1.0, DType::F64, &dev),
        Err(Error::InvalidShape { .. })
    ));
    let rope = Rope::new(4, 8, 1e4, DType::F64, &dev).unwrap();
    let q = randn(&mut rng, &[1, 2, 3, 4]);
    assert!(matches!(
        q.rope(&rope, 6),
        Err(Error::IndexOutOfRange { index: 8, size: 8, .. })
    ));
    assert!(matches!(
        randn(&mut rng, &[2, 3, 6]).rope(&rope, 0),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        q.to_dtype(DType::F32).unwrap().rope(&rope, 0),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(
        q.rope_at(&rope, &ids(vec![0, 1], &[2])),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        q.rope_at(&rope, &ids(vec![0; 9], &[3, 3])),
        Err(Error::InvalidShape { .. })
    ));
    // cross_entropy: targets out of range or of the wrong shape or dtype.
    let tg = ids(vec![0, 3], &[2]);
    assert!(matches!(
        x.cross_entropy(&tg, -100, Reduction::Mean),
        Err(Error::IndexOutOfRange { index: 3, size: 3, .. })
    ));
    assert!(matches!(
        x.cross_entropy(&ids(vec![0], &[1]), -100, Reduction::Sum),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        x.cross_entropy(&x.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(), -100, Reduction::Sum),
        Err(Error::DTypeMismatch { .. })
    ));
    // attention: head counts, lengths, ranks and shapes.
    let kv = randn(&mut rng, &[1, 3, 3, 4]);
    assert!(matches!(
        q.causal_attention(&kv, &kv, None),
        Err(Error::InvalidShape { .. })
    ));
    let long_q = randn(&mut rng, &[1, 2, 5, 4]);
    let kv1 = randn(&mut rng, &[1, 1, 3, 4]);
    assert!(matches!(
        long_q.causal_attention(&kv1, &kv1, None),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        q.causal_attention(&kv1, &randn(&mut rng, &[1, 1, 3, 5]), None),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        x.causal_attention(&x, &x, None),
        Err(Error::InvalidShape { .. })
    ));
    let _ = uniform(&mut rng, &[1], 0.0, 1.0);
}

#[test]
fn linear_cross_entropy_gradients_in_f64() {
    let mut rng = Rng::seed(120);
    let (d, v) = (6, 9);
    let h = randn(&mut rng, &[2, 3, d]);
    let w = randn(&mut rng, &[v, d]);
    let tg = ids(vec![0, 8, -100, 3, 3, 5], &[2, 3]);
    for red in [Reduction::Mean, Reduction::Sum] {
        gradcheck(
            |xs| xs[0].linear_cross_entropy(&xs[1], &tg, DEFAULT_IGNORE_INDEX, red),
            &[h.clone(), w.clone()],
        )
        .unwrap_or_else(|e| panic!("{red:?}: {e}"));
    }
    // Non-contiguous hidden states and a transposed-view weight.
    let ht = randn(&mut rng, &[d, 4]);
    let wt = randn(&mut rng, &[d, v]);
    let t4 = ids(vec![1, 2, 3, 4], &[4]);
    gradcheck(
        |xs| xs[0].t()?.linear_cross_entropy(&xs[1].t()?, &t4, -100, Reduction::Mean),
        &[ht, wt],
    )
    .unwrap();
}

/// The loss and the gradients of h and W, with `scale` applied to the loss
/// before backward, either fused or as the LM head's matmul then cross-entropy.
fn head_loss_and_grads(h: &Tensor, w: &Tensor, tg: &Tensor, fused: bool, scale: f64) -> (u32, Vec<u32>, Vec<u32>) {
    let (hp, wp) = (h.detach().to_param(), w.detach().to_param());
    let loss = if fused {
        hp.linear_cross_entropy(&wp, tg, -100, Reduction::Mean).unwrap()
    } else {
        hp.matmul(&wp.t().unwrap())
            .unwrap()
            .cross_entropy(tg, -100, Reduction::Mean)
            .unwrap()
    };
    let value = loss.to_vec::<f32>().unwrap()[0].to_bits();
    let total = if scale == 1.0 {
        loss
    } else {
        loss.mul_scalar(scale).unwrap()
    };
    total.backward().unwrap();
    let bits = |t: Tensor| t.to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect();
    (value, bits(hp.grad().unwrap()), bits(wp.grad().unwrap()))
}

#[test]
fn linear_cross_entropy_gives_the_separate_ops_bits() {
    // Large enough for the packed, threaded products and the parallel
    // cross-entropy; every fifth row ignored. A vocabulary of 8192 puts the
    // 300 rows' logits in two chunks (256 rows of 8 MiB, then 44); 257 (odd)
    // in one, and the bf16 backward products take their widened path.
    for v in [8192, 257] {
        separate_ops_bits(v);
    }
}

fn separate_ops_bits(v: usize) {
    use moe_tensor::{with_matmul_precision, MatmulPrecision};
    let mut rng = Rng::seed(121);
    let (b, t, d) = (3, 100, 48);
    let h = randn(&mut rng, &[b, t, d]).to_dtype(DType::F32).unwrap();
    let w = randn(&mut rng, &[v, d]).to_dtype(DType::F32).unwrap();
    let tg: Vec<i64> = (0..b * t)
        .map(|i| if i % 5 == 4 { -100 } else { ((i * 37 + 5) % v) as i64 })
        .collect();
    let tg = ids(tg, &[b, t]);
    for precision in [MatmulPrecision::Highest, MatmulPrecision::Bf16] {
        with_matmul_precision(precision, || {
            // An upstream gradient of 1, a power of two (exact either way)
            // and, in f32, any other.
            let scales: &[f64] = match precision {
                MatmulPrecision::Highest => &[1.0, 0.5, 0.3],
                MatmulPrecision::Bf16 => &[1.0, 0.5],
            };
            for &scale in scales {
                let fused = head_loss_and_grads(&h, &w, &tg, true, scale);
                let separate = head_loss_and_grads(&h, &w, &tg, false, scale);
                assert_eq!(fused.0, separate.0, "{precision:?} loss");
                assert_eq!(fused.1, separate.1, "{precision:?} scale {scale}: dh");
                assert_eq!(fused.2, separate.2, "{precision:?} scale {scale}: dW");
            }
            // Without a graph: the same loss, nothing kept.
            let plain = moe_tensor::no_grad(|| h.linear_cross_entropy(&w, &tg, -100, Reduction::Mean).unwrap());
            assert!(!plain.requires_grad());
            assert_eq!(
                plain.to_vec::<f32>().unwrap()[0].to_bits(),
                head_loss_and_grads(&h, &w, &tg, true, 1.0).0
            );
        });
    }
    // In bf16, another upstream gradient scales after the products: close to
    // scaling before them, not equal.
    with_matmul_precision(MatmulPrecision::Bf16, || {
        let fused = head_loss_and_grads(&h, &w, &tg, true, 0.3);
        let separate = head_loss_and_grads(&h, &w, &tg, false, 0.3);
        for (got, want) in [(&fused.1, &separate.1), (&fused.2, &separate.2)] {
            let f = |v: &[u32]| v.iter().map(|&x| f32::from_bits(x)).collect::<Vec<_>>();
            let (got, want) = (f(got), f(want));
            let top = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            // bf16 keeps 8 bits: a few of its roundings against the largest entry.
            for (a, s) in got.iter().zip(&want) {
                assert!((a - s).abs() <= 2e-2 * top, "{a} vs {s} (largest {top})");
            }
            assert_ne!(got, want, "rounding before and after the scale should differ somewhere");
        }
    });
}

#[test]
fn linear_cross_entropy_rejects_bad_shapes_and_targets() {
    let mut rng = Rng::seed(122);
    let h = randn(&mut rng, &[2, 4]);
    let w = randn(&mut rng, &[5, 4]);
    let lce = |h: &Tensor, w: &Tensor, tg: &Tensor| h.linear_cross_entropy(w, tg, -100, Reduction::Mean);
    let tg = ids(vec![1, 2], &[2]);
    let e = lce(&h, &randn(&mut rng, &[5, 3]), &tg).unwrap_err();
    assert!(e.to_string().contains("linear_cross_entropy"), "{e}");
    let e = lce(&h, &w, &ids(vec![1, 2, 3], &[3])).unwrap_err();
    assert!(e.to_string().contains("linear_cross_entropy"), "{e}");
    let e = lce(&h, &w, &ids(vec![1, 5], &[2])).unwrap_err();
    assert!(e.to_string().contains('5'), "{e}");
    let e = lce(&h, &w.to_dtype(DType::F32).unwrap(), &tg).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
}
