//! Dispatch and combine: token copies sorted by expert into contiguous
//! segments for [`Tensor::grouped_matmul`], and the weighted scatter back.
//!
//! The plan is a stable counting sort of the kept copies by expert id (copies
//! of one expert stay in token order). [`Dispatch::permute`] gathers rows of
//! `x_ND` into `x_MD` (M = kept copies); the experts run as grouped matmuls
//! over [`Dispatch::counts`]; [`Dispatch::combine`] maps each copy's output row
//! back to its token, weights it and sums over the K copies in one fused op
//! ([`Tensor::expert_combine`]). Both are differentiable, in the weights as
//! well as the expert outputs; a dropped copy reads no row, so it adds nothing
//! and its weight gets no gradient.
//!
//! Two ways to plan: [`Dispatch::plan`] sorts host ids and keep flags (any
//! capacity policy); [`Dispatch::plan_on_device`] plans on the ids' device
//! ([`Tensor::dispatch_plan_with_capacity`]: every copy kept, or each
//! expert's first copies), so on CUDA the segment offsets go straight from
//! the router to the expert GEMMs without a host round-trip. Its sorted
//! buffer always has `N·K` rows; rows past the kept copies belong to no
//! expert.

use crate::error::{Result, RouterError};
use moe_tensor::{DType, Device, DispatchPlan, Segments, Tensor};

/// The expert index of an id, checked against the number of experts.
pub(crate) fn expert_index(id: i64, num_experts: usize) -> Result<usize> {
    usize::try_from(id)
        .ok()
        .filter(|&e| e < num_experts)
        .ok_or(RouterError::Invalid {
            what: "expert ids",
            msg: format!("expert id {id} out of range for {num_experts} experts"),
        })
}

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
    /// Source token of each sorted row, `[M]` (I64).
    token_of_row_M: Tensor,
    /// Sorted row of each copy, `[N, K]` (I64); −1 for dropped copies.
    row_of_copy_NK: Tensor,
    /// 1 where a copy was dropped, `[N, K]` (U8); None when none can be.
    dropped_NK: Option<Tensor>,
    /// The plan of a device-planned dispatch: permute and combine use its
    /// tensors in place (no host read on CUDA).
    plan: Option<DispatchPlan>,
}

impl Dispatch {
    /// Plans the dispatch of `N·K` copies (`topk_ids_NK` row-major `[N, K]`),
    /// keeping those where `keep_NK` is true. The plan's index tensors are put
    /// on `device`, the device of the activations they will index.
    pub fn plan(
        topk_ids_NK: &[i64],
        keep_NK: &[bool],
        top_k: usize,
        num_experts: usize,
        device: &Device,
    ) -> Result<Self> {
        if top_k == 0 || !topk_ids_NK.len().is_multiple_of(top_k) || keep_NK.len() != topk_ids_NK.len() {
            return Err(RouterError::Invalid {
                what: "dispatch plan",
                msg: format!(
                    "{} expert ids and {} keep flags for top_k {top_k}",
                    topk_ids_NK.len(),
                    keep_NK.len()
                ),
            });
        }
        let mut counts_E = vec![0usize; num_experts];
        for (&id, &keep) in topk_ids_NK.iter().zip(keep_NK) {
            let e = expert_index(id, num_experts)?;
            counts_E[e] += keep as usize;
        }
        // Counting sort: each expert's segment starts after the earlier ones.
        let mut next_E: Vec<usize> = counts_E
            .iter()
            .scan(0, |acc, &c| {
                let start = *acc;
                *acc += c;
                Some(start)
            })
            .collect();
        let m: usize = counts_E.iter().sum();
        let mut token_of_row = vec![0i64; m];
        let mut row_of_copy = vec![-1i64; topk_ids_NK.len()];
        for (i, (&id, &keep)) in topk_ids_NK.iter().zip(keep_NK).enumerate() {
            if keep {
                let row = &mut next_E[id as usize];
                token_of_row[*row] = (i / top_k) as i64;
                row_of_copy[i] = *row as i64;
                *row += 1;
            }
        }
        let n = topk_ids_NK.len() / top_k;
        let dropped: Vec<u8> = keep_NK.iter().map(|&kp| u8::from(!kp)).collect();
        Ok(Dispatch {
            num_tokens: n,
            top_k,
            token_of_row_M: Tensor::from_vec(token_of_row, m, device)?,
            row_of_copy_NK: Tensor::from_vec(row_of_copy, (n, top_k), device)?,
            dropped_NK: Some(Tensor::from_vec(dropped, (n, top_k), device)?),
            segments: Segments::Counts(counts_E),
            plan: None,
        })
    }

