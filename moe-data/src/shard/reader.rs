//! Memory-mapped, zero-copy shard reading. `open` checks the header, the
//! exact file size, the document index and the tokenizer hash, so a
//! truncated or foreign file is refused before any token is served.

use super::format::{Header, TokenDtype, HEADER_LEN};
use crate::error::{DataError, Result};
use crate::tokenizer::hex;
use memmap2::Mmap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Token ids of a shard, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub enum Tokens<'a> {
    /// 2-byte ids.
    U16(&'a [u16]),
    /// 4-byte ids.
    U32(&'a [u32]),
}

impl Tokens<'_> {
    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            Tokens::U16(t) => t.len(),
            Tokens::U32(t) => t.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Id at `i` (panics out of range, like slice indexing).
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Tokens::U16(t) => t[i] as u32,
            Tokens::U32(t) => t[i],
        }
    }

    /// Appends ids `range` to `out` as u32.
    pub fn extend_into(&self, range: Range<usize>, out: &mut Vec<u32>) {
        match self {
            Tokens::U16(t) => out.extend(t[range].iter().map(|&x| x as u32)),
            Tokens::U32(t) => out.extend_from_slice(&t[range]),
        }
    }
}

/// An open, verified shard.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    header: Header,
    map: Mmap,
}

impl Shard {
    /// Maps and checks `path`. With `expected_hash`, a shard made with any
    /// other tokenizer is refused.
    pub fn open(path: &Path, expected_hash: Option<&[u8; 32]>) -> Result<Self> {
        let corrupt = |reason: String| DataError::CorruptShard {
            path: path.to_path_buf(),
            reason,
        };
        if cfg!(target_endian = "big") {
            return Err(corrupt(
                "shards are little-endian; big-endian hosts are not supported".into(),
            ));
        }
        let file = std::fs::File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::MissingFile {
                path: path.to_path_buf(),
            },
            _ => DataError::io(path, e),
        })?;
        // SAFETY: the mapping is read-only and private to this process; shards
        // are never modified in place (writers rename complete files over
        // them), so the bytes cannot change while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        let header = Header::decode(&map).map_err(corrupt)?;
        let expected_len = header
            .file_len()
            .ok_or_else(|| corrupt("header sizes overflow".into()))?;
        if map.len() as u64 != expected_len {
            return Err(corrupt(format!(
                "file is {} bytes but its header implies {expected_len} (truncated or corrupted)",
                map.len()
            )));
        }
        if let Some(h) = expected_hash {
            if *h != header.tokenizer_hash {
                return Err(DataError::TokenizerMismatch {
                    path: path.to_path_buf(),
                    expected: hex(h),
                    found: hex(&header.tokenizer_hash),
                });
            }
        }
        let shard = Self {
            path: path.to_path_buf(),
            header,
            map,
        };
        shard.check_index()?;
        Ok(shard)
    }

    fn check_index(&self) -> Result<()> {
        let idx = self.index();
        let n = self.header.n_tokens;
        let ok_ends = idx.first() == Some(&0) && idx.last() == Some(&n);
        if !ok_ends || idx.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DataError::CorruptShard {
                path: self.path.clone(),
                reason: "document index is not strictly increasing from 0 to the token count".into(),
            });
        }
        Ok(())
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of documents.
    pub fn n_docs(&self) -> usize {
        self.header.n_docs as usize
    }

    /// Number of tokens.
    pub fn n_tokens(&self) -> usize {
        self.header.n_tokens as usize
    }

    /// All token ids, zero-copy.
    pub fn tokens(&self) -> Tokens<'_> {
        let start = HEADER_LEN;
        let end = start + self.n_tokens() * self.header.dtype.width();
        let bytes = &self.map[start..end];
        // Offsets are multiples of the width and the mapping is page-aligned,
        // and `open` checked the length, so these casts cannot fail.
        match self.header.dtype {
            TokenDtype::U16 => Tokens::U16(bytemuck::cast_slice(bytes)),
            TokenDtype::U32 => Tokens::U32(bytemuck::cast_slice(bytes)),
        }
    }

    /// The document index: `n_docs + 1` start offsets.
    pub fn index(&self) -> &[u64] {
        let start = self.header.index_offset() as usize;
        bytemuck::cast_slice(&self.map[start..])
    }

    /// Token range of document `doc`.
    pub fn doc_range(&self, doc: usize) -> Range<usize> {
        let idx = self.index();
        idx[doc] as usize..idx[doc + 1] as usize
    }

    /// Checks that every id is below the vocabulary size (a full scan).
    pub fn check_ids(&self) -> Result<()> {
        let v = self.header.vocab_size;
        let bad = match self.tokens() {
            Tokens::U16(t) => t.iter().position(|&x| x as u32 >= v),
            Tokens::U32(t) => t.iter().position(|&x| x >= v),
        };
        match bad {
            Some(i) => Err(DataError::CorruptShard {
                path: self.path.clone(),
                reason: format!("token {i} has id {} >= vocabulary size {v}", self.tokens().get(i)),
            }),
            None => Ok(()),
        }
    }
}
