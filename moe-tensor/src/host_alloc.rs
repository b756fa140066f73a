//! Keeps freed tensor buffers in the process heap for reuse.
//!
//! glibc serves allocations above 128 KiB (adaptively up to 32 MiB) with fresh
//! `mmap`s and returns them on free, so every op result of a training step
//! faults in and zeroes new pages: on the MLP benchmark the kernel's page
//! clearing alone took several percent of the step. Raising the mmap and trim
//! thresholds once makes freed buffers go back to the heap free lists, where
//! the next step's same-sized tensors find them. Set `MOE_KEEP_MALLOC=1` to
//! leave the allocator untouched.

use std::sync::Once;

static TUNE: Once = Once::new();

/// Applies the allocator settings once per process (no-op off glibc).
pub(crate) fn tune_once() {
    TUNE.call_once(|| {
        if std::env::var_os("MOE_KEEP_MALLOC").is_some() {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's allocation policy; it is safe to
        // call at any time and these parameters take plain integer values.
        unsafe {
            // No mmap-backed chunks at all (the threshold itself caps at 32 MiB,
            // below a large activation), and never give the heap top back.
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}
