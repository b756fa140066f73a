//! The dispatch plan on CUDA, dropless or with a capacity (kernels:
//! route_plan.cu): launches queued on the stream, nothing read back, so the
//! expert GEMMs that follow take their segments from device memory.
//! Dropless and position plans are one pass (rank, place); the score policy
//! plans dropless, ranks each copy against its expert's segment by score
//! (route_keep_by_score), then plans again with those keep flags.

use super::device::cuda_err;
use super::launch::{config, float_kernel, int, long};
use super::memory::{cuda_of, elems, CudaStorage};
use crate::storage::Storage;
use crate::tensor::CopyLimit;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use moe_kernels::cuda::ROUTE_PLAN;

const OP: &str = "dispatch_plan";

/// A capacity as the kernels' `long long` (a capacity past i64 keeps every copy).
fn capacity_arg(capacity: usize) -> i64 {
    i64::try_from(capacity).unwrap_or(i64::MAX)
}

/// Selected and kept counts `[E]`, offsets `[E + 1]`, token and copy of
/// each row `[C]`, row of each copy `[C]`, the u8 dropped flags `[C]` and
/// the bad-id count `[1]` of the contiguous I64 ids (`[N, K]`, C = N·K
/// copies), each expert keeping the copies `limit` allows.
pub(crate) fn dispatch_plan(ids: &Tensor, num_experts: usize, limit: CopyLimit<'_>) -> Result<[Storage; 8]> {
    match limit {
        CopyLimit::None => plan_pass(ids, num_experts, -1, None),
        CopyLimit::FirstCopies(c) => plan_pass(ids, num_experts, capacity_arg(c), None),
        CopyLimit::TopScores { capacity, scores } => {
            let dropless = plan_pass(ids, num_experts, -1, None)?;
            let [_, _, Storage::Cuda(offsets), _, Storage::Cuda(copy_of_row), ..] = &dropless else {
                unreachable!("plan_pass returns CUDA storages")
            };
            let keep = keep_by_score(ids, scores, num_experts, capacity_arg(capacity), (offsets, copy_of_row))?;
            plan_pass(ids, num_experts, -1, Some(&keep))
        }
    }
}

/// One plan: each expert keeps its first `capacity` (< 0: all) copies among
/// those whose `keep` flag is set (None: every copy).
fn plan_pass(ids: &Tensor, num_experts: usize, capacity: i64, keep: Option<&CudaStorage>) -> Result<[Storage; 8]> {
    let (copies, top_k) = (ids.elem_count(), ids.dims()[1]);
    let guard = ids.read_storage();
    let ic = cuda_of(&guard, OP)?;
    let dev = ic.dev().clone();
    let alloc = |len| CudaStorage::alloc(&dev, DType::I64, len, OP);
    let (mut selected, mut counts, mut bad) = (alloc(num_experts)?, alloc(num_experts)?, alloc(1)?);
    let (mut rank, mut offsets) = (alloc(copies)?, alloc(num_experts + 1)?);
    let (mut row_of_copy, mut token_of_row, mut copy_of_row) = (alloc(copies)?, alloc(copies)?, alloc(copies)?);
    let mut dropped = CudaStorage::alloc(&dev, DType::U8, copies, OP)?;
    if copies == 0 {
        for s in [&mut selected, &mut counts, &mut offsets, &mut bad] {
            s.zero(OP)?;
        }
    } else {
        let (rank_launch, place_launch) =
            moe_kernels::cuda::launch::route_plan(copies, num_experts).ok_or_else(|| Error::InvalidShape {
                op: OP,
                msg: format!("{num_experts} experts is outside the kernel's range"),
            })?;
        let (c, e, k) = (
            long(copies, OP)?,
            int(num_experts, OP, "experts")?,
            int(top_k, OP, "top_k")?,
        );
        let idv = elems::<i64>(ic, ids, OP)?;
        {
            let f = dev.function(&ROUTE_PLAN, "route_plan_rank")?;
            let keep_view = keep.map(|k| k.view::<u8>(0..copies, OP)).transpose()?;
            // A null `keep` pointer: every copy is eligible.
            let no_keep = 0u64;
            let (mut sv, mut cv, mut bv, mut rv) = (
                selected.view_mut::<i64>(OP)?,
                counts.view_mut::<i64>(OP)?,
                bad.view_mut::<i64>(OP)?,
                rank.view_mut::<i64>(OP)?,
            );
            let mut b = dev.stream.launch_builder(&f);
            b.arg(&c).arg(&e).arg(&capacity).arg(&idv);
            match &keep_view {
                Some(v) => b.arg(v),
                None => b.arg(&no_keep),
            };
            b.arg(&mut sv).arg(&mut cv).arg(&mut bv).arg(&mut rv);
            // SAFETY: route_plan_rank(long long copies, int num_experts,
            // long long capacity, const long long* ids, const unsigned char*
            // keep, long long* selected, counts, bad, rank): ids and keep
            // (or null, a 64-bit zero) have `copies` elements,
            // selected/counts `num_experts`, bad 1, rank `copies`; one
            // block per expert.
            unsafe { b.launch(config(rank_launch)) }.map_err(cuda_err(OP))?;
        }
        let f = dev.function(&ROUTE_PLAN, "route_plan_place")?;
        let (cv, rv) = (
            counts.view::<i64>(0..num_experts, OP)?,
            rank.view::<i64>(0..copies, OP)?,
        );
        let (mut ov, mut rcv, mut cov, mut tv, mut dv) = (
            offsets.view_mut::<i64>(OP)?,
            row_of_copy.view_mut::<i64>(OP)?,
            copy_of_row.view_mut::<i64>(OP)?,
            token_of_row.view_mut::<i64>(OP)?,
            dropped.view_mut::<u8>(OP)?,
        );
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&c).arg(&k).arg(&e).arg(&idv).arg(&cv).arg(&rv);
        b.arg(&mut ov).arg(&mut rcv).arg(&mut cov).arg(&mut tv).arg(&mut dv);
        // SAFETY: route_plan_place(long long copies, int top_k, int
        // num_experts, const long long* ids, const long long* counts,
        // const long long* rank, long long* offsets, row_of_copy,
        // copy_of_row, token_of_row, unsigned char* dropped): offsets holds
        // num_experts + 1 elements, the others `copies`; rows written are
        // below Σ counts ≤ copies.
        unsafe { b.launch(config(place_launch)) }.map_err(cuda_err(OP))?;
    }
    Ok([
        selected,
        counts,
        offsets,
        token_of_row,
        copy_of_row,
        row_of_copy,
        dropped,
        bad,
    ]
    .map(Storage::Cuda))
}

