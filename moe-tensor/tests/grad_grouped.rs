//! `grouped_matmul`: forward against per-segment `matmul`, finite-difference
//! gradient checks (f64) with empty segments and strided operands, the zero
//! gradient of an expert without rows, and typed errors for bad arguments.

mod common;

use common::randn;
use moe_tensor::init::Rng;
use moe_tensor::testing::{gradcheck, max_abs_diff};
use moe_tensor::{DType, Device, Error, Segments, Tensor};

/// The same product written with ordinary ops: narrow each segment, matmul, cat rows.
fn reference(x: &Tensor, w: &Tensor, counts: &[usize]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut row = 0;
    for (e, &r) in counts.iter().enumerate() {
        if r > 0 {
            let y = x
                .narrow(0, row, r)
                .unwrap()
                .matmul(&w.narrow(0, e, 1).unwrap().squeeze(0).unwrap())
                .unwrap();
            out.extend(y.to_vec_f64().unwrap());
        }
        row += r;
    }
    out
}

#[test]
fn forward_matches_per_segment_matmul() {
    let mut rng = Rng::seed(11);
    for counts in [vec![2, 0, 3, 1], vec![0, 0, 5], vec![4], vec![1, 1, 1, 1, 1, 0]] {
        let m: usize = counts.iter().sum();
        let x = randn(&mut rng, &[m, 5]);
        let w = randn(&mut rng, &[counts.len(), 5, 3]);
        let y = x.grouped_matmul(&w, &counts).unwrap();
        assert_eq!(y.dims(), &[m, 3]);
        let want = reference(&x, &w, &counts);
        let got = y.to_vec_f64().unwrap();
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "{counts:?}: max error {err}");
        // f32 agrees with f64 to f32 precision.
        let y32 = x
            .to_dtype(DType::F32)
            .unwrap()
            .grouped_matmul(&w.to_dtype(DType::F32).unwrap(), &counts)
            .unwrap();
        assert!(max_abs_diff(&y32.to_dtype(DType::F64).unwrap(), &y).unwrap() < 1e-5);
    }
}

#[test]
fn large_segments_match_per_segment_matmul() {
    // Big enough (≈ 6M multiply-adds) for the kernel to run segments in parallel.
    let mut rng = Rng::seed(12);
    let counts = [190, 0, 7, 300, 3];
    let m: usize = counts.iter().sum();
    let x = randn(&mut rng, &[m, 64]).to_dtype(DType::F32).unwrap();
    let w = randn(&mut rng, &[counts.len(), 64, 40]).to_dtype(DType::F32).unwrap();
    let got = x.grouped_matmul(&w, &counts).unwrap().to_vec_f64().unwrap();
    let want = reference(&x, &w, &counts);
    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-4, "max error {err}");
}

#[test]
fn gradients_match_finite_differences_with_empty_segments() {
    let mut rng = Rng::seed(13);
    for counts in [vec![2, 0, 3, 1], vec![0, 4, 0], vec![3]] {
        let m: usize = counts.iter().sum();
        let x = randn(&mut rng, &[m, 4]);
        let w = randn(&mut rng, &[counts.len(), 4, 3]);
        let c = counts.clone();
        gradcheck(move |t| t[0].grouped_matmul(&t[1], &c), &[x, w]).unwrap_or_else(|e| panic!("{counts:?}: {e}"));
    }
}

/// `[E + 1]` segment offsets of `counts` as an I64 tensor on `dev`.
fn offsets(counts: &[usize], dev: &Device) -> Tensor {
    let mut o = vec![0i64];
    for &c in counts {
        o.push(o[o.len() - 1] + c as i64);
    }
    Tensor::from_vec(o, counts.len() + 1, dev).unwrap()
}

#[test]
fn offsets_segments_equal_counts_in_value_and_gradient() {
    let mut rng = Rng::seed(14);
    for counts in [vec![2, 0, 3, 1], vec![0, 4, 0]] {
        let m: usize = counts.iter().sum();
        let x = randn(&mut rng, &[m, 4]);
        let w = randn(&mut rng, &[counts.len(), 4, 3]);
        let by_counts = x.grouped_matmul(&w, &counts).unwrap();
        let o = offsets(&counts, &Device::Cpu);
        let by_offsets = x.grouped_matmul(&w, Segments::Offsets(o.clone())).unwrap();
        assert_eq!(by_counts.to_vec_f64().unwrap(), by_offsets.to_vec_f64().unwrap());
        gradcheck(
            move |t| t[0].grouped_matmul(&t[1].transpose(1, 2)?, Segments::Offsets(o.clone())),
            &[x, w.transpose(1, 2).unwrap().contiguous().unwrap()],
        )
        .unwrap_or_else(|e| panic!("{counts:?}: {e}"));
    }
}

