//! The MoE dispatch plan as a tensor op: a stable counting sort of the
//! `N·K` token copies by expert, each expert keeping all its copies or, with
//! a capacity ([`CopyLimit`]), its first copies (Megatron-LM's position
//! policy) or its highest-scored ones (the score policy), computed on the
//! ids' device. On CUDA the plan never visits the host (route_plan.cu), so
//! the grouped expert GEMMs can read their segments from device memory
//! ([`crate::Segments`]).

use crate::storage::{CpuStorage, Storage};
use crate::{DType, Error, Result, Shape, Tensor};

/// Where every token copy goes, all tensors on the ids' device (I64 unless
/// said). Rows are `N·K`; with a capacity, rows past the kept copies
/// (`offsets[E]` onwards) belong to no expert (copy −1, token 0).
#[derive(Clone, Debug)]
pub struct DispatchPlan {
    /// Copies choosing each expert, `[E]` (before capacity).
    pub selected: Tensor,
    /// Kept copies per expert, `[E]`: the segment sizes.
    pub counts: Tensor,
    /// Segment starts, `[E + 1]`; `offsets[E]` = kept copies.
    pub offsets: Tensor,
    /// Source token of each sorted row, `[N·K]`.
    pub token_of_row: Tensor,
    /// The copy (`t·K + k`) placed in each sorted row, `[N·K]` (−1 past the
    /// kept copies); the inverse of `row_of_copy`.
    pub copy_of_row: Tensor,
    /// Sorted row of each copy, `[N, K]`; −1 for a dropped copy.
    pub row_of_copy: Tensor,
    /// U8 `[N, K]`: 1 for a dropped copy.
    pub dropped: Tensor,
    /// `[1]`: copies whose id was outside `0..E` (left out of every
    /// segment). Always 0 on the CPU, which returns an error for them
    /// instead; on CUDA, read it when the host next needs routing numbers.
    pub invalid_ids: Tensor,
}

/// Which of its copies each expert keeps.
#[derive(Clone, Copy, Debug)]
pub enum CopyLimit<'a> {
    /// Every copy (dropless).
    None,
    /// The first `capacity` copies in copy order, earlier tokens first
    /// (Megatron-LM's position policy).
    FirstCopies(usize),
    /// The `capacity` copies with the highest `scores` (`[N, K]` like the
    /// ids, f32 or f64), equal scores to the earlier copy, in the order of
    /// `f64::total_cmp` (Megatron-LM's score policy). Kept copies still sit
    /// in copy order inside their segment.
    TopScores { capacity: usize, scores: &'a Tensor },
}

/// The CPU plan, as route_plan.cu computes it: selected, counts, offsets,
/// token and copy of each row, row of each copy, and the dropped flags.
type HostPlan = ([Vec<i64>; 6], Vec<u8>);

/// Each copy's expert, checked to be in `0..num_experts`.
fn experts_on_host(ids: &[i64], num_experts: usize) -> Result<Vec<usize>> {
    ids.iter()
        .map(|&id| {
            usize::try_from(id)
                .ok()
                .filter(|&e| e < num_experts)
                .ok_or_else(|| Error::InvalidShape {
                    op: "dispatch_plan",
                    msg: format!("expert id {id} out of range for {num_experts} experts"),
                })
        })
        .collect()
}

/// The score policy's keep flags: per expert, a stable sort of its copies
/// by score, highest first, keeping the first `capacity`.
fn keep_top_scores(experts: &[usize], scores: &[f64], num_experts: usize, capacity: usize) -> Vec<bool> {
    let mut per_expert: Vec<Vec<usize>> = vec![Vec::new(); num_experts];
    for (c, &e) in experts.iter().enumerate() {
        per_expert[e].push(c);
    }
    let mut keep = vec![true; experts.len()];
    for list in &mut per_expert {
        if list.len() > capacity {
            list.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            for &c in &list[capacity..] {
                keep[c] = false;
            }
        }
    }
    keep
}

