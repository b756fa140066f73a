//! A domain's position in its endless stream of training documents: a
//! seeded permutation per epoch, each document followed by the
//! end-of-document separator.

use crate::dataset::Split;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Permutation of `0..n` for (seed, domain, epoch). The generator is
/// ChaCha8 keyed by a SHA-256 of the three, and the shuffle is our own
/// Fisher-Yates, so the order never changes with a dependency upgrade.
pub fn permutation(seed: u64, domain: &str, epoch: u64, n: usize) -> Vec<u32> {
    let mut h = Sha256::new();
    h.update(b"moe-data/permutation/v1");
    h.update(seed.to_le_bytes());
    h.update((domain.len() as u64).to_le_bytes());
    h.update(domain.as_bytes());
    h.update(epoch.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(h.finalize().into());
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// Unbiased integer in `0..bound` (Lemire's multiply-and-reject).
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = rng.next_u64() as u128 * bound as u128;
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Where a domain's stream stands.
#[derive(Debug, Clone)]
pub struct Cursor {
    /// Domain name.
    pub name: String,
    /// Current epoch's document order.
    pub perm: Vec<u32>,
    /// Completed passes over the documents.
    pub epoch: u64,
    /// Position in `perm`.
    pub doc_pos: usize,
    /// Position in the current document; `== len` means its separator.
    pub tok_pos: usize,
    /// Tokens served (T per row).
    pub tokens_served: u64,
    /// Rows served.
    pub rows: u64,
}

impl Cursor {
    /// A cursor at the start of epoch 0.
    pub fn new(name: &str, seed: u64, n_docs: usize) -> Self {
        Self {
            name: name.to_string(),
            perm: permutation(seed, name, 0, n_docs),
            epoch: 0,
            doc_pos: 0,
            tok_pos: 0,
            tokens_served: 0,
            rows: 0,
        }
    }

    /// Appends the next `n` stream tokens to `out`.
    pub fn take(&mut self, split: &Split, eod: u32, seed: u64, mut n: usize, out: &mut Vec<u32>) {
        while n > 0 {
            let (tokens, range) = split.doc(self.perm[self.doc_pos] as usize);
            let len = range.len();
            if self.tok_pos < len {
                let k = n.min(len - self.tok_pos);
                let start = range.start + self.tok_pos;
                tokens.extend_into(start..start + k, out);
                self.tok_pos += k;
                n -= k;
            } else {
                out.push(eod);
                self.tok_pos += 1;
                n -= 1;
            }
            if self.tok_pos == len + 1 {
                self.next_doc(seed, split.n_docs());
            }
        }
    }

    /// The next stream token, without consuming it.
    pub fn peek(&self, split: &Split, eod: u32) -> u32 {
        let (tokens, range) = split.doc(self.perm[self.doc_pos] as usize);
        if self.tok_pos < range.len() {
            tokens.get(range.start + self.tok_pos)
        } else {
            eod
        }
    }

    fn next_doc(&mut self, seed: u64, n_docs: usize) {
        self.tok_pos = 0;
        self.doc_pos += 1;
        if self.doc_pos == self.perm.len() {
            self.epoch += 1;
            self.doc_pos = 0;
            self.perm = permutation(seed, &self.name, self.epoch, n_docs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = permutation(1, "en", 0, 1000);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_eq!(a, permutation(1, "en", 0, 1000));
        assert_ne!(a, permutation(2, "en", 0, 1000));
        assert_ne!(a, permutation(1, "de", 0, 1000));
        assert_ne!(a, permutation(1, "en", 1, 1000));
        assert_eq!(permutation(0, "x", 0, 1), vec![0]);
        assert!(permutation(0, "x", 0, 0).is_empty());
    }
}
