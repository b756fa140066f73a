//! Where the bytes live. `Storage` is the only place that matches on devices;
//! `CpuStorage` holds one typed vector per dtype.

use crate::{DType, Device, Result};
use half::{bf16, f16};

/// Host memory of one dtype.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    U8(Vec<u8>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::U8(_) => DType::U8,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::U8(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A zero-filled buffer of `n` elements.
    pub fn zeros(dtype: DType, n: usize) -> CpuStorage {
        match dtype {
            DType::U8 => CpuStorage::U8(vec![0; n]),
            DType::I64 => CpuStorage::I64(vec![0; n]),
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F64 => CpuStorage::F64(vec![0.0; n]),
        }
    }

    /// Raw little-endian bytes of the whole buffer.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            CpuStorage::U8(v) => v,
            CpuStorage::I64(v) => bytemuck::cast_slice(v),
            CpuStorage::F16(v) => bytemuck::cast_slice(v),
            CpuStorage::BF16(v) => bytemuck::cast_slice(v),
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F64(v) => bytemuck::cast_slice(v),
        }
    }
}

/// A tensor's backing memory on some device.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    /// Device memory of the CUDA backend (feature `cuda`).
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda_backend::CudaStorage),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.device(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.dtype(),
        }
    }

    /// The CPU buffer, or `NotImplementedOnDevice` naming `op` when the data
    /// lives elsewhere (every op without a CUDA path ends here).
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn cpu(&self, op: &'static str) -> Result<&CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Err(crate::Error::NotImplementedOnDevice { op, device: s.device() }),
        }
    }

    /// Mutable CPU buffer (optimiser updates, in-place copies).
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn cpu_mut(&mut self, op: &'static str) -> Result<&mut CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Err(crate::Error::NotImplementedOnDevice { op, device: s.device() }),
        }
    }
}

/// Fails for devices this build or machine cannot allocate on (for CUDA:
/// no feature, no driver, no such ordinal, or a context that fails to start).
pub(crate) fn check_device(device: &Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(ordinal) => crate::cuda_backend::check_device(*ordinal),
    }
}

/// Runs `$body` with `$v` bound to the float slice of a `CpuStorage` and `$T` to its
/// element type (f32 or f64); other dtypes give `UnsupportedDType` for `$op`.
#[macro_export]
#[doc(hidden)]
macro_rules! map_float {
    ($storage:expr, $op:expr, |$v:ident : $T:ident| $body:expr) => {
        match $storage {
            $crate::storage::CpuStorage::F32($v) => {
                #[allow(dead_code)]
                type $T = f32;
                let $v: &[f32] = &$v[..];
                $body
            }
            $crate::storage::CpuStorage::F64($v) => {
                #[allow(dead_code)]
                type $T = f64;
                let $v: &[f64] = &$v[..];
                $body
            }
            other => Err($crate::Error::UnsupportedDType {
                op: $op,
                dtype: other.dtype(),
            }),
        }
    };
}

/// Like [`map_float!`] for two storages of the same float dtype.
#[macro_export]
#[doc(hidden)]
macro_rules! map_float2 {
    ($a:expr, $b:expr, $op:expr, |$va:ident, $vb:ident : $T:ident| $body:expr) => {
        match ($a, $b) {
            ($crate::storage::CpuStorage::F32($va), $crate::storage::CpuStorage::F32($vb)) => {
                #[allow(dead_code)]
                type $T = f32;
                let ($va, $vb): (&[f32], &[f32]) = (&$va[..], &$vb[..]);
                $body
            }
            ($crate::storage::CpuStorage::F64($va), $crate::storage::CpuStorage::F64($vb)) => {
                #[allow(dead_code)]
                type $T = f64;
                let ($va, $vb): (&[f64], &[f64]) = (&$va[..], &$vb[..]);
                $body
            }
            (a, b) if a.dtype() != b.dtype() => Err($crate::Error::DTypeMismatch {
                op: $op,
                lhs: a.dtype(),
                rhs: b.dtype(),
            }),
            (a, _) => Err($crate::Error::UnsupportedDType {
                op: $op,
                dtype: a.dtype(),
            }),
        }
    };
}
