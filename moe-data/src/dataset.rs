//! A prepared dataset folder, opened for reading: domains, their train and
//! validation splits, and documents addressed by a split-wide index.

use crate::error::{DataError, Result};
use crate::manifest::{Manifest, SplitEntry, TOKENIZER_FILE};
use crate::shard::writer::file_sha256;
use crate::shard::{Shard, Tokens};
use crate::tokenizer::{hex, Tokenizer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shards of one split, with documents numbered across them.
#[derive(Debug)]
pub struct Split {
    shards: Vec<Shard>,
    /// `doc_starts[s]` = index of shard `s`'s first document; one extra entry.
    doc_starts: Vec<usize>,
    n_tokens: u64,
}

impl Split {
    fn open(dir: &Path, entry: &SplitEntry, hash: &[u8; 32]) -> Result<Self> {
        let mut shards = Vec::with_capacity(entry.shards.len());
        let mut doc_starts = vec![0];
        for s in &entry.shards {
            let path = dir.join(&s.file);
            let shard = Shard::open(&path, Some(hash))?;
            if shard.n_tokens() as u64 != s.tokens || shard.n_docs() as u64 != s.docs {
                return Err(DataError::CorruptShard {
                    path,
                    reason: format!(
                        "holds {} tokens / {} documents, the manifest says {} / {}",
                        shard.n_tokens(),
                        shard.n_docs(),
                        s.tokens,
                        s.docs
                    ),
                });
            }
            doc_starts.push(doc_starts.last().copied().unwrap_or(0) + shard.n_docs());
            shards.push(shard);
        }
        Ok(Self {
            shards,
            doc_starts,
            n_tokens: entry.tokens,
        })
    }

    /// Number of documents.
    pub fn n_docs(&self) -> usize {
        *self.doc_starts.last().unwrap_or(&0)
    }

    /// Number of tokens.
    pub fn n_tokens(&self) -> u64 {
        self.n_tokens
    }

    /// The shards, in order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Document `doc` (split-wide index) as borrowed ids.
    /// Panics if `doc >= n_docs()`.
    pub fn doc(&self, doc: usize) -> (Tokens<'_>, std::ops::Range<usize>) {
        let s = self.doc_starts.partition_point(|&start| start <= doc) - 1;
        let shard = &self.shards[s];
        (shard.tokens(), shard.doc_range(doc - self.doc_starts[s]))
    }

    /// Number of tokens of document `doc`.
    pub fn doc_len(&self, doc: usize) -> usize {
        self.doc(doc).1.len()
    }

    /// Document `doc` as a fresh vector.
    pub fn doc_tokens(&self, doc: usize) -> Vec<u32> {
        let (t, r) = self.doc(doc);
        let mut out = Vec::with_capacity(r.len());
        t.extend_into(r, &mut out);
        out
    }
}

/// One domain of a dataset.
#[derive(Debug)]
pub struct Domain {
    /// Training documents.
    pub train: Split,
    /// Validation documents.
    pub val: Split,
}

/// An open dataset folder.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    hash: [u8; 32],
    domains: BTreeMap<String, Domain>,
}

impl Dataset {
    /// Opens `dir`, checking every shard's header, size, index and
    /// tokenizer hash. With `expected_tokenizer` (a model's tokenizer
    /// hash), a dataset made with another tokenizer is refused.
    pub fn open(dir: &Path, expected_tokenizer: Option<&[u8; 32]>) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let hash = parse_hash(&manifest.tokenizer.hash).ok_or_else(|| DataError::Manifest {
            path: dir.join(crate::manifest::MANIFEST),
            reason: format!("tokenizer hash `{}` is not 64 hex digits", manifest.tokenizer.hash),
        })?;
        if let Some(expected) = expected_tokenizer {
            if *expected != hash {
                return Err(DataError::TokenizerMismatch {
                    path: dir.join(crate::manifest::MANIFEST),
                    expected: hex(expected),
                    found: manifest.tokenizer.hash.clone(),
                });
            }
        }
        let mut domains = BTreeMap::new();
        for (name, d) in &manifest.domains {
            let ddir = dir.join(name);
            let train = Split::open(&ddir, &d.train, &hash)?;
            let val = Split::open(&ddir, &d.val, &hash)?;
            domains.insert(name.clone(), Domain { train, val });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            hash,
            domains,
        })
    }

    /// Re-hashes every shard against the manifest and scans every id (reads
    /// all data; `open` only checks structure).
    pub fn verify(&self) -> Result<()> {
        for (name, d) in &self.manifest.domains {
            for (entry, split) in [(&d.train, &self.domains[name].train), (&d.val, &self.domains[name].val)] {
                for (s, shard) in entry.shards.iter().zip(split.shards()) {
                    let actual = file_sha256(shard.path())?;
                    if actual != s.sha256 {
                        return Err(DataError::ChecksumMismatch {
                            path: shard.path().to_path_buf(),
                            expected: s.sha256.clone(),
                            actual,
                        });
                    }
                    shard.check_ids()?;
                }
            }
        }
        Ok(())
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Tokenizer hash of every shard.
    pub fn tokenizer_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// End-of-document separator id.
    pub fn eod_id(&self) -> u32 {
        self.manifest.tokenizer.eod_id
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> u32 {
        self.manifest.tokenizer.vocab_size
    }

    /// Domains by name.
    pub fn domains(&self) -> &BTreeMap<String, Domain> {
        &self.domains
    }

    /// A domain, or an error listing the known ones.
    pub fn domain(&self, name: &str) -> Result<&Domain> {
        self.domains.get(name).ok_or_else(|| DataError::Domain {
            name: name.to_string(),
            reason: format!(
                "not in {} (it has: {})",
                self.dir.display(),
                self.domains.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// Loads the copy of the tokenizer kept in the folder.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let path = self.dir.join(TOKENIZER_FILE);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let t = Tokenizer::from_json_bytes(bytes, &path, Some(&self.manifest.tokenizer.eod_token))?;
        if t.hash() != self.hash {
            return Err(DataError::TokenizerMismatch {
                path,
                expected: self.manifest.tokenizer.hash.clone(),
                found: t.hash_hex(),
            });
        }
        Ok(t)
    }
}

/// Parses 64 hex digits.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
