//! Broadcasting comparisons producing U8 masks (1 = true); not differentiable.

use super::binary::check_binary;
use crate::storage::CpuStorage;
use crate::{Error, Result, Tensor};
use moe_kernels::cpu::elementwise;
use moe_kernels::cpu::strided::Strided;

#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// The comparison's code in the CUDA kernels.
    fn cuda_code(self) -> i32 {
        use moe_kernels::cuda::ops::compare as c;
        match self {
            Cmp::Eq => c::EQ,
            Cmp::Ne => c::NE,
            Cmp::Lt => c::LT,
            Cmp::Le => c::LE,
            Cmp::Gt => c::GT,
            Cmp::Ge => c::GE,
        }
    }

    fn test<T: PartialOrd>(self, a: T, b: T) -> u8 {
        (match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }) as u8
    }
}

impl Tensor {
    fn compare(&self, rhs: &Tensor, cmp: Cmp) -> Result<Tensor> {
        let op = "compare";
        let shape = check_binary(op, self, rhs)?;
        let la = self.layout().broadcast_as(&shape)?;
        let lb = rhs.layout().broadcast_as(&shape)?;
        if !self.device().is_cpu() {
            let mask = crate::cuda_backend::compare(self, &la, rhs, &lb, cmp.cuda_code())?;
            return Ok(Tensor::from_storage(mask, shape));
        }
        let sa = Strided {
            dims: la.dims(),
            strides: la.strides(),
            offset: la.offset(),
        };
        let sb = Strided {
            dims: lb.dims(),
            strides: lb.strides(),
            offset: lb.offset(),
        };
        let (ga, gb) = (self.read_storage(), rhs.read_storage());
        let mask = match (ga.cpu(op)?, gb.cpu(op)?) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => elementwise::binary(a, sa, b, sb, |x, y| cmp.test(x, y)),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => elementwise::binary(a, sa, b, sb, |x, y| cmp.test(x, y)),
            (CpuStorage::I64(a), CpuStorage::I64(b)) => elementwise::binary(a, sa, b, sb, |x, y| cmp.test(x, y)),
            (CpuStorage::U8(a), CpuStorage::U8(b)) => elementwise::binary(a, sa, b, sb, |x, y| cmp.test(x, y)),
            (a, _) => return Err(Error::UnsupportedDType { op, dtype: a.dtype() }),
        };
        Ok(Tensor::from_cpu_no_grad(CpuStorage::U8(mask), shape))
    }

    /// `self == rhs` as a U8 mask.
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Eq)
    }
    /// `self != rhs` as a U8 mask.
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Ne)
    }
    /// `self < rhs` as a U8 mask.
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Lt)
    }
    /// `self <= rhs` as a U8 mask.
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Le)
    }
    /// `self > rhs` as a U8 mask.
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Gt)
    }
    /// `self >= rhs` as a U8 mask.
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Ge)
    }
}
