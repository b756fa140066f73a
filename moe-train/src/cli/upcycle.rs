//! `moe upcycle`: an MoE checkpoint initialised from a dense one (naive,
//! Drop-Upcycling or granular upcycling; see `moe_model::upcycle`).

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use moe_model::upcycle::{output_match, target_config, OutputMatch, SharedInit};
use moe_model::{load_model_dir, save_model_dir, upcycle, UpcycleMethod, UpcycleOptions};
use moe_tensor::Device;
use std::path::{Path, PathBuf};

/// How the experts are made from the dense FFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Every expert a copy of the dense FFN.
    Naive,
    /// Drop-Upcycling: copies with a share --ratio of each expert's
    /// intermediate neurons re-initialised (mean/std of the replaced weights).
    Drop,
    /// Megatron-Core granular upcycling: narrower experts as slices of the
    /// dense FFN, outputs rescaled to match the dense model.
    Granular,
}

/// Where a granular target's shared expert comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SharedFrom {
    /// The first shared_intermediate_size neurons of the dense FFN; routed
    /// experts slice the rest.
    Slice,
    /// The whole dense FFN, output halved (routed experts halved too).
    Whole,
}

/// `moe upcycle`.
#[derive(Debug, Args)]
pub struct UpcycleArgs {
    /// Dense source: a moe-cpt model folder or an HF LlamaForCausalLM folder.
    #[arg(long)]
    pub from: PathBuf,
    /// Target MoE config: a TOML file holding a model config (a .json file
    /// works too) or a preset name (debug-switch, paper-granular, ...). Every
    /// non-FFN field must equal the source's.
    #[arg(long)]
    pub config: String,
    /// Upcycling method.
    #[arg(long, value_enum)]
    pub method: Method,
    /// drop only: share r of each expert's intermediate dimension to
    /// re-initialise, in [0, 1] (default 0.5, the paper's; 0 = naive).
    #[arg(long)]
    pub ratio: Option<f64>,
    /// drop only: draw one index set per matrix (the reference code) instead
    /// of one per expert shared by gate, up and down (the paper's text).
    #[arg(long)]
    pub per_matrix: bool,
    /// Std of the zero-mean normal the router weights start from (0 gives a
    /// uniform router).
    #[arg(long, default_value_t = 0.02)]
    pub router_init: f64,
    /// granular only: where the shared expert comes from.
    #[arg(long, value_enum, default_value_t = SharedFrom::Slice)]
    pub shared_from: SharedFrom,
    /// Seed of the router, the dropped index sets and the new values.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output model folder (moe_config.json + model.safetensors, plus an HF
    /// config.json when Mixtral or Qwen2-MoE can express the model).
    #[arg(long)]
    pub out: PathBuf,
    /// Write into --out even if it already holds files.
    #[arg(long)]
    pub overwrite: bool,
}

/// The library method and options for `a`, rejecting flags that do not apply.
pub fn method_and_options(a: &UpcycleArgs) -> Result<(UpcycleMethod, UpcycleOptions)> {
    if a.method != Method::Drop && (a.ratio.is_some() || a.per_matrix) {
        bail!("--ratio and --per-matrix apply to --method drop only");
    }
    if a.method != Method::Granular && a.shared_from != SharedFrom::Slice {
        bail!("--shared-from applies to --method granular only");
    }
    let method = match a.method {
        Method::Naive => UpcycleMethod::Naive,
        Method::Drop => UpcycleMethod::Drop {
            ratio: a.ratio.unwrap_or(0.5),
            per_matrix: a.per_matrix,
        },
        Method::Granular => UpcycleMethod::Granular,
    };
    let opts = UpcycleOptions {
        router_init_std: a.router_init,
        seed: a.seed,
        shared_init: match a.shared_from {
            SharedFrom::Slice => SharedInit::Slice,
            SharedFrom::Whole => SharedInit::WholeFfn,
        },
    };
    Ok((method, opts))
}

/// Tokenizer (and generation) files an upcycled model keeps from its source,
/// so `moe train --init-from` can check the dataset's tokenizer against it.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
];

/// Copies the [`TOKENIZER_FILES`] present in `from` into `out` (each through
/// a temporary file and a rename); returns the files written.
pub fn copy_tokenizer_files(from: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if !src.is_file() {
            continue;
        }
        let (dst, tmp) = (out.join(name), out.join(format!(".{name}.tmp")));
        std::fs::copy(&src, &tmp).with_context(|| format!("copying {} to {}", src.display(), tmp.display()))?;
        std::fs::rename(&tmp, &dst).with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))?;
        written.push(dst);
    }
    Ok(written)
}

/// Runs `moe upcycle`.
pub fn run(a: UpcycleArgs) -> Result<()> {
    let (method, opts) = method_and_options(&a)?;
    if !a.overwrite && a.out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{}: already holds files (pass --overwrite to write into it)",
            a.out.display()
        );
    }
    let target = target_config(&a.config).with_context(|| format!("target config {}", a.config))?;
    let dense = load_model_dir(&a.from, &Device::Cpu).with_context(|| format!("loading {}", a.from.display()))?;
    let model = upcycle(&dense, &target, &method, &opts)
        .with_context(|| format!("upcycling {} into {} ({:?})", a.from.display(), a.config, a.method))?;
    let mut files = save_model_dir(&model, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    files.extend(copy_tokenizer_files(&a.from, &a.out)?);
    // Provenance: lets `moe train --init-from` place the MoE after the dense
    // model's tokens, and tells a reader how the folder was made.
    let provenance = serde_json::json!({
        "source": std::path::absolute(&a.from)?,
        "method": format!("{method:?}"),
        "router_init_std": opts.router_init_std,
        "seed": opts.seed,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let prov_path = a.out.join(moe_train::trainer::UPCYCLE_FILE);
    std::fs::write(&prov_path, serde_json::to_string_pretty(&provenance)?)
        .with_context(|| format!("writing {}", prov_path.display()))?;
    files.push(prov_path);
    let (src, dst) = (dense.config().param_count(), target.param_count());
    let m = target
        .moe
        .as_ref()
        .map(|m| (m.num_experts(), m.top_k()))
        .unwrap_or_default();
    println!(
        "upcycled {} ({} params) into {} experts, top-{} ({} total, {} active) with {:?}",
        a.from.display(),
        src.total,
        m.0,
        m.1,
        dst.total,
        dst.active,
        method
    );
    match output_match(&target, &method, &opts) {
        OutputMatch::Exact => println!("output at initialisation: equal to the dense model's (up to float rounding)"),
        OutputMatch::No { reason } => println!("output at initialisation: differs from the dense model's: {reason}"),
    }
    let hf = files.iter().any(|f| f.ends_with(moe_model::hf::HF_CONFIG_FILE));
    println!(
        "wrote {} ({} files{})",
        a.out.display(),
        files.len(),
        if hf {
            ", HF config.json included"
        } else {
            "; no HF class expresses this config, moe-cpt format only"
        }
    );
    Ok(())
}
