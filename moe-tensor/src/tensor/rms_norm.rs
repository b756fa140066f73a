//! Fused RMSNorm over the last dim: `y = x · rsqrt(mean(x²) + eps) · w`
//! (Llama / HF `LlamaRMSNorm`). Forward keeps `rstd` per row; backward runs
//! the fused kernel for `dx` and `dw` in one pass.

use super::fused_util::{check_float, check_like, elems, float_call, plain, Float};
use super::index::kernel_err;
use crate::backprop::BackwardOp;
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::rms_norm as kernels;

const OP: &str = "rms_norm";

struct RmsNormBackward {
    /// Contiguous input `[.., D]` and weight `[D]`.
    x: Tensor,
    w: Tensor,
    /// `[N]`, saved by forward.
    rstd: Tensor,
}

impl BackwardOp for RmsNormBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x, &self.w]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = g.contiguous()?;
        if !g.device().is_cpu() {
            let (dx, dw) = crate::cuda_backend::rms_norm_backward(&g, &self.x, &self.w, &self.rstd)?;
            return Ok(vec![
                Some(Tensor::from_storage(dx, self.x.shape().clone())),
                Some(Tensor::from_storage(dw, self.w.shape().clone())),
            ]);
        }
        let (dx, dw) = float_call!(self.x.dtype(), OP, backward(self, &g))?;
        Ok(vec![Some(dx), Some(dw)])
    }
}

fn backward<T: Float>(b: &RmsNormBackward, g: &Tensor) -> Result<(Tensor, Tensor)> {
    let d = b.w.elem_count();
    let n = b.rstd.elem_count();
    let (xs, ws, rs, gs) = (
        b.x.read_storage(),
        b.w.read_storage(),
        b.rstd.read_storage(),
        g.read_storage(),
    );
    let (xv, wv) = (elems::<T>(&xs, &b.x, OP)?, elems::<T>(&ws, &b.w, OP)?);
    let (rv, gv) = (elems::<T>(&rs, &b.rstd, OP)?, elems::<T>(&gs, g, OP)?);
    let mut dx = vec![T::zero(); xv.len()];
    let mut dw = vec![T::zero(); d];
    kernels::rms_norm_backward(&mut dx, &mut dw, gv, xv, wv, rv, n, d).map_err(kernel_err(OP))?;
    Ok((plain(dx, b.x.shape()), plain(dw, b.w.shape())))
}

fn forward<T: Float>(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let d = w.elem_count();
    let n: usize = x.dims()[..x.rank() - 1].iter().product();
    let (y, rstd) = {
        let (xs, ws) = (x.read_storage(), w.read_storage());
        let (xv, wv) = (elems::<T>(&xs, x, OP)?, elems::<T>(&ws, w, OP)?);
        kernels::rms_norm_forward(xv, wv, n, d, T::from_f64_lossy(eps)).map_err(kernel_err(OP))?
    };
    let back = RmsNormBackward {
        x: x.clone(),
        w: w.clone(),
        rstd: plain(rstd, &Shape::from(vec![n])),
    };
    Ok(Tensor::from_op(
        Storage::Cpu(T::into_storage(y)),
        x.shape().clone(),
        back,
    ))
}

impl Tensor {
    /// RMSNorm over the last dim: `self` is `[.., D]`, `weight` is `[D]`,
    /// `y = self / sqrt(mean(self², -1) + eps) · weight` with the HF Llama
    /// order of operations. Differentiable in both; f32/f64.
    pub fn rms_norm(&self, weight: &Tensor, eps: f64) -> Result<Tensor> {
        check_float(OP, self)?;
        check_like(OP, self, weight)?;
        let d = self.dims().last().copied();
        if d.is_none() || weight.dims() != [d.unwrap_or(0)] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.shape().clone(),
                rhs: weight.shape().clone(),
            });
        }
        let (x, w) = (self.contiguous()?, weight.contiguous()?);
        if !x.device().is_cpu() {
            let n: usize = x.dims()[..x.rank() - 1].iter().product();
            let (y, rstd) = crate::cuda_backend::rms_norm(&x, &w, eps)?;
            let back = RmsNormBackward {
                x: x.clone(),
                w,
                rstd: Tensor::from_storage(rstd, Shape::from(vec![n])),
            };
            return Ok(Tensor::from_op(y, x.shape().clone(), back));
        }
        float_call!(x.dtype(), OP, forward(&x, &w, eps))
    }
}