#[test]
fn rows_past_the_segments_are_zero_with_zero_gradient() {
    // 6 rows, segments cover 4: rows 4 and 5 belong to no expert.
    let mut rng = Rng::seed(16);
    let x = randn(&mut rng, &[6, 3]);
    let w = randn(&mut rng, &[2, 3, 2]);
    let (xp, wp) = (x.to_param(), w.to_param());
    let y = xp.grouped_matmul(&wp, &[1, 3]).unwrap();
    let head = x.narrow(0, 0, 4).unwrap().grouped_matmul(&w, &[1, 3]).unwrap();
    let got = y.to_vec_f64().unwrap();
    assert_eq!(&got[..8], head.to_vec_f64().unwrap().as_slice());
    assert_eq!(&got[8..], &[0.0; 4]);
    let by_offsets = x
        .grouped_matmul(&w, Segments::Offsets(offsets(&[1, 3], &Device::Cpu)))
        .unwrap();
    assert_eq!(by_offsets.to_vec_f64().unwrap(), got);
    y.sum_all().unwrap().backward().unwrap();
    let gx = xp.grad().unwrap().to_vec_f64().unwrap();
    assert_eq!(&gx[12..], &[0.0; 6]);
    gradcheck(|t| t[0].grouped_matmul(&t[1], &[1, 3]), &[x, w]).unwrap();
}

#[test]
fn bad_offsets_are_typed_errors() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((5, 4), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((2, 4, 2), DType::F32, &dev).unwrap();
    for bad in [vec![0i64, 3, 6], vec![1, 3, 5], vec![0, 4, 3], vec![0, -1, 5]] {
        let o = Tensor::from_vec(bad.clone(), 3, &dev).unwrap();
        let r = x.grouped_matmul(&w, Segments::Offsets(o));
        assert!(matches!(r, Err(Error::InvalidShape { .. })), "{bad:?}: {r:?}");
    }
    let short = Tensor::from_vec(vec![0i64, 5], 2, &dev).unwrap();
    assert!(x.grouped_matmul(&w, Segments::Offsets(short)).is_err());
    let float = Tensor::from_vec(vec![0f32, 2.0, 5.0], 3, &dev).unwrap();
    assert!(x.grouped_matmul(&w, Segments::Offsets(float)).is_err());
}

#[test]
fn dispatch_plan_offsets_drive_the_grouped_matmul() {
    // The plan of router ids, then the experts over its device-style offsets,
    // equal the per-segment matmuls of the permuted rows.
    let mut rng = Rng::seed(15);
    let ids = Tensor::from_vec(vec![2i64, 0, 1, 2, 2, 1, 0, 2], (4, 2), &Device::Cpu).unwrap();
    let plan = ids.dispatch_plan(3).unwrap();
    let x = randn(&mut rng, &[4, 5]);
    let x_md = x.index_select(0, &plan.token_of_row).unwrap();
    let w = randn(&mut rng, &[3, 5, 2]);
    let y = x_md
        .grouped_matmul(&w, Segments::Offsets(plan.offsets.clone()))
        .unwrap();
    let counts: Vec<usize> = plan
        .counts
        .to_vec::<i64>()
        .unwrap()
        .iter()
        .map(|&c| c as usize)
        .collect();
    assert_eq!(counts, vec![2, 2, 4]);
    assert_eq!(y.to_vec_f64().unwrap(), reference(&x_md, &w, &counts));
}

#[test]
fn gradients_match_finite_differences_with_strided_operands() {
    // x as a transposed [D, M] view and w in HF's [E, F, D] layout, transposed.
    let mut rng = Rng::seed(14);
    let counts = vec![1, 3, 0, 2];
    let xt = randn(&mut rng, &[4, 6]);
    let w_efd = randn(&mut rng, &[4, 3, 4]);
    let c = counts.clone();
    gradcheck(
        move |t| t[0].t()?.grouped_matmul(&t[1].transpose(1, 2)?, &c),
        &[xt.clone(), w_efd.clone()],
    )
    .unwrap();
    // And the strided forward equals the contiguous one.
    let strided = xt
        .t()
        .unwrap()
        .grouped_matmul(&w_efd.transpose(1, 2).unwrap(), &counts)
        .unwrap();
    let dense = xt
        .t()
        .unwrap()
        .contiguous()
        .unwrap()
        .grouped_matmul(&w_efd.transpose(1, 2).unwrap().contiguous().unwrap(), &counts)
        .unwrap();
    assert_eq!(max_abs_diff(&strided, &dense).unwrap(), 0.0);
}

