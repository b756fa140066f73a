//! The shard file layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `MOE-TOK\0` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | bytes per token id: 2 (u16) or 4 (u32) |
//! | 16 | 4 | vocabulary size (every id is below it) |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | token count N |
//! | 32 | 8 | document count D |
//! | 40 | 32 | SHA-256 of the tokenizer's canonical JSON |
//! | 72 | 48 | reserved, 0 |
//! | 120 | 8 | first 8 bytes of SHA-256 of bytes 0..120 (header check) |
//! | 128 | N × width | token ids, documents back to back, no separators |
//! | … | 0–7 | zero padding to a multiple of 8 |
//! | … | (D + 1) × 8 | document index: u64 start offsets, then N |
//!
//! The file size is therefore exact and checked at open; the index is
//! 8-byte aligned so it is read in place.

use sha2::{Digest, Sha256};

/// First 8 bytes of every shard.
pub const MAGIC: [u8; 8] = *b"MOE-TOK\0";
/// Current format version.
pub const VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 128;

/// Width of the stored token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDtype {
    /// 2 bytes: vocabularies up to 65,536.
    U16,
    /// 4 bytes.
    U32,
}

impl TokenDtype {
    /// The narrowest type that holds ids below `vocab_size`.
    pub fn for_vocab(vocab_size: u32) -> Self {
        if vocab_size <= 1 << 16 {
            Self::U16
        } else {
            Self::U32
        }
    }

    /// Bytes per id.
    pub fn width(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }

    fn from_width(w: u32) -> Option<Self> {
        match w {
            2 => Some(Self::U16),
            4 => Some(Self::U32),
            _ => None,
        }
    }
}

/// The decoded header of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Token id width.
    pub dtype: TokenDtype,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Number of token ids.
    pub n_tokens: u64,
    /// Number of documents.
    pub n_docs: u64,
    /// Tokenizer hash.
    pub tokenizer_hash: [u8; 32],
}

impl Header {
    /// Byte offset of the document index.
    pub fn index_offset(&self) -> u64 {
        let end = HEADER_LEN as u64 + self.n_tokens * self.dtype.width() as u64;
        end.div_ceil(8) * 8
    }

    /// Exact file size implied by the header, `None` on overflow.
    pub fn file_len(&self) -> Option<u64> {
        let tokens = self.n_tokens.checked_mul(self.dtype.width() as u64)?;
        let index = self.n_docs.checked_add(1)?.checked_mul(8)?;
        (HEADER_LEN as u64)
            .checked_add(tokens)?
            .checked_add(7)
            .map(|e| e / 8 * 8)?
            .checked_add(index)
    }

    /// The 128 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(self.dtype.width() as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.vocab_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.n_tokens.to_le_bytes());
        b[32..40].copy_from_slice(&self.n_docs.to_le_bytes());
        b[40..72].copy_from_slice(&self.tokenizer_hash);
        let check = Sha256::digest(&b[..120]);
        b[120..128].copy_from_slice(&check[..8]);
        b
    }

    /// Parses and checks a header; the error says which check failed.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < HEADER_LEN {
            return Err(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", b.len()));
        }
        if b[0..8] != MAGIC {
            return Err("bad magic: not a moe-data token shard".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!("format version {version}, this build reads {VERSION}"));
        }
        if Sha256::digest(&b[..120])[..8] != b[120..128] {
            return Err("header checksum mismatch (corrupted header)".into());
        }
        let dtype = TokenDtype::from_width(u32_at(12))
            .ok_or_else(|| format!("token width {} (expected 2 or 4)", u32_at(12)))?;
        let mut tokenizer_hash = [0u8; 32];
        tokenizer_hash.copy_from_slice(&b[40..72]);
        Ok(Self {
            dtype,
            vocab_size: u32_at(16),
            n_tokens: u64_at(24),
            n_docs: u64_at(32),
            tokenizer_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_flips() {
        let h = Header {
            dtype: TokenDtype::U16,
            vocab_size: 5000,
            n_tokens: 7,
            n_docs: 2,
            tokenizer_hash: [3; 32],
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b).unwrap(), h);
        // 128 + 14 bytes of tokens, padded to 144, then 3 offsets.
        assert_eq!(h.index_offset(), 144);
        assert_eq!(h.file_len(), Some(144 + 24));
        let mut bad = b;
        bad[25] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("checksum"));
        bad = b;
        bad[0] = b'X';
        assert!(Header::decode(&bad).unwrap_err().contains("magic"));
        assert!(Header::decode(&b[..50]).unwrap_err().contains("shorter"));
        assert_eq!(TokenDtype::for_vocab(65536), TokenDtype::U16);
        assert_eq!(TokenDtype::for_vocab(65537), TokenDtype::U32);
    }
}
