//! Launch configurations: grid and block sizes for the kernels of this
//! directory, and the range checks of their `int` arguments. Pure arithmetic,
//! tested on the host; every kernel's comment names the function here that
//! sizes its launch.

/// Threads per block of the elementwise (grid-stride) kernels.
pub const ELEMENTWISE_BLOCK: u32 = 256;
/// Most blocks an elementwise launch uses; the grid-stride loop covers the
/// rest (a multiple of every SM count we know, and far below the 2^31 − 1
/// limit of `gridDim.x`).
pub const MAX_ELEMENTWISE_GRID: u32 = 65_536;
/// Most blocks of a row launch; rows past it are looped over by the kernel.
pub const MAX_ROW_GRID: u32 = 1 << 20;
/// Largest block of a row or single-block kernel (the `partial[32]` of the
/// block reductions holds one value per warp: 1024 / 32 = 32).
pub const MAX_BLOCK: u32 = 1024;
// block_reduce_* in common.cuh keep one partial per warp in 32 slots.
const _: () = assert!(MAX_BLOCK / 32 <= 32 && MAX_BLOCK.is_multiple_of(32) && ROW_BLOCK <= MAX_BLOCK);

/// Block of a row kernel once rows are long enough to fill it.
pub const ROW_BLOCK: u32 = 512;

/// A one-dimensional launch: `grid` blocks of `block` threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch1d {
    /// Blocks (`gridDim.x`), at least 1.
    pub grid: u32,
    /// Threads per block (`blockDim.x`), a multiple of 32 in `32..=1024`.
    pub block: u32,
}

/// Rounds `n` up to a multiple of the warp size, within `32..=MAX_BLOCK`.
fn warp_multiple(n: usize) -> u32 {
    let n = n.clamp(1, MAX_BLOCK as usize);
    (n.div_ceil(32) * 32) as u32
}

/// An elementwise launch over `n` elements (one thread per element, a
/// grid-stride loop past [`MAX_ELEMENTWISE_GRID`] blocks), or `None` for
/// `n = 0` (nothing to launch).
pub fn elementwise(n: usize) -> Option<Launch1d> {
    if n == 0 {
        return None;
    }
    let blocks = n
        .div_ceil(ELEMENTWISE_BLOCK as usize)
        .min(MAX_ELEMENTWISE_GRID as usize);
    Some(Launch1d {
        grid: blocks as u32,
        block: ELEMENTWISE_BLOCK,
    })
}

/// A launch of one warp per item for `n` items (each item reduced by the
/// 32 lanes of a warp; kernels loop over warps past the grid), or `None`
/// for `n = 0`. Blocks are [`ELEMENTWISE_BLOCK`] threads, a warp multiple.
pub fn warps(n: usize) -> Option<Launch1d> {
    elementwise(n.saturating_mul(32))
}

/// A row launch: one block per row of `cols` elements (rows past
/// [`MAX_ROW_GRID`] looped over), the block the smallest warp multiple that
/// covers the row, at most [`ROW_BLOCK`]. `None` for `rows = 0`; rows of
/// length 0 still get a launch (their outputs must be written).
pub fn rows(rows: usize, cols: usize) -> Option<Launch1d> {
    if rows == 0 {
        return None;
    }
    Some(Launch1d {
        grid: rows.min(MAX_ROW_GRID as usize) as u32,
        block: warp_multiple(cols).min(ROW_BLOCK),
    })
}

/// A single-block launch whose threads stride over `n` items (final
/// reductions), the block at most [`MAX_BLOCK`].
pub fn single_block(n: usize) -> Launch1d {
    Launch1d {
        grid: 1,
        block: warp_multiple(n),
    }
}

/// Elements per partial sum of optim.cu's sum of squares: each chunk is one
/// block's f64 sum, so a gradient of n elements leaves `chunks(n)` partials.
pub const SUM_SQ_CHUNK: usize = 1 << 16;

/// Chunks of [`SUM_SQ_CHUNK`] elements (the last one partial) covering `n`.
pub fn chunks(n: usize) -> usize {
    n.div_ceil(SUM_SQ_CHUNK)
}

/// One block of [`ELEMENTWISE_BLOCK`] threads per chunk of `n` elements
/// (chunks past [`MAX_ELEMENTWISE_GRID`] looped over), or `None` for `n = 0`.
/// The block size is fixed: it sets the order of each chunk's additions.
pub fn per_chunk(n: usize) -> Option<Launch1d> {
    let c = chunks(n);
    (c > 0).then(|| Launch1d {
        grid: c.min(MAX_ELEMENTWISE_GRID as usize) as u32,
        block: ELEMENTWISE_BLOCK,
    })
}

