//! SwiGLU over a fused gate/up projection: `h [.., 2F]` holds each row's gate
//! values then its up values, and the result `[.., F]` is `silu(gate) · up`.
//!
//! Equal in value to `h.narrow(-1, 0, F).gated(&h.narrow(-1, F, F), Silu)`,
//! but the halves are read in place and the backward writes the `[.., 2F]`
//! gradient in one pass; the composite copies both narrowed halves forward
//! and backward, then pads each half's gradient to `2F` and adds the two.

use super::fused_util::{elems, float_call, plain, Float};
use super::unary::UnaryOp;
use crate::backprop::BackwardOp;
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::gated as kernels;

const OP: &str = "gated_packed";

struct GatedPackedBackward {
    h: Tensor,
    /// SiLU on the CPU (other activations take the composite there); any
    /// activation on a device.
    act: UnaryOp,
}

impl BackwardOp for GatedPackedBackward {
    fn name(&self) -> &'static str {
        "gated_packed"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.h]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = g.contiguous()?;
        if !g.device().is_cpu() {
            let dh = crate::cuda_backend::gated_packed_backward(&g, &self.h, self.act)?;
            return Ok(vec![Some(Tensor::from_storage(dh, self.h.shape().clone()))]);
        }
        let dh = float_call!(self.h.dtype(), OP, backward(&g, &self.h))?;
        Ok(vec![Some(dh)])
    }
}

fn kernel_err(e: moe_kernels::KernelError) -> Error {
    Error::Kernel {
        op: OP,
        msg: e.to_string(),
    }
}

fn half_width(h: &Tensor) -> usize {
    h.dims()[h.rank() - 1] / 2
}

/// `[.., 2F]` → `[.., F]`.
fn halved_shape(h: &Tensor) -> Shape {
    let mut dims = h.dims().to_vec();
    *dims.last_mut().expect("rank checked ≥ 1") = half_width(h);
    Shape::from(dims)
}

fn forward<T: Float>(h: &Tensor) -> Result<Tensor> {
    let f = half_width(h);
    let shape = halved_shape(h);
    let mut y = vec![T::zero(); shape.elem_count()];
    {
        let s = h.read_storage();
        kernels::silu_mul_packed_forward(&mut y, elems::<T>(&s, h, OP)?, f).map_err(kernel_err)?;
    }
    let back = GatedPackedBackward {
        h: h.clone(),
        act: UnaryOp::Silu,
    };
    Ok(Tensor::from_op(Storage::Cpu(T::into_storage(y)), shape, back))
}

fn backward<T: Float>(g: &Tensor, h: &Tensor) -> Result<Tensor> {
    let (sg, sh) = (g.read_storage(), h.read_storage());
    let mut dh = vec![T::zero(); h.elem_count()];
    kernels::silu_mul_packed_backward(&mut dh, elems::<T>(&sg, g, OP)?, elems::<T>(&sh, h, OP)?, half_width(h))
        .map_err(kernel_err)?;
    Ok(plain(dh, h.shape()))
}

impl Tensor {
    /// `act(gate) ⊙ up` where the last dim of `self` (`2F`) holds the gate
    /// values then the up values, as a fused gate/up projection produces:
    /// `[.., 2F]` → `[.., F]`. SiLU (SwiGLU) runs the fused kernel; other
    /// activations take the narrow + [`Tensor::gated`] composite on the CPU
    /// (on a CUDA device every activation runs the fused kernel).
    pub fn gated_packed(&self, act: UnaryOp) -> Result<Tensor> {
        let width = self.dims().last().copied().unwrap_or(0);
        if self.rank() == 0 || width % 2 != 0 {
            return Err(Error::InvalidShape {
                op: OP,
                msg: format!("needs a last dim of 2·F (gate then up), got {:?}", self.shape()),
            });
        }
        let f = width / 2;
        if !self.device().is_cpu() {
            let h = self.contiguous()?;
            let y = crate::cuda_backend::gated_packed(&h, act)?;
            let shape = halved_shape(&h);
            return Ok(Tensor::from_op(y, shape, GatedPackedBackward { h, act }));
        }
        if act != UnaryOp::Silu {
            return self.narrow(-1, 0, f)?.gated(&self.narrow(-1, f, f)?, act);
        }
        float_call!(self.dtype(), OP, forward(&self.contiguous()?))
    }
}
