//! Fused softmax cross-entropy with integer targets, torch semantics
//! (`F.cross_entropy(logits, targets, ignore_index=.., reduction=..)`).
//! When the loss will be differentiated, forward writes the gradient
//! `(softmax − onehot) · scale` in the same pass over the logits (moe-kernels'
//! `cross_entropy_forward_with_grad`) and backward only scales it by the
//! upstream gradient (not at all when that is 1); otherwise forward computes
//! the loss alone.
//!
//! With `Reduction::Mean` and every target ignored the loss is NaN (0/0) and
//! the gradient is zero, as in torch.

use super::fused_util::{check_float, elems, float_call, plain, Float};
use super::index::{index_values, kernel_err};
use crate::backprop::{is_grad_enabled, BackwardOp};
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::cross_entropy as kernels;
pub use moe_kernels::cpu::cross_entropy::{Reduction, DEFAULT_IGNORE_INDEX};

const OP: &str = "cross_entropy";

struct CrossEntropyBackward {
    /// Contiguous logits `[.., V]` (the graph's input).
    logits: Tensor,
    /// The gradient for an upstream gradient of 1, written by forward.
    dlogits: Tensor,
}

impl BackwardOp for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        OP
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.logits]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dloss = g.to_scalar_f64()?;
        // A loss summed into the total arrives with exactly 1: the gradient
        // is forward's, shared (the graph is freed as backward goes, and
        // gradients are never written in place).
        let dx = if dloss == 1.0 {
            self.dlogits.clone()
        } else {
            self.dlogits.mul_scalar(dloss)?
        };
        Ok(vec![Some(dx)])
    }
}

fn forward<T: Float>(x: Tensor, targets: Vec<i64>, ignore_index: i64, reduction: Reduction) -> Result<Tensor> {
    let n = targets.len();
    let v = x.dims().last().copied().unwrap_or(0);
    let scalar = Shape::from(Vec::<usize>::new());
    let mut lse = vec![T::zero(); n];
    if !(is_grad_enabled() && x.requires_grad()) {
        let out = {
            let xs = x.read_storage();
            let xv = elems::<T>(&xs, &x, OP)?;
            kernels::cross_entropy_forward(&mut lse, xv, &targets, n, v, ignore_index, reduction)
                .map_err(kernel_err(OP))?
        };
        crate::profile::op_recorded(OP);
        return Ok(plain(vec![out.loss], &scalar));
    }
    // Training: the gradient comes out of the same pass over the logits,
    // which backward then never reads again.
    let mut dx = vec![T::zero(); x.elem_count()];
    let out = {
        let xs = x.read_storage();
        let xv = elems::<T>(&xs, &x, OP)?;
        kernels::cross_entropy_forward_with_grad(&mut lse, &mut dx, xv, &targets, n, v, ignore_index, reduction)
            .map_err(kernel_err(OP))?
    };
    let back = CrossEntropyBackward {
        dlogits: plain(dx, x.shape()),
        logits: x,
    };
    Ok(Tensor::from_op(
        Storage::Cpu(T::into_storage(vec![out.loss])),
        scalar,
        back,
    ))
}

impl Tensor {
    /// Cross-entropy of logits `self`, `[.., V]`, against I64 class ids
    /// `targets` with the leading dims (`[..]`), as a scalar. Rows whose target
    /// equals `ignore_index` ([`DEFAULT_IGNORE_INDEX`] = −100 in torch) are
    /// skipped; `Mean` divides by the number of rows kept. Other targets must
    /// lie in `0..V`. Differentiable in the logits; f32/f64.
    pub fn cross_entropy(&self, targets: &Tensor, ignore_index: i64, reduction: Reduction) -> Result<Tensor> {
        check_float(OP, self)?;
        let rank = self.rank();
        if rank == 0 || targets.dims() != &self.dims()[..rank - 1] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.shape().clone(),
                rhs: targets.shape().clone(),
            });
        }
        if !self.device().is_cpu() {
            let mean = reduction == Reduction::Mean;
            return crate::cuda_backend::cross_entropy_op(&self.contiguous()?, targets, ignore_index, mean);
        }
        let ids = index_values(OP, self, targets)?;
        let x = self.contiguous()?;
        float_call!(x.dtype(), OP, forward(x, ids, ignore_index, reduction))
    }
}
