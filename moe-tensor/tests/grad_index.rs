//! Indexing and data-movement ops: forward values against reference loops,
//! gradients against central finite differences in f64 (random shapes, every
//! dim, non-contiguous inputs), and the errors bad input must give.

mod common;

use common::{randn, random_dims};
use moe_tensor::init::Rng;
use moe_tensor::testing::gradcheck;
use moe_tensor::{DType, Device, Error, Tensor};

const CPU: Device = Device::Cpu;

/// Runs the finite-difference check and asserts the checked graph went
/// through `op`'s backward (so a test cannot pass by skipping the op).
fn check(op: &str, f: impl Fn(&[Tensor]) -> moe_tensor::Result<Tensor>, inputs: &[Tensor]) {
    let report = gradcheck(f, inputs).unwrap_or_else(|e| panic!("{op}: {e}"));
    assert!(
        report.ops.contains(op),
        "{op} not among the checked ops {:?}",
        report.ops
    );
    assert!(report.checked > 0);
}

/// An I64 tensor of `dims` with entries uniform in `0..size`.
fn rand_index(rng: &mut Rng, dims: &[usize], size: usize) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<i64> = (0..n).map(|_| rng.below(size as u64) as i64).collect();
    Tensor::from_vec(v, dims.to_vec(), &CPU).unwrap()
}

/// A U8 mask of `dims` with about half its entries set.
fn rand_mask(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<u8> = (0..n).map(|_| rng.below(2) as u8).collect();
    Tensor::from_vec(v, dims.to_vec(), &CPU).unwrap()
}

/// Row-major strides of `dims`, for the reference loops.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The multi-index of flat position `p` in `dims`.
fn unravel(mut p: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for i in (0..dims.len()).rev() {
        idx[i] = p % dims[i];
        p /= dims[i];
    }
    idx
}

fn ravel(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter().zip(strides(dims)).map(|(i, s)| i * s).sum()
}

#[test]
fn embedding_forward_and_gradient() {
    let mut rng = Rng::seed(100);
    for _ in 0..3 {
        let (v, d) = (2 + rng.below(5) as usize, 1 + rng.below(4) as usize);
        let w = randn(&mut rng, &[v, d]);
        // More ids than rows, so some repeat and their gradients must add up.
        let ids = rand_index(&mut rng, &[2, v + 1], v);
        let y = w.embedding(&ids).unwrap();
        assert_eq!(y.dims(), &[2, v + 1, d]);
        let (wv, iv, yv) = (
            w.to_vec_f64().unwrap(),
            ids.to_vec::<i64>().unwrap(),
            y.to_vec_f64().unwrap(),
        );
        for (n, &id) in iv.iter().enumerate() {
            assert_eq!(&yv[n * d..(n + 1) * d], &wv[id as usize * d..(id as usize + 1) * d]);
        }
        check("embedding", |xs| xs[0].embedding(&ids), std::slice::from_ref(&w));
        // A transposed table view.
        let wt = randn(&mut rng, &[d, v]);
        check("embedding", |xs| xs[0].t()?.embedding(&ids), &[wt]);
    }
}

#[test]
fn index_select_forward_and_gradient_on_every_dim() {
    let mut rng = Rng::seed(101);
    for _ in 0..3 {
        let dims = random_dims(&mut rng, 3, 4);
        let x = randn(&mut rng, &dims);
        for dim in 0..3 {
            let idx = rand_index(&mut rng, &[dims[dim] + 2], dims[dim]);
            let y = x.index_select(dim as isize, &idx).unwrap();
            let (xv, iv, yv) = (
                x.to_vec_f64().unwrap(),
                idx.to_vec::<i64>().unwrap(),
                y.to_vec_f64().unwrap(),
            );
            for (p, &got) in yv.iter().enumerate() {
                let mut at = unravel(p, y.dims());
                at[dim] = iv[at[dim]] as usize;
                assert_eq!(got, xv[ravel(&at, &dims)]);
            }
            check(
                "index_select",
                |xs| xs[0].index_select(dim as isize, &idx),
                std::slice::from_ref(&x),
            );
        }
        // Non-contiguous input: select along dim 0 of a permuted view.
        let idx = rand_index(&mut rng, &[3], dims[2]);
        check(
            "index_select",
            |xs| xs[0].permute(&[2, 0, 1])?.index_select(0, &idx),
            std::slice::from_ref(&x),
        );
    }
    // A rank-0 index keeps the dim with size 1.
    let x = randn(&mut rng, &[3, 2]);
    let i0 = Tensor::from_vec(vec![2i64], (), &CPU).unwrap();
    assert_eq!(x.index_select(0, &i0).unwrap().dims(), &[1, 2]);
}

