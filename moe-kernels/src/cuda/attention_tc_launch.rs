//! Launch shapes of the tensor-core attention kernels (`attention_tc.cu`):
//! f32 tensors whose products run as bf16 `mma.m16n8k16` on sm_80+. One
//! instance per supported head size; other head sizes use the SIMT kernels
//! of [`super::attention_launch`]. Pure arithmetic, tested on the host.

use super::attention_launch::{grid, AttentionKernel, AttentionLaunch, AttentionLaunchError};
use crate::cpu::attention::AttnDims;

/// Rows a block owns (`ATT_TC_ROWS`): 4 warps of one 16-row mma tile each.
pub const BLOCK_ROWS: usize = 64;
/// Rows of the other side per shared-memory tile (`ATT_TC_TILE`).
pub const TILE: usize = 64;
/// bf16 elements of padding per shared row (`ATT_TC_PAD`).
pub const PAD: usize = 8;
/// Threads per block (`ATT_TC_WARPS` warps).
pub const THREADS: u32 = 128;
/// Head sizes with an instance (`attn_tc_*_d64`, `attn_tc_*_d128`).
pub const HEAD_SIZES: [usize; 2] = [64, 128];

/// Whether the tensor-core kernels cover head size `dh`.
pub fn supports(dh: usize) -> bool {
    HEAD_SIZES.contains(&dh)
}

/// The launch of the tensor-core `kernel` for `dims`, or `Ok(None)` when
/// there is nothing to compute (no rows).
pub fn attention_tc(kernel: AttentionKernel, dims: AttnDims) -> Result<Option<AttentionLaunch>, AttentionLaunchError> {
    let dh = dims.dh;
    if !supports(dh) {
        return Err(AttentionLaunchError::NoTensorCoreKernel(dh));
    }
    let Some(grid) = grid(kernel, dims, BLOCK_ROWS)? else {
        return Ok(None);
    };
    // Shared tiles are bf16 rows of dh + PAD elements (2 bytes), in the .cu's order.
    let row_bytes = (dh + PAD) * 2;
    let shared_bytes = match kernel {
        // q [BLOCK_ROWS], k, v [TILE]
        AttentionKernel::Forward => (BLOCK_ROWS + 2 * TILE) * row_bytes,
        // q, dO [BLOCK_ROWS], k, v [TILE]
        AttentionKernel::Dq => (2 * BLOCK_ROWS + 2 * TILE) * row_bytes,
        // k, v [BLOCK_ROWS], q, dO [TILE], then lse, delta [TILE] f32
        AttentionKernel::Dkv => (2 * BLOCK_ROWS + 2 * TILE) * row_bytes + 2 * TILE * 4,
    };
    Ok(Some(AttentionLaunch {
        function: format!("attn_tc_{}_d{dh}", &kernel.prefix()["attn_".len()..]),
        grid,
        block: THREADS,
        shared_bytes: shared_bytes as u32,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(b: usize, hq: usize, hkv: usize, tq: usize, tk: usize, dh: usize) -> AttnDims {
        AttnDims { b, hq, hkv, tq, tk, dh }
    }

    #[test]
    fn blocks_of_64_rows_cover_queries_and_keys() {
        let f = attention_tc(AttentionKernel::Forward, dims(2, 8, 2, 65, 130, 64))
            .unwrap()
            .unwrap();
        assert_eq!(f.function, "attn_tc_fwd_d64");
        // 16 query heads, 65 rows in blocks of 64 = 2 blocks.
        assert_eq!((f.grid, f.block), ((16, 2), 128));
        // By hand: 3 tiles of 64 rows of 72 bf16 = 3 * 64 * 144.
        assert_eq!(f.shared_bytes, 27_648);
        let kv = attention_tc(AttentionKernel::Dkv, dims(2, 8, 2, 65, 130, 128))
            .unwrap()
            .unwrap();
        assert_eq!(kv.function, "attn_tc_bwd_dkv_d128");
        // 4 kv heads, 130 keys = 3 blocks.
        assert_eq!(kv.grid, (4, 3));
        // 4 * 64 rows * 136 * 2 bytes + 2 * 64 * 4 = 69_632 + 512.
        assert_eq!(kv.shared_bytes, 70_144);
        let dq = attention_tc(AttentionKernel::Dq, dims(1, 1, 1, 1, 1, 128))
            .unwrap()
            .unwrap();
        assert_eq!((dq.function.as_str(), dq.shared_bytes), ("attn_tc_bwd_dq_d128", 69_632));
    }

    #[test]
    fn only_the_instantiated_head_sizes_are_planned() {
        for dh in [0, 32, 63, 65, 96, 127, 256] {
            assert!(!supports(dh));
            assert_eq!(
                attention_tc(AttentionKernel::Forward, dims(1, 1, 1, 4, 4, dh)),
                Err(AttentionLaunchError::NoTensorCoreKernel(dh))
            );
        }
    }

    #[test]
    fn empty_calls_launch_nothing_and_huge_ones_are_refused() {
        assert_eq!(attention_tc(AttentionKernel::Dq, dims(1, 2, 2, 0, 0, 64)), Ok(None));
        let long = 64 * 65_535 + 1;
        assert_eq!(
            attention_tc(AttentionKernel::Dkv, dims(1, 1, 1, long, long, 64)),
            Err(AttentionLaunchError::TooLong(long))
        );
    }
}
