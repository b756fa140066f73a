//! The dropless MoE dispatch plan as a tensor op: a stable counting sort of
//! the `N·K` token copies by expert, computed on the ids' device. On CUDA
//! the plan never visits the host (route_plan.cu), so the grouped expert
//! GEMMs can read their segments from device memory ([`crate::Segments`]).

use crate::storage::{CpuStorage, Storage};
use crate::{DType, Error, Result, Shape, Tensor};

/// Where every token copy goes, all I64 tensors on the ids' device.
#[derive(Clone, Debug)]
pub struct DispatchPlan {
    /// Copies per expert, `[E]`: the segment sizes.
    pub counts: Tensor,
    /// Segment starts, `[E + 1]`; `offsets[E] = N·K`.
    pub offsets: Tensor,
    /// Source token of each sorted row, `[N·K]`.
    pub token_of_row: Tensor,
    /// The copy (`t·K + k`) placed in each sorted row, `[N·K]`; the inverse
    /// of `row_of_copy`.
    pub copy_of_row: Tensor,
    /// Sorted row of each copy, `[N, K]`.
    pub row_of_copy: Tensor,
    /// `[1]`: copies whose id was outside `0..E` (left out of every
    /// segment). Always 0 on the CPU, which returns an error for them
    /// instead; on CUDA, read it when the host next needs routing numbers.
    pub invalid_ids: Tensor,
}

/// The CPU plan: the same counting sort as route_plan.cu.
fn plan_on_host(ids: &[i64], top_k: usize, num_experts: usize) -> Result<[Vec<i64>; 5]> {
    let mut counts = vec![0i64; num_experts];
    for &id in ids {
        let e = usize::try_from(id)
            .ok()
            .filter(|&e| e < num_experts)
            .ok_or_else(|| Error::InvalidShape {
                op: "dispatch_plan",
                msg: format!("expert id {id} out of range for {num_experts} experts"),
            })?;
        counts[e] += 1;
    }
    let mut offsets = Vec::with_capacity(num_experts + 1);
    offsets.push(0i64);
    for &c in &counts {
        offsets.push(offsets[offsets.len() - 1] + c);
    }
    let mut next = offsets.clone();
    let mut token_of_row = vec![0i64; ids.len()];
    let mut copy_of_row = vec![0i64; ids.len()];
    let mut row_of_copy = vec![0i64; ids.len()];
    for (c, &id) in ids.iter().enumerate() {
        let row = &mut next[id as usize];
        token_of_row[*row as usize] = (c / top_k) as i64;
        copy_of_row[*row as usize] = c as i64;
        row_of_copy[c] = *row;
        *row += 1;
    }
    Ok([counts, offsets, token_of_row, copy_of_row, row_of_copy])
}

