//! A count of device-to-host reads, per thread, so tests can check that a
//! computation (a routing decision, a training step) stays on the device.
//! Every read is synchronous on the calling thread, so a thread-local count
//! sees exactly the reads of the code that thread ran.

use std::cell::Cell;

thread_local! {
    static HOST_READS: Cell<u64> = const { Cell::new(0) };
}

/// Device-to-host copies made by this thread so far (each one waits for
/// the device). Always 0 in a build without the `cuda` feature.
pub fn host_reads() -> u64 {
    HOST_READS.with(Cell::get)
}

/// Counts one read (called by every device-to-host copy).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn note_host_read() {
    HOST_READS.with(|c| c.set(c.get() + 1));
}