#[test]
fn gather_forward_and_gradient_on_every_dim() {
    let mut rng = Rng::seed(102);
    for _ in 0..3 {
        let dims = random_dims(&mut rng, 3, 4);
        let x = randn(&mut rng, &dims);
        for dim in 0..3 {
            // Index larger than x along `dim` (repeats) and, in other dims,
            // sometimes smaller: only the leading part of x is read.
            let mut idims: Vec<usize> = dims.iter().map(|&s| 1 + rng.below(s as u64) as usize).collect();
            idims[dim] = dims[dim] + 1;
            let idx = rand_index(&mut rng, &idims, dims[dim]);
            let y = x.gather(dim as isize, &idx).unwrap();
            assert_eq!(y.dims(), &idims[..]);
            let (xv, iv, yv) = (
                x.to_vec_f64().unwrap(),
                idx.to_vec::<i64>().unwrap(),
                y.to_vec_f64().unwrap(),
            );
            for (p, &got) in yv.iter().enumerate() {
                let mut at = unravel(p, &idims);
                at[dim] = iv[p] as usize;
                assert_eq!(got, xv[ravel(&at, &dims)]);
            }
            check(
                "gather",
                |xs| xs[0].gather(dim as isize, &idx),
                std::slice::from_ref(&x),
            );
        }
        // Non-contiguous input.
        let xt = randn(&mut rng, &[dims[2], dims[1], dims[0]]);
        let idx = rand_index(&mut rng, &dims, dims[1]);
        check("gather", |xs| xs[0].transpose(0, 2)?.gather(1, &idx), &[xt]);
    }
}

#[test]
fn scatter_add_forward_and_gradients_on_every_dim() {
    let mut rng = Rng::seed(103);
    for _ in 0..3 {
        let dims = random_dims(&mut rng, 3, 4);
        let x = randn(&mut rng, &dims);
        for dim in 0..3 {
            // src may be larger than the index in every dim; the index may be
            // smaller than x in the other dims (the padded path).
            let mut idims: Vec<usize> = dims.iter().map(|&s| 1 + rng.below(s as u64) as usize).collect();
            idims[dim] = 1 + rng.below(5) as usize;
            let sdims: Vec<usize> = idims.iter().map(|&s| s + rng.below(2) as usize).collect();
            let idx = rand_index(&mut rng, &idims, dims[dim]);
            let src = randn(&mut rng, &sdims);
            let y = x.scatter_add(dim as isize, &idx, &src).unwrap();
            // Reference: y = x, then one add per index element.
            let (iv, sv) = (idx.to_vec::<i64>().unwrap(), src.to_vec_f64().unwrap());
            let mut want = x.to_vec_f64().unwrap();
            for (p, &t) in iv.iter().enumerate() {
                let at = unravel(p, &idims);
                let mut to = at.clone();
                to[dim] = t as usize;
                want[ravel(&to, &dims)] += sv[ravel(&at, &sdims)];
            }
            let got = y.to_vec_f64().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{g} vs {w}");
            }
            check(
                "scatter_add",
                |xs| xs[0].scatter_add(dim as isize, &idx, &xs[1]),
                &[x.clone(), src],
            );
        }
        // Non-contiguous self and src.
        let xt = randn(&mut rng, &[dims[1], dims[0]]);
        let st = randn(&mut rng, &[dims[1], dims[0] + 1]);
        let idx = rand_index(&mut rng, &[dims[0] + 1, dims[1]], dims[0]);
        check(
            "scatter_add",
            |xs| xs[0].t()?.scatter_add(0, &idx, &xs[1].t()?),
            &[xt, st],
        );
    }
}

