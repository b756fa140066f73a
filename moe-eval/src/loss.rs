//! Per-domain validation loss and perplexity on fixed held-out windows.

use crate::error::{EvalError, Result};
use moe_data::ValWindows;
use moe_model::Decoder;
use moe_router::RouteMode;
use moe_tensor::{no_grad, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Validation loss of one model on one domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainLoss {
    /// Domain name.
    pub domain: String,
    /// Mean next-token cross-entropy (nats) over every prediction of every window.
    pub loss: f64,
    /// `exp(loss)`.
    pub ppl: f64,
    /// Predictions scored: windows × T.
    pub tokens: u64,
}

/// The device the model's parameters live on.
pub fn model_device(model: &Decoder) -> Device {
    model.params().iter().next().map_or(Device::Cpu, |(_, t)| t.device())
}

/// One batch of `[B, T + 1]` windows as an I64 tensor.
pub(crate) fn batch_tensor(rows: &[u32], width: usize, device: &Device) -> Result<Tensor> {
    let ids: Vec<i64> = rows.iter().map(|&t| t as i64).collect();
    Ok(Tensor::from_vec(ids, (rows.len() / width, width), device)?)
}

/// A copy of `model` (parameters shared, not copied) that routes as at inference.
pub(crate) fn eval_view(model: &Decoder) -> Decoder {
    let mut m = model.clone();
    m.set_route_mode(RouteMode::Eval);
    m
}

/// Mean next-token cross-entropy of `model` over every window of `windows`
/// (each window of T + 1 tokens gives T predictions), in batches of
/// `batch_size` windows, without gradients and routing as at inference
/// ([`RouteMode::Eval`]). `model` itself is left untouched (its route mode
/// included).
pub fn domain_loss(model: &Decoder, windows: &ValWindows, batch_size: usize) -> Result<DomainLoss> {
    domain_loss_with(model, windows, batch_size, |_, _| {})
}

/// [`domain_loss`], calling `progress(done, total)` (in windows) after each batch.
pub fn domain_loss_with(
    model: &Decoder,
    windows: &ValWindows,
    batch_size: usize,
    progress: impl FnMut(usize, usize),
) -> Result<DomainLoss> {
    run_windows(model, windows, batch_size, progress, |_, _| Ok(()))
}

/// Runs `model` (routing as at inference, without gradients) over the
/// windows in batches, calling `on_batch(rows, forward)` with each batch's
/// `[B, T + 1]` ids and its loss output, and returns the mean loss.
pub(crate) fn run_windows(
    model: &Decoder,
    windows: &ValWindows,
    batch_size: usize,
    mut progress: impl FnMut(usize, usize),
    mut on_batch: impl FnMut(&[u32], &moe_model::LossOutput) -> Result<()>,
) -> Result<DomainLoss> {
    let (t, n) = (windows.seq_len, windows.len());
    if batch_size == 0 {
        return Err(EvalError::bad("batch_size", "must be > 0"));
    }
    if t == 0 || n == 0 {
        return Err(EvalError::bad(
            format!("validation windows of `{}`", windows.domain),
            "no windows (or T = 0)",
        ));
    }
    let vocab = model.config().vocab_size;
    if let Some(pos) = windows.tokens.iter().position(|&id| id as usize >= vocab) {
        return Err(EvalError::bad(
            format!("validation windows of `{}`", windows.domain),
            format!(
                "token id {} at position {pos} is outside the model's vocabulary of {vocab}",
                windows.tokens[pos]
            ),
        ));
    }
    let model = eval_view(model);
    let device = model_device(&model);
    let (mut sum, mut count, mut done) = (0.0f64, 0u64, 0usize);
    no_grad(|| -> Result<()> {
        for rows in windows.batches(batch_size) {
            let ids = batch_tensor(rows, t + 1, &device)?;
            let b = ids.dims()[0];
            let out = model.loss(&ids)?;
            let ce = out.ce.to_scalar_f64()?;
            on_batch(rows, &out)?;
            let preds = (b * t) as u64;
            sum += ce * preds as f64;
            count += preds;
            done += b;
            progress(done, n);
        }
        Ok(())
    })?;
    let loss = sum / count as f64;
    Ok(DomainLoss {
        domain: windows.domain.clone(),
        loss,
        ppl: loss.exp(),
        tokens: count,
    })
}