/// The score policy's keep flags (u8 `[C]`) from a dropless plan's
/// `offsets` and `copy_of_row`: each expert keeps its `capacity`
/// highest-scored copies (f32 or f64 scores).
fn keep_by_score(
    ids: &Tensor,
    scores: &Tensor,
    num_experts: usize,
    capacity: i64,
    (offsets, copy_of_row): (&CudaStorage, &CudaStorage),
) -> Result<CudaStorage> {
    let scores = scores.detach().contiguous()?;
    float_kernel!(
        scores.dtype(),
        OP,
        keep_by_score_typed(ids, &scores, num_experts, capacity, (offsets, copy_of_row))
    )
}

fn keep_by_score_typed<T: DeviceRepr>(
    suffix: &str,
    ids: &Tensor,
    scores: &Tensor,
    num_experts: usize,
    capacity: i64,
    (offsets, copy_of_row): (&CudaStorage, &CudaStorage),
) -> Result<CudaStorage> {
    let copies = ids.elem_count();
    let (ig, sg) = (ids.read_storage(), scores.read_storage());
    let (ic, sc) = (cuda_of(&ig, OP)?, cuda_of(&sg, OP)?);
    let dev = ic.dev().clone();
    let mut keep = CudaStorage::alloc(&dev, DType::U8, copies, OP)?;
    let Some(launch) = moe_kernels::cuda::launch::elementwise(copies) else {
        return Ok(keep);
    };
    let (c, e) = (long(copies, OP)?, int(num_experts, OP, "experts")?);
    let (idv, sv) = (elems::<i64>(ic, ids, OP)?, elems::<T>(sc, scores, OP)?);
    let ov = offsets.view::<i64>(0..num_experts + 1, OP)?;
    let cv = copy_of_row.view::<i64>(0..copies, OP)?;
    let mut kv = keep.view_mut::<u8>(OP)?;
    let f = dev.function(&ROUTE_PLAN, &format!("route_keep_by_score_{suffix}"))?;
    let mut b = dev.stream.launch_builder(&f);
    b.arg(&c).arg(&e).arg(&capacity).arg(&idv).arg(&sv);
    b.arg(&ov).arg(&cv).arg(&mut kv);
    // SAFETY: route_keep_by_score_{f32,f64}(long long copies, int
    // num_experts, long long capacity, const long long* ids, const T*
    // scores, const long long* offsets, const long long* copy_of_row,
    // unsigned char* keep): ids, scores, copy_of_row and keep hold `copies`
    // elements, offsets num_experts + 1 (a dropless plan's, so every row it
    // names is below `copies`).
    unsafe { b.launch(config(launch)) }.map_err(cuda_err(OP))?;
    Ok(keep)
}
