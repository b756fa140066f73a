//! The bucket logic of the caching device allocator.
//!
//! Sizes are rounded up to a bucket ([`bucket_bytes`]) so freed buffers can
//! serve later requests of nearby sizes; a freed buffer goes back to its
//! bucket's free list instead of to the driver, and a request first takes
//! from that list. Generic over the buffer type so it is tested without a GPU
//! (moe-tensor's CUDA backend stores `cudarc` device slices in it).

use std::collections::BTreeMap;

/// Smallest bucket, bytes.
pub const MIN_BUCKET: usize = 512;
/// Buckets below this size are powers of two; at and above it, multiples of it.
pub const LARGE_STEP: usize = 2 << 20;

/// The bucket a request of `bytes` is served from: powers of two from
/// [`MIN_BUCKET`] up to [`LARGE_STEP`], then multiples of [`LARGE_STEP`]
/// (at most 2 MiB of waste per large buffer). `None` on overflow.
pub fn bucket_bytes(bytes: usize) -> Option<usize> {
    if bytes <= MIN_BUCKET {
        return Some(MIN_BUCKET);
    }
    if bytes <= LARGE_STEP {
        return bytes.checked_next_power_of_two();
    }
    bytes.div_ceil(LARGE_STEP).checked_mul(LARGE_STEP)
}

/// Counters of a pool, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests served from a free list.
    pub hits: u64,
    /// Requests that had to allocate.
    pub misses: u64,
    /// Bytes currently held in free lists.
    pub cached_bytes: usize,
}

/// Free lists of buffers by bucket size.
#[derive(Debug)]
pub struct BucketPool<B> {
    free: BTreeMap<usize, Vec<B>>,
    stats: PoolStats,
    /// Most bytes kept in free lists; a buffer returned past it is handed back
    /// to be freed.
    max_cached: usize,
}

impl<B> BucketPool<B> {
    /// An empty pool keeping at most `max_cached` bytes of free buffers.
    pub fn new(max_cached: usize) -> Self {
        BucketPool {
            free: BTreeMap::new(),
            stats: PoolStats::default(),
            max_cached,
        }
    }

    /// A cached buffer of exactly `bucket` bytes, if one is free (counted as
    /// a hit; `None` counts a miss and the caller allocates `bucket` bytes).
    pub fn take(&mut self, bucket: usize) -> Option<B> {
        match self.free.get_mut(&bucket).and_then(Vec::pop) {
            Some(b) => {
                self.stats.hits += 1;
                self.stats.cached_bytes -= bucket;
                Some(b)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Returns a buffer of `bucket` bytes to its free list; gives it back
    /// (`Some`) when keeping it would exceed the cache limit, for the caller
    /// to free.
    pub fn put(&mut self, bucket: usize, buffer: B) -> Option<B> {
        if self.stats.cached_bytes + bucket > self.max_cached {
            return Some(buffer);
        }
        self.stats.cached_bytes += bucket;
        self.free.entry(bucket).or_default().push(buffer);
        None
    }

    /// Empties every free list (before retrying an allocation that ran out
    /// of memory); the caller frees what it gets.
    pub fn drain(&mut self) -> Vec<B> {
        self.stats.cached_bytes = 0;
        std::mem::take(&mut self.free).into_values().flatten().collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_up_by_hand_computed_steps() {
        assert_eq!(bucket_bytes(0), Some(512));
        assert_eq!(bucket_bytes(1), Some(512));
        assert_eq!(bucket_bytes(512), Some(512));
        assert_eq!(bucket_bytes(513), Some(1024));
        assert_eq!(bucket_bytes(3000), Some(4096));
        assert_eq!(bucket_bytes(2 << 20), Some(2 << 20));
        assert_eq!(bucket_bytes((2 << 20) + 1), Some(4 << 20));
        assert_eq!(bucket_bytes(5 << 20), Some(6 << 20));
        assert_eq!(bucket_bytes(usize::MAX), None);
        for b in [1usize, 100, 4097, 1 << 20, 3 << 20, 100 << 20] {
            let k = bucket_bytes(b).unwrap();
            assert!(k >= b && (k - b < LARGE_STEP || k < 2 * b));
        }
    }

    #[test]
    fn freed_buffers_are_reused_by_bucket() {
        let mut p: BucketPool<u32> = BucketPool::new(1 << 20);
        assert_eq!(p.take(1024), None);
        assert_eq!(p.put(1024, 7), None);
        assert_eq!(p.stats().cached_bytes, 1024);
        assert_eq!(p.take(2048), None, "another bucket is not served");
        assert_eq!(p.take(1024), Some(7));
        assert_eq!(p.take(1024), None);
        assert_eq!(
            p.stats(),
            PoolStats {
                hits: 1,
                misses: 3,
                cached_bytes: 0
            }
        );
    }

    #[test]
    fn cache_limit_and_drain_hand_buffers_back() {
        let mut p: BucketPool<&str> = BucketPool::new(3000);
        assert_eq!(p.put(2048, "a"), None);
        assert_eq!(p.put(2048, "b"), Some("b"), "over the limit: free it");
        assert_eq!(p.put(512, "c"), None);
        let mut all = p.drain();
        all.sort();
        assert_eq!(all, vec!["a", "c"]);
        assert_eq!(p.stats().cached_bytes, 0);
        assert_eq!(p.take(2048), None);
    }
}
