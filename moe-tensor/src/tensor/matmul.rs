//! Matrix products with broadcast batch dims; transposed operands are views
//! handed to the GEMM as swapped strides, never copied.

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::precision::cpu_product_precision;
use crate::storage::Storage;
use crate::{Error, Layout, Result, Shape, Tensor};
use moe_kernels::cpu::gemm::{gemm_batched_new, gemm_with, BatchStrides, MatMut, MatRef, ProductPrecision};
use moe_kernels::cpu::strided::{offsets, Strided};
use moe_kernels::Real;

struct MatmulBackward {
    a: Tensor,
    b: Tensor,
}

impl BackwardOp for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.a, &self.b]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // C = A·B  ⇒  dA = dC·Bᵀ, dB = Aᵀ·dC (then undo batch broadcasting).
        // A 2-D operand that is a transposed view (a linear layer's `w.t()`)
        // gets its gradient in its own layout, computed as (B·dCᵀ)ᵀ or
        // (dCᵀ·A)ᵀ: the same products, and the parameter behind the view then
        // receives a contiguous gradient that clipping and the optimiser read
        // in place instead of copying.
        let plain = self.a.rank() == 2 && self.b.rank() == 2 && g.rank() == 2;
        let ga = if !self.a.requires_grad() {
            None
        } else if plain && self.a.layout().is_transposed_contiguous(0, 1) {
            Some(self.b.matmul(&g.t()?)?.t()?)
        } else {
            Some(g.matmul(&self.b.t()?)?.sum_to_shape(self.a.shape())?)
        };
        let gb = if !self.b.requires_grad() {
            None
        } else if plain && self.b.layout().is_transposed_contiguous(0, 1) {
            Some(g.t()?.matmul(&self.a)?.t()?)
        } else {
            Some(self.a.t()?.matmul(g)?.sum_to_shape(self.b.shape())?)
        };
        Ok(vec![ga, gb])
    }
}

/// Storage offsets of each matrix in a broadcast batch, and whether they are evenly spaced.
fn batch_offsets(l: &Layout, batch: &[usize]) -> (Vec<usize>, Option<usize>) {
    let nb = batch.len();
    let s = Strided {
        dims: batch,
        strides: &l.strides()[..nb],
        offset: l.offset(),
    };
    let offs = if nb == 0 { vec![l.offset()] } else { offsets(s) };
    let step = if offs.len() < 2 {
        Some(0)
    } else {
        Some(offs[1] - offs[0])
    };
    let uniform = step.filter(|&st| offs.windows(2).all(|w| w[1] == w[0] + st));
    (offs, uniform)
}

#[allow(clippy::too_many_arguments)]
fn run<T: Real>(
    precision: ProductPrecision,
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    batch: &[usize],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<T> {
    let nb: usize = batch.iter().product();
    let r = batch.len();
    let (a_rs, a_cs) = (la.strides()[r], la.strides()[r + 1]);
    let (b_rs, b_cs) = (lb.strides()[r], lb.strides()[r + 1]);
    let (oa, sa) = batch_offsets(la, batch);
    let (ob, sb) = batch_offsets(lb, batch);
    if nb == 0 || m == 0 || n == 0 {
        return Vec::new();
    }
    match (sa, sb) {
        // Evenly spaced operands: one batched call into a new, unzeroed buffer.
        (Some(sa), Some(sb)) => gemm_batched_new(
            precision,
            nb,
            m,
            n,
            k,
            T::one(),
            &a[oa[0]..],
            BatchStrides {
                bs: sa,
                rs: a_rs,
                cs: a_cs,
            },
            &b[ob[0]..],
            BatchStrides {
                bs: sb,
                rs: b_rs,
                cs: b_cs,
            },
        ),
        _ => {
            let mut c = vec![T::zero(); nb * m * n];
            for (i, cm) in c.chunks_mut(m * n).enumerate() {
                gemm_with(
                    precision,
                    m,
                    n,
                    k,
                    T::one(),
                    MatRef {
                        data: &a[oa[i]..],
                        rs: a_rs,
                        cs: a_cs,
                    },
                    MatRef {
                        data: &b[ob[i]..],
                        rs: b_rs,
                        cs: b_cs,
                    },
                    T::zero(),
                    MatMut { data: cm, rs: n, cs: 1 },
                );
            }
            c
        }
    }
}

impl Tensor {
    /// Matrix product over the last two dims, `[..., m, k] · [..., k, n] → [..., m, n]`,
    /// with numpy broadcasting of the leading (batch) dims.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let op = "matmul";
        if self.rank() < 2 || rhs.rank() < 2 {
            return Err(Error::InvalidShape {
                op,
                msg: format!("needs rank ≥ 2 operands, got {:?} and {:?}", self.shape(), rhs.shape()),
            });
        }
        let (ad, bd) = (self.dims(), rhs.dims());
        let (m, k) = (ad[ad.len() - 2], ad[ad.len() - 1]);
        let (k2, n) = (bd[bd.len() - 2], bd[bd.len() - 1]);
        if k != k2 {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().clone(),
                rhs: rhs.shape().clone(),
            });
        }
        if self.dtype() != rhs.dtype() {
            return Err(Error::DTypeMismatch {
                op,
                lhs: self.dtype(),
                rhs: rhs.dtype(),
            });
        }
        if self.device() != rhs.device() {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.device(),
                rhs: rhs.device(),
            });
        }
        if rhs.rank() == 2 && self.rank() > 2 && self.is_contiguous() {
            // [.., m, k] · [k, n]: the leading dims fold into the rows, so this is
            // one GEMM of (Π lead · m) rows rather than a batch sharing one B, and
            // the backward's dB is one GEMM over all rows instead of a batch of
            // them and a reduction over the batch (same values forward).
            let rows: usize = ad[..ad.len() - 1].iter().product();
            let mut out_shape = ad[..ad.len() - 1].to_vec();
            out_shape.push(n);
            return self.reshape((rows, k))?.matmul(rhs)?.reshape(out_shape);
        }
        let batch = Shape::from(&ad[..ad.len() - 2]).broadcast_with(&Shape::from(&bd[..bd.len() - 2]), op)?;
        let mut a_full = batch.dims().to_vec();
        a_full.extend([m, k]);
        let mut b_full = batch.dims().to_vec();
        b_full.extend([k, n]);
        let la = self.layout().broadcast_as(&Shape::from(a_full))?;
        let lb = rhs.layout().broadcast_as(&Shape::from(b_full))?;
        let out = if self.device().is_cpu() {
            let (ga, gb) = (self.read_storage(), rhs.read_storage());
            let precision = cpu_product_precision();
            Storage::Cpu(crate::map_float2!(ga.cpu(op)?, gb.cpu(op)?, op, |va, vb: T| {
                Ok(T::into_storage(run(precision, va, &la, vb, &lb, batch.dims(), m, n, k)))
            })?)
        } else {
            crate::cuda_backend::matmul(self, &la, rhs, &lb, batch.dims(), m, n, k)?
        };
        let mut out_shape = batch.dims().to_vec();
        out_shape.extend([m, n]);
        Ok(Tensor::from_op(
            out,
            Shape::from(out_shape),
            MatmulBackward {
                a: self.clone(),
                b: rhs.clone(),
            },
        ))
    }
}
