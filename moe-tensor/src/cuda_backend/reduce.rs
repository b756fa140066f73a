//! Sums over dims on CUDA (kernel: reduce.cu): the reduced dims are moved
//! last by one strided copy, then each row of the `[kept, reduced]` buffer
//! is summed by one block.

use super::device::cuda_err;
use super::elementwise::check_f32;
use super::launch::{config, int};
use super::layout::copy_layout;
use super::memory::{cuda_of, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Result, Shape, Tensor};
use cudarc::driver::PushKernelArg;
use moe_kernels::cuda::{launch, REDUCE};

/// Sum of f32 `x` over the sorted, distinct `dims`, with the shape that keeps
/// them as size 1.
pub(crate) fn sum_dims(x: &Tensor, dims: &[usize]) -> Result<(Storage, Shape)> {
    const OP: &str = "sum";
    check_f32(OP, x.dtype())?;
    let rank = x.rank();
    let mut perm: Vec<usize> = (0..rank).filter(|d| !dims.contains(d)).collect();
    perm.extend_from_slice(dims);
    let moved = x.layout().permute(&perm)?;
    let cols: usize = dims.iter().map(|&d| x.dims()[d]).product();
    let rows: usize = perm[..rank - dims.len()].iter().map(|&d| x.dims()[d]).product();
    let mut keep = x.dims().to_vec();
    for &d in dims {
        keep[d] = 1;
    }
    let guard = x.read_storage();
    let xs = cuda_of(&guard, OP)?;
    let dev = xs.dev().clone();
    let src = copy_layout(xs, &moved)?;
    let mut out = CudaStorage::alloc(&dev, DType::F32, rows, OP)?;
    if let Some(l) = launch::rows(rows, cols) {
        let f = dev.function(&REDUCE, "sum_rows_f32")?;
        let (r, c) = (int(rows, OP, "rows")?, int(cols, OP, "reduced elements per row")?);
        let sv = src.view::<f32>(0..src.len(), OP)?;
        let mut ov = out.view_mut::<f32>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&c).arg(&sv).arg(&mut ov);
        // SAFETY: sum_rows_f32(int rows, int cols, const float* x, float* y):
        // x holds rows*cols elements (the copy above), y holds rows.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok((Storage::Cuda(out), Shape::from(keep)))
}