#[test]
fn cat_stack_split_chunk_gradients() {
    let mut rng = Rng::seed(104);
    for _ in 0..3 {
        let dims = random_dims(&mut rng, 3, 4);
        for dim in 0..3 {
            let mut d2 = dims.clone();
            d2[dim] += 1;
            let a = randn(&mut rng, &dims);
            let b = randn(&mut rng, &d2);
            // c enters as a permuted (non-contiguous) view of shape `dims`.
            let c = randn(&mut rng, &[dims[2], dims[0], dims[1]]);
            let f = |xs: &[Tensor]| {
                let cv = xs[2].permute(&[1, 2, 0])?;
                Tensor::cat(&[&xs[0], &xs[1], &cv], dim as isize)
            };
            let y = f(&[a.clone(), b.clone(), c.clone()]).unwrap();
            assert_eq!(y.dims()[dim], 3 * dims[dim] + 1);
            // Splitting the result gives the parts back.
            let parts = y.split(&[dims[dim], dims[dim] + 1, dims[dim]], dim as isize).unwrap();
            assert_eq!(parts[0].to_vec_f64().unwrap(), a.to_vec_f64().unwrap());
            assert_eq!(parts[1].to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
            check("cat", f, &[a.clone(), b, c]);
            // The second part enters as a permuted (non-contiguous) view of shape `dims`.
            let s = randn(&mut rng, &[dims[2], dims[0], dims[1]]);
            let g = |d: isize| move |xs: &[Tensor]| Tensor::stack(&[&xs[0], &xs[1].permute(&[1, 2, 0])?], d);
            check("cat", g(dim as isize), &[a.clone(), s.clone()]);
            check("cat", g(-1), &[a, s]);
        }
    }
    // Split and chunk pieces are views; route each through a different op.
    let x = randn(&mut rng, &[3, 7]);
    check(
        "narrow",
        |xs| {
            let p = xs[0].split(&[2, 4, 1], 1)?;
            Tensor::cat(&[&p[0].exp()?, &p[1].mul_scalar(3.0)?, &p[2].sqr()?], 1)
        },
        std::slice::from_ref(&x),
    );
    check(
        "narrow",
        |xs| {
            let p = xs[0].t()?.chunk(2, 0)?;
            assert_eq!(p.len(), 2);
            p[0].tanh()?.sum(&[0], false)?.add(&p[1].sum(&[0], false)?)
        },
        &[x],
    );
}

#[test]
fn where_cond_and_masked_fill_broadcast_and_route_gradients() {
    let mut rng = Rng::seed(105);
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[3, 4], &[3, 4], &[3, 4]),
        (&[4, 1, 5], &[3, 5], &[4, 3, 1]),
        (&[2, 3], &[], &[3]),
        (&[1], &[2, 2], &[2, 1]),
    ];
    for (md, ad, bd) in cases {
        let m = rand_mask(&mut rng, md);
        let a = randn(&mut rng, ad);
        let b = randn(&mut rng, bd);
        let y = m.where_cond(&a, &b).unwrap();
        let shape = y.dims().to_vec();
        let (mv, av, bv, yv) = (
            m.to_vec::<u8>().unwrap(),
            a.to_vec_f64().unwrap(),
            b.to_vec_f64().unwrap(),
            y.to_vec_f64().unwrap(),
        );
        // Reference: read each operand at the broadcast position.
        let at = |v: &[f64], dims: &[usize], idx: &[usize]| -> f64 {
            let lead = idx.len() - dims.len();
            let i: Vec<usize> = dims
                .iter()
                .enumerate()
                .map(|(k, &s)| if s == 1 { 0 } else { idx[lead + k] })
                .collect();
            v[ravel(&i, dims)]
        };
        let mvf: Vec<f64> = mv.iter().map(|&x| x as f64).collect();
        for (p, &got) in yv.iter().enumerate() {
            let idx = unravel(p, &shape);
            let want = if at(&mvf, md, &idx) != 0.0 {
                at(&av, ad, &idx)
            } else {
                at(&bv, bd, &idx)
            };
            assert_eq!(got, want);
        }
        check("where_cond", |xs| Tensor::where_cond(&m, &xs[0], &xs[1]), &[a, b]);
    }
    // masked_fill with a broadcast mask, on a non-contiguous input. (A huge fill
    // such as -1e9 would swamp the finite difference in f64 rounding.)
    let x = randn(&mut rng, &[4, 3]);
    let m = rand_mask(&mut rng, &[1, 4]);
    check(
        "where_cond",
        |xs| xs[0].t()?.masked_fill(&m, -2.5),
        std::slice::from_ref(&x),
    );
    let y = x.t().unwrap().masked_fill(&m, 5.0).unwrap();
    let (xv, mv, yv) = (
        x.t().unwrap().to_vec_f64().unwrap(),
        m.to_vec::<u8>().unwrap(),
        y.to_vec_f64().unwrap(),
    );
    for (p, &got) in yv.iter().enumerate() {
        assert_eq!(got, if mv[p % 4] != 0 { 5.0 } else { xv[p] });
    }
}

