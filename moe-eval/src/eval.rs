//! Evaluating a checkpoint on a dataset's validation windows (what `moe eval`
//! runs), and comparing two checkpoints' routing on identical tokens.

use crate::checkpoint::{load_checkpoint, open_dataset_for, resolve_domains, trained_seq_len, Checkpoint};
use crate::error::{EvalError, Result};
use crate::loss::DomainLoss;
use crate::routing::collect::{evaluate_domain, require_moe};
use crate::routing::{co_activation, routing_change, routing_load, vocab_specialisation};
use crate::routing::{CoActivation, LayerChange, LayerLoad, RoutingTrace, VocabSpecialisation};
use moe_data::{Dataset, ValWindows};
use moe_tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to evaluate and how.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Domains to evaluate; empty means every domain of the dataset.
    pub domains: Vec<String>,
    /// Also compute routing metrics (MoE checkpoints only).
    pub routing: bool,
    /// Window length T (each window holds T + 1 tokens); `None`: the
    /// checkpoint's training `seq_len` when recorded, else
    /// `max_position_embeddings - 1`.
    pub seq_len: Option<usize>,
    /// At most this many validation windows per domain.
    pub max_windows: usize,
    /// Windows per forward pass (also the batch over which MRI is taken).
    pub batch_size: usize,
    /// Layers for vocabulary specialisation and co-activation; empty: every MoE layer.
    pub detail_layers: Vec<usize>,
    /// Tokens listed per expert in the vocabulary specialisation.
    pub vocab_top_n: usize,
    /// Token ids seen fewer times are left out of the specialisation lists.
    pub vocab_min_count: u64,
    /// Device to run on.
    pub device: Device,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            routing: false,
            seq_len: None,
            max_windows: 256,
            batch_size: 8,
            detail_layers: Vec::new(),
            vocab_top_n: 8,
            vocab_min_count: 5,
            device: Device::Cpu,
        }
    }
}

/// Routing metrics of one domain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DomainRouting {
    /// Load, dead experts, entropy and MRI of every MoE layer.
    pub layers: Vec<LayerLoad>,
    /// Vocabulary specialisation of the detail layers.
    pub vocab: Vec<VocabSpecialisation>,
    /// Co-activation of the detail layers.
    pub co_activation: Vec<CoActivation>,
}

/// One domain's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DomainResult {
    /// Loss and perplexity.
    #[serde(flatten)]
    pub loss: DomainLoss,
    /// Routing metrics, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<DomainRouting>,
}

/// What `moe eval --ckpt` writes (eval.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointEval {
    /// The checkpoint folder.
    pub checkpoint: PathBuf,
    /// The dataset folder.
    pub data: PathBuf,
    /// Window length T.
    pub seq_len: usize,
    /// Windows per batch.
    pub batch_size: usize,
    /// Number of MoE layers (0: dense).
    pub moe_layers: usize,
    /// Routed experts per MoE layer (0: dense).
    pub num_experts: usize,
    /// Experts per token (0: dense).
    pub top_k: usize,
    /// One entry per evaluated domain.
    pub domains: Vec<DomainResult>,
}

/// Routing change between two checkpoints on one domain.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DomainChange {
    /// Domain name.
    pub domain: String,
    /// Tokens compared.
    pub tokens: u64,
    /// Per MoE layer.
    pub layers: Vec<LayerChange>,
}

/// What `moe eval --compare` writes (change.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoutingComparison {
    /// Checkpoint 1 (the reference, e.g. where CPT started).
    pub checkpoint_a: PathBuf,
    /// Checkpoint 2.
    pub checkpoint_b: PathBuf,
    /// The dataset folder.
    pub data: PathBuf,
    /// Window length T.
    pub seq_len: usize,
    /// One entry per domain.
    pub domains: Vec<DomainChange>,
}

/// The window length to use for `ckpt`.
fn seq_len_for(ckpt: &Checkpoint, opts: &EvalOptions) -> Result<usize> {
    let max_pos = ckpt.model.config().max_position_embeddings;
    let t = opts
        .seq_len
        .or_else(|| trained_seq_len(&ckpt.dir))
        .unwrap_or(max_pos.saturating_sub(1));
    if t == 0 || t + 1 > max_pos {
        return Err(EvalError::bad(
            "seq_len",
            format!("{t}: windows of T + 1 tokens must fit max_position_embeddings = {max_pos} (and T > 0)"),
        ));
    }
    Ok(t)
}