/// The plan of `experts` (one per copy), each expert keeping its first
/// `capacity` copies among those `keep` allows (None: all).
fn plan_on_host(
    experts: &[usize],
    top_k: usize,
    num_experts: usize,
    capacity: Option<usize>,
    keep: Option<&[bool]>,
) -> HostPlan {
    let mut selected = vec![0i64; num_experts];
    let mut eligible = vec![0i64; num_experts];
    // Each eligible copy's position among its expert's eligible copies.
    let mut position = vec![i64::MAX; experts.len()];
    for (c, &e) in experts.iter().enumerate() {
        selected[e] += 1;
        if keep.is_none_or(|k| k[c]) {
            position[c] = eligible[e];
            eligible[e] += 1;
        }
    }
    let cap = capacity.map_or(i64::MAX, |c| i64::try_from(c).unwrap_or(i64::MAX));
    let counts: Vec<i64> = eligible.iter().map(|&c| c.min(cap)).collect();
    let mut offsets = Vec::with_capacity(num_experts + 1);
    offsets.push(0i64);
    for &c in &counts {
        offsets.push(offsets[offsets.len() - 1] + c);
    }
    let (mut token_of_row, mut copy_of_row) = (vec![0i64; experts.len()], vec![-1i64; experts.len()]);
    let (mut row_of_copy, mut dropped) = (vec![-1i64; experts.len()], vec![1u8; experts.len()]);
    for (c, (&e, &p)) in experts.iter().zip(&position).enumerate() {
        if p < cap {
            let row = (offsets[e] + p) as usize;
            token_of_row[row] = (c / top_k) as i64;
            copy_of_row[row] = c as i64;
            row_of_copy[c] = row as i64;
            dropped[c] = 0;
        }
    }
    (
        [selected, counts, offsets, token_of_row, copy_of_row, row_of_copy],
        dropped,
    )
}

impl Tensor {
    /// The dispatch plan of these expert ids (`[N, K]`, I64, row-major:
    /// token t's k-th choice at `[t, k]`) over `num_experts` experts, every
    /// copy kept. Copies of one expert keep their copy order. On the ids'
    /// device and without gradient; on CUDA, no value is read back.
    pub fn dispatch_plan(&self, num_experts: usize) -> Result<DispatchPlan> {
        self.dispatch_plan_limited(num_experts, CopyLimit::None)
    }

