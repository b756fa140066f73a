//! Causal scaled-dot-product attention with grouped-query heads, fused:
//! the forward keeps the output and a logsumexp per query row, never the
//! `T×T` probabilities; backward recomputes them tile by tile (flash-attention
//! style kernels in moe-kernels).

use super::fused_util::{check_float, check_like, elems, float_call, plain, Float};
use super::index::kernel_err;
use crate::backprop::BackwardOp;
use crate::precision::cpu_product_precision;
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::attention::{self as kernels, AttnDims};

const OP: &str = "causal_attention";

struct AttentionBackward {
    /// Contiguous inputs.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Saved output (shares the result's storage) and `[B, Hq, Tq]` logsumexp.
    o: Tensor,
    lse: Tensor,
    dims: AttnDims,
    scale: f64,
}

impl BackwardOp for AttentionBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.q, &self.k, &self.v]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = g.contiguous()?;
        if !g.device().is_cpu() {
            let (dq, dk, dv) = crate::cuda_backend::attention_backward(
                &g, &self.q, &self.k, &self.v, &self.o, &self.lse, self.dims, self.scale,
            )?;
            return Ok([(dq, &self.q), (dk, &self.k), (dv, &self.v)]
                .map(|(s, t)| Some(Tensor::from_storage(s, t.shape().clone())))
                .into());
        }
        let [dq, dk, dv] = float_call!(self.q.dtype(), OP, backward(self, &g))?;
        Ok(vec![Some(dq), Some(dk), Some(dv)])
    }
}

fn backward<T: Float>(b: &AttentionBackward, g: &Tensor) -> Result<[Tensor; 3]> {
    let guards = [&b.q, &b.k, &b.v, &b.o, &b.lse, g].map(|t| t.read_storage());
    let q = elems::<T>(&guards[0], &b.q, OP)?;
    let k = elems::<T>(&guards[1], &b.k, OP)?;
    let v = elems::<T>(&guards[2], &b.v, OP)?;
    let o = elems::<T>(&guards[3], &b.o, OP)?;
    let lse = elems::<T>(&guards[4], &b.lse, OP)?;
    let d_o = elems::<T>(&guards[5], g, OP)?;
    let scale = T::from_f64_lossy(b.scale);
    let precision = cpu_product_precision();
    let (dq, dk, dv) =
        kernels::attention_backward(d_o, q, k, v, o, lse, b.dims, scale, precision).map_err(kernel_err(OP))?;
    Ok([plain(dq, b.q.shape()), plain(dk, b.k.shape()), plain(dv, b.v.shape())])
}

/// Records the op: the result's storage is saved as `o` for backward.
fn record(q: Tensor, k: Tensor, v: Tensor, out: Storage, lse: Tensor, dims: AttnDims, scale: f64) -> Tensor {
    let shape = q.shape().clone();
    Tensor::from_op_saving_output(out, shape, |o| AttentionBackward {
        q,
        k,
        v,
        o,
        lse,
        dims,
        scale,
    })
}

fn forward_cuda(q: Tensor, k: Tensor, v: Tensor, dims: AttnDims, scale: f64) -> Result<Tensor> {
    let (out, lse) = crate::cuda_backend::attention(&q, &k, &v, dims, scale)?;
    let lse = Tensor::from_storage(lse, Shape::from(vec![dims.b, dims.hq, dims.tq]));
    Ok(record(q, k, v, out, lse, dims, scale))
}

fn forward<T: Float>(q: Tensor, k: Tensor, v: Tensor, dims: AttnDims, scale: f64) -> Result<Tensor> {
    let (out, lse) = {
        let guards = [&q, &k, &v].map(|t| t.read_storage());
        let qv = elems::<T>(&guards[0], &q, OP)?;
        let kv = elems::<T>(&guards[1], &k, OP)?;
        let vv = elems::<T>(&guards[2], &v, OP)?;
        let precision = cpu_product_precision();
        kernels::attention_forward(qv, kv, vv, dims, T::from_f64_lossy(scale), precision).map_err(kernel_err(OP))?
    };
    let lse = plain(lse, &Shape::from(vec![dims.b, dims.hq, dims.tq]));
    let out = Storage::Cpu(T::into_storage(out));
    Ok(record(q, k, v, out, lse, dims, scale))
}

impl Tensor {
    /// Causal attention `softmax(scale · q kᵀ + mask) v` with `self` = q
    /// `[B, Hq, Tq, Dh]` and `k`, `v` `[B, Hkv, Tk, Dh]`, where Hkv divides Hq
    /// (query head h reads kv head `h / (Hq / Hkv)`: grouped-query attention)
    /// and `Tq ≤ Tk`. Query i sees keys `j ≤ i + Tk − Tq` (the usual causal
    /// mask when Tq = Tk; the last Tq positions when decoding with a KV cache).
    /// `scale` defaults to `1/sqrt(Dh)`. Returns `[B, Hq, Tq, Dh]`;
    /// differentiable in q, k and v; f32/f64.
    pub fn causal_attention(&self, k: &Tensor, v: &Tensor, scale: Option<f64>) -> Result<Tensor> {
        check_float(OP, self)?;
        check_like(OP, self, k)?;
        check_like(OP, self, v)?;
        let bad = |msg: String| Error::InvalidShape { op: OP, msg };
        let (qd, kd) = (self.dims(), k.dims());
        if qd.len() != 4 || kd.len() != 4 {
            return Err(bad(format!(
                "q, k and v must be [B, H, T, Dh], got q {:?}, k {:?}",
                self.shape(),
                k.shape()
            )));
        }
        if v.dims() != kd {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: k.shape().clone(),
                rhs: v.shape().clone(),
            });
        }
        let dims = AttnDims {
            b: qd[0],
            hq: qd[1],
            hkv: kd[1],
            tq: qd[2],
            tk: kd[2],
            dh: qd[3],
        };
        if kd[0] != dims.b || kd[3] != dims.dh {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.shape().clone(),
                rhs: k.shape().clone(),
            });
        }
        if dims.hkv == 0 || !dims.hq.is_multiple_of(dims.hkv) {
            return Err(bad(format!(
                "{} query heads are not a multiple of {} kv heads",
                dims.hq, dims.hkv
            )));
        }
        if dims.tq > dims.tk {
            return Err(bad(format!("{} queries but only {} keys", dims.tq, dims.tk)));
        }
        let scale = scale.unwrap_or(1.0 / (dims.dh as f64).sqrt());
        if !scale.is_finite() {
            return Err(bad(format!("scale must be finite, got {scale}")));
        }
        let (q, k, v) = (self.contiguous()?, k.contiguous()?, v.contiguous()?);
        if !q.device().is_cpu() {
            return forward_cuda(q, k, v, dims, scale);
        }
        float_call!(q.dtype(), OP, forward(q, k, v, dims, scale))
    }
}