/// `n` as a kernel `int` argument, or `None` when it exceeds `i32::MAX`.
pub fn as_int(n: usize) -> Option<i32> {
    i32::try_from(n).ok()
}

/// `n` as a kernel `long long` argument, or `None` when it exceeds `i64::MAX`.
pub fn as_long(n: usize) -> Option<i64> {
    i64::try_from(n).ok()
}

/// Threads of a `route_plan_rank` block (`PLAN_THREADS` in route_plan.cu).
pub const ROUTE_PLAN_THREADS: u32 = 256;

/// The two launches of the device dispatch plan over `copies` token copies
/// and `experts` experts: `route_plan_rank` with one block per expert, then
/// `route_plan_place` over `max(copies, experts + 1)` items. `None` when
/// there are no experts (nothing to plan).
pub fn route_plan(copies: usize, experts: usize) -> Option<(Launch1d, Launch1d)> {
    if experts == 0 || experts > i32::MAX as usize - 1 {
        return None;
    }
    let rank = Launch1d {
        grid: experts as u32,
        block: ROUTE_PLAN_THREADS,
    };
    let place = elementwise(copies.max(experts + 1))?;
    Some((rank, place))
}

/// The one block of sinkhorn.cu (`SINKHORN_THREADS` threads, the count
/// that fixes the column-sum order of [`crate::cpu::sinkhorn`]). `None`
/// for more experts than threads.
pub fn sinkhorn(experts: usize) -> Option<Launch1d> {
    use crate::cpu::sinkhorn::SINKHORN_THREADS;
    (experts <= SINKHORN_THREADS).then_some(Launch1d {
        grid: 1,
        block: SINKHORN_THREADS as u32,
    })
}

/// Output tile of the grouped_seg.cu kernels: rows × cols, and its threads.
pub const SEG_TILE: (usize, usize) = (64, 64);
/// Threads of a grouped_seg.cu SIMT block (16 × 16, each 4 × 4 outputs).
pub const SEG_THREADS: u32 = 256;
/// Threads of a grouped_seg.cu tensor-core block (4 warps of 16 rows each);
/// its grids are the SIMT kernels'.
pub const SEG_TC_THREADS: u32 = 128;
/// Largest `gridDim.y` / `gridDim.z`.
const MAX_GRID_YZ: usize = 65_535;

/// A three-dimensional grid of `block`-thread blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch3d {
    /// Blocks along x, y and z.
    pub grid: (u32, u32, u32),
    /// Threads per block.
    pub block: u32,
}

/// `grouped_seg_fwd_*` over `m` rows in `experts` segments and `n` output
/// columns: x enumerates the segments' row tiles (at most
/// `ceil(m / 64) + experts`), y the column tiles. `None` when there is
/// nothing to compute or the grid would exceed CUDA's limits.
pub fn grouped_seg_fwd(m: usize, n: usize, experts: usize) -> Option<Launch3d> {
    let tiles = m.div_ceil(SEG_TILE.0).checked_add(experts)?;
    let cols = n.div_ceil(SEG_TILE.1);
    if m == 0 || n == 0 || tiles > i32::MAX as usize || cols > MAX_GRID_YZ {
        return None;
    }
    Some(Launch3d {
        grid: (tiles as u32, cols as u32, 1),
        block: SEG_THREADS,
    })
}

