//! The training sampler: [B, T + 1] windows from a mixture of domains.
//!
//! - Rows: each row comes from one domain. Row domains follow the mixture
//!   deterministically: row n goes to the domain with the largest deficit
//!   `w_d · (n + 1) − rows_d` (ties to the first name), so after any number
//!   of rows N, every domain has served `w_d · N` rows within less than one
//!   row, and each batch holds its share of replay (as in the paper, where
//!   replay takes a share of every CPT batch).
//! - Packing: a domain's documents are read in a seeded per-epoch
//!   permutation, each followed by the end-of-document id, as one endless
//!   stream; a row is the next T + 1 stream tokens, and the stream then
//!   advances by T, so every token is a prediction target exactly once.
//!   When a domain runs out it reshuffles (a new permutation) and counts an
//!   epoch.
//! - Resume: [`Sampler::state`] is a small value (positions, counters,
//!   config); [`Sampler::from_state`] rebuilds the permutations from the
//!   seed and gives exactly the batches that would have followed.

mod cursor;
mod val;

pub use cursor::permutation;
pub use val::ValWindows;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::mixture::Mixture;
use crate::tokenizer::hex;
use cursor::Cursor;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Batch shape and seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Rows per batch (B).
    pub batch_size: usize,
    /// Sequence length (T); rows hold T + 1 tokens.
    pub seq_len: usize,
    /// Seed of the document orders.
    pub seed: u64,
}

/// A batch of token windows, row-major [B, T + 1].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Token ids, `batch_size * (seq_len + 1)` of them.
    pub tokens: Vec<u32>,
    /// Index into the mixture's entries of each row's domain.
    pub domains: Vec<u16>,
    /// B.
    pub batch_size: usize,
    /// T.
    pub seq_len: usize,
}

impl Batch {
    /// Row `i`: T + 1 tokens.
    pub fn row(&self, i: usize) -> &[u32] {
        let w = self.seq_len + 1;
        &self.tokens[i * w..(i + 1) * w]
    }

    /// The tokens as i64 (for frameworks that index with i64).
    pub fn to_i64(&self) -> Vec<i64> {
        self.tokens.iter().map(|&t| t as i64).collect()
    }
}

/// Counters of one domain, for logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainState {
    /// Domain name.
    pub name: String,
    /// Training documents in the domain (checked on restore).
    pub train_docs: u64,
    /// Completed epochs.
    pub epoch: u64,
    /// Position in the epoch's permutation.
    pub doc_pos: u64,
    /// Position in the current document (its length = the separator).
    pub tok_pos: u64,
    /// Tokens served (T per row).
    pub tokens_served: u64,
    /// Rows served.
    pub rows: u64,
}

/// Everything needed to resume a sampler exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerState {
    /// State format version.
    pub version: u32,
    /// Batch shape and seed.
    pub config: SamplerConfig,
    /// The mixture.
    pub mixture: Mixture,
    /// Tokenizer hash of the dataset (checked on restore).
    pub tokenizer_hash: String,
    /// Rows served in total.
    pub rows_total: u64,
    /// Per domain, in mixture order.
    pub domains: Vec<DomainState>,
}

const STATE_VERSION: u32 = 1;

/// Draws [B, T + 1] batches from a dataset's training splits.
#[derive(Debug)]
pub struct Sampler {
    dataset: Arc<Dataset>,
    mixture: Mixture,
    config: SamplerConfig,
    cursors: Vec<Cursor>,
    rows_total: u64,
}

impl Sampler {
    /// A sampler at the start of every domain's stream.
    pub fn new(dataset: Arc<Dataset>, mixture: Mixture, config: SamplerConfig) -> Result<Self> {
        if config.batch_size == 0 || config.seq_len == 0 {
            return Err(DataError::invalid(
                "batch shape",
                format!("{config:?}: batch size and sequence length must be > 0"),
            ));
        }
        if mixture.len() > u16::MAX as usize {
            return Err(DataError::invalid("mixture", "more than 65535 domains"));
        }
        let mut cursors = Vec::with_capacity(mixture.len());
        for (name, _) in mixture.entries() {
            let n = dataset.domain(name)?.train.n_docs();
            if n == 0 {
                return Err(DataError::Domain {
                    name: name.clone(),
                    reason: "has no training documents".into(),
                });
            }
            if n > u32::MAX as usize {
                return Err(DataError::Domain {
                    name: name.clone(),
                    reason: format!("{n} training documents; at most 2^32 - 1 are supported"),
                });
            }
            cursors.push(Cursor::new(name, config.seed, n));
        }
        Ok(Self {
            dataset,
            mixture,
            config,
            cursors,
            rows_total: 0,
        })
    }

