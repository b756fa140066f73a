//! Launch helpers: moe-kernels' launch shapes as cudarc configs, kernel
//! arguments that need a `DeviceRepr`, and the strided-view argument of a
//! tensor layout.

use crate::{Error, Layout, Result};
use cudarc::driver::{DeviceRepr, LaunchConfig};
use moe_kernels::cuda::launch::Launch1d;
use moe_kernels::cuda::StridedArg;

/// A cudarc launch configuration for a one-dimensional launch (no dynamic
/// shared memory: the kernels' shared arrays are static).
pub(crate) fn config(l: Launch1d) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (l.grid, 1, 1),
        block_dim: (l.block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// [`StridedArg`] as a kernel argument (passed by value, 144 bytes).
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct DevStrided(pub(crate) StridedArg);

// SAFETY: `StridedArg` is `#[repr(C)]`, plain integers, laid out like
// `struct Strided` in common.cuh (checked by a moe-kernels test).
unsafe impl DeviceRepr for DevStrided {}

/// The strided kernel argument of a layout, or an error naming `op` for a
/// view of more than `MAX_RANK` non-trivial dims.
pub(crate) fn strided(l: &Layout, op: &'static str) -> Result<DevStrided> {
    StridedArg::new(l.dims(), l.strides(), l.offset())
        .map(DevStrided)
        .ok_or_else(|| Error::InvalidShape {
            op,
            msg: format!(
                "a CUDA view has at most {} dims of size > 1, got {:?}",
                moe_kernels::cuda::MAX_RANK,
                l.dims()
            ),
        })
}

/// `n` as a kernel `int`, or an error naming `op` and what it counts.
pub(crate) fn int(n: usize, op: &'static str, what: &str) -> Result<i32> {
    moe_kernels::cuda::launch::as_int(n).ok_or_else(|| Error::InvalidShape {
        op,
        msg: format!("{what} = {n} exceeds the CUDA kernels' int range"),
    })
}

/// `n` as a kernel `long long`.
pub(crate) fn long(n: usize, op: &'static str) -> Result<i64> {
    moe_kernels::cuda::launch::as_long(n).ok_or_else(|| Error::InvalidShape {
        op,
        msg: format!("{n} elements exceed i64"),
    })
}

/// Calls `$f::<f32>("f32", args..)` or `$f::<f64>("f64", args..)` by
/// `$dtype` (the suffix names the kernel's instance for that type); other
/// dtypes are `UnsupportedDType` for `$op`.
macro_rules! float_kernel {
    ($dtype:expr, $op:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $dtype {
            $crate::DType::F32 => $f::<f32>("f32", $($arg),*),
            $crate::DType::F64 => $f::<f64>("f64", $($arg),*),
            dtype => Err($crate::Error::UnsupportedDType { op: $op, dtype }),
        }
    };
}
pub(crate) use float_kernel;
