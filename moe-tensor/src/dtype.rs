//! Element types: what a storage holds on disk or in memory.

use half::{bf16, f16};

/// The element type of a tensor. Ops compute in F32 (and F64 on the CPU, for
/// gradient checks); F16/BF16 are storage types converted with `to_dtype`;
/// I64 holds indices, U8 boolean masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    U8,
    I64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// Whether the dtype is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Lower-case name as used in safetensors headers (`F32`, `BF16`, ...) and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }
}

/// A Rust element type that maps to a [`DType`].
pub trait WithDType: Copy + Send + Sync + std::fmt::Debug + 'static + bytemuck::Pod {
    const DTYPE: DType;
    /// Wraps a vector as CPU storage.
    fn into_storage(v: Vec<Self>) -> crate::storage::CpuStorage;
    /// Borrows the storage as a slice of `Self` if the dtypes agree.
    fn slice(s: &crate::storage::CpuStorage) -> Option<&[Self]>;
    /// Converts to f64 (for printing, tests and dtype conversion).
    fn to_f64(self) -> f64;
    /// Converts from f64 (rounding as `as` casts do).
    fn from_f64(x: f64) -> Self;
}

macro_rules! with_dtype {
    ($t:ty, $variant:ident, $to:expr, $from:expr) => {
        impl WithDType for $t {
            const DTYPE: DType = DType::$variant;
            fn into_storage(v: Vec<Self>) -> crate::storage::CpuStorage {
                crate::storage::CpuStorage::$variant(v)
            }
            fn slice(s: &crate::storage::CpuStorage) -> Option<&[Self]> {
                match s {
                    crate::storage::CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn to_f64(self) -> f64 {
                $to(self)
            }
            fn from_f64(x: f64) -> Self {
                $from(x)
            }
        }
    };
}

with_dtype!(u8, U8, |x: u8| x as f64, |x: f64| x as u8);
with_dtype!(i64, I64, |x: i64| x as f64, |x: f64| x as i64);
with_dtype!(f16, F16, |x: f16| x.to_f64(), f16::from_f64);
with_dtype!(bf16, BF16, |x: bf16| x.to_f64(), bf16::from_f64);
with_dtype!(f32, F32, |x: f32| x as f64, |x: f64| x as f32);
with_dtype!(f64, F64, |x: f64| x, |x: f64| x);