/// Routing metrics of `trace` (detail layers as `opts` asks), with token texts from `ds`.
pub fn routing_metrics(trace: &RoutingTrace, opts: &EvalOptions, ds: Option<&Dataset>) -> Result<DomainRouting> {
    let detail: Vec<usize> = if opts.detail_layers.is_empty() {
        trace.layers.iter().map(|l| l.layer).collect()
    } else {
        opts.detail_layers.clone()
    };
    let tokenizer = ds.and_then(|d| d.tokenizer().ok());
    let mut vocab = Vec::with_capacity(detail.len());
    let mut co = Vec::with_capacity(detail.len());
    for &layer in &detail {
        let mut v = vocab_specialisation(trace, layer, opts.vocab_top_n, opts.vocab_min_count)?;
        if let Some(tok) = &tokenizer {
            for t in v.experts.iter_mut().flat_map(|e| e.top_tokens.iter_mut()) {
                t.text = tok.decode(&[t.token_id]).ok();
            }
        }
        vocab.push(v);
        co.push(co_activation(trace, layer)?);
    }
    Ok(DomainRouting {
        layers: routing_load(trace),
        vocab,
        co_activation: co,
    })
}

/// Evaluates checkpoint `ckpt_dir` on the validation windows of `data`;
/// `progress(domain, done, total)` reports windows done.
pub fn evaluate_checkpoint(
    ckpt_dir: &Path,
    data: &Path,
    opts: &EvalOptions,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<CheckpointEval> {
    let ckpt = load_checkpoint(ckpt_dir, &opts.device)?;
    let what = ckpt_dir.display().to_string();
    if opts.routing {
        require_moe(&ckpt.model, &what)?;
    }
    let ds = open_dataset_for(&ckpt, data)?;
    let domains = resolve_domains(&ds, &opts.domains)?;
    let seq_len = seq_len_for(&ckpt, opts)?;
    let mut results = Vec::with_capacity(domains.len());
    for d in &domains {
        let windows = ValWindows::new(&ds, d, seq_len, opts.max_windows)?;
        let ev = evaluate_domain(&ckpt.model, &what, &windows, opts.batch_size, opts.routing, |a, b| {
            progress(d, a, b)
        })?;
        let routing = match &ev.trace {
            Some(tr) => Some(routing_metrics(tr, opts, Some(&ds))?),
            None => None,
        };
        results.push(DomainResult { loss: ev.loss, routing });
    }
    let moe = ckpt.model.config().moe.as_ref();
    Ok(CheckpointEval {
        checkpoint: ckpt_dir.to_path_buf(),
        data: data.to_path_buf(),
        seq_len,
        batch_size: opts.batch_size,
        moe_layers: ckpt.model.config().num_moe_layers(),
        num_experts: moe.map_or(0, |m| m.num_experts()),
        top_k: moe.map_or(0, |m| m.top_k()),
        domains: results,
    })
}

/// Routing change from checkpoint `a` to checkpoint `b` on the same
/// validation windows of each domain (OLMoE's router saturation).
pub fn compare_checkpoints(
    a: &Path,
    b: &Path,
    data: &Path,
    opts: &EvalOptions,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<RoutingComparison> {
    let ca = load_checkpoint(a, &opts.device)?;
    let cb = load_checkpoint(b, &opts.device)?;
    require_moe(&ca.model, &a.display().to_string())?;
    require_moe(&cb.model, &b.display().to_string())?;
    let ds = open_dataset_for(&ca, data)?;
    open_dataset_for(&cb, data)?;
    let domains = resolve_domains(&ds, &opts.domains)?;
    let seq_len = seq_len_for(&ca, opts)?.min(seq_len_for(&cb, opts)?);
    let mut out = Vec::with_capacity(domains.len());
    for d in &domains {
        let windows = ValWindows::new(&ds, d, seq_len, opts.max_windows)?;
        let mut traces = Vec::with_capacity(2);
        for c in [&ca, &cb] {
            let ev = evaluate_domain(
                &c.model,
                &c.dir.display().to_string(),
                &windows,
                opts.batch_size,
                true,
                |x, y| progress(d, x, y),
            )?;
            traces.push(ev.trace.unwrap_or_default());
        }
        let layers = routing_change(&traces[0], &traces[1])?;
        out.push(DomainChange {
            domain: d.clone(),
            tokens: traces[0].num_tokens() as u64,
            layers,
        });
    }
    Ok(RoutingComparison {
        checkpoint_a: a.to_path_buf(),
        checkpoint_b: b.to_path_buf(),
        data: data.to_path_buf(),
        seq_len,
        domains: out,
    })
}