impl Tensor {
    /// The dispatch plan of these expert ids (`[N, K]`, I64, row-major:
    /// token t's k-th choice at `[t, k]`) over `num_experts` experts, every
    /// copy kept. Copies of one expert keep their copy order. On the ids'
    /// device and without gradient; on CUDA, no value is read back.
    pub fn dispatch_plan(&self, num_experts: usize) -> Result<DispatchPlan> {
        let op = "dispatch_plan";
        if self.rank() != 2 || self.dtype() != DType::I64 {
            return Err(Error::InvalidShape {
                op,
                msg: format!("needs I64 ids [N, K], got {:?} {:?}", self.dtype(), self.shape()),
            });
        }
        if num_experts == 0 {
            return Err(Error::InvalidShape {
                op,
                msg: "needs at least one expert".into(),
            });
        }
        let (n, k) = (self.dims()[0], self.dims()[1]);
        let ids = self.contiguous()?;
        let shapes = [
            Shape::from(vec![num_experts]),
            Shape::from(vec![num_experts + 1]),
            Shape::from(vec![n * k]),
            Shape::from(vec![n * k]),
            Shape::from(vec![n, k]),
            Shape::from(vec![1]),
        ];
        let storages: [Storage; 6] = if ids.device().is_cpu() {
            let host = ids.to_vec::<i64>()?;
            let [counts, offsets, token, copy, row] = plan_on_host(&host, k.max(1), num_experts)?;
            [counts, offsets, token, copy, row, vec![0]].map(|v| Storage::Cpu(CpuStorage::I64(v)))
        } else {
            crate::cuda_backend::dispatch_plan(&ids, num_experts)?
        };
        let [counts, offsets, token_of_row, copy_of_row, row_of_copy, invalid_ids] = storages;
        let [s0, s1, s2, s3, s4, s5] = shapes;
        Ok(DispatchPlan {
            counts: Tensor::from_storage(counts, s0),
            offsets: Tensor::from_storage(offsets, s1),
            token_of_row: Tensor::from_storage(token_of_row, s2),
            copy_of_row: Tensor::from_storage(copy_of_row, s3),
            row_of_copy: Tensor::from_storage(row_of_copy, s4),
            invalid_ids: Tensor::from_storage(invalid_ids, s5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    #[test]
    fn plan_is_a_stable_sort_by_expert() {
        // 3 tokens, top-2, 3 experts.
        let ids = Tensor::from_vec(vec![2i64, 0, 0, 2, 1, 0], (3, 2), &Device::Cpu).unwrap();
        let p = ids.dispatch_plan(4).unwrap();
        assert_eq!(p.counts.to_vec::<i64>().unwrap(), vec![3, 1, 2, 0]);
        assert_eq!(p.offsets.to_vec::<i64>().unwrap(), vec![0, 3, 4, 6, 6]);
        assert_eq!(p.token_of_row.to_vec::<i64>().unwrap(), vec![0, 1, 2, 2, 0, 1]);
        assert_eq!(p.copy_of_row.to_vec::<i64>().unwrap(), vec![1, 2, 5, 4, 0, 3]);
        assert_eq!(p.row_of_copy.to_vec::<i64>().unwrap(), vec![4, 0, 1, 5, 3, 2]);
        assert_eq!(p.invalid_ids.to_vec::<i64>().unwrap(), vec![0]);
        // A transposed view is read in its logical order.
        let t = Tensor::from_vec(vec![2i64, 0, 1, 0, 2, 0], (2, 3), &Device::Cpu).unwrap();
        let pt = t.t().unwrap().dispatch_plan(4).unwrap();
        assert_eq!(pt.row_of_copy.to_vec::<i64>().unwrap(), vec![4, 0, 1, 5, 3, 2]);
    }

    #[test]
    fn bad_ids_and_shapes_are_errors() {
        let bad = Tensor::from_vec(vec![0i64, 3], (2, 1), &Device::Cpu).unwrap();
        assert!(bad.dispatch_plan(3).is_err());
        let neg = Tensor::from_vec(vec![0i64, -1], (2, 1), &Device::Cpu).unwrap();
        assert!(neg.dispatch_plan(3).is_err());
        let flat = Tensor::from_vec(vec![0i64, 1], 2, &Device::Cpu).unwrap();
        assert!(flat.dispatch_plan(3).is_err());
        let float = Tensor::from_vec(vec![0f32, 1.0], (2, 1), &Device::Cpu).unwrap();
        assert!(float.dispatch_plan(3).is_err());
        let ok = Tensor::from_vec(vec![0i64, 1], (2, 1), &Device::Cpu).unwrap();
        assert!(ok.dispatch_plan(0).is_err());
    }

    #[test]
    fn no_tokens_give_empty_segments() {
        let ids = Tensor::from_vec(Vec::<i64>::new(), (0, 2), &Device::Cpu).unwrap();
        let p = ids.dispatch_plan(3).unwrap();
        assert_eq!(p.offsets.to_vec::<i64>().unwrap(), vec![0, 0, 0, 0]);
        assert_eq!(p.token_of_row.elem_count(), 0);
    }
}