#[test]
fn cumsum_forward_and_gradient_on_every_dim() {
    let mut rng = Rng::seed(106);
    for _ in 0..3 {
        let dims = random_dims(&mut rng, 3, 5);
        let x = randn(&mut rng, &dims);
        for dim in 0..3 {
            let y = x.cumsum(dim as isize).unwrap();
            let (xv, yv) = (x.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
            for (p, &got) in yv.iter().enumerate() {
                let mut idx = unravel(p, &dims);
                let upto = idx[dim];
                let mut want = 0.0;
                for e in 0..=upto {
                    idx[dim] = e;
                    want += xv[ravel(&idx, &dims)];
                }
                assert!((got - want).abs() < 1e-12);
            }
            check("cumsum", |xs| xs[0].cumsum(dim as isize), std::slice::from_ref(&x));
        }
        check(
            "cumsum",
            |xs| xs[0].transpose(0, 2)?.cumsum(-1),
            std::slice::from_ref(&x),
        );
    }
}

#[test]
fn topk_values_carry_gradient_and_argmax_agrees() {
    let mut rng = Rng::seed(107);
    for _ in 0..3 {
        let dims = random_dims(&mut rng, 3, 6);
        let n = dims[2];
        let x = randn(&mut rng, &dims);
        for k in [1, n.div_ceil(2), n] {
            let (v, i) = x.topk(k).unwrap();
            assert_eq!(v.dims(), &[dims[0], dims[1], k]);
            // Reference: sort each row descending (random normals have no ties).
            let (xv, vv, iv) = (
                x.to_vec_f64().unwrap(),
                v.to_vec_f64().unwrap(),
                i.to_vec::<i64>().unwrap(),
            );
            for r in 0..dims[0] * dims[1] {
                let row = &xv[r * n..(r + 1) * n];
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
                let want_i: Vec<i64> = order[..k].iter().map(|&j| j as i64).collect();
                assert_eq!(&iv[r * k..(r + 1) * k], &want_i[..]);
                let want_v: Vec<f64> = order[..k].iter().map(|&j| row[j]).collect();
                assert_eq!(&vv[r * k..(r + 1) * k], &want_v[..]);
            }
            check("topk", |xs| Ok(xs[0].topk(k)?.0), std::slice::from_ref(&x));
        }
        // Non-contiguous input: top-k over what was dim 0.
        check(
            "topk",
            |xs| Ok(xs[0].transpose(0, 2)?.topk(1)?.0),
            std::slice::from_ref(&x),
        );
        // argmax along the last dim is topk(1)'s index.
        let top1 = x.topk(1).unwrap().1.squeeze(-1).unwrap();
        assert_eq!(
            x.argmax(-1, false).unwrap().to_vec::<i64>().unwrap(),
            top1.to_vec::<i64>().unwrap()
        );
    }
}

#[test]
fn embedding_gradient_accumulates_repeated_ids_exactly() {
    // Row 1 is looked up three times: its gradient is the sum of three rows of g.
    let w = Tensor::zeros((3, 2), DType::F32, &CPU).unwrap().to_param();
    let ids = Tensor::from_vec(vec![1i64, 0, 1, 1], 4, &CPU).unwrap();
    let g = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], (4, 2), &CPU).unwrap();
    w.embedding(&ids).unwrap().backward_with(&g).unwrap();
    assert_eq!(
        w.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![3.0, 4.0, 13.0, 16.0, 0.0, 0.0]
    );
}

#[test]
fn out_of_range_indices_are_errors() {
    let x = Tensor::zeros((3, 4), DType::F32, &CPU).unwrap();
    let i = |v: Vec<i64>, d: &[usize]| Tensor::from_vec(v, d.to_vec(), &CPU).unwrap();
    let oob = |r: moe_tensor::Result<Tensor>, index: i64, size: usize| match r {
        Err(Error::IndexOutOfRange {
            index: got, size: s, ..
        }) => assert_eq!((got, s), (index, size)),
        other => panic!("expected IndexOutOfRange, got {other:?}"),
    };
    oob(x.embedding(&i(vec![0, 3], &[2])), 3, 3);
    oob(x.embedding(&i(vec![-1], &[1])), -1, 3);
    oob(x.index_select(1, &i(vec![4], &[1])), 4, 4);
    oob(x.gather(0, &i(vec![0, 1, 2, 3], &[1, 4])), 3, 3);
    oob(
        x.scatter_add(
            1,
            &i(vec![0, 9], &[1, 2]),
            &Tensor::ones((1, 2), DType::F32, &CPU).unwrap(),
        ),
        9,
        4,
    );
}

