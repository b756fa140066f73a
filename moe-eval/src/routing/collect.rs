//! Recording a model's routing on validation windows, together with the
//! loss of the same forward passes.

use super::trace::RoutingTrace;
use crate::error::{EvalError, Result};
use crate::loss::{run_windows, DomainLoss};
use moe_data::ValWindows;
use moe_model::Decoder;

/// Loss (and, when asked, routing) of one model on one domain's windows.
#[derive(Clone, Debug)]
pub struct DomainEval {
    /// Validation loss and perplexity.
    pub loss: DomainLoss,
    /// Every MoE layer's top-k choices on every window position.
    pub trace: Option<RoutingTrace>,
}

/// Checks that `model` has MoE layers; `what` names it in the error.
pub fn require_moe(model: &Decoder, what: &str) -> Result<()> {
    if model.config().num_moe_layers() == 0 {
        return Err(EvalError::DenseModel { what: what.to_string() });
    }
    Ok(())
}

/// Validation loss on `windows` and, with `routing`, the routing trace of the
/// same forward passes (each batch of `batch_size` windows is one MRI batch).
/// `what` names the model in errors (a dense model asked for routing).
pub fn evaluate_domain(
    model: &Decoder,
    what: &str,
    windows: &ValWindows,
    batch_size: usize,
    routing: bool,
    progress: impl FnMut(usize, usize),
) -> Result<DomainEval> {
    if !routing {
        let loss = run_windows(model, windows, batch_size, progress, |_, _| Ok(()))?;
        return Ok(DomainEval { loss, trace: None });
    }
    require_moe(model, what)?;
    let mut trace = RoutingTrace::default();
    let loss = run_windows(model, windows, batch_size, progress, |rows, out| {
        trace.push_forward(rows, &out.routing)
    })?;
    Ok(DomainEval {
        loss,
        trace: Some(trace),
    })
}

/// The routing trace of `model` on `windows` (see [`evaluate_domain`]).
pub fn collect_routing(model: &Decoder, what: &str, windows: &ValWindows, batch_size: usize) -> Result<RoutingTrace> {
    let eval = evaluate_domain(model, what, windows, batch_size, true, |_, _| {})?;
    eval.trace
        .ok_or_else(|| EvalError::DenseModel { what: what.to_string() })
}
