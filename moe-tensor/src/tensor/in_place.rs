//! Borrowed access to a tensor's f32 elements, for optimisers: reading a
//! gradient and updating a parameter where they live, without the copies of
//! `to_vec` + `assign`. Only contiguous f32 tensors on the CPU qualify; no
//! graph is recorded.

use super::Tensor;
use crate::storage::CpuStorage;
use crate::{DType, Error, Result};

impl Tensor {
    /// Whether [`Tensor::with_f32_slice`] and [`Tensor::update_f32_in_place`] apply.
    pub fn is_contiguous_cpu_f32(&self) -> bool {
        self.dtype() == DType::F32 && self.device().is_cpu() && self.layout().contiguous_range().is_some()
    }

    fn f32_range(&self, op: &'static str) -> Result<std::ops::Range<usize>> {
        if !self.is_contiguous_cpu_f32() {
            return Err(Error::InvalidShape {
                op,
                msg: format!(
                    "needs a contiguous f32 tensor on the CPU, got {:?} on {:?}",
                    self.dtype(),
                    self.device()
                ),
            });
        }
        Ok(self.layout().contiguous_range().expect("checked contiguous"))
    }

    /// Calls `f` with this tensor's elements, borrowed.
    pub fn with_f32_slice<R>(&self, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
        let range = self.f32_range("with_f32_slice")?;
        let guard = self.read_storage();
        match guard.cpu("with_f32_slice")? {
            CpuStorage::F32(v) => Ok(f(&v[range])),
            _ => unreachable!("dtype checked to be f32"),
        }
    }

    /// Calls `f` with this tensor's elements, mutably: every tensor sharing
    /// the storage sees the change.
    pub fn update_f32_in_place<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> Result<R> {
        let range = self.f32_range("update_f32_in_place")?;
        let mut guard = self.write_storage();
        match guard.cpu_mut("update_f32_in_place")? {
            CpuStorage::F32(v) => Ok(f(&mut v[range])),
            _ => unreachable!("dtype checked to be f32"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Tensor};

    #[test]
    fn reads_and_updates_in_place_only_what_qualifies() {
        let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], (2, 2), &Device::Cpu).unwrap();
        let alias = t.clone();
        t.update_f32_in_place(|x| x.iter_mut().for_each(|v| *v *= 10.0))
            .unwrap();
        assert_eq!(alias.to_vec::<f32>().unwrap(), vec![10.0, 20.0, 30.0, 40.0]);
        assert_eq!(t.with_f32_slice(|x| x.iter().sum::<f32>()).unwrap(), 100.0);
        // A narrowed row is contiguous: only its elements are seen.
        let row = t.narrow(0, 1, 1).unwrap();
        assert_eq!(row.with_f32_slice(|x| x.to_vec()).unwrap(), vec![30.0, 40.0]);
        assert!(!t.t().unwrap().is_contiguous_cpu_f32());
        assert!(t.t().unwrap().with_f32_slice(|_| ()).is_err());
        assert!(t.to_dtype(DType::F64).unwrap().update_f32_in_place(|_| ()).is_err());
    }
}
