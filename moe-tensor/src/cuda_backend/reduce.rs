//! Reductions on CUDA (kernels: reduce.cu). Sums over dims: the reduced
//! dims are moved last by one strided copy, then each row of the
//! `[kept, reduced]` buffer is summed by one block. Max over one dim (with
//! the position of the maximum, for max's backward and argmax): read in
//! place from any view, one warp per output.

use super::device::cuda_err;
use super::launch::{config, float_kernel, int, long, strided};
use super::layout::copy_layout;
use super::memory::{cuda_of, CudaStorage};
use crate::storage::Storage;
use crate::{DType, Error, Result, Shape, Tensor};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use moe_kernels::cuda::{launch, REDUCE};

/// Sum of f32/f64 `x` over the sorted, distinct `dims`, with the shape that
/// keeps them as size 1.
pub(crate) fn sum_dims(x: &Tensor, dims: &[usize]) -> Result<(Storage, Shape)> {
    float_kernel!(x.dtype(), "sum", sum_dims_typed(x, dims))
}

fn sum_dims_typed<T: DeviceRepr>(suffix: &str, x: &Tensor, dims: &[usize]) -> Result<(Storage, Shape)> {
    const OP: &str = "sum";
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
    let mut out = CudaStorage::alloc(&dev, x.dtype(), rows, OP)?;
    if let Some(l) = launch::rows(rows, cols) {
        let f = dev.function(&REDUCE, &format!("sum_rows_{suffix}"))?;
        let (r, c) = (int(rows, OP, "rows")?, int(cols, OP, "reduced elements per row")?);
        let sv = src.view::<T>(0..src.len(), OP)?;
        let mut ov = out.view_mut::<T>(OP)?;
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&r).arg(&c).arg(&sv).arg(&mut ov);
        // SAFETY: sum_rows_T(int rows, int cols, const T* x, T* y): x holds
        // rows*cols elements (the copy above), y holds rows.
        unsafe { b.launch(config(l)) }.map_err(cuda_err(OP))?;
    }
    Ok((Storage::Cuda(out), Shape::from(keep)))
}

/// Max of f32/f64 `x` (any view) over dim `d`: the values and the i64
/// positions along `d` of the first maximum (of the first NaN, if there is
/// one), both row-major `[outer, inner]` (the shape without `d`) — the
/// CPU's max and argmax. An empty dim is an error naming `op`.
pub(crate) fn max_dim(x: &Tensor, d: usize, op: &'static str) -> Result<(Storage, Storage)> {
    float_kernel!(x.dtype(), op, max_dim_typed(x, d, op))
}

fn max_dim_typed<T: DeviceRepr>(suffix: &str, x: &Tensor, d: usize, op: &'static str) -> Result<(Storage, Storage)> {
    let (outer, dim, inner) = x.shape().outer_dim_inner(d);
    if dim == 0 {
        return Err(Error::InvalidShape {
            op,
            msg: format!("dim {d} of {:?} is empty", x.shape()),
        });
    }
    // dim ≥ 1, so outer · inner ≤ the element count (no overflow).
    let n = outer * inner;
    let guard = x.read_storage();
    let xc = cuda_of(&guard, op)?;
    let dev = xc.dev().clone();
    let mut vals = CudaStorage::alloc(&dev, x.dtype(), n, op)?;
    let mut idx = CudaStorage::alloc(&dev, DType::I64, n, op)?;
    if let Some(l) = launch::warps(n) {
        let f = dev.function(&REDUCE, &format!("max_dim_{suffix}"))?;
        let (nn, dd, ii) = (long(n, op)?, long(dim, op)?, long(inner, op)?);
        let (sd, sx) = (long(x.layout().strides()[d], op)?, strided(x.layout(), op)?);
        let xv = xc.view::<T>(0..xc.len(), op)?;
        let (mut vv, mut iv) = (vals.view_mut::<T>(op)?, idx.view_mut::<i64>(op)?);
        let mut b = dev.stream.launch_builder(&f);
        b.arg(&nn)
            .arg(&dd)
            .arg(&ii)
            .arg(&sd)
            .arg(&sx)
            .arg(&xv)
            .arg(&mut vv)
            .arg(&mut iv);
        // SAFETY: max_dim_T(long long n, long long dim, long long inner,
        // long long sd, Strided sx, const T* x, T* vals, long long* idx):
        // x's view (offsets of sx plus d · sd along dim, d < dim) lies inside
        // its storage; vals and idx hold n = outer · inner elements; one warp
        // per output, blocks of whole warps (launch::warps).
        unsafe { b.launch(config(l)) }.map_err(cuda_err(op))?;
    }
    Ok((Storage::Cuda(vals), Storage::Cuda(idx)))
}
