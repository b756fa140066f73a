//! Fixed validation windows: a domain's validation documents, in stored
//! order, each followed by the end-of-document id, cut into consecutive
//! non-overlapping windows of T + 1 tokens. No seed is involved, so every
//! run and every checkpoint is evaluated on the same tokens; the windows
//! come only from the validation split, so they never contain a training
//! document.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// A domain's validation windows, row-major [N, T + 1].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValWindows {
    /// Domain name.
    pub domain: String,
    /// T.
    pub seq_len: usize,
    /// Token ids, `n_windows * (seq_len + 1)`.
    pub tokens: Vec<u32>,
}

impl ValWindows {
    /// The first `max_windows` windows of `domain` (fewer if the split is
    /// shorter). An error if not even one window fits.
    pub fn new(dataset: &Dataset, domain: &str, seq_len: usize, max_windows: usize) -> Result<Self> {
        if seq_len == 0 || max_windows == 0 {
            return Err(DataError::invalid(
                "validation windows",
                "sequence length and window count must be > 0",
            ));
        }
        let split = &dataset.domain(domain)?.val;
        let eod = dataset.eod_id();
        let w = seq_len + 1;
        let want = w.saturating_mul(max_windows);
        let mut tokens = Vec::with_capacity(want.min(split.n_tokens() as usize + split.n_docs()));
        for doc in 0..split.n_docs() {
            if tokens.len() >= want {
                break;
            }
            let (t, r) = split.doc(doc);
            t.extend_into(r, &mut tokens);
            tokens.push(eod);
        }
        let n = (tokens.len() / w).min(max_windows);
        if n == 0 {
            return Err(DataError::Domain {
                name: domain.to_string(),
                reason: format!(
                    "validation split has {} tokens in {} documents, fewer than one window of {w}",
                    split.n_tokens(),
                    split.n_docs()
                ),
            });
        }
        tokens.truncate(n * w);
        Ok(Self {
            domain: domain.to_string(),
            seq_len,
            tokens,
        })
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.tokens.len() / (self.seq_len + 1)
    }

    /// True when there are no windows (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Window `i`: T + 1 tokens.
    pub fn window(&self, i: usize) -> &[u32] {
        let w = self.seq_len + 1;
        &self.tokens[i * w..(i + 1) * w]
    }

    /// Windows grouped into batches of at most `batch_size` rows.
    pub fn batches(&self, batch_size: usize) -> impl Iterator<Item = &[u32]> {
        self.tokens.chunks((self.seq_len + 1) * batch_size.max(1))
    }
}
