//! Launch shapes of the attention kernels (`attention.cu`): the grid, the
//! kernel variant for the head size and the dynamic shared memory each
//! kernel stages its tiles in. Pure arithmetic, tested on the host.

use crate::cpu::attention::AttnDims;

/// Rows (queries, or keys in the dk/dv kernel) one block owns: `ATT_BLOCK_ROWS`.
pub const BLOCK_ROWS: usize = 16;
/// Rows of the other side staged per shared-memory tile, one per lane: `ATT_TILE`.
pub const TILE: usize = 32;
/// Threads per block: `ATT_WARPS` warps of 32, each owning `ATT_ROWS` rows.
pub const THREADS: u32 = 128;
/// Head sizes the kernel variants cover: `d64`, `d128`, `d256` hold
/// `Dh / 32` output columns per lane in registers.
pub const HEAD_CLASSES: [usize; 3] = [64, 128, 256];
/// Largest grid y (query or key blocks).
const MAX_GRID_Y: usize = 65_535;
/// Shared memory a block may use without opting in (`cuFuncSetAttribute`).
pub const DEFAULT_SHARED_LIMIT: u32 = 48 * 1024;

/// The three attention kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// `attn_fwd_*`: output and logsumexp, one block per (b, query head, query block).
    Forward,
    /// `attn_bwd_dq_*`: dq, blocks as forward.
    Dq,
    /// `attn_bwd_dkv_*`: dk and dv, one block per (b, kv head, key block).
    Dkv,
}

impl AttentionKernel {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Forward => "attn_fwd",
            Self::Dq => "attn_bwd_dq",
            Self::Dkv => "attn_bwd_dkv",
        }
    }
}

/// One attention launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttentionLaunch {
    /// Kernel name, e.g. `attn_fwd_f32_d64`.
    pub function: String,
    /// `(gridDim.x, gridDim.y)`.
    pub grid: (u32, u32),
    /// Threads per block.
    pub block: u32,
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

/// Why an attention call has no launch on the device.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttentionLaunchError {
    #[error("head size {0} exceeds the CUDA attention kernels' limit of 256")]
    HeadTooLarge(usize),
    #[error("{0} rows need more than 65535 blocks along the grid's y axis")]
    TooLong(usize),
    #[error("head size {0} has no tensor-core attention kernel (64 and 128 have)")]
    NoTensorCoreKernel(usize),
    #[error("{0} (batch x heads) blocks exceed the grid's x axis")]
    TooManyHeads(usize),
}

/// The launch of `kernel` for `dims` with elements of `elem_bytes` bytes
/// (`dtype` names the instance: `f32`, `f64`), or `Ok(None)` when there is
/// nothing to compute (no rows).
pub fn attention(
    kernel: AttentionKernel,
    dims: AttnDims,
    dtype: &str,
    elem_bytes: usize,
) -> Result<Option<AttentionLaunch>, AttentionLaunchError> {
    let class = HEAD_CLASSES
        .iter()
        .copied()
        .find(|&c| dims.dh <= c)
        .ok_or(AttentionLaunchError::HeadTooLarge(dims.dh))?;
    let Some(grid) = grid(kernel, dims, BLOCK_ROWS)? else {
        return Ok(None);
    };
    let dh = dims.dh;
    // Element counts of each kernel's shared arrays, in the .cu's order.
    let elems = match kernel {
        // q [BLOCK_ROWS][dh], k [TILE][dh + 1], v [TILE][dh]
        AttentionKernel::Forward => BLOCK_ROWS * dh + TILE * (dh + 1) + TILE * dh,
        // q, dO [BLOCK_ROWS][dh], k, v [TILE][dh + 1]
        AttentionKernel::Dq => 2 * BLOCK_ROWS * dh + 2 * TILE * (dh + 1),
        // k, v [BLOCK_ROWS][dh], q, dO [TILE][dh + 1], lse, delta [TILE]
        AttentionKernel::Dkv => 2 * BLOCK_ROWS * dh + 2 * TILE * (dh + 1) + 2 * TILE,
    };
    Ok(Some(AttentionLaunch {
        function: format!("{}_{dtype}_d{class}", kernel.prefix()),
        grid,
        block: THREADS,
        shared_bytes: (elems * elem_bytes) as u32,
    }))
}

