//! `manifest.json`: the table of contents of a dataset folder.

use crate::atomic::write_atomic;
use crate::error::{DataError, Result};
use crate::ingest::IngestStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Name of the manifest inside a dataset folder.
pub const MANIFEST: &str = "manifest.json";
/// Name of the copy of the tokenizer inside a dataset folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Value of [`Manifest::format`].
pub const FORMAT: &str = "moe-data";

/// A dataset folder's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `moe-data`.
    pub format: String,
    /// Shard format version.
    pub version: u32,
    /// The tokenizer every shard was made with.
    pub tokenizer: TokenizerEntry,
    /// Domains by name.
    pub domains: BTreeMap<String, DomainEntry>,
}

/// The dataset's tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerEntry {
    /// Hex SHA-256 of its canonical JSON.
    pub hash: String,
    /// One more than the largest id.
    pub vocab_size: u32,
    /// End-of-document id used as the packing separator.
    pub eod_id: u32,
    /// The end-of-document token's text.
    pub eod_token: String,
    /// File name of its copy in the folder.
    pub file: String,
}

/// One domain: its inputs and its two splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEntry {
    /// Input file names, as given.
    pub sources: Vec<String>,
    /// Seed of the train/validation split.
    pub seed: u64,
    /// Share of documents sent to validation.
    pub val_fraction: f64,
    /// Reading counts (documents, bytes, skipped).
    pub ingest: IngestStats,
    /// Training split.
    pub train: SplitEntry,
    /// Validation split.
    pub val: SplitEntry,
}

/// One split of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SplitEntry {
    /// Total tokens.
    pub tokens: u64,
    /// Total documents.
    pub docs: u64,
    /// Shards, in order.
    pub shards: Vec<ShardEntry>,
}

impl SplitEntry {
    /// Builds a split entry from its shards.
    pub fn from_shards(shards: Vec<ShardEntry>) -> Self {
        Self {
            tokens: shards.iter().map(|s| s.tokens).sum(),
            docs: shards.iter().map(|s| s.docs).sum(),
            shards,
        }
    }
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the domain's folder.
    pub file: String,
    /// Tokens in it.
    pub tokens: u64,
    /// Documents in it.
    pub docs: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
}

impl Manifest {
    /// An empty manifest for a tokenizer.
    pub fn new(tokenizer: TokenizerEntry) -> Self {
        Self {
            format: FORMAT.into(),
            version: crate::shard::format::VERSION,
            tokenizer,
            domains: BTreeMap::new(),
        }
    }

    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Err(DataError::Manifest {
                path,
                reason: "not found (is this a folder made by `moe prepare`?)".into(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| DataError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if m.format != FORMAT || m.version != crate::shard::format::VERSION {
            return Err(DataError::Manifest {
                path,
                reason: format!(
                    "format {} version {}, expected {FORMAT} version {}",
                    m.format,
                    m.version,
                    crate::shard::format::VERSION
                ),
            });
        }
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| DataError::Manifest {
            path: dir.join(MANIFEST),
            reason: e.to_string(),
        })?;
        write_atomic(&dir.join(MANIFEST), &json)
    }
}
