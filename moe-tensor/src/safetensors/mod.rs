//! Safetensors I/O: named tensors to and from `.safetensors` files, memory-mapped
//! loading, and HF-style sharded checkpoints (`model.safetensors.index.json`).
//!
//! - [`SafetensorsReader`] / [`MmapedSafetensors`]: validate a file's header once,
//!   then read tensors by name (a typed, zero-copy [`SafetensorsReader::view`] where
//!   the bytes are aligned, or an owned [`Tensor`]).
//! - [`load`] / [`save`] / [`serialize`]: whole files. Saves write a temporary file in
//!   the target directory, fsync it and rename it over the target, so the final path
//!   never holds a half-written file.
//! - [`ShardedSafetensors`] / [`save_sharded`]: checkpoints split over
//!   `model-00001-of-0000N.safetensors` files with an index.
//!
//! On disk the dtypes F32, F16, BF16, F64, I64 and U8 map to moe-tensor's [`DType`]s;
//! any other dtype a header names (I32, BOOL, F8, ...) can be listed but not loaded.
//! Every error is [`Error::Safetensors`] or [`Error::Io`] naming the file and, where
//! one is at fault, the tensor.
//!
//! [`Tensor`]: crate::Tensor
//! [`Error::Safetensors`]: crate::Error::Safetensors
//! [`Error::Io`]: crate::Error::Io

mod atomic;
mod codec;
mod header;
mod load;
mod save;
mod sharded;
mod sharded_save;

pub use header::TensorInfo;
pub use load::{load, MmapedSafetensors, SafetensorsReader};
pub use save::{save, serialize};
pub use sharded::{ShardedSafetensors, INDEX_FILE, SINGLE_FILE};
pub use sharded_save::save_sharded;

use crate::DType;

/// The header name of a dtype (`"F32"`, `"BF16"`, ...).
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::U8 => "U8",
        DType::I64 => "I64",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F32 => "F32",
        DType::F64 => "F64",
    }
}

/// The safetensors dtype of one of ours.
fn to_file_dtype(dtype: DType) -> ::safetensors::Dtype {
    use ::safetensors::Dtype as D;
    match dtype {
        DType::U8 => D::U8,
        DType::I64 => D::I64,
        DType::F16 => D::F16,
        DType::BF16 => D::BF16,
        DType::F32 => D::F32,
        DType::F64 => D::F64,
    }
}

/// Our dtype for a safetensors dtype, if we have one.
fn from_file_dtype(dtype: ::safetensors::Dtype) -> Option<DType> {
    use ::safetensors::Dtype as D;
    Some(match dtype {
        D::U8 => DType::U8,
        D::I64 => DType::I64,
        D::F16 => DType::F16,
        D::BF16 => DType::BF16,
        D::F32 => DType::F32,
        D::F64 => DType::F64,
        _ => return None,
    })
}