#[test]
fn wrong_dtypes_are_errors() {
    let x = Tensor::zeros((3, 4), DType::F32, &CPU).unwrap();
    let fidx = Tensor::zeros(2, DType::F32, &CPU).unwrap();
    let uidx = Tensor::zeros((3, 4), DType::U8, &CPU).unwrap();
    for r in [x.embedding(&fidx), x.index_select(0, &fidx), x.gather(0, &uidx)] {
        assert!(matches!(r, Err(Error::DTypeMismatch { rhs: DType::I64, .. })), "{r:?}");
    }
    // Mask must be U8, branches one dtype.
    let m = Tensor::zeros((3, 4), DType::I64, &CPU).unwrap();
    assert!(matches!(m.where_cond(&x, &x), Err(Error::DTypeMismatch { .. })));
    let x64 = Tensor::zeros((3, 4), DType::F64, &CPU).unwrap();
    assert!(matches!(uidx.where_cond(&x, &x64), Err(Error::DTypeMismatch { .. })));
    assert!(matches!(Tensor::cat(&[&x, &x64], 0), Err(Error::DTypeMismatch { .. })));
    let idx = Tensor::zeros((1, 4), DType::I64, &CPU).unwrap();
    assert!(matches!(x.scatter_add(0, &idx, &x64), Err(Error::DTypeMismatch { .. })));
    // topk/argmax compute on floats only.
    assert!(matches!(uidx.topk(1), Err(Error::UnsupportedDType { .. })));
    assert!(matches!(idx.argmax(0, false), Err(Error::UnsupportedDType { .. })));
}

#[test]
fn mismatched_shapes_are_errors() {
    let x = Tensor::zeros((3, 4), DType::F32, &CPU).unwrap();
    let y = Tensor::zeros((2, 5), DType::F32, &CPU).unwrap();
    let idx = |d: &[usize]| Tensor::zeros(d.to_vec(), DType::I64, &CPU).unwrap();
    assert!(matches!(Tensor::cat(&[&x, &y], 0), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(Tensor::cat(&[], 0), Err(Error::InvalidShape { .. })));
    assert!(matches!(Tensor::cat(&[&x], 2), Err(Error::DimOutOfRange { .. })));
    assert!(matches!(Tensor::stack(&[&x, &y], 0), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(Tensor::stack(&[&x], 3), Err(Error::DimOutOfRange { .. })));
    assert!(matches!(x.split(&[1, 1], 0), Err(Error::InvalidShape { .. })));
    assert!(matches!(x.chunk(0, 0), Err(Error::InvalidShape { .. })));
    assert!(matches!(
        x.index_select(0, &idx(&[2, 2])),
        Err(Error::InvalidShape { .. })
    ));
    // gather: index rank must match, and not exceed x in the other dims.
    assert!(matches!(x.gather(0, &idx(&[3])), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(x.gather(0, &idx(&[2, 5])), Err(Error::ShapeMismatch { .. })));
    // scatter_add: index larger than src.
    assert!(matches!(
        x.scatter_add(0, &idx(&[3, 4]), &y),
        Err(Error::ShapeMismatch { .. })
    ));
    let m = Tensor::zeros((2, 4), DType::U8, &CPU).unwrap();
    assert!(matches!(m.where_cond(&x, &x), Err(Error::BroadcastIncompatible { .. })));
    assert!(matches!(
        x.masked_fill(&m, 0.0),
        Err(Error::BroadcastIncompatible { .. })
    ));
    assert!(matches!(x.topk(5), Err(Error::InvalidShape { .. })));
    assert!(matches!(
        Tensor::zeros((), DType::F32, &CPU).unwrap().topk(1),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        Tensor::zeros((2, 0), DType::F32, &CPU).unwrap().argmax(1, false),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(x.embedding(&idx(&[2])).map(|_| ()), Ok(())));
    assert!(matches!(
        y.reshape(10).unwrap().embedding(&idx(&[2])),
        Err(Error::InvalidShape { .. })
    ));
}