    /// Plans the copies of `topk_ids_NK` (`[N, K]`, I64) on the ids' device,
    /// each expert keeping all its copies (`capacity` None) or its first
    /// `capacity` in token order: on CUDA no id is read back and the
    /// experts' segments are device offsets. Ids out of range are an error
    /// on the CPU; on CUDA they are counted in the plan's `invalid_ids`,
    /// which the routing statistics check. Returns the dispatch and the plan.
    pub fn plan_on_device(
        topk_ids_NK: &Tensor,
        num_experts: usize,
        capacity: Option<usize>,
    ) -> Result<(Self, DispatchPlan)> {
        let (n, k) = (topk_ids_NK.dims()[0], topk_ids_NK.dims()[1]);
        let plan = topk_ids_NK.dispatch_plan_with_capacity(num_experts, capacity)?;
        let on_cuda = !topk_ids_NK.device().is_cpu();
        let segments = if on_cuda && !cuda_host_counts() {
            Segments::Offsets(plan.offsets.clone())
        } else {
            // The CPU reads its own memory; a CUDA run asked for cuBLAS.
            let counts = plan.counts.to_vec::<i64>()?;
            Segments::Counts(counts.iter().map(|&c| c.max(0) as usize).collect())
        };
        let dispatch = Dispatch {
            num_tokens: n,
            top_k: k,
            segments,
            token_of_row_M: plan.token_of_row.clone(),
            row_of_copy_NK: plan.row_of_copy.clone(),
            dropped_NK: capacity.map(|_| plan.dropped.clone()),
            plan: Some(plan.clone()),
        };
        Ok((dispatch, plan))
    }

    /// The experts' rows for `grouped_matmul`: host counts or device offsets.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }

    /// M: the rows of the sorted buffer (the kept copies; `N·K` for a
    /// device plan, whose rows past the kept copies belong to no expert).
    pub fn num_rows(&self) -> usize {
        self.token_of_row_M.elem_count()
    }

    /// Source token of each sorted row, `[M]` (I64).
    pub fn token_of_row(&self) -> &Tensor {
        &self.token_of_row_M
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
        Ok(match &self.plan {
            Some(plan) => x_ND.dispatch_rows(plan)?,
            None => x_ND.index_select(0, &self.token_of_row_M)?,
        })
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
        Ok(match &self.plan {
            Some(plan) => y_MD.combine_rows(plan, &w)?,
            None => y_MD.expert_combine(&self.row_of_copy_NK, &w)?,
        })
    }

    /// The kept-copy mask as U8 `[N, K]` (1 = dropped).
    pub(crate) fn dropped_mask(&self) -> Result<Tensor> {
        match &self.dropped_NK {
            Some(d) => Ok(d.clone()),
            None => Ok(Tensor::zeros(
                (self.num_tokens, self.top_k),
                DType::U8,
                &self.token_of_row_M.device(),
            )?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_a_stable_sort_by_expert() {
        // 3 tokens, top-2, 3 experts; copy (2, 1) dropped.
        let ids = [2i64, 0, 0, 2, 1, 0];
        let keep = [true, true, true, true, true, false];
        let d = Dispatch::plan(&ids, &keep, 2, 3, &Device::Cpu).unwrap();
        assert!(matches!(d.segments(), Segments::Counts(c) if c == &[2, 1, 2]));
        assert_eq!(d.token_of_row().to_vec::<i64>().unwrap(), vec![0, 1, 2, 0, 1]);
        assert_eq!(d.row_of_copy_NK.to_vec::<i64>().unwrap(), vec![3, 0, 1, 4, 2, -1]);
        assert_eq!(
            d.dropped_mask().unwrap().to_vec::<u8>().unwrap(),
            vec![0, 0, 0, 0, 0, 1]
        );
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], (3, 1), &Device::Cpu).unwrap();
        let xs = d.permute(&x).unwrap();
        assert_eq!(xs.to_vec::<f64>().unwrap(), vec![1.0, 2.0, 3.0, 1.0, 2.0]);
        // Identity experts: combine returns Σ_k w · x over the kept copies.
        let w = Tensor::from_vec(vec![0.5f64, 0.25, 1.0, 2.0, 3.0, 7.0], (3, 2), &Device::Cpu).unwrap();
        let y = d.combine(&xs, &w).unwrap();
        assert_eq!(y.to_vec::<f64>().unwrap(), vec![0.75, 6.0, 9.0]);
    }

    #[test]
    fn dropless_plan_equals_the_host_plan() {
        let ids = [2i64, 0, 0, 2, 1, 0, 3, 0];
        let host = Dispatch::plan(&ids, &[true; 8], 2, 4, &Device::Cpu).unwrap();
        let t = Tensor::from_vec(ids.to_vec(), (4, 2), &Device::Cpu).unwrap();
        let (dev, plan) = Dispatch::plan_on_device(&t, 4, None).unwrap();
        assert_eq!(plan.invalid_ids.to_vec::<i64>().unwrap(), vec![0]);
        let (Segments::Counts(a), Segments::Counts(b)) = (host.segments(), dev.segments()) else {
            panic!("CPU plans give host counts");
        };
        assert_eq!(a, b);
        for (x, y) in [
            (&host.token_of_row_M, &dev.token_of_row_M),
            (&host.row_of_copy_NK, &dev.row_of_copy_NK),
        ] {
            assert_eq!(x.to_vec::<i64>().unwrap(), y.to_vec::<i64>().unwrap());
        }
        assert_eq!(dev.dropped_mask().unwrap().to_vec::<u8>().unwrap(), vec![0; 8]);
    }

    #[test]
    fn bad_ids_are_errors() {
        assert!(Dispatch::plan(&[0, 3], &[true, true], 1, 3, &Device::Cpu).is_err());
        assert!(Dispatch::plan(&[0, -1], &[true, true], 1, 3, &Device::Cpu).is_err());
        assert!(Dispatch::plan(&[0, 1, 2], &[true, true, true], 2, 3, &Device::Cpu).is_err());
    }
}
