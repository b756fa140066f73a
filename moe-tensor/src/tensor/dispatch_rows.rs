//! The MoE dispatch gather and weighted combine driven by a
//! [`DispatchPlan`]: on CUDA the plan's index tensors are used where they
//! are, never read back (the general `index_select` / `expert_combine` read
//! their indices to check and group them on the host). On the CPU these are
//! exactly those ops.

use crate::{DispatchPlan, Error, Result, Tensor};

/// Errors unless `t` is `[rows, D]`, `rows` being the plan's `what`.
fn check_rows(op: &'static str, t: &Tensor, rows: usize, what: &str) -> Result<()> {
    if t.rank() != 2 || t.dims()[0] != rows {
        return Err(Error::InvalidShape {
            op,
            msg: format!("needs [{rows}, D] ({what} of the plan), got {:?}", t.dims()),
        });
    }
    Ok(())
}

impl Tensor {
    /// The rows of `self` (`x [N, D]`, the plan's tokens) in the plan's
    /// expert order: `x[token_of_row]`, `[N·K, D]`. Differentiable: a
    /// token's gradient sums its K copies' rows. On the CPU this is
    /// `index_select(0, token_of_row)`; on CUDA the plan's indices are
    /// used in place (the plan keeps them in range) with no host read.
    /// With a capacity, the rows past the kept copies (`offsets[E]` on)
    /// hold token 0 and belong to no expert: nothing should read them, and
    /// their gradient is not propagated the same way on every device (the
    /// CPU's `index_select` adds it to token 0, CUDA's backward gathers only
    /// each token's kept copies).
    pub fn dispatch_rows(&self, plan: &DispatchPlan) -> Result<Tensor> {
        let op = "dispatch_rows";
        check_rows(op, self, plan.row_of_copy.dims()[0], "tokens")?;
        if self.device().is_cpu() {
            return self.index_select(0, &plan.token_of_row);
        }
        crate::cuda_backend::dispatch_rows_op(self, plan)
    }

    /// The plan's weighted combine of expert outputs (`self` = `y [N·K, D]`
    /// in plan order) into tokens: `out[t] = Σ_k w[t, k] · y[row_of_copy[t, k]]`,
    /// `[N, D]`, differentiable in `self` and `weights [N, K]` (same float
    /// dtype). On the CPU this is [`Tensor::expert_combine`]; on CUDA the
    /// plan's indices are used in place, forward and backward.
    pub fn combine_rows(&self, plan: &DispatchPlan, weights: &Tensor) -> Result<Tensor> {
        let op = "combine_rows";
        check_rows(op, self, plan.token_of_row.elem_count(), "rows")?;
        if weights.dims() != plan.row_of_copy.dims() || weights.dtype() != self.dtype() {
            return Err(Error::InvalidShape {
                op,
                msg: format!(
                    "weights must be {:?} {:?}, got {:?} {:?}",
                    self.dtype(),
                    plan.row_of_copy.dims(),
                    weights.dtype(),
                    weights.dims()
                ),
            });
        }
        if self.device().is_cpu() {
            return self.expert_combine(&plan.row_of_copy, weights);
        }
        crate::cuda_backend::combine_rows_op(self, plan, weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Device};

    #[test]
    fn on_the_cpu_they_are_index_select_and_expert_combine() {
        let ids = Tensor::from_vec(vec![1i64, 0, 0, 1, 1, 0], (3, 2), &Device::Cpu).unwrap();
        let plan = ids.dispatch_plan(2).unwrap();
        let x = Tensor::from_vec((0..6).map(f64::from).collect(), (3, 2), &Device::Cpu).unwrap();
        let rows = x.dispatch_rows(&plan).unwrap();
        let want = x.index_select(0, &plan.token_of_row).unwrap();
        assert_eq!(rows.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap());
        let w = Tensor::from_vec(vec![0.5f64, 2.0, 1.0, 3.0, 0.25, 4.0], (3, 2), &Device::Cpu).unwrap();
        let out = rows.combine_rows(&plan, &w).unwrap();
        let want = rows.expert_combine(&plan.row_of_copy, &w).unwrap();
        assert_eq!(out.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap());
    }

    #[test]
    fn shapes_that_do_not_fit_the_plan_are_errors() {
        let ids = Tensor::from_vec(vec![1i64, 0, 0, 1], (2, 2), &Device::Cpu).unwrap();
        let plan = ids.dispatch_plan(2).unwrap();
        let x3 = Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(x3.dispatch_rows(&plan).is_err());
        let y = Tensor::zeros((4, 4), DType::F32, &Device::Cpu).unwrap();
        let w64 = Tensor::zeros((2, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(y.combine_rows(&plan, &w64).is_err());
        let w_bad = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(y.combine_rows(&plan, &w_bad).is_err());
        assert!(x3
            .combine_rows(&plan, &Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap())
            .is_err());
    }
}
