//! Per-thread packing buffers that live across GEMM calls.

use std::cell::Cell;
use std::thread::LocalKey;

/// One cache line; backing store of the aligned scratch buffers.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Line(pub(crate) [u8; 64]);

/// A thread's reusable buffer, as the key of a `thread_local!`.
pub(crate) type Scratch = Cell<Vec<Line>>;

/// Runs `f` on a 64-byte aligned scratch buffer of at least `bytes` bytes that
/// this thread keeps between calls: fresh allocations would page-fault on
/// every GEMM. A nested use (work stealing inside `f`) finds the cell empty
/// and allocates its own.
pub(crate) fn with_scratch<R>(key: &'static LocalKey<Scratch>, bytes: usize, f: impl FnOnce(*mut u8) -> R) -> R {
    let mut buf = key.take();
    let lines = bytes.div_ceil(64);
    if buf.len() < lines {
        buf = vec![Line([0; 64]); lines];
    }
    let out = f(buf.as_mut_ptr().cast());
    key.set(buf);
    out
}
