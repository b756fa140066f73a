//! Little-endian bytes to typed data and back. On little-endian hosts the bytes are
//! reinterpreted in place when aligned (`bytemuck`), else copied into an aligned
//! buffer; big-endian hosts swap every element.

use crate::dtype::WithDType;
use crate::{DType, Device, Error, Result, Tensor};
use half::{bf16, f16};
use std::borrow::Cow;
use std::path::Path;

/// Typed elements of `bytes` (whose length must be a multiple of `size_of::<T>()`):
/// borrowed when the bytes are aligned for `T` and the host is little-endian.
pub(crate) fn typed<T: bytemuck::Pod>(bytes: &[u8]) -> Cow<'_, [T]> {
    #[cfg(target_endian = "little")]
    if let Ok(s) = bytemuck::try_cast_slice::<u8, T>(bytes) {
        return Cow::Borrowed(s);
    }
    let v: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
    #[cfg(target_endian = "big")]
    let v = {
        let mut v = v;
        swap_elements::<T>(bytemuck::cast_slice_mut(&mut v));
        v
    };
    Cow::Owned(v)
}

#[cfg(target_endian = "big")]
fn swap_elements<T>(bytes: &mut [u8]) {
    bytes
        .chunks_exact_mut(std::mem::size_of::<T>())
        .for_each(|c| c.reverse());
}

/// A tensor of `dtype` and `shape` from its little-endian bytes. `path` and `name`
/// only label errors.
pub(crate) fn tensor_from_bytes(
    bytes: &[u8],
    dtype: DType,
    shape: &[usize],
    device: &Device,
    path: &Path,
    name: &str,
) -> Result<Tensor> {
    let elems: usize = shape.iter().product();
    if bytes.len() != elems * dtype.size_in_bytes() {
        return Err(Error::Safetensors {
            path: path.to_path_buf(),
            msg: format!(
                "tensor `{name}`: {} bytes for shape {shape:?} of {dtype:?}",
                bytes.len()
            ),
        });
    }
    fn build<T: WithDType>(bytes: &[u8], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_vec(typed::<T>(bytes).into_owned(), shape.to_vec(), device)
    }
    match dtype {
        DType::U8 => build::<u8>(bytes, shape, device),
        DType::I64 => build::<i64>(bytes, shape, device),
        DType::F16 => build::<f16>(bytes, shape, device),
        DType::BF16 => build::<bf16>(bytes, shape, device),
        DType::F32 => build::<f32>(bytes, shape, device),
        DType::F64 => build::<f64>(bytes, shape, device),
    }
}

/// Calls `f` with the little-endian bytes of `t`'s elements in row-major order
/// (copying only when `t` is a strided view).
pub(crate) fn with_tensor_bytes<R>(t: &Tensor, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.detach().contiguous()?
    };
    let guard = t.read_storage();
    let cpu = guard.cpu("safetensors save")?;
    let range = t.layout().contiguous_range().ok_or_else(|| Error::Kernel {
        op: "safetensors save",
        msg: "contiguous() returned a strided tensor".into(),
    })?;
    let size = t.dtype().size_in_bytes();
    let all = cpu.as_bytes();
    let bytes = all
        .get(range.start * size..range.end * size)
        .ok_or_else(|| Error::Kernel {
            op: "safetensors save",
            msg: "tensor layout exceeds its storage".into(),
        })?;
    #[cfg(target_endian = "little")]
    return f(bytes);
    #[cfg(target_endian = "big")]
    {
        let mut v = bytes.to_vec();
        v.chunks_exact_mut(size).for_each(|c| c.reverse());
        f(&v)
    }
}
