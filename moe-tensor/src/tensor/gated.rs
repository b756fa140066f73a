//! Fused gated activations for FFNs: `act(gate) ⊙ up` (SwiGLU with SiLU, GEGLU
//! with GELU) in one pass forward and one pass backward, instead of three ops
//! and three intermediate buffers.

use super::index::kernel_err;
use super::unary::UnaryOp;
use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::storage::Storage;
use crate::{Error, Result, Tensor};
use moe_kernels::cpu::elementwise;
use moe_kernels::cpu::gated as gated_kernels;
use moe_kernels::Real;
use rayon::prelude::*;

struct GatedBackward {
    act: UnaryOp,
    gate: Tensor,
    up: Tensor,
}

/// dgate = g·up·act'(gate), dup = g·act(gate), in one pass over contiguous rows.
fn gated_backward<T: Real>(act: UnaryOp, g: &[T], gate: &[T], up: &[T]) -> (Vec<T>, Vec<T>) {
    let n = g.len();
    let (mut dgate, mut dup) = (vec![T::zero(); n], vec![T::zero(); n]);
    const CHUNK: usize = 1 << 13;
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, (dg, du))| {
            let base = c * CHUNK;
            for j in 0..dg.len() {
                let i = base + j;
                let a = act.f(gate[i]);
                dg[j] = g[i] * up[i] * act.df(gate[i], a);
                du[j] = g[i] * a;
            }
        });
    (dgate, dup)
}

impl BackwardOp for GatedBackward {
    fn name(&self) -> &'static str {
        "gated_act"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.gate, &self.up]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        if !g.device().is_cpu() {
            // The kernel reads the three views in place.
            let (dg, du) = crate::cuda_backend::gated_backward(g, &self.gate, &self.up, self.act)?;
            let shape = self.gate.shape().clone();
            return Ok(vec![
                Some(Tensor::from_storage(dg, shape.clone())),
                Some(Tensor::from_storage(du, shape)),
            ]);
        }
        let (g, gate, up) = (g.contiguous()?, self.gate.contiguous()?, self.up.contiguous()?);
        let n = g.elem_count();
        let (gs, xs, us) = (g.read_storage(), gate.read_storage(), up.read_storage());
        let (og, ox, ou) = (g.layout().offset(), gate.layout().offset(), up.layout().offset());
        let mut grads = None;
        crate::map_float2!(gs.cpu("gated_act")?, xs.cpu("gated_act")?, "gated_act", |gv, xv: T| {
            let uv = <T as WithDType>::slice(us.cpu("gated_act")?).ok_or(Error::DTypeMismatch {
                op: "gated_act",
                lhs: gate.dtype(),
                rhs: up.dtype(),
            })?;
            let (gv, xv, uv) = (&gv[og..og + n], &xv[ox..ox + n], &uv[ou..ou + n]);
            let (dg, du) = if self.act == UnaryOp::Silu {
                // SwiGLU: the vectorised kernel, σ computed once per element.
                gated_kernels::silu_mul_backward(gv, xv, uv).map_err(kernel_err("gated_act"))?
            } else {
                gated_backward(self.act, gv, xv, uv)
            };
            grads = Some((T::into_storage(dg), T::into_storage(du)));
            Ok(())
        })?;
        let (dg, du) = grads.expect("set by the dtype arm that ran");
        let shape = self.gate.shape().clone();
        Ok(vec![
            Some(Tensor::from_cpu_no_grad(dg, shape.clone())),
            Some(Tensor::from_cpu_no_grad(du, shape)),
        ])
    }
}

impl Tensor {
    /// `act(self) ⊙ up` for a gate tensor `self` and an equally shaped `up`
    /// (no broadcasting), fused forward and backward.
    pub fn gated(&self, up: &Tensor, act: UnaryOp) -> Result<Tensor> {
        let op = "gated_act";
        if self.shape() != up.shape() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().clone(),
                rhs: up.shape().clone(),
            });
        }
        super::binary::check_binary(op, self, up)?;
        if !self.device().is_cpu() {
            let y = crate::cuda_backend::gated(self, up, act)?;
            let back = GatedBackward {
                act,
                gate: self.clone(),
                up: up.clone(),
            };
            return Ok(Tensor::from_op(y, self.shape().clone(), back));
        }
        // SiLU gating runs the vectorised kernel on contiguous values: copying
        // strided views (e.g. the halves of a fused gate/up projection) first is
        // much cheaper than the scalar strided path. Only values are read here;
        // the recorded inputs stay `self` and `up`.
        let fused_silu = act == UnaryOp::Silu;
        let (gate_c, up_c) = if fused_silu {
            crate::no_grad(|| Ok::<_, Error>((self.contiguous()?, up.contiguous()?)))?
        } else {
            (self.clone(), up.clone())
        };
        let out = {
            let (ga, gb) = (gate_c.read_storage(), up_c.read_storage());
            let n = self.elem_count();
            let (oa, ob) = (gate_c.layout().offset(), up_c.layout().offset());
            crate::map_float2!(ga.cpu(op)?, gb.cpu(op)?, op, |va, vb: T| {
                let y = if fused_silu {
                    gated_kernels::silu_mul_forward(&va[oa..oa + n], &vb[ob..ob + n]).map_err(kernel_err(op))?
                } else {
                    elementwise::binary(va, self.strided(), vb, up.strided(), |x: T, u: T| act.f(x) * u)
                };
                Ok(T::into_storage(y))
            })?
        };
        Ok(Tensor::from_op(
            Storage::Cpu(out),
            self.shape().clone(),
            GatedBackward {
                act,
                gate: self.clone(),
                up: up.clone(),
            },
        ))
    }

    /// SwiGLU: `silu(self) ⊙ up`.
    pub fn swiglu(&self, up: &Tensor) -> Result<Tensor> {
        self.gated(up, UnaryOp::Silu)
    }

    /// GEGLU with the tanh GELU: `gelu_tanh(self) ⊙ up`.
    pub fn geglu(&self, up: &Tensor) -> Result<Tensor> {
        self.gated(up, UnaryOp::GeluTanh)
    }
}