    /// The next batch.
    pub fn next_batch(&mut self) -> Batch {
        let mut b = Batch::default();
        self.next_batch_into(&mut b);
        b
    }

    /// The next batch, reusing `batch`'s buffers.
    pub fn next_batch_into(&mut self, batch: &mut Batch) {
        let (bs, t) = (self.config.batch_size, self.config.seq_len);
        batch.tokens.clear();
        batch.tokens.reserve(bs * (t + 1));
        batch.domains.clear();
        batch.batch_size = bs;
        batch.seq_len = t;
        let eod = self.dataset.eod_id();
        for _ in 0..bs {
            let d = self.pick_domain();
            let cur = &mut self.cursors[d];
            let split = &self.dataset.domains()[&cur.name].train;
            cur.take(split, eod, self.config.seed, t, &mut batch.tokens);
            batch.tokens.push(cur.peek(split, eod));
            cur.tokens_served += t as u64;
            cur.rows += 1;
            self.rows_total += 1;
            batch.domains.push(d as u16);
        }
    }

    /// The domain with the largest deficit against its weight.
    fn pick_domain(&self) -> usize {
        let n = (self.rows_total + 1) as f64;
        let mut best = (0, f64::NEG_INFINITY);
        for (i, ((_, w), c)) in self.mixture.entries().iter().zip(&self.cursors).enumerate() {
            let deficit = w * n - c.rows as f64;
            if deficit > best.1 {
                best = (i, deficit);
            }
        }
        best.0
    }

    /// The mixture.
    pub fn mixture(&self) -> &Mixture {
        &self.mixture
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// A snapshot to resume from (also the per-domain counters for logging:
    /// epochs, tokens and rows served).
    pub fn state(&self) -> SamplerState {
        SamplerState {
            version: STATE_VERSION,
            config: self.config,
            mixture: self.mixture.clone(),
            tokenizer_hash: hex(&self.dataset.tokenizer_hash()),
            rows_total: self.rows_total,
            domains: self
                .cursors
                .iter()
                .map(|c| DomainState {
                    name: c.name.clone(),
                    train_docs: c.perm.len() as u64,
                    epoch: c.epoch,
                    doc_pos: c.doc_pos as u64,
                    tok_pos: c.tok_pos as u64,
                    tokens_served: c.tokens_served,
                    rows: c.rows,
                })
                .collect(),
        }
    }

    /// Rebuilds the sampler that produced `state`, checking that it belongs
    /// to this dataset.
    pub fn from_state(dataset: Arc<Dataset>, state: &SamplerState) -> Result<Self> {
        let mismatch = |reason: String| DataError::StateMismatch { reason };
        if state.version != STATE_VERSION {
            return Err(mismatch(format!(
                "state version {}, expected {STATE_VERSION}",
                state.version
            )));
        }
        let hash = hex(&dataset.tokenizer_hash());
        if state.tokenizer_hash != hash {
            return Err(mismatch(format!(
                "state made with tokenizer {}, dataset has {hash}",
                state.tokenizer_hash
            )));
        }
        let mut s = Self::new(dataset, state.mixture.clone(), state.config)?;
        let names: Vec<&str> = state.domains.iter().map(|d| d.name.as_str()).collect();
        let expected: Vec<&str> = s.cursors.iter().map(|c| c.name.as_str()).collect();
        if names != expected {
            return Err(mismatch(format!("domains {names:?}, mixture has {expected:?}")));
        }
        for (c, d) in s.cursors.iter_mut().zip(&state.domains) {
            let split = &s.dataset.domains()[&c.name].train;
            if d.train_docs != split.n_docs() as u64 {
                return Err(mismatch(format!(
                    "domain `{}` had {} training documents, now {}",
                    d.name,
                    d.train_docs,
                    split.n_docs()
                )));
            }
            if d.doc_pos >= d.train_docs {
                return Err(mismatch(format!(
                    "domain `{}`: document position {} out of range",
                    d.name, d.doc_pos
                )));
            }
            c.epoch = d.epoch;
            c.perm = permutation(state.config.seed, &c.name, d.epoch, split.n_docs());
            c.doc_pos = d.doc_pos as usize;
            if d.tok_pos > split.doc_len(c.perm[c.doc_pos] as usize) as u64 {
                return Err(mismatch(format!(
                    "domain `{}`: token position {} out of range",
                    d.name, d.tok_pos
                )));
            }
            c.tok_pos = d.tok_pos as usize;
            c.tokens_served = d.tokens_served;
            c.rows = d.rows;
        }
        s.rows_total = state.rows_total;
        Ok(s)
    }
}