#[test]
fn hf_layout_weight_gets_a_contiguous_gradient() {
    // w stored as [E, F, D] and used as its (1, 2) transpose: the gradient
    // arrives contiguous in [E, F, D], equal to the per-expert dyᵀ·x.
    let mut rng = Rng::seed(15);
    let counts = vec![2, 0, 3];
    let x = randn(&mut rng, &[5, 4]);
    let w_efd = randn(&mut rng, &[3, 6, 4]).to_param();
    let dy = randn(&mut rng, &[5, 6]);
    x.grouped_matmul(&w_efd.transpose(1, 2).unwrap(), &counts)
        .unwrap()
        .backward_with(&dy)
        .unwrap();
    let g = w_efd.grad().unwrap();
    assert!(g.is_contiguous());
    let mut start = 0;
    for (e, &c) in counts.iter().enumerate() {
        let ge = g.narrow(0, e, 1).unwrap().squeeze(0).unwrap();
        let expected = if c == 0 {
            ge.zeros_like().unwrap()
        } else {
            let dy_e = dy.narrow(0, start, c).unwrap();
            dy_e.t().unwrap().matmul(&x.narrow(0, start, c).unwrap()).unwrap()
        };
        assert!(max_abs_diff(&ge, &expected).unwrap() < 1e-12, "expert {e}");
        start += c;
    }
}

