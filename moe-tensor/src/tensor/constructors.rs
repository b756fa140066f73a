//! Making tensors from host data and reading them back.

use crate::dtype::WithDType;
use crate::storage::{check_device, CpuStorage, Storage};
use crate::{DType, Device, Error, Result, Shape, Tensor};
use moe_kernels::cpu::strided;

/// Host data placed on `device`: kept on the CPU, or uploaded (the explicit
/// host-to-device copy a constructor for a CUDA device asks for).
fn place(s: CpuStorage, device: &Device) -> Result<Storage> {
    match device {
        Device::Cpu => Ok(Storage::Cpu(s)),
        Device::Cuda(ordinal) => crate::cuda_backend::upload(&s, *ordinal),
    }
}

impl Tensor {
    /// A tensor owning `data`, laid out row-major in `shape`.
    pub fn from_vec<T: WithDType>(data: Vec<T>, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        check_device(device)?;
        if data.len() != shape.elem_count() {
            return Err(Error::ElementCount {
                op: "from_vec",
                len: data.len(),
                expected: shape.elem_count(),
                shape,
            });
        }
        Ok(Tensor::from_storage(place(T::into_storage(data), device)?, shape))
    }

    /// A tensor copying `data`.
    pub fn from_slice<T: WithDType>(data: &[T], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape, device)
    }

    /// A rank-0 tensor.
    pub fn scalar<T: WithDType>(value: T, device: &Device) -> Result<Tensor> {
        Self::from_vec(vec![value], (), device)
    }

    /// A tensor with every element `value` (converted to `dtype`).
    pub fn full(value: f64, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        check_device(device)?;
        let n = shape.elem_count();
        let s = match dtype {
            DType::U8 => CpuStorage::U8(vec![value as u8; n]),
            DType::I64 => CpuStorage::I64(vec![value as i64; n]),
            DType::F16 => CpuStorage::F16(vec![half::f16::from_f64(value); n]),
            DType::BF16 => CpuStorage::BF16(vec![half::bf16::from_f64(value); n]),
            DType::F32 => CpuStorage::F32(vec![value as f32; n]),
            DType::F64 => CpuStorage::F64(vec![value; n]),
        };
        Ok(Tensor::from_storage(place(s, device)?, shape))
    }

    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Self::full(0.0, shape, dtype, device)
    }

    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Self::full(1.0, shape, dtype, device)
    }

    /// Zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape(), self.dtype(), &self.device())
    }

    /// Ones with this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape(), self.dtype(), &self.device())
    }

    /// `[0, 1, ..., n-1]`.
    pub fn arange(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        check_device(device)?;
        let s = match dtype {
            DType::I64 => CpuStorage::I64((0..n as i64).collect()),
            DType::F32 => CpuStorage::F32((0..n).map(|v| v as f32).collect()),
            DType::F64 => CpuStorage::F64((0..n).map(|v| v as f64).collect()),
            other => {
                return Err(Error::UnsupportedDType {
                    op: "arange",
                    dtype: other,
                })
            }
        };
        Ok(Tensor::from_storage(place(s, device)?, Shape::from(n)))
    }

    /// The elements in logical (row-major) order; `T` must match the dtype.
    /// For a CUDA tensor this is an explicit read back to the host (it waits
    /// for the device's queued work).
    pub fn to_vec<T: WithDType>(&self) -> Result<Vec<T>> {
        if !self.device().is_cpu() {
            let host = crate::cuda_backend::download(self)?;
            return T::slice(&host).map(<[T]>::to_vec).ok_or(Error::DTypeMismatch {
                op: "to_vec",
                lhs: self.dtype(),
                rhs: T::DTYPE,
            });
        }
        let guard = self.read_storage();
        let cpu = guard.cpu("to_vec")?;
        let data = T::slice(cpu).ok_or(Error::DTypeMismatch {
            op: "to_vec",
            lhs: self.dtype(),
            rhs: T::DTYPE,
        })?;
        Ok(match self.layout().contiguous_range() {
            Some(r) => data[r].to_vec(),
            None => strided::offsets(self.strided()).into_iter().map(|o| data[o]).collect(),
        })
    }

    /// The elements converted to f64, whatever the dtype.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        fn conv<T: WithDType>(t: &Tensor) -> Result<Vec<f64>> {
            Ok(t.to_vec::<T>()?.into_iter().map(T::to_f64).collect())
        }
        match self.dtype() {
            DType::U8 => conv::<u8>(self),
            DType::I64 => conv::<i64>(self),
            DType::F16 => conv::<half::f16>(self),
            DType::BF16 => conv::<half::bf16>(self),
            DType::F32 => conv::<f32>(self),
            DType::F64 => conv::<f64>(self),
        }
    }

    /// The single value of a one-element tensor, as f64.
    pub fn to_scalar_f64(&self) -> Result<f64> {
        if self.elem_count() != 1 {
            return Err(Error::InvalidShape {
                op: "to_scalar",
                msg: format!(
                    "tensor of shape {:?} has {} elements, not 1",
                    self.shape(),
                    self.elem_count()
                ),
            });
        }
        Ok(self.to_vec_f64()?[0])
    }
}
