//! Token embedding: rows of a `[V, D]` table.

use crate::{Error, Result};
use moe_tensor::Tensor;

/// The token embedding table.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// `[V, D]`.
    pub weight: Tensor,
}

impl Embedding {
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Checks every id of `ids` (I64) lies in `0..V`.
    pub fn check_ids(&self, ids: &Tensor) -> Result<()> {
        let vocab = self.vocab_size();
        for (pos, &id) in ids.to_vec::<i64>()?.iter().enumerate() {
            if id < 0 || id as usize >= vocab {
                return Err(Error::TokenOutOfRange { id, pos, vocab });
            }
        }
        Ok(())
    }

    /// `ids [B, T]` (I64) → `[B, T, D]`; an out-of-range id is a
    /// [`Error::TokenOutOfRange`].
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.check_ids(ids)?;
        Ok(self.weight.embedding(ids)?)
    }
}
