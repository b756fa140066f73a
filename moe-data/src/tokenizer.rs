//! Hugging Face tokenizers: loading any `tokenizer.json`, a content hash that
//! ties shards to the tokenizer that made them, and byte-level BPE training.

use crate::error::{DataError, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// Names tried, in order, for the end-of-document token when none is given.
pub const EOD_CANDIDATES: [&str; 4] = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"];

/// The end-of-document token that [`train_bpe`] adds by default.
pub const DEFAULT_EOD: &str = "<|endoftext|>";

/// A loaded tokenizer with its content hash and end-of-document id.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    json: Vec<u8>,
    hash: [u8; 32],
    eod_id: u32,
    eod_token: String,
    vocab_size: u32,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("hash", &self.hash_hex())
            .field("eod_id", &self.eod_id)
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`. `eod_token` names the end-of-document token;
    /// `None` tries [`EOD_CANDIDATES`].
    pub fn from_file(path: &Path, eod_token: Option<&str>) -> Result<Self> {
        if !path.exists() {
            return Err(DataError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_json_bytes(bytes, path, eod_token)
    }

    /// Loads a tokenizer from the bytes of a `tokenizer.json`; `origin` is
    /// only used in error messages.
    pub fn from_json_bytes(json: Vec<u8>, origin: &Path, eod_token: Option<&str>) -> Result<Self> {
        let err = |reason: String| DataError::Tokenizer {
            path: origin.to_path_buf(),
            reason,
        };
        let inner = tokenizers::Tokenizer::from_bytes(&json).map_err(|e| err(e.to_string()))?;
        let hash = content_hash(&json).map_err(err)?;
        let (eod_token, eod_id) = match eod_token {
            Some(t) => (
                t.to_string(),
                inner
                    .token_to_id(t)
                    .ok_or_else(|| err(format!("has no token `{t}` to use as end of document")))?,
            ),
            None => EOD_CANDIDATES
                .iter()
                .find_map(|t| inner.token_to_id(t).map(|id| (t.to_string(), id)))
                .ok_or_else(|| {
                    err(format!(
                        "has none of the end-of-document tokens {EOD_CANDIDATES:?}; name one with --eod-token"
                    ))
                })?,
        };
        let max_id = inner.get_vocab(true).values().copied().max().unwrap_or(0);
        let vocab_size = max_id
            .checked_add(1)
            .ok_or_else(|| err("token id u32::MAX is not supported".into()))?;
        Ok(Self {
            inner,
            json,
            hash,
            eod_id,
            eod_token,
            vocab_size,
            path: origin.to_path_buf(),
        })
    }

    /// Token ids of `text`, without special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| self.error(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| self.error(e.to_string()))
    }

    /// SHA-256 of the tokenizer's canonical JSON (keys sorted, no whitespace):
    /// the same for any formatting of the same tokenizer.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// [`Tokenizer::hash`] as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex(&self.hash)
    }

    /// Id of the end-of-document token.
    pub fn eod_id(&self) -> u32 {
        self.eod_id
    }

    /// Text of the end-of-document token.
    pub fn eod_token(&self) -> &str {
        &self.eod_token
    }

    /// One more than the largest token id (added tokens included).
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// The original `tokenizer.json` bytes.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// Where the tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn error(&self, reason: String) -> DataError {
        DataError::Tokenizer {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Options for [`train_bpe`].
#[derive(Debug, Clone)]
pub struct BpeOptions {
    /// Target vocabulary size, special tokens and the 256 byte tokens included.
    pub vocab_size: usize,
    /// Pairs seen fewer times are never merged.
    pub min_frequency: u64,
    /// Special tokens, the end-of-document token first.
    pub special_tokens: Vec<String>,
}

impl Default for BpeOptions {
    fn default() -> Self {
        Self {
            vocab_size: 8192,
            min_frequency: 2,
            special_tokens: vec![DEFAULT_EOD.to_string()],
        }
    }
}

/// Trains a GPT-2 style byte-level BPE (no normaliser, no prefix space, so
/// decoding gives the input back byte for byte) on `docs` and returns its
/// `tokenizer.json` text.
pub fn train_bpe<I, S>(docs: I, opts: &BpeOptions) -> Result<String>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let err = |reason: String| DataError::Tokenizer {
        path: PathBuf::from("<training>"),
        reason,
    };
    let min_vocab = 256 + opts.special_tokens.len();
    if opts.vocab_size < min_vocab {
        return Err(DataError::invalid(
            "vocab size",
            format!(
                "{} is below 256 byte tokens + {} special tokens",
                opts.vocab_size,
                opts.special_tokens.len()
            ),
        ));
    }
    let specials: Vec<AddedToken> = opts
        .special_tokens
        .iter()
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(opts.vocab_size)
        .min_frequency(opts.min_frequency)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let byte_level = ByteLevel::new(false, true, true);
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(byte_level))
        .with_decoder(Some(byte_level))
        .with_post_processor(Some(byte_level));
    tok.train(&mut trainer, docs).map_err(|e| err(e.to_string()))?;
    tok.to_string(true).map_err(|e| err(e.to_string()))
}

/// SHA-256 of the canonical form of a JSON document.
pub fn content_hash(json: &[u8]) -> std::result::Result<[u8; 32], String> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut canon = String::with_capacity(json.len());
    write_canonical(&value, &mut canon);
    Ok(Sha256::digest(canon.as_bytes()).into())
}

/// Sorted keys, no whitespace; independent of serde_json's map features.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        (0..200)
            .map(|i| format!("The cat {i} sat on the mat. Der Hund läuft {i}. fn main() {{}}"))
            .collect()
    }

    #[test]
    fn trained_tokenizer_round_trips_and_hash_ignores_formatting() {
        let json = train_bpe(
            corpus().into_iter(),
            &BpeOptions {
                vocab_size: 400,
                ..Default::default()
            },
        )
        .unwrap();
        let tok = Tokenizer::from_json_bytes(json.clone().into_bytes(), Path::new("t.json"), None).unwrap();
        assert_eq!(tok.eod_id(), 0, "first special token gets id 0");
        let text = "  Der Hund läuft 12.\n\tfn main() {} émoji 🦀";
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
        let compact = serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(&json).unwrap()).unwrap();
        assert_ne!(compact, json.as_bytes());
        assert_eq!(content_hash(&compact).unwrap(), tok.hash());
    }

    #[test]
    fn too_small_vocab_and_unknown_eod_are_errors() {
        let e = train_bpe(
            corpus().into_iter(),
            &BpeOptions {
                vocab_size: 100,
                ..Default::default()
            },
        );
        assert!(e.unwrap_err().to_string().contains("vocab size"));
        let json = train_bpe(
            corpus().into_iter(),
            &BpeOptions {
                vocab_size: 300,
                ..Default::default()
            },
        )
        .unwrap();
        let e = Tokenizer::from_json_bytes(json.into_bytes(), Path::new("t.json"), Some("<nope>")).unwrap_err();
        assert!(e.to_string().contains("<nope>"), "{e}");
    }

    /// A tokenizer.json in Llama-3's layout (Split with its regex, then
    /// ByteLevel without regex, `<|end_of_text|>`) loads and round-trips.
    #[test]
    fn llama3_style_tokenizer_loads_and_round_trips() {
        let opts = BpeOptions {
            vocab_size: 400,
            special_tokens: vec!["<|begin_of_text|>".into(), "<|end_of_text|>".into()],
            ..Default::default()
        };
        let json = train_bpe(corpus().into_iter(), &opts).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let pattern = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        v["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]});
        let tok = Tokenizer::from_json_bytes(v.to_string().into_bytes(), Path::new("llama3.json"), None).unwrap();
        assert_eq!((tok.eod_token(), tok.eod_id()), ("<|end_of_text|>", 1));
        let text = "It's 12345 cats' DON'T\r\n\n  über  🦀 <|end_of_text|>";
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
        assert!(ids.contains(&1), "special token matched inside text");
    }
}