    /// [`Tensor::dispatch_plan`] where each expert keeps only the copies
    /// `limit` allows (its first ones, or its highest-scored ones).
    pub fn dispatch_plan_limited(&self, num_experts: usize, limit: CopyLimit<'_>) -> Result<DispatchPlan> {
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
        if let CopyLimit::TopScores { scores, .. } = limit {
            if scores.dims() != self.dims() || !matches!(scores.dtype(), DType::F32 | DType::F64) {
                return Err(Error::InvalidShape {
                    op,
                    msg: format!(
                        "scores must be f32 or f64 shaped like the ids {:?}, got {:?} {:?}",
                        self.dims(),
                        scores.dtype(),
                        scores.dims()
                    ),
                });
            }
            if scores.device() != self.device() {
                return Err(Error::DeviceMismatch {
                    op,
                    lhs: self.device(),
                    rhs: scores.device(),
                });
            }
        }
        let (n, k) = (self.dims()[0], self.dims()[1]);
        let ids = self.contiguous()?;
        let (e, rows, nk) = (vec![num_experts], vec![n * k], vec![n, k]);
        let shapes = [
            e.clone(),
            e,
            vec![num_experts + 1],
            rows.clone(),
            rows,
            nk.clone(),
            nk,
            vec![1],
        ]
        .map(Shape::from);
        let storages: [Storage; 8] = if ids.device().is_cpu() {
            let experts = experts_on_host(&ids.to_vec::<i64>()?, num_experts)?;
            let ([selected, counts, offsets, token, copy, row], dropped) = match limit {
                CopyLimit::None => plan_on_host(&experts, k.max(1), num_experts, None, None),
                CopyLimit::FirstCopies(c) => plan_on_host(&experts, k.max(1), num_experts, Some(c), None),
                CopyLimit::TopScores { capacity, scores } => {
                    let scores = scores.detach().to_vec_f64()?;
                    let keep = keep_top_scores(&experts, &scores, num_experts, capacity);
                    plan_on_host(&experts, k.max(1), num_experts, None, Some(&keep))
                }
            };
            let i64s = [selected, counts, offsets, token, copy, row].map(|v| Storage::Cpu(CpuStorage::I64(v)));
            let [s0, s1, s2, s3, s4, s5] = i64s;
            let (flags, none) = (CpuStorage::U8(dropped), CpuStorage::I64(vec![0]));
            [s0, s1, s2, s3, s4, s5, Storage::Cpu(flags), Storage::Cpu(none)]
        } else {
            crate::cuda_backend::dispatch_plan(&ids, num_experts, limit)?
        };
        let [selected, counts, offsets, token_of_row, copy_of_row, row_of_copy, dropped, invalid_ids] = storages;
        let [s0, s1, s2, s3, s4, s5, s6, s7] = shapes;
        Ok(DispatchPlan {
            selected: Tensor::from_storage(selected, s0),
            counts: Tensor::from_storage(counts, s1),
            offsets: Tensor::from_storage(offsets, s2),
            token_of_row: Tensor::from_storage(token_of_row, s3),
            copy_of_row: Tensor::from_storage(copy_of_row, s4),
            row_of_copy: Tensor::from_storage(row_of_copy, s5),
            dropped: Tensor::from_storage(dropped, s6),
            invalid_ids: Tensor::from_storage(invalid_ids, s7),
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
    fn capacity_keeps_each_experts_first_copies() {
        // Expert 0 is chosen by copies 1, 2, 5; capacity 2 drops copy 5.
        let ids = Tensor::from_vec(vec![2i64, 0, 0, 2, 1, 0], (3, 2), &Device::Cpu).unwrap();
        let p = ids.dispatch_plan_limited(4, CopyLimit::FirstCopies(2)).unwrap();
        assert_eq!(p.selected.to_vec::<i64>().unwrap(), vec![3, 1, 2, 0]);
        assert_eq!(p.counts.to_vec::<i64>().unwrap(), vec![2, 1, 2, 0]);
        assert_eq!(p.offsets.to_vec::<i64>().unwrap(), vec![0, 2, 3, 5, 5]);
        assert_eq!(p.row_of_copy.to_vec::<i64>().unwrap(), vec![3, 0, 1, 4, 2, -1]);
        assert_eq!(p.dropped.to_vec::<u8>().unwrap(), vec![0, 0, 0, 0, 0, 1]);
        // Rows past the kept copies: copy -1, token 0.
        assert_eq!(p.copy_of_row.to_vec::<i64>().unwrap(), vec![1, 2, 4, 0, 3, -1]);
        assert_eq!(p.token_of_row.to_vec::<i64>().unwrap(), vec![0, 1, 2, 0, 1, 0]);
        let all = ids.dispatch_plan_limited(4, CopyLimit::FirstCopies(3)).unwrap();
        assert_eq!(all.dropped.to_vec::<u8>().unwrap(), vec![0; 6]);
    }

    #[test]
    fn top_scores_keep_each_experts_best_copies_in_copy_order() {
        // 4 tokens, top-1, 2 experts, capacity 2; expert 0 gets copies 0, 1, 3.
        let ids = Tensor::from_vec(vec![0i64, 0, 1, 0], (4, 1), &Device::Cpu).unwrap();
        let scores = Tensor::from_vec(vec![0.1f32, 0.9, 0.5, 0.8], (4, 1), &Device::Cpu).unwrap();
        let limit = CopyLimit::TopScores {
            capacity: 2,
            scores: &scores,
        };
        let p = ids.dispatch_plan_limited(2, limit).unwrap();
        assert_eq!(p.selected.to_vec::<i64>().unwrap(), vec![3, 1]);
        assert_eq!(p.counts.to_vec::<i64>().unwrap(), vec![2, 1]);
        assert_eq!(p.dropped.to_vec::<u8>().unwrap(), vec![1, 0, 0, 0]);
        // Kept copies 1 and 3 in copy order, then expert 1's copy 2.
        assert_eq!(p.copy_of_row.to_vec::<i64>().unwrap(), vec![1, 3, 2, -1]);
        assert_eq!(p.row_of_copy.to_vec::<i64>().unwrap(), vec![-1, 0, 2, 1]);
        // Equal scores go to the earlier copy; -0.0 ranks below +0.0.
        let tied = Tensor::from_vec(vec![0.5f64, 0.5, 0.0, 0.5], (4, 1), &Device::Cpu).unwrap();
        let limit = CopyLimit::TopScores {
            capacity: 2,
            scores: &tied,
        };
        let p = ids.dispatch_plan_limited(2, limit).unwrap();
        assert_eq!(p.dropped.to_vec::<u8>().unwrap(), vec![0, 0, 0, 1]);
        let zeros = Tensor::from_vec(vec![-0.0f64, 0.0, 0.0, 0.0], (4, 1), &Device::Cpu).unwrap();
        let limit = CopyLimit::TopScores {
            capacity: 2,
            scores: &zeros,
        };
        let p = ids.dispatch_plan_limited(2, limit).unwrap();
        assert_eq!(p.dropped.to_vec::<u8>().unwrap(), vec![1, 0, 0, 0]);
    }

    #[test]
    fn scores_of_the_wrong_shape_or_dtype_are_errors() {
        let ids = Tensor::from_vec(vec![0i64, 1], (2, 1), &Device::Cpu).unwrap();
        for scores in [
            Tensor::from_vec(vec![0.5f32; 3], (3, 1), &Device::Cpu).unwrap(),
            Tensor::from_vec(vec![1i64, 2], (2, 1), &Device::Cpu).unwrap(),
        ] {
            let limit = CopyLimit::TopScores {
                capacity: 1,
                scores: &scores,
            };
            let err = ids.dispatch_plan_limited(2, limit).unwrap_err().to_string();
            assert!(err.contains("scores"), "{err}");
        }
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