/// `grouped_seg_wgrad_*` for `experts` gradients of `[d, f]`: x the column
/// tiles of f, y the row tiles of d, z the experts. `None` when there is
/// nothing to write or the grid would exceed CUDA's limits.
pub fn grouped_seg_wgrad(d: usize, f: usize, experts: usize) -> Option<Launch3d> {
    let (rows, cols) = (d.div_ceil(SEG_TILE.0), f.div_ceil(SEG_TILE.1));
    if d == 0 || f == 0 || experts == 0 || cols > i32::MAX as usize || rows > MAX_GRID_YZ || experts > MAX_GRID_YZ {
        return None;
    }
    Some(Launch3d {
        grid: (cols as u32, rows as u32, experts as u32),
        block: SEG_THREADS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_covers_every_element_once_per_thread_index() {
        assert_eq!(elementwise(0), None);
        assert_eq!(elementwise(1), Some(Launch1d { grid: 1, block: 256 }));
        assert_eq!(elementwise(256), Some(Launch1d { grid: 1, block: 256 }));
        assert_eq!(elementwise(257), Some(Launch1d { grid: 2, block: 256 }));
        // Capped grid: the grid-stride loop covers the rest.
        let big = elementwise(1 << 40).unwrap();
        assert_eq!(big.grid, MAX_ELEMENTWISE_GRID);
        for n in [1usize, 255, 256, 257, 1000, 65_536 * 256, 65_536 * 256 + 1] {
            let l = elementwise(n).unwrap();
            let threads = l.grid as usize * l.block as usize;
            // Without the cap every element has its own thread; with it, each
            // thread handles ceil(n / threads) elements.
            assert!(threads >= n.min(MAX_ELEMENTWISE_GRID as usize * 256), "n = {n}");
            assert!(l.grid >= 1 && l.block.is_multiple_of(32));
        }
    }

    #[test]
    fn warps_give_each_item_a_warp_up_to_the_grid_cap() {
        assert_eq!(warps(0), None);
        assert_eq!(warps(1), Some(Launch1d { grid: 1, block: 256 }));
        assert_eq!(warps(8), Some(Launch1d { grid: 1, block: 256 }));
        assert_eq!(warps(9), Some(Launch1d { grid: 2, block: 256 }));
        assert_eq!(warps(usize::MAX).unwrap().grid, MAX_ELEMENTWISE_GRID);
    }

    #[test]
    fn rows_use_one_block_per_row_and_warp_multiples() {
        assert_eq!(rows(0, 10), None);
        assert_eq!(rows(3, 0), Some(Launch1d { grid: 3, block: 32 }));
        assert_eq!(rows(3, 1), Some(Launch1d { grid: 3, block: 32 }));
        assert_eq!(rows(3, 33), Some(Launch1d { grid: 3, block: 64 }));
        assert_eq!(rows(3, 500), Some(Launch1d { grid: 3, block: 512 }));
        assert_eq!(
            rows(3, 100_000),
            Some(Launch1d {
                grid: 3,
                block: ROW_BLOCK
            })
        );
        assert_eq!(rows(usize::MAX, 8).unwrap().grid, MAX_ROW_GRID);
    }

    #[test]
    fn single_block_is_bounded_by_the_reduction_scratch() {
        assert_eq!(single_block(0).block, 32);
        assert_eq!(single_block(100).block, 128);
        assert_eq!(single_block(1 << 30).block, MAX_BLOCK);
    }

    #[test]
    fn sum_of_squares_chunks_cover_every_element_once() {
        assert_eq!((chunks(0), per_chunk(0)), (0, None));
        assert_eq!(chunks(1), 1);
        assert_eq!(chunks(SUM_SQ_CHUNK), 1);
        assert_eq!(chunks(SUM_SQ_CHUNK + 1), 2);
        assert_eq!(per_chunk(SUM_SQ_CHUNK + 1), Some(Launch1d { grid: 2, block: 256 }));
        assert_eq!(per_chunk(usize::MAX).unwrap().grid, MAX_ELEMENTWISE_GRID);
    }

    #[test]
    fn int_arguments_are_range_checked() {
        assert_eq!(as_int(5), Some(5));
        assert_eq!(as_int(i32::MAX as usize), Some(i32::MAX));
        assert_eq!(as_int(i32::MAX as usize + 1), None);
        assert_eq!(as_long(7), Some(7));
    }

    #[test]
    fn route_plan_has_a_block_per_expert_and_covers_the_offsets() {
        assert_eq!(route_plan(10, 0), None);
        let (rank, place) = route_plan(0, 8).unwrap();
        assert_eq!((rank.grid, rank.block), (8, ROUTE_PLAN_THREADS));
        // offsets[0..=8] need 9 threads even with no copies.
        assert!(place.grid * place.block >= 9);
        let (_, place) = route_plan(1000, 8).unwrap();
        assert!(place.grid * place.block >= 1000);
    }

    #[test]
    fn grouped_seg_grids_bound_every_segments_tiles() {
        assert_eq!(grouped_seg_fwd(0, 64, 4), None);
        assert_eq!(grouped_seg_fwd(64, 0, 4), None);
        // 130 rows in 4 segments: at most ceil(130 / 64) + 4 row tiles (a
        // segment of r rows has ceil(r / 64) ≤ r / 64 + 1 of them).
        let l = grouped_seg_fwd(130, 65, 4).unwrap();
        assert_eq!(l.grid, (3 + 4, 2, 1));
        for counts in [[130usize, 0, 0, 0], [1, 1, 1, 127], [64, 64, 1, 1], [0, 65, 0, 65]] {
            let tiles: usize = counts.iter().map(|c| c.div_ceil(64)).sum();
            assert!(tiles <= l.grid.0 as usize, "{counts:?}");
        }
        assert_eq!(grouped_seg_fwd(10, 64 * 65_536, 1), None);
        let w = grouped_seg_wgrad(100, 130, 8).unwrap();
        assert_eq!((w.grid, w.block), ((3, 2, 8), SEG_THREADS));
        assert_eq!(grouped_seg_wgrad(100, 130, 0), None);
        assert_eq!(grouped_seg_wgrad(100, 130, 70_000), None);
    }
}
