//! Copies that change memory layout or element type: `contiguous`, `to_dtype`.

use crate::backprop::BackwardOp;
use crate::dtype::WithDType;
use crate::storage::{CpuStorage, Storage};
use crate::{DType, Device, Result, Tensor};
use moe_kernels::cpu::elementwise;

/// Copies the logical elements of `t` (any layout) into a fresh row-major buffer.
pub(crate) fn contiguous_storage(t: &Tensor) -> Result<CpuStorage> {
    let guard = t.read_storage();
    let cpu = guard.cpu("contiguous")?;
    fn copy<T: Copy + Send + Sync + Default>(v: &[T], t: &Tensor) -> Vec<T> {
        elementwise::unary(v, t.strided(), |x| x)
    }
    Ok(match cpu {
        CpuStorage::U8(v) => CpuStorage::U8(copy(v, t)),
        CpuStorage::I64(v) => CpuStorage::I64(copy(v, t)),
        CpuStorage::F16(v) => CpuStorage::F16(copy(v, t)),
        CpuStorage::BF16(v) => CpuStorage::BF16(copy(v, t)),
        CpuStorage::F32(v) => CpuStorage::F32(copy(v, t)),
        CpuStorage::F64(v) => CpuStorage::F64(copy(v, t)),
    })
}

struct ContiguousBackward {
    x: Tensor,
}

impl BackwardOp for ContiguousBackward {
    fn name(&self) -> &'static str {
        "contiguous"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.clone())])
    }
}

struct ToDTypeBackward {
    x: Tensor,
}

impl BackwardOp for ToDTypeBackward {
    fn name(&self) -> &'static str {
        "to_dtype"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(&self, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.to_dtype(self.x.dtype())?)])
    }
}

fn convert_all<T: WithDType>(v: &[T], t: &Tensor, dtype: DType) -> CpuStorage {
    fn map<T: WithDType, U: WithDType + Default>(v: &[T], t: &Tensor) -> Vec<U> {
        elementwise::unary(v, t.strided(), |x: T| U::from_f64(x.to_f64()))
    }
    match dtype {
        DType::U8 => CpuStorage::U8(map(v, t)),
        DType::I64 => CpuStorage::I64(map(v, t)),
        DType::F16 => CpuStorage::F16(map(v, t)),
        DType::BF16 => CpuStorage::BF16(map(v, t)),
        DType::F32 => CpuStorage::F32(map(v, t)),
        DType::F64 => CpuStorage::F64(map(v, t)),
    }
}

impl Tensor {
    /// This tensor if already row-major, else a row-major copy (differentiable).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let s = if self.device().is_cpu() {
            Storage::Cpu(contiguous_storage(self)?)
        } else {
            crate::cuda_backend::contiguous(self)?
        };
        Ok(Tensor::from_op(
            s,
            self.shape().clone(),
            ContiguousBackward { x: self.clone() },
        ))
    }

    /// This tensor on `device`: itself when already there, else a contiguous
    /// copy (CPU → CUDA uploads, CUDA → CPU downloads and waits for the
    /// device). Moves between devices are always explicit: no op copies data
    /// to another device by itself. Differentiable (the gradient moves back).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if *device == self.device() {
            return Ok(self.clone());
        }
        crate::cuda_backend::to_device(self, device)
    }

    /// Converts the element type (through f64, so f32 → f64 → f32 is exact;
    /// f32 → bf16/f16 rounds once, to nearest even).
    /// Differentiable between float types; rounds toward zero into integer types.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        if !self.device().is_cpu() {
            let s = crate::cuda_backend::to_dtype(self, dtype)?;
            let shape = self.shape().clone();
            return Ok(if dtype.is_float() && self.dtype().is_float() {
                Tensor::from_op(s, shape, ToDTypeBackward { x: self.clone() })
            } else {
                Tensor::from_storage(s, shape)
            });
        }
        let s = {
            let guard = self.read_storage();
            match guard.cpu("to_dtype")? {
                // Rounded once, to nearest even, as the CUDA kernel and torch:
                // half's f64 → bf16 path does not round every f32 that way.
                CpuStorage::F32(v) if dtype == DType::BF16 => {
                    CpuStorage::BF16(elementwise::unary(v, self.strided(), half::bf16::from_f32))
                }
                CpuStorage::F32(v) if dtype == DType::F16 => {
                    CpuStorage::F16(elementwise::unary(v, self.strided(), half::f16::from_f32))
                }
                CpuStorage::U8(v) => convert_all(v, self, dtype),
                CpuStorage::I64(v) => convert_all(v, self, dtype),
                CpuStorage::F16(v) => convert_all(v, self, dtype),
                CpuStorage::BF16(v) => convert_all(v, self, dtype),
                CpuStorage::F32(v) => convert_all(v, self, dtype),
                CpuStorage::F64(v) => convert_all(v, self, dtype),
            }
        };
        let shape = self.shape().clone();
        if dtype.is_float() && self.dtype().is_float() {
            Ok(Tensor::from_op(
                Storage::Cpu(s),
                shape,
                ToDTypeBackward { x: self.clone() },
            ))
        } else {
            Ok(Tensor::from_cpu_no_grad(s, shape))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Tensor};
    use half::bf16;

    #[test]
    fn f32_to_bf16_rounds_once_to_nearest_even() {
        // (f32 bits, bf16 bits), by hand: the low 16 bits above, at and below
        // half an ulp; ties go to the even neighbour.
        let cases = [
            (0x3F80_8001u32, 0x3F81u16), // above half: up (a double rounding gave 0x3F80)
            (0x3F80_8000, 0x3F80),       // tie, even below
            (0x3F81_8000, 0x3F82),       // tie, even above
            (0x3F80_7FFF, 0x3F80),       // below half: down
            (0xBF80_8001, 0xBF81),       // negative: by magnitude
        ];
        let x: Vec<f32> = cases.iter().map(|&(b, _)| f32::from_bits(b)).collect();
        let t = Tensor::from_vec(x, cases.len(), &Device::Cpu).unwrap();
        let got: Vec<u16> = t
            .to_dtype(DType::BF16)
            .unwrap()
            .to_vec::<bf16>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let want: Vec<u16> = cases.iter().map(|&(_, b)| b).collect();
        assert_eq!(got, want);
    }
}