#[test]
fn expert_without_rows_gets_a_zero_gradient() {
    let mut rng = Rng::seed(15);
    let counts = [3, 0, 2];
    let x = randn(&mut rng, &[5, 4]).to_param();
    let w = randn(&mut rng, &[3, 4, 2]).to_param();
    x.grouped_matmul(&w, &counts)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gw = w.grad().expect("w has a gradient");
    assert_eq!(gw.dims(), &[3, 4, 2]);
    let g = gw.to_vec_f64().unwrap();
    assert!(g[8..16].iter().all(|&v| v == 0.0), "expert 1 had no rows");
    assert!(g[..8].iter().any(|&v| v != 0.0) && g[16..].iter().any(|&v| v != 0.0));
    assert_eq!(x.grad().unwrap().dims(), &[5, 4]);

    // No rows at all: an empty output, and still a zero (not missing) weight gradient.
    let x0 = Tensor::zeros((0, 4), DType::F64, &Device::Cpu).unwrap();
    let w0 = randn(&mut rng, &[2, 4, 3]).to_param();
    let y0 = x0.grouped_matmul(&w0, &[0, 0]).unwrap();
    assert_eq!(y0.dims(), &[0, 3]);
    y0.sum_all()
        .unwrap()
        .add(&w0.sum_all().unwrap().mul_scalar(0.0).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    assert!(w0.grad().unwrap().to_vec_f64().unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn bad_arguments_are_typed_errors() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((5, 4), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((3, 4, 2), DType::F32, &dev).unwrap();
    let bad_sum = x.grouped_matmul(&w, &[2, 2, 2]);
    assert!(matches!(bad_sum, Err(Error::InvalidShape { .. })), "{bad_sum:?}");
    let bad_len = x.grouped_matmul(&w, &[5, 0]);
    assert!(matches!(bad_len, Err(Error::InvalidShape { .. })), "{bad_len:?}");
    let overflow = x.grouped_matmul(&w, &[usize::MAX, 6, 0]);
    assert!(matches!(overflow, Err(Error::InvalidShape { .. })), "{overflow:?}");
    let w_bad_d = Tensor::zeros((3, 5, 2), DType::F32, &dev).unwrap();
    assert!(matches!(
        x.grouped_matmul(&w_bad_d, &[5, 0, 0]),
        Err(Error::ShapeMismatch { .. })
    ));
    let w64 = Tensor::zeros((3, 4, 2), DType::F64, &dev).unwrap();
    assert!(matches!(
        x.grouped_matmul(&w64, &[5, 0, 0]),
        Err(Error::DTypeMismatch { .. })
    ));
    let xi = Tensor::zeros((5, 4), DType::I64, &dev).unwrap();
    let wi = Tensor::zeros((3, 4, 2), DType::I64, &dev).unwrap();
    assert!(matches!(
        xi.grouped_matmul(&wi, &[5, 0, 0]),
        Err(Error::UnsupportedDType { .. })
    ));
    let w2 = Tensor::zeros((4, 2), DType::F32, &dev).unwrap();
    assert!(matches!(x.grouped_matmul(&w2, &[5]), Err(Error::InvalidShape { .. })));
}

/// `expert_combine` written with ordinary ops: gather rows, weight, sum over K.
fn combine_reference(y: &Tensor, rows: &[i64], w: &Tensor, k: usize) -> moe_tensor::Result<Tensor> {
    let (m, d) = (y.dims()[0], y.dims()[1]);
    let zero = Tensor::zeros((1, d), y.dtype(), &y.device())?;
    let padded = Tensor::cat(&[y, &zero], 0)?;
    let idx: Vec<i64> = rows.iter().map(|&r| if r < 0 { m as i64 } else { r }).collect();
    let n = rows.len() / k;
    let picked = padded.index_select(0, &Tensor::from_vec(idx, rows.len(), &y.device())?)?;
    picked
        .mul(&w.reshape((n * k, 1))?)?
        .reshape((n, k, d))?
        .sum(&[1], false)
}

#[test]
fn expert_combine_matches_gather_weight_sum_and_finite_differences() {
    let mut rng = Rng::seed(16);
    // 4 tokens, K = 2, 6 expert rows: one copy dropped (-1), row 5 read by two
    // copies, row 4 by none.
    let rows = vec![0i64, 5, 1, 2, 3, -1, 5, 0];
    let rows_t = Tensor::from_vec(rows.clone(), (4, 2), &Device::Cpu).unwrap();
    let y = randn(&mut rng, &[6, 3]);
    let w = randn(&mut rng, &[4, 2]);
    let got = y.expert_combine(&rows_t, &w).unwrap();
    let want = combine_reference(&y, &rows, &w, 2).unwrap();
    assert!(max_abs_diff(&got, &want).unwrap() < 1e-14);
    let r = rows_t.clone();
    gradcheck(move |t| t[0].expert_combine(&r, &t[1]), &[y.clone(), w.clone()]).unwrap();
    // Zero gradients for the unread row and the dropped copy's weight.
    let (yp, wp) = (y.to_param(), w.to_param());
    yp.expert_combine(&rows_t, &wp)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(yp.grad().unwrap().to_vec_f64().unwrap()[12..15]
        .iter()
        .all(|&v| v == 0.0));
    assert_eq!(wp.grad().unwrap().to_vec_f64().unwrap()[5], 0.0);
    // f32, a larger parallel-sized case, and a transposed (non-contiguous) y.
    let rows: Vec<i64> = (0..4096i64).map(|i| (i * 7919) % 3000 - 100).collect();
    let rows_t = Tensor::from_vec(rows.clone(), (1024, 4), &Device::Cpu).unwrap();
    let y = randn(&mut rng, &[256, 3000]).to_dtype(DType::F32).unwrap().t().unwrap();
    let w = randn(&mut rng, &[1024, 4]).to_dtype(DType::F32).unwrap();
    let got = y.expert_combine(&rows_t, &w).unwrap();
    let want = combine_reference(&y, &rows, &w, 4).unwrap();
    assert!(max_abs_diff(&got, &want).unwrap() < 1e-4);
}

#[test]
fn expert_combine_rejects_bad_rows_and_shapes() {
    let y = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    let rows = |v: Vec<i64>| Tensor::from_vec(v, (2, 2), &Device::Cpu).unwrap();
    assert!(matches!(
        y.expert_combine(&rows(vec![0, 1, 2, 3]), &w),
        Err(Error::IndexOutOfRange { index: 3, size: 3, .. })
    ));
    let w1 = Tensor::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        y.expert_combine(&rows(vec![0, 1, 2, 0]), &w1),
        Err(Error::InvalidShape { .. })
    ));
    let w64 = Tensor::zeros((2, 2), DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(
        y.expert_combine(&rows(vec![0, 1, 2, 0]), &w64),
        Err(Error::DTypeMismatch { .. })
    ));
    let frows = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(y.expert_combine(&frows, &w), Err(Error::DTypeMismatch { .. })));
}
