//! Op-level timing, to find where a training step spends its time
//! (`moe bench --profile`). Off by default, and switched per thread (the
//! thread that runs the step; ops of other threads are never charged); when
//! off, each op pays one thread-local read.
//!
//! When on, every op is charged:
//! - forward: the wall time from the previous op's end (or [`mark`]) to the
//!   moment it records its result, so host glue between ops (index building,
//!   shape checks) lands on the op that follows it;
//! - backward: the time of its `BackwardOp::backward` call (ops that backward
//!   calls are part of it, not charged separately).
//!
//! Each reading first waits for every CUDA device to finish its queued work,
//! so device time lands on the op that queued it. That waiting itself slows
//! the run: profile to find the bottleneck, time without it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static TABLE: Mutex<Option<HashMap<&'static str, OpTime>>> = Mutex::new(None);

thread_local! {
    /// Timing is on for this thread.
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    /// End of the previous op on this thread (forward attribution).
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Inside a timed backward op: its inner ops are part of it.
    static IN_BACKWARD: Cell<bool> = const { Cell::new(false) };
}

/// Accumulated time of one op name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpTime {
    /// Forward calls.
    pub forward_calls: u64,
    /// Forward time (see the module docs for what it includes).
    pub forward: Duration,
    /// Backward calls.
    pub backward_calls: u64,
    /// Backward time.
    pub backward: Duration,
}

/// Turns timing on or off for the calling thread (and, turning it on,
/// starts the forward clock).
pub fn enable(on: bool) {
    ENABLED.with(|e| e.set(on));
    if on {
        mark();
    }
}

/// Whether timing is on for the calling thread.
pub fn is_enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// Restarts the forward clock of the calling thread: work before this
/// moment is charged to no op (call it where a step starts).
pub fn mark() {
    if is_enabled() {
        sync_devices();
        LAST.with(|l| l.set(Some(Instant::now())));
    }
}

/// Forgets every accumulated time.
pub fn reset() {
    *lock() = None;
}

/// The accumulated times, most expensive (forward + backward) first.
pub fn report() -> Vec<(&'static str, OpTime)> {
    let mut rows: Vec<_> = lock()
        .as_ref()
        .map(|t| t.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default();
    rows.sort_by(|a, b| {
        (b.1.forward + b.1.backward)
            .cmp(&(a.1.forward + a.1.backward))
            .then(a.0.cmp(b.0))
    });
    rows
}

fn lock() -> std::sync::MutexGuard<'static, Option<HashMap<&'static str, OpTime>>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn sync_devices() {
    // A failed wait shows up again at the op's own next device call.
    let _ = crate::cuda_backend::synchronize_all();
}

/// Charges the time since the previous op to `name`'s forward.
pub(crate) fn op_recorded(name: &'static str) {
    if !is_enabled() || IN_BACKWARD.with(Cell::get) {
        return;
    }
    sync_devices();
    let now = Instant::now();
    let since = LAST.with(|l| l.replace(Some(now))).map_or(Duration::ZERO, |t| now - t);
    let mut table = lock();
    let e = table.get_or_insert_with(HashMap::new).entry(name).or_default();
    e.forward_calls += 1;
    e.forward += since;
}

/// Runs a backward op's `f`, charging its time to `name` when timing is on.
pub(crate) fn time_backward<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    if !is_enabled() || IN_BACKWARD.with(Cell::get) {
        return f();
    }
    sync_devices();
    let start = Instant::now();
    IN_BACKWARD.with(|b| b.set(true));
    let out = f();
    IN_BACKWARD.with(|b| b.set(false));
    sync_devices();
    let end = Instant::now();
    let took = end - start;
    // The next op's forward charge starts here, not at the last forward op.
    LAST.with(|l| l.set(Some(end)));
    let mut table = lock();
    let e = table.get_or_insert_with(HashMap::new).entry(name).or_default();
    e.backward_calls += 1;
    e.backward += took;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Tensor};

    #[test]
    fn ops_are_charged_forward_and_backward() {
        // The table is global, but only this thread is timed, and this is
        // the crate's only test that times.
        enable(true);
        reset();
        mark();
        let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], (2, 2), &Device::Cpu)
            .unwrap()
            .to_param();
        let x = Tensor::from_vec(vec![1.0f32, -1.0], (1, 2), &Device::Cpu).unwrap();
        let y = x.matmul(&w).unwrap().silu().unwrap().sum_all().unwrap();
        y.backward().unwrap();
        enable(false);
        let rows = report();
        let get = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let mm = get("matmul").expect("matmul timed");
        assert_eq!((mm.forward_calls, mm.backward_calls), (1, 1));
        // matmul's backward calls matmul twice: part of its backward, not new forwards.
        assert!(get("silu").is_some_and(|t| t.backward_calls == 1), "{rows:?}");
        // Nothing is recorded while off.
        let before = report();
        x.matmul(&w).unwrap();
        assert_eq!(report(), before);
    }
}
