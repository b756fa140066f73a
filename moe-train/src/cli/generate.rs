//! `moe generate`: continue token ids or a text prompt with a model folder
//! (KV-cached; greedy, or temperature and top-p sampling).

use super::forward::{load_model, read_token_batch};
use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use moe_data::tokenizer::Tokenizer;
use moe_model::{generate, Sampling};
use moe_tensor::init::Rng;
use moe_tensor::{Device, Tensor};
use std::path::PathBuf;

/// `moe generate`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("prompt_source").required(true).args(["prompt_ids", "tokens", "prompt"])))]
pub struct GenerateArgs {
    /// Model folder (ours or a transformers Llama/Mixtral/Qwen2-MoE one).
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt token ids, comma-separated (one sequence), e.g. 1,17,4.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<i64>>,
    /// JSON file with a batch of prompts: a list of equally long token-id lists.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Prompt text, encoded with the tokenizer (default MODEL/tokenizer.json);
    /// the output is decoded with it too.
    #[arg(long)]
    pub prompt: Option<String>,
    /// tokenizer.json to encode --prompt and decode the output with
    /// (default: MODEL/tokenizer.json when it exists).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The tokenizer's end-of-document token, when it has none of the usual ones.
    #[arg(long)]
    pub eod_token: Option<String>,
    /// New tokens to generate per sequence.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 (the default) picks the most likely token.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `moe generate`: one JSON line per sequence on stdout with the prompt
/// length, all token ids, the new ids and, with a tokenizer, the new text.
pub fn run(a: GenerateArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let tok_path = a.tokenizer.clone().unwrap_or_else(|| a.model.join("tokenizer.json"));
    // A tokenizer asked for (--tokenizer, --prompt) must load; one merely
    // found in the model folder only adds decoded text to the output.
    let explicit = a.tokenizer.is_some() || a.prompt.is_some();
    let tokenizer = if tok_path.exists() {
        match Tokenizer::from_file(&tok_path, a.eod_token.as_deref()) {
            Ok(t) => Some(t),
            Err(e) if !explicit => {
                eprintln!("warning: not decoding text: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else if explicit {
        bail!(
            "{} does not exist: --prompt needs a tokenizer (put tokenizer.json in the model folder or pass --tokenizer)",
            tok_path.display()
        );
    } else {
        None
    };
    let prompt = match (&a.prompt_ids, &a.tokens, &a.prompt) {
        (Some(ids), _, _) => {
            if ids.is_empty() {
                bail!("--prompt-ids is empty");
            }
            Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu)?
        }
        (_, Some(path), _) => read_token_batch(path)?,
        (_, _, Some(text)) => {
            let tk = tokenizer.as_ref().context("--prompt needs a tokenizer")?;
            let ids: Vec<i64> = tk.encode(text)?.into_iter().map(i64::from).collect();
            if ids.is_empty() {
                bail!("the prompt {text:?} encodes to no tokens");
            }
            Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu)?
        }
        _ => bail!("give one of --prompt-ids, --tokens or --prompt"),
    };
    let sampling = if a.temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Sample {
            temperature: a.temperature,
            top_p: a.top_p,
        }
    };
    let mut rng = Rng::seed(a.seed);
    let out = generate(&model, &prompt, a.max_new_tokens, sampling, &mut rng).context("generating")?;
    let (p, len) = (prompt.dims()[1], out.dims()[1]);
    for row in out.to_vec::<i64>()?.chunks(len) {
        let new = &row[p..];
        let mut line = serde_json::json!({
            "prompt_len": p,
            "ids": row,
            "new_ids": new,
        });
        if let Some(tk) = &tokenizer {
            let decode = |ids: &[i64]| -> Result<String> {
                let ids: Vec<u32> = ids
                    .iter()
                    .map(|&i| u32::try_from(i).context("negative token id"))
                    .collect::<Result<_>>()?;
                Ok(tk.decode(&ids)?)
            };
            line["text"] = decode(row)?.into();
            line["new_text"] = decode(new)?.into();
        }
        println!("{line}");
    }
    Ok(())
}
