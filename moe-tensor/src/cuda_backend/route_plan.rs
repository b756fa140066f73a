//! The dispatch plan on CUDA, dropless or with a capacity (kernels:
//! route_plan.cu): two launches queued on the stream, nothing read back,
//! so the expert GEMMs that follow take their segments from device memory.

use super::device::cuda_err;
use super::launch::{config, int, long};
use super::memory::{cuda_of, elems, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Tensor};
use cudarc::driver::PushKernelArg;
use moe_kernels::cuda::ROUTE_PLAN;

const OP: &str = "dispatch_plan";

/// Selected and kept counts `[E]`, offsets `[E + 1]`, token and copy of
/// each row `[C]`, row of each copy `[C]`, the u8 dropped flags `[C]` and
/// the bad-id count `[1]` of the contiguous I64 ids (`[N, K]`, C = N·K
/// copies), each expert keeping its first `capacity` copies (all: `None`).
pub(crate) fn dispatch_plan(ids: &Tensor, num_experts: usize, capacity: Option<usize>) -> Result<[Storage; 8]> {
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
        // -1: no capacity; a capacity past i64 keeps every copy too.
        let cap = capacity.map_or(-1i64, |c| i64::try_from(c).unwrap_or(i64::MAX));
        let idv = elems::<i64>(ic, ids, OP)?;
        {
            let f = dev.function(&ROUTE_PLAN, "route_plan_rank")?;
            let (mut sv, mut cv, mut bv, mut rv) = (
                selected.view_mut::<i64>(OP)?,
                counts.view_mut::<i64>(OP)?,
                bad.view_mut::<i64>(OP)?,
                rank.view_mut::<i64>(OP)?,
            );
            let mut b = dev.stream.launch_builder(&f);
            b.arg(&c).arg(&e).arg(&cap).arg(&idv);
            b.arg(&mut sv).arg(&mut cv).arg(&mut bv).arg(&mut rv);
            // SAFETY: route_plan_rank(long long copies, int num_experts,
            // long long capacity, const long long* ids, long long* selected,
            // counts, bad, rank): ids has `copies` elements,
            // selected/counts `num_experts`, bad 1, rank `copies`; one block
            // per expert.
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
