//! Device memory: the caching allocator's buffers, `CudaStorage`, and the
//! explicit host↔device copies (`upload`, `download`) and in-place `assign`.
//!
//! A buffer is a `CudaSlice<u8>` of a bucket size (moe-kernels'
//! `cuda::pool`); dropping it returns the slice to its device's pool, and the
//! next request of that bucket takes it back without calling the driver.
//! Reuse is safe without events because every op of a device runs on its one
//! stream: work queued after the reuse runs after the work that last used it.

use super::device::{cuda_err, lock, CudaDev};
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Device, Error, Result, Tensor};
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DevicePtr, DeviceRepr};
use moe_kernels::cuda::pool::bucket_bytes;
use std::sync::Arc;

/// A pooled device allocation of `bucket` bytes.
struct DeviceBuffer {
    /// `None` only during drop.
    slice: Option<CudaSlice<u8>>,
    bucket: usize,
    dev: Arc<CudaDev>,
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Some(s) = self.slice.take() {
            // Past the cache limit the pool hands it back and it is freed here.
            drop(lock(&self.dev.pool).put(self.bucket, s));
        }
    }
}

impl DeviceBuffer {
    /// At least `bytes` bytes of uninitialised device memory, from the pool
    /// when a buffer of the bucket is free; on an allocation failure the
    /// pool is emptied and the allocation tried once more.
    fn alloc(dev: &Arc<CudaDev>, bytes: usize, op: &'static str) -> Result<DeviceBuffer> {
        let bucket = bucket_bytes(bytes).ok_or_else(|| Error::Cuda {
            op,
            msg: format!("allocation of {bytes} bytes overflows"),
        })?;
        let cached = lock(&dev.pool).take(bucket);
        let slice = match cached {
            Some(s) => s,
            // SAFETY: uninitialised memory; every kernel and copy writing a
            // new buffer writes all of its first `len` elements before any read.
            None => match unsafe { dev.stream.alloc::<u8>(bucket) } {
                Ok(s) => s,
                Err(_) => {
                    drop(lock(&dev.pool).drain());
                    // SAFETY: as above.
                    unsafe { dev.stream.alloc::<u8>(bucket) }.map_err(|e| Error::Cuda {
                        op,
                        msg: format!("out of device memory allocating {bucket} bytes: {e:?}"),
                    })?
                }
            },
        };
        Ok(DeviceBuffer {
            slice: Some(slice),
            bucket,
            dev: dev.clone(),
        })
    }

    fn slice(&self) -> &CudaSlice<u8> {
        self.slice
            .as_ref()
            .expect("a DeviceBuffer's slice is only taken in drop")
    }

    fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        self.slice
            .as_mut()
            .expect("a DeviceBuffer's slice is only taken in drop")
    }
}

/// `len` elements of one dtype in device memory.
pub struct CudaStorage {
    buf: DeviceBuffer,
    dtype: DType,
    len: usize,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage({:?}, {} x {:?})", self.device(), self.len, self.dtype)
    }
}

