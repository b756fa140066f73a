//! `moe eval`: validation loss (and routing metrics) of a checkpoint, or the
//! routing change between two checkpoints, written as JSON.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use moe_eval::eval::{compare_checkpoints, evaluate_checkpoint, EvalOptions};
use moe_tensor::Device;
use std::path::PathBuf;

/// `moe eval`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moe eval --ckpt run/checkpoints/step-00001000 --data data --domain english --routing --out eval.json\n  moe eval --compare runA/checkpoints/step-00001000 runB/checkpoints/step-00002000 --data data --out change.json"
)]
pub struct EvalArgs {
    /// Checkpoint folder to evaluate (moe_config.json or HF config.json + model.safetensors).
    #[arg(long, conflicts_with = "compare", required_unless_present = "compare")]
    pub ckpt: Option<PathBuf>,
    /// Two checkpoint folders: report how much the routing changed from the
    /// first to the second on identical tokens (OLMoE router saturation).
    #[arg(long, num_args = 2, value_names = ["CKPT_A", "CKPT_B"])]
    pub compare: Option<Vec<PathBuf>>,
    /// Dataset folder (made by `moe prepare` / `moe data builtin` with the checkpoint's tokenizer).
    #[arg(long)]
    pub data: PathBuf,
    /// Domain to evaluate (repeat for several); default: every domain of the dataset.
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Also measure routing: per-expert load, dead experts, load entropy, MRI,
    /// vocabulary specialisation and co-activation (MoE checkpoints only).
    #[arg(long)]
    pub routing: bool,
    /// Output JSON file.
    #[arg(long)]
    pub out: PathBuf,
    /// Window length T (windows hold T + 1 tokens); default: the checkpoint's
    /// training sequence length, else max_position_embeddings - 1.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// At most this many validation windows per domain.
    #[arg(long, default_value_t = 256)]
    pub max_windows: usize,
    /// Windows per forward pass; MRI is taken per batch of this many windows.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// MoE layer for vocabulary specialisation and co-activation (repeat for
    /// several); default: every MoE layer.
    #[arg(long = "layer")]
    pub layers: Vec<usize>,
    /// Tokens listed per expert in the vocabulary specialisation.
    #[arg(long, default_value_t = 8)]
    pub vocab_top_n: usize,
    /// Token ids seen fewer times are left out of the specialisation lists.
    #[arg(long, default_value_t = 5)]
    pub vocab_min_count: u64,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Parses `cpu`, `cuda` or `cuda:N` (and `gpu`, as `cuda`).
pub fn parse_device(s: &str) -> Result<Device> {
    let name = if s == "gpu" { "cuda" } else { s };
    name.parse().with_context(|| format!("--device {s}"))
}

fn progress_bar() -> ProgressBar {
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} windows")
            .expect("valid template"),
    )
}

/// Runs `moe eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    let opts = EvalOptions {
        domains: a.domains.clone(),
        routing: a.routing,
        seq_len: a.seq_len,
        max_windows: a.max_windows,
        batch_size: a.batch_size,
        detail_layers: a.layers.clone(),
        vocab_top_n: a.vocab_top_n,
        vocab_min_count: a.vocab_min_count,
        device: parse_device(&a.device)?,
    };
    let bar = progress_bar();
    let mut tick = |domain: &str, done: usize, total: usize| {
        bar.set_prefix(domain.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    if let Some(pair) = &a.compare {
        let cmp = compare_checkpoints(&pair[0], &pair[1], &a.data, &opts, &mut tick)?;
        bar.finish_and_clear();
        moe_eval::io::write_json(&a.out, &cmp)?;
        for d in &cmp.domains {
            for l in &d.layers {
                println!(
                    "{:<12} layer {:>2}: routing change {:.4} (saturation {:.4}, top-1 agreement {:.4}) over {} tokens",
                    d.domain, l.layer, l.change, l.saturation, l.top1_agreement, l.tokens
                );
            }
        }
    } else {
        let ckpt = a.ckpt.as_ref().context("--ckpt or --compare is required")?;
        let ev = evaluate_checkpoint(ckpt, &a.data, &opts, &mut tick)?;
        bar.finish_and_clear();
        moe_eval::io::write_json(&a.out, &ev)?;
        for d in &ev.domains {
            println!(
                "{:<12} loss {:.4}  ppl {:.2}  ({} tokens)",
                d.loss.domain, d.loss.loss, d.loss.ppl, d.loss.tokens
            );
            for l in d.routing.iter().flat_map(|r| &r.layers) {
                println!(
                    "{:<12} layer {:>2}: MRI {:.3}  load min/max {:.3}/{:.3}  dead {:.2}  entropy {:.3}",
                    "", l.layer, l.mri_median, l.min_share, l.max_share, l.dead_fraction, l.load_entropy_norm
                );
            }
        }
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
