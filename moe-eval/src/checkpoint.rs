//! Opening a checkpoint folder together with a dataset, refusing a dataset
//! made with another tokenizer.

use crate::error::{EvalError, Result};
use moe_data::tokenizer::{content_hash, hex};
use moe_data::Dataset;
use moe_model::Decoder;
use moe_tensor::Device;
use std::path::{Path, PathBuf};

/// The tokenizer file inside a checkpoint folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The folder.
    pub dir: PathBuf,
    /// The model (f32 parameters).
    pub model: Decoder,
    /// Content hash of the folder's `tokenizer.json`, when it has one.
    pub tokenizer_hash: Option<[u8; 32]>,
}

/// Loads the model folder `dir` (see `moe_model::load_model_dir`) and the
/// hash of its `tokenizer.json`, if any.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    if !dir.is_dir() {
        return Err(EvalError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint folder not found"),
        ));
    }
    let model = moe_model::load_model_dir(dir, device)?;
    let tok = dir.join(TOKENIZER_FILE);
    let tokenizer_hash = if tok.exists() {
        let bytes = std::fs::read(&tok).map_err(|e| EvalError::io(&tok, e))?;
        Some(content_hash(&bytes).map_err(|msg| EvalError::Json {
            path: tok.clone(),
            line: None,
            msg,
        })?)
    } else {
        None
    };
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        model,
        tokenizer_hash,
    })
}

/// Opens the dataset folder `data` for evaluating `ckpt`: its tokenizer must
/// be the checkpoint's (when the checkpoint has one) and its ids must fit the
/// model's vocabulary.
pub fn open_dataset_for(ckpt: &Checkpoint, data: &Path) -> Result<Dataset> {
    let ds = Dataset::open(data, None)?;
    if let Some(h) = ckpt.tokenizer_hash {
        if h != ds.tokenizer_hash() {
            return Err(EvalError::TokenizerMismatch {
                ckpt: ckpt.dir.clone(),
                data: data.to_path_buf(),
                ckpt_hash: hex(&h),
                data_hash: hex(&ds.tokenizer_hash()),
            });
        }
    }
    let vocab = ckpt.model.config().vocab_size;
    if ds.vocab_size() as usize > vocab {
        return Err(EvalError::bad(
            data.display().to_string(),
            format!(
                "the dataset's tokenizer has {} ids, more than the vocabulary of {} ({vocab})",
                ds.vocab_size(),
                ckpt.dir.display()
            ),
        ));
    }
    Ok(ds)
}

/// Checks that every name in `domains` is a domain of `ds`; an empty list
/// means all of them, in the dataset's order.
pub fn resolve_domains(ds: &Dataset, domains: &[String]) -> Result<Vec<String>> {
    let known: Vec<String> = ds.domains().keys().cloned().collect();
    if domains.is_empty() {
        return Ok(known);
    }
    for d in domains {
        if !known.contains(d) {
            return Err(EvalError::MissingDomain {
                name: d.clone(),
                place: ds.dir().display().to_string(),
                known: known.join(", "),
            });
        }
    }
    Ok(domains.to_vec())
}

/// The sequence length a checkpoint was trained with, read from the first
/// `seq_len` field found in its `trainer_state.json`; else `None`.
pub fn trained_seq_len(dir: &Path) -> Option<usize> {
    fn find(v: &serde_json::Value) -> Option<usize> {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(n) = m.get("seq_len").and_then(|x| x.as_u64()) {
                    return Some(n as usize);
                }
                m.values().find_map(find)
            }
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).ok()?;
    find(&serde_json::from_str(&text).ok()?)
}