impl CudaStorage {
    /// Uninitialised storage for `len` elements of `dtype` (the caller writes
    /// every element before the storage is read).
    pub(crate) fn alloc(dev: &Arc<CudaDev>, dtype: DType, len: usize, op: &'static str) -> Result<CudaStorage> {
        let bytes = len.checked_mul(dtype.size_in_bytes()).ok_or_else(|| Error::Cuda {
            op,
            msg: format!("{len} elements of {dtype:?} overflow"),
        })?;
        Ok(CudaStorage {
            buf: DeviceBuffer::alloc(dev, bytes, op)?,
            dtype,
            len,
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device it lives on.
    pub fn device(&self) -> Device {
        self.buf.dev.device()
    }
    pub(crate) fn dev(&self) -> &Arc<CudaDev> {
        &self.buf.dev
    }

    /// Elements `range` as `T` (whose size must be the dtype's).
    pub(crate) fn view<T>(&self, range: std::ops::Range<usize>, op: &'static str) -> Result<CudaView<'_, T>> {
        self.check_elem::<T>(&range, op)?;
        // SAFETY: T has the dtype's size (checked) and the bytes were written
        // as that dtype; the range lies within `len` (checked).
        let all = unsafe { self.buf.slice().transmute::<T>(self.len) }.ok_or_else(|| internal(op))?;
        Ok(all.slice(range))
    }

    /// All elements as mutable `T`.
    pub(crate) fn view_mut<T>(&mut self, op: &'static str) -> Result<CudaViewMut<'_, T>> {
        self.check_elem::<T>(&(0..self.len), op)?;
        let len = self.len;
        // SAFETY: as in `view`.
        unsafe { self.buf.slice_mut().transmute_mut::<T>(len) }.ok_or_else(|| internal(op))
    }

    /// The device address of element `elem` (`elem ≤ len`), for cuBLAS calls
    /// that read matrix addresses from device memory. It is valid while
    /// `self` lives, and for work queued on the device's stream before
    /// `self` is dropped (the pool reuses buffers in stream order).
    pub(crate) fn address_of(&self, elem: usize, op: &'static str) -> Result<u64> {
        if elem > self.len {
            return Err(internal(op));
        }
        let (base, _record) = self.buf.slice().device_ptr(&self.buf.dev.stream);
        Ok(base + (elem * self.dtype.size_in_bytes()) as u64)
    }

    /// Sets every element's bytes to zero (0.0, 0, false in every dtype).
    pub(crate) fn zero(&mut self, op: &'static str) -> Result<()> {
        let bytes = self.len * self.dtype.size_in_bytes();
        if bytes == 0 {
            return Ok(());
        }
        let dev = self.buf.dev.clone();
        let mut all = self.buf.slice_mut().slice_mut(0..bytes);
        dev.stream.memset_zeros(&mut all).map_err(cuda_err(op))
    }

    fn check_elem<T>(&self, range: &std::ops::Range<usize>, op: &'static str) -> Result<()> {
        if std::mem::size_of::<T>() != self.dtype.size_in_bytes() || range.end > self.len || range.start > range.end {
            return Err(internal(op));
        }
        Ok(())
    }
}

pub(crate) fn internal(op: &'static str) -> Error {
    Error::Autograd {
        msg: format!("{op}: internal: device view outside its storage or of the wrong element size"),
    }
}

/// The CUDA storage of `s`, or an internal error (callers dispatch on the device first).
pub(crate) fn cuda_of<'a>(s: &'a Storage, op: &'static str) -> Result<&'a CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        Storage::Cpu(_) => Err(Error::DeviceMismatch {
            op,
            lhs: Device::Cuda(0),
            rhs: Device::Cpu,
        }),
    }
}

/// The elements of a contiguous tensor `t` (whose storage is `s`) as a
/// typed view.
pub(crate) fn elems<'a, T>(s: &'a CudaStorage, t: &Tensor, op: &'static str) -> Result<CudaView<'a, T>> {
    let off = t.layout().offset();
    s.view::<T>(off..off + t.elem_count(), op)
}

fn upload_typed<T: DeviceRepr + Copy>(dev: &Arc<CudaDev>, v: &[T], dtype: DType) -> Result<CudaStorage> {
    const OP: &str = "to_device";
    let mut s = CudaStorage::alloc(dev, dtype, v.len(), OP)?;
    if !v.is_empty() {
        let mut dst = s.view_mut::<T>(OP)?;
        dev.stream.memcpy_htod(v, &mut dst).map_err(cuda_err(OP))?;
    }
    Ok(s)
}

/// Copies host indices (or offsets) to a fresh i64 device buffer of `dev`;
/// the copy is queued on the device's stream (no wait).
pub(crate) fn upload_i64(dev: &Arc<CudaDev>, v: &[i64]) -> Result<CudaStorage> {
    upload_typed(dev, v, DType::I64)
}

/// Copies a host buffer to CUDA device `ordinal` (an explicit move: the only
/// way data reaches a device).
pub(crate) fn upload(cpu: &CpuStorage, ordinal: usize) -> Result<Storage> {
    let dev = CudaDev::get(ordinal)?;
    let s = match cpu {
        CpuStorage::U8(v) => upload_typed(&dev, v, DType::U8)?,
        CpuStorage::I64(v) => upload_typed(&dev, v, DType::I64)?,
        CpuStorage::F16(v) => upload_typed(&dev, v, DType::F16)?,
        CpuStorage::BF16(v) => upload_typed(&dev, v, DType::BF16)?,
        CpuStorage::F32(v) => upload_typed(&dev, v, DType::F32)?,
        CpuStorage::F64(v) => upload_typed(&dev, v, DType::F64)?,
    };
    Ok(Storage::Cuda(s))
}

/// The logical elements of a CPU tensor, row-major, as a fresh host buffer.
pub(crate) fn host_contiguous(t: &Tensor) -> Result<CpuStorage> {
    const OP: &str = "to_device";
    let t = t.contiguous()?;
    let r = t.layout().contiguous_range().ok_or_else(|| internal(OP))?;
    let guard = t.read_storage();
    Ok(match guard.cpu(OP)? {
        CpuStorage::U8(v) => CpuStorage::U8(v[r].to_vec()),
        CpuStorage::I64(v) => CpuStorage::I64(v[r].to_vec()),
        CpuStorage::F16(v) => CpuStorage::F16(v[r].to_vec()),
        CpuStorage::BF16(v) => CpuStorage::BF16(v[r].to_vec()),
        CpuStorage::F32(v) => CpuStorage::F32(v[r].to_vec()),
        CpuStorage::F64(v) => CpuStorage::F64(v[r].to_vec()),
    })
}

fn download_typed<T: DeviceRepr + Copy + Default>(s: &CudaStorage, range: std::ops::Range<usize>) -> Result<Vec<T>> {
    const OP: &str = "to_device";
    let mut out = vec![T::default(); range.len()];
    if !out.is_empty() {
        let src = s.view::<T>(range, OP)?;
        // Waits for the stream: the data must be computed before it is read.
        s.dev().stream.memcpy_dtoh(&src, &mut out).map_err(cuda_err(OP))?;
        super::note_host_read();
    }
    Ok(out)
}

/// The logical elements of a CUDA tensor, row-major, on the host (made
/// contiguous on the device first). Synchronises with the device's stream.
pub(crate) fn download(t: &Tensor) -> Result<CpuStorage> {
    let t = t.contiguous()?;
    let n = t.elem_count();
    let off = t.layout().offset();
    let guard = t.read_storage();
    let s = cuda_of(&guard, "to_device")?;
    let r = off..off + n;
    Ok(match s.dtype() {
        DType::U8 => CpuStorage::U8(download_typed(s, r)?),
        DType::I64 => CpuStorage::I64(download_typed(s, r)?),
        DType::F16 => CpuStorage::F16(download_typed(s, r)?),
        DType::BF16 => CpuStorage::BF16(download_typed(s, r)?),
        DType::F32 => CpuStorage::F32(download_typed(s, r)?),
        DType::F64 => CpuStorage::F64(download_typed(s, r)?),
    })
}

fn copy_typed<T>(dst: &mut CudaStorage, range: std::ops::Range<usize>, src: &CudaStorage, from: usize) -> Result<()> {
    const OP: &str = "assign";
    let n = range.len();
    if n == 0 {
        return Ok(());
    }
    let dev = dst.dev().clone();
    let s = src.view::<T>(from..from + n, OP)?;
    let mut d = dst.view_mut::<T>(OP)?;
    let mut d = d.slice_mut(range);
    dev.stream.memcpy_dtod(&s, &mut d).map_err(cuda_err(OP))
}

/// Overwrites `dst[range]` (a contiguous range of `dst`'s storage) with
/// `src`'s logical elements, on the device (optimiser updates, weight
/// loading); same device and dtype (dtype checked by the caller). `src` is
/// first copied to fresh storage, which also makes `src` sharing `dst`'s
/// storage safe (one extra device copy; to be removed when it matters).
pub(crate) fn assign(dst: &Tensor, range: std::ops::Range<usize>, src: &Tensor) -> Result<()> {
    const OP: &str = "assign";
    if dst.device() != src.device() {
        return Err(Error::DeviceMismatch {
            op: OP,
            lhs: dst.device(),
            rhs: src.device(),
        });
    }
    let fresh = super::layout::contiguous(src)?;
    let s = cuda_of(&fresh, OP)?;
    let mut guard = dst.write_storage();
    let d = match &mut *guard {
        Storage::Cuda(d) => d,
        Storage::Cpu(_) => return Err(internal(OP)),
    };
    match d.dtype().size_in_bytes() {
        1 => copy_typed::<u8>(d, range, s, 0),
        2 => copy_typed::<u16>(d, range, s, 0),
        4 => copy_typed::<u32>(d, range, s, 0),
        _ => copy_typed::<u64>(d, range, s, 0),
    }
}
