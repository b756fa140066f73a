//! `moe forward`: one forward (and optionally backward) pass of a model folder
//! on a batch of token ids, everything written to one safetensors file so it
//! can be compared with transformers.

use anyhow::{bail, Context, Result};
use clap::Args;
use moe_model::{load_model_dir, Decoder};
use moe_router::RouteMode;
use moe_tensor::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `moe forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Model folder: ours (moe_config.json + model.safetensors) or a
    /// transformers one (config.json + model*.safetensors) of Llama, Mixtral
    /// or Qwen2-MoE.
    #[arg(long)]
    pub model: PathBuf,
    /// JSON file holding one batch of token ids: a list of equally long
    /// lists of integers, e.g. [[1, 2, 3], [4, 5, 6]] (at least 2 per row).
    #[arg(long)]
    pub tokens: PathBuf,
    /// Output safetensors file (written atomically). It holds `logits`
    /// [B, T, V] f32; `loss`, the mean next-token cross-entropy with
    /// labels = inputs as transformers computes it; `total_loss`, what
    /// training differentiates (loss + aux coefficient · `aux_loss` + z
    /// coefficient · `z_loss`); `aux_loss` and `z_loss` for MoE models; per
    /// MoE layer `routing.{layer}.expert_ids` [B·T, k] I64 and
    /// `routing.{layer}.weights` [B·T, k] f32; with --grads,
    /// `grad.{name}` for every parameter.
    #[arg(long)]
    pub out: PathBuf,
    /// Also backpropagate `total_loss` and write every parameter's gradient
    /// under its transformers (in-memory) name, prefixed by `grad.`.
    #[arg(long)]
    pub grads: bool,
    /// Route as at inference (plain top-k for Sinkhorn routers, no load
    /// recording for aux-free biases) instead of as in training (the default,
    /// which is what transformers does for Mixtral and Qwen2-MoE).
    #[arg(long)]
    pub eval_routing: bool,
}

/// Reads a JSON list of equally long token-id lists into an I64 `[B, T]` tensor.
pub fn read_token_batch(path: &Path) -> Result<Tensor> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<Vec<i64>> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON list of token-id lists, e.g. [[1, 2, 3]]",
            path.display()
        )
    })?;
    let Some(first) = rows.first() else {
        bail!("{}: the batch is empty", path.display());
    };
    let t = first.len();
    if t == 0 {
        bail!("{}: row 0 has no tokens", path.display());
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != t) {
        bail!(
            "{}: row {i} has {} tokens but row 0 has {t}; every row must have the same length",
            path.display(),
            r.len()
        );
    }
    let b = rows.len();
    Ok(Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu)?)
}

/// Loads a model folder with a message naming it.
pub fn load_model(dir: &Path) -> Result<Decoder> {
    load_model_dir(dir, &Device::Cpu).with_context(|| format!("loading the model folder {}", dir.display()))
}

/// Runs `moe forward`.
pub fn run(a: ForwardArgs) -> Result<()> {
    let mut model = load_model(&a.model)?;
    let ids = read_token_batch(&a.tokens)?;
    if a.eval_routing {
        model.set_route_mode(RouteMode::Eval);
    }
    let compute = || -> Result<_> {
        let out = model
            .loss(&ids)
            .with_context(|| format!("forward pass on {}", a.tokens.display()))?;
        if a.grads {
            model.params().zero_grad();
            out.total.backward().context("backward pass")?;
        }
        Ok(out)
    };
    let out = if a.grads {
        compute()?
    } else {
        moe_tensor::no_grad(compute)?
    };
    // The loss fuses the LM head (no logits kept): the logits come from a
    // forward pass of their own.
    let logits = moe_tensor::no_grad(|| model.forward(&ids))
        .with_context(|| format!("forward pass on {}", a.tokens.display()))?
        .logits;
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    tensors.insert("logits".into(), logits);
    tensors.insert("loss".into(), out.ce.detach());
    tensors.insert("total_loss".into(), out.total.detach());
    if let Some(aux) = &out.aux {
        tensors.insert("aux_loss".into(), aux.detach());
    }
    if let Some(z) = &out.z {
        tensors.insert("z_loss".into(), z.detach());
    }
    for r in &out.routing {
        let d = &r.decision;
        tensors.insert(
            format!("routing.{}.expert_ids", r.layer),
            d.topk_ids_NK.to_dtype(moe_tensor::DType::I64)?,
        );
        tensors.insert(format!("routing.{}.weights", r.layer), d.weights_NK.detach());
    }
    if a.grads {
        for (name, p) in model.params().iter() {
            // A parameter the loss does not reach has a zero gradient.
            let g = match p.grad() {
                Some(g) => g,
                None => p.zeros_like()?,
            };
            tensors.insert(format!("grad.{name}"), g);
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    moe_tensor::safetensors::save(&a.out, tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(&meta))
        .with_context(|| format!("writing {}", a.out.display()))?;
    let ce = out.ce.to_scalar_f64()?;
    let (b, t) = (ids.dims()[0], ids.dims()[1]);
    match &out.aux {
        Some(aux) => println!(
            "B={b} T={t} loss {ce:.6} aux_loss {:.6} total {:.6} -> {} ({} tensors)",
            aux.to_scalar_f64()?,
            out.total.to_scalar_f64()?,
            a.out.display(),
            tensors.len()
        ),
        None => println!(
            "B={b} T={t} loss {ce:.6} -> {} ({} tensors)",
            a.out.display(),
            tensors.len()
        ),
    }
    Ok(())
}
