//! Fused softmax cross-entropy with integer targets, torch semantics
//! (`F.cross_entropy(logits, targets, ignore_index=.., reduction=..)`).
//! Forward keeps only the per-row logsumexp; backward writes
//! `(softmax − onehot) · scale` straight from the logits.
//!
//! With `Reduction::Mean` and every target ignored the loss is NaN (0/0) and
//! the gradient is zero, as in torch.

use super::fused_util::{check_float, elems, float_call, plain, Float};
use super::index::{index_values, kernel_err};
use crate::backprop::BackwardOp;
use crate::storage::Storage;
use crate::{Error, Result, Shape, Tensor};
use moe_kernels::cpu::cross_entropy as kernels;
pub use moe_kernels::cpu::cross_entropy::{Reduction, DEFAULT_IGNORE_INDEX};

const OP: &str = "cross_entropy";

struct CrossEntropyBackward {
    /// Contiguous logits `[.., V]`.
    logits: Tensor,
    targets: Vec<i64>,
    /// `[N]` logsumexp per row.
    lse: Tensor,
    n_valid: usize,
    ignore_index: i64,
    reduction: Reduction,
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
        let dx = float_call!(self.logits.dtype(), OP, backward(self, dloss))?;
        Ok(vec![Some(dx)])
    }
}

fn backward<T: Float>(b: &CrossEntropyBackward, dloss: f64) -> Result<Tensor> {
    let n = b.targets.len();
    let v = b.logits.dims().last().copied().unwrap_or(0);
    let (xs, ls) = (b.logits.read_storage(), b.lse.read_storage());
    let (xv, lv) = (elems::<T>(&xs, &b.logits, OP)?, elems::<T>(&ls, &b.lse, OP)?);
    let scale = kernels::grad_scale(b.reduction, b.n_valid, T::from_f64_lossy(dloss));
    let mut dx = vec![T::zero(); xv.len()];
    kernels::cross_entropy_backward(&mut dx, xv, lv, &b.targets, n, v, b.ignore_index, scale)
        .map_err(kernel_err(OP))?;
    Ok(plain(dx, b.logits.shape()))
}

fn forward<T: Float>(x: Tensor, targets: Vec<i64>, ignore_index: i64, reduction: Reduction) -> Result<Tensor> {
    let n = targets.len();
    let v = x.dims().last().copied().unwrap_or(0);
    let (out, lse) = {
        let xs = x.read_storage();
        let xv = elems::<T>(&xs, &x, OP)?;
        let mut lse = vec![T::zero(); n];
        let out = kernels::cross_entropy_forward(&mut lse, xv, &targets, n, v, ignore_index, reduction)
            .map_err(kernel_err(OP))?;
        (out, lse)
    };
    let back = CrossEntropyBackward {
        logits: x,
        targets,
        lse: plain(lse, &Shape::from(vec![n])),
        n_valid: out.n_valid,
        ignore_index,
        reduction,
    };
    let loss = T::into_storage(vec![out.loss]);
    Ok(Tensor::from_op(
        Storage::Cpu(loss),
        Shape::from(Vec::<usize>::new()),
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
