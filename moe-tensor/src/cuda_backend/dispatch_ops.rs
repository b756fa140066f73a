//! The dispatch plan's gather and combine on CUDA, with backward records
//! that keep the plan's device tensors (the CPU records of index_select and
//! expert_combine keep host indices): nothing is read back to the host.

use super::combine::{expert_combine, expert_combine_backward_planned};
use super::select::index_select;
use crate::backprop::BackwardOp;
use crate::tensor::dims3;
use crate::{DispatchPlan, Result, Shape, Tensor};

/// Backward of [`Tensor::dispatch_rows`] on CUDA: each token's gradient is
/// the sum of its copies' rows, in copy order (a combine with unit weights).
struct DispatchRowsBackward {
    x: Tensor,
    row_of_copy: Tensor,
}

impl BackwardOp for DispatchRowsBackward {
    fn name(&self) -> &'static str {
        "dispatch_rows"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let ones = Tensor::ones(self.row_of_copy.shape().clone(), g.dtype(), &g.device())?;
        let dx = expert_combine(&g.contiguous()?, &self.row_of_copy, &ones)?;
        Ok(vec![Some(Tensor::from_storage(dx, self.x.shape().clone()))])
    }
}

/// Backward of [`Tensor::combine_rows`] on CUDA, from the plan's device
/// tensors.
struct CombineRowsBackward {
    y: Tensor,
    w: Tensor,
    row_of_copy: Tensor,
    copy_of_row: Tensor,
}

impl BackwardOp for CombineRowsBackward {
    fn name(&self) -> &'static str {
        "combine_rows"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.y, &self.w]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (dy, dw) =
            expert_combine_backward_planned(&self.y, &self.w, &self.row_of_copy, &self.copy_of_row, &g.contiguous()?)?;
        Ok(vec![
            Some(Tensor::from_storage(dy, self.y.shape().clone())),
            Some(Tensor::from_storage(dw, self.w.shape().clone())),
        ])
    }
}

/// `x[token_of_row]` on CUDA, the plan's indices used in place.
pub(crate) fn dispatch_rows_op(x: &Tensor, plan: &DispatchPlan) -> Result<Tensor> {
    let out = index_select(x, dims3(x.shape(), 0), &plan.token_of_row)?;
    let shape = Shape::from(vec![plan.token_of_row.elem_count(), x.dims()[1]]);
    let back = DispatchRowsBackward {
        x: x.clone(),
        row_of_copy: plan.row_of_copy.clone(),
    };
    Ok(Tensor::from_op(out, shape, back))
}

/// The plan's weighted combine on CUDA, the plan's indices used in place.
pub(crate) fn combine_rows_op(y: &Tensor, plan: &DispatchPlan, weights: &Tensor) -> Result<Tensor> {
    let (y, w) = (y.contiguous()?, weights.contiguous()?);
    let out = expert_combine(&y, &plan.row_of_copy, &w)?;
    let shape = Shape::from(vec![plan.row_of_copy.dims()[0], y.dims()[1]]);
    let back = CombineRowsBackward {
        y,
        w,
        row_of_copy: plan.row_of_copy.clone(),
        copy_of_row: plan.copy_of_row.clone(),
    };
    Ok(Tensor::from_op(out, shape, back))
}
