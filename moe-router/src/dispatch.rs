//! Dispatch and combine: token copies sorted by expert into contiguous
//! segments for [`Tensor::grouped_matmul`], and the weighted scatter back.
//!
//! The plan ([`Tensor::dispatch_plan_limited`]) is a stable counting sort of
//! the kept copies by expert id (copies of one expert stay in token order),
//! made on the ids' device: on CUDA nothing is read back, and the segment
//! offsets go straight from the router to the expert GEMMs.
//! [`Dispatch::permute`] gathers rows of `x_ND` into the sorted buffer; the
//! experts run as grouped matmuls over [`Dispatch::segments`];
//! [`Dispatch::combine`] maps each copy's output row back to its token,
//! weights it and sums over the K copies in one fused op. Both are
//! differentiable, in the weights as well as the expert outputs; a dropped
//! copy reads no row, so it adds nothing and its weight gets no gradient.
//! The sorted buffer always has `N·K` rows; with a capacity, rows past the
//! kept copies belong to no expert.

use crate::error::{Result, RouterError};
use moe_tensor::{CopyLimit, DispatchPlan, Segments, Tensor};

/// Whether the grouped GEMMs of a CUDA device plan take host counts (one
/// read of E numbers per MoE layer, then cuBLAS's grouped GEMM) instead of
/// the device offsets (`MOE_GROUPED_GEMM=cublas`; for comparing the two).
fn cuda_host_counts() -> bool {
    std::env::var("MOE_GROUPED_GEMM").is_ok_and(|v| v == "cublas")
}

/// Where every token copy goes: the sorted order and segment sizes.
#[derive(Clone, Debug)]
pub struct Dispatch {
    num_tokens: usize,
    top_k: usize,
    /// The rows of each expert: host counts or device offsets.
    segments: Segments,
    /// The plan: permute and combine use its tensors in place (no host
    /// read on CUDA); its `dropped` flags mark the copies in no segment.
    plan: DispatchPlan,
}

impl Dispatch {
    /// Plans the copies of `topk_ids_NK` (`[N, K]`, I64) on the ids' device,
    /// each expert keeping the copies `limit` allows (all, its first ones,
    /// or its highest-scored ones): on CUDA no id is read back and the
    /// experts' segments are device offsets. Ids out of range are an error
    /// on the CPU; on CUDA they are counted in the plan's `invalid_ids`,
    /// which the routing statistics check.
    pub fn plan(topk_ids_NK: &Tensor, num_experts: usize, limit: CopyLimit<'_>) -> Result<Self> {
        if topk_ids_NK.rank() != 2 {
            return Err(RouterError::Shape {
                what: "expert ids",
                expected: "[N, K]".into(),
                got: topk_ids_NK.dims().to_vec(),
            });
        }
        let (n, k) = (topk_ids_NK.dims()[0], topk_ids_NK.dims()[1]);
        let plan = topk_ids_NK.dispatch_plan_limited(num_experts, limit)?;
        let on_cuda = !topk_ids_NK.device().is_cpu();
        let segments = if on_cuda && !cuda_host_counts() {
            Segments::Offsets(plan.offsets.clone())
        } else {
            // The CPU reads its own memory; a CUDA run asked for cuBLAS.
            let counts = plan.counts.to_vec::<i64>()?;
            Segments::Counts(counts.iter().map(|&c| c.max(0) as usize).collect())
        };
        Ok(Dispatch {
            num_tokens: n,
            top_k: k,
            segments,
            plan,
        })
    }

    /// The plan's tensors: counts, offsets, rows, dropped flags (U8 `[N, K]`,
    /// 1 for a copy in no segment), on the ids' device.
    pub fn tensors(&self) -> &DispatchPlan {
        &self.plan
    }

    /// The experts' rows for `grouped_matmul`: host counts or device offsets.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    /// M: the rows of the sorted buffer (the kept copies; `N·K` for a
    /// device plan, whose rows past the kept copies belong to no expert).
    pub fn num_rows(&self) -> usize {
        self.plan.token_of_row.elem_count()
    }

    /// Source token of each sorted row, `[M]` (I64).
    pub fn token_of_row(&self) -> &Tensor {
        &self.plan.token_of_row
    }