/// The grid of `kernel` when a block owns `block_rows` rows: x = batch x
/// heads (query heads, kv heads for dk/dv), y = blocks of rows (queries,
/// keys for dk/dv); `None` when there is nothing to compute.
pub(crate) fn grid(
    kernel: AttentionKernel,
    dims: AttnDims,
    block_rows: usize,
) -> Result<Option<(u32, u32)>, AttentionLaunchError> {
    let (heads, rows) = match kernel {
        AttentionKernel::Forward | AttentionKernel::Dq => (dims.b * dims.hq, dims.tq),
        AttentionKernel::Dkv => (dims.b * dims.hkv, dims.tk),
    };
    if heads == 0 || rows == 0 {
        return Ok(None);
    }
    let blocks = rows.div_ceil(block_rows);
    if blocks > MAX_GRID_Y {
        return Err(AttentionLaunchError::TooLong(rows));
    }
    let grid_x = u32::try_from(heads)
        .ok()
        .filter(|&x| x <= i32::MAX as u32)
        .ok_or(AttentionLaunchError::TooManyHeads(heads))?;
    Ok(Some((grid_x, blocks as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(b: usize, hq: usize, hkv: usize, tq: usize, tk: usize, dh: usize) -> AttnDims {
        AttnDims { b, hq, hkv, tq, tk, dh }
    }

    #[test]
    fn forward_blocks_cover_every_query_row_of_every_head() {
        let l = attention(AttentionKernel::Forward, dims(2, 8, 2, 33, 40, 64), "f32", 4)
            .unwrap()
            .unwrap();
        assert_eq!(l.function, "attn_fwd_f32_d64");
        // 2 * 8 heads; 33 rows in blocks of 16 = 3 blocks.
        assert_eq!((l.grid, l.block), ((16, 3), 128));
        // By hand: (16*64 + 32*65 + 32*64) * 4 = (1024 + 2080 + 2048) * 4.
        assert_eq!(l.shared_bytes, 20_608);
    }

    #[test]
    fn dkv_blocks_cover_every_key_of_every_kv_head() {
        let l = attention(AttentionKernel::Dkv, dims(2, 8, 2, 33, 40, 100), "f64", 8)
            .unwrap()
            .unwrap();
        assert_eq!(l.function, "attn_bwd_dkv_f64_d128");
        assert_eq!(l.grid, (4, 3));
        // (2*16*100 + 2*32*101 + 2*32) * 8 = (3200 + 6464 + 64) * 8.
        assert_eq!(l.shared_bytes, 77_824);
        assert!(l.shared_bytes > DEFAULT_SHARED_LIMIT, "needs the opt-in");
        let dq = attention(AttentionKernel::Dq, dims(1, 1, 1, 5, 5, 256), "f32", 4)
            .unwrap()
            .unwrap();
        assert_eq!(dq.function, "attn_bwd_dq_f32_d256");
        assert_eq!(dq.shared_bytes, ((2 * 16 * 256 + 2 * 32 * 257) * 4) as u32);
    }

    #[test]
    fn head_class_is_the_smallest_that_fits() {
        for (dh, class) in [
            (0, 64),
            (1, 64),
            (64, 64),
            (65, 128),
            (128, 128),
            (129, 256),
            (256, 256),
        ] {
            let l = attention(AttentionKernel::Forward, dims(1, 1, 1, 1, 1, dh), "f32", 4)
                .unwrap()
                .unwrap();
            assert!(l.function.ends_with(&format!("_d{class}")), "dh {dh}: {}", l.function);
        }
        assert_eq!(
            attention(AttentionKernel::Forward, dims(1, 1, 1, 1, 1, 257), "f32", 4),
            Err(AttentionLaunchError::HeadTooLarge(257))
        );
    }

    #[test]
    fn empty_calls_launch_nothing_and_huge_ones_are_refused() {
        assert_eq!(
            attention(AttentionKernel::Forward, dims(0, 4, 4, 8, 8, 16), "f32", 4),
            Ok(None)
        );
        assert_eq!(
            attention(AttentionKernel::Dq, dims(1, 4, 4, 0, 8, 16), "f32", 4),
            Ok(None)
        );
        let long = 16 * 65_535 + 1;
        assert_eq!(
            attention(AttentionKernel::Forward, dims(1, 1, 1, long, long, 16), "f32", 4),
            Err(AttentionLaunchError::TooLong(long))
        );
    }
}
