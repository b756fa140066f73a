//! Reverse-mode autograd: the op record, grad mode, and the backward pass.
//!
//! Every differentiable op stores a [`BackwardOp`] in its result. `backward()`
//! sorts the graph topologically with an explicit stack (deep graphs must not
//! overflow the call stack), walks it from the output, and hands each node's
//! gradient to its op, which returns one gradient per input. Backward runs in
//! no-grad mode and takes each op out of its node, so the graph is freed as it
//! goes; leaves that require grad accumulate into `grad()` until zeroed.

mod engine;
mod grad_mode;

pub use engine::op_names;
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};

use crate::{Result, Tensor};
use std::sync::Arc;

/// The backward half of an op: knows its inputs and maps the output gradient
/// to input gradients (same shapes as the inputs; `None` where no gradient flows).
pub trait BackwardOp: Send + Sync {
    /// The op's name, for error messages.
    fn name(&self) -> &'static str;
    /// The tensors the op consumed, in a fixed order.
    fn inputs(&self) -> Vec<&Tensor>;
    /// Input gradients, aligned with [`BackwardOp::inputs`].
    fn backward(&self, grad_out: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

/// Keeps `op` for backward only when grad mode is on and some input requires grad.
pub(crate) fn record(op: impl BackwardOp + 'static) -> Option<Arc<dyn BackwardOp>> {
    crate::profile::op_recorded(op.name());
    if is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad()) {
        Some(Arc::new(op))
    } else {
        None
    }
}