    /// Gathers token rows into expert order: `x_ND` → `x_MD`.
    pub fn permute(&self, x_ND: &Tensor) -> Result<Tensor> {
        if x_ND.rank() != 2 || x_ND.dims()[0] != self.num_tokens {
            return Err(RouterError::Shape {
                what: "dispatch input",
                expected: format!("[{}, D]", self.num_tokens),
                got: x_ND.dims().to_vec(),
            });
        }
        Ok(x_ND.dispatch_rows(&self.plan)?)
    }

    /// Scatters expert outputs back to tokens: `out[t] = Σ_k w[t, k] · y[row(t, k)]`,
    /// `y_MD` → `[N, D]`. `weights_NK` are cast to `y_MD`'s dtype; dropped
    /// copies contribute zero.
    pub fn combine(&self, y_MD: &Tensor, weights_NK: &Tensor) -> Result<Tensor> {
        let (n, k, m) = (self.num_tokens, self.top_k, self.num_rows());
        if y_MD.rank() != 2 || y_MD.dims()[0] != m {
            return Err(RouterError::Shape {
                what: "expert outputs",
                expected: format!("[{m}, D]"),
                got: y_MD.dims().to_vec(),
            });
        }
        if weights_NK.dims() != [n, k] {
            return Err(RouterError::Shape {
                what: "combine weights",
                expected: format!("[{n}, {k}]"),
                got: weights_NK.dims().to_vec(),
            });
        }
        let w = weights_NK.to_dtype(y_MD.dtype())?;
        Ok(y_MD.combine_rows(&self.plan, &w)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moe_tensor::Device;

    fn ids(v: &[i64], k: usize) -> Tensor {
        Tensor::from_vec(v.to_vec(), (v.len() / k, k), &Device::Cpu).unwrap()
    }

    #[test]
    fn plan_is_a_stable_sort_by_expert() {
        // 3 tokens, top-2, 3 experts; capacity 2 drops copy (2, 1), the
        // third copy of expert 0.
        let d = Dispatch::plan(&ids(&[2, 0, 0, 2, 1, 0], 2), 3, CopyLimit::FirstCopies(2)).unwrap();
        let plan = d.tensors();
        assert!(matches!(d.segments(), Segments::Counts(c) if c == &[2, 1, 2]));
        // Six rows: five kept copies, then one that belongs to no expert.
        assert_eq!(d.token_of_row().to_vec::<i64>().unwrap(), vec![0, 1, 2, 0, 1, 0]);
        assert_eq!(plan.row_of_copy.to_vec::<i64>().unwrap(), vec![3, 0, 1, 4, 2, -1]);
        assert_eq!(plan.dropped.to_vec::<u8>().unwrap(), vec![0, 0, 0, 0, 0, 1]);
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], (3, 1), &Device::Cpu).unwrap();
        let xs = d.permute(&x).unwrap();
        assert_eq!(xs.to_vec::<f64>().unwrap(), vec![1.0, 2.0, 3.0, 1.0, 2.0, 1.0]);
        // Identity experts: combine returns Σ_k w · x over the kept copies.
        let w = Tensor::from_vec(vec![0.5f64, 0.25, 1.0, 2.0, 3.0, 7.0], (3, 2), &Device::Cpu).unwrap();
        let y = d.combine(&xs, &w).unwrap();
        assert_eq!(y.to_vec::<f64>().unwrap(), vec![0.75, 6.0, 9.0]);
    }

    #[test]
    fn dropless_plans_drop_nothing() {
        let d = Dispatch::plan(&ids(&[2, 0, 0, 2, 1, 0, 3, 0], 2), 4, CopyLimit::None).unwrap();
        let plan = d.tensors();
        assert_eq!(plan.invalid_ids.to_vec::<i64>().unwrap(), vec![0]);
        assert!(matches!(d.segments(), Segments::Counts(c) if c == &[4, 1, 2, 1]));
        assert_eq!(plan.dropped.to_vec::<u8>().unwrap(), vec![0; 8]);
    }

    #[test]
    fn bad_ids_are_errors() {
        assert!(Dispatch::plan(&ids(&[0, 3], 1), 3, CopyLimit::None).is_err());
        assert!(Dispatch::plan(&ids(&[0, -1], 1), 3, CopyLimit::None).is_err());
        let flat = Tensor::from_vec(vec![0i64, 1, 2], 3, &Device::Cpu).unwrap();
        assert!(Dispatch::plan(&flat, 3, CopyLimit::None).is_err());
    }
}
