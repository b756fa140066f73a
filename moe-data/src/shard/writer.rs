//! Writing shards: token ids are streamed to a temporary file, the index and
//! header are written at the end, then the file is fsynced and renamed.

use super::format::{Header, TokenDtype, HEADER_LEN};
use crate::atomic::AtomicFile;
use crate::error::{DataError, Result};
use crate::manifest::ShardEntry;
use crate::tokenizer::hex;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Writes one shard file.
pub struct ShardWriter {
    file: AtomicFile,
    path: PathBuf,
    header: Header,
    offsets: Vec<u64>,
}

impl ShardWriter {
    /// Starts `path` (written under a temporary name until [`ShardWriter::finish`]).
    pub fn create(path: &Path, vocab_size: u32, tokenizer_hash: [u8; 32]) -> Result<Self> {
        let mut file = AtomicFile::create(path)?;
        let header = Header {
            dtype: TokenDtype::for_vocab(vocab_size),
            vocab_size,
            n_tokens: 0,
            n_docs: 0,
            tokenizer_hash,
        };
        let tmp = file.tmp_path().to_path_buf();
        file.writer()
            .write_all(&[0u8; HEADER_LEN])
            .map_err(|e| DataError::io(tmp, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            header,
            offsets: vec![0],
        })
    }

    /// Tokens written so far.
    pub fn n_tokens(&self) -> u64 {
        self.header.n_tokens
    }

    /// Appends one document. Ids must be below the vocabulary size.
    pub fn push_doc(&mut self, ids: &[u32]) -> Result<()> {
        let vocab = self.header.vocab_size;
        if let Some(bad) = ids.iter().find(|&&t| t >= vocab) {
            return Err(DataError::invalid(
                "token id",
                format!("{bad} is not below the vocabulary size {vocab}"),
            ));
        }
        let tmp = self.file.tmp_path().to_path_buf();
        let w = self.file.writer();
        let res = match self.header.dtype {
            TokenDtype::U16 => {
                let v: Vec<u16> = ids.iter().map(|&t| t as u16).collect();
                w.write_all(bytemuck::cast_slice(&v))
            }
            TokenDtype::U32 => {
                let v: Vec<[u8; 4]> = ids.iter().map(|t| t.to_le_bytes()).collect();
                w.write_all(v.as_flattened())
            }
        };
        res.map_err(|e| DataError::io(tmp, e))?;
        self.header.n_tokens += ids.len() as u64;
        self.header.n_docs += 1;
        self.offsets.push(self.header.n_tokens);
        Ok(())
    }

    /// Writes the index and header, fsyncs, renames, and returns the
    /// manifest entry (with the SHA-256 of the final file).
    pub fn finish(mut self) -> Result<ShardEntry> {
        let tmp = self.file.tmp_path().to_path_buf();
        let io = |e| DataError::io(&tmp, e);
        let body_end = HEADER_LEN as u64 + self.header.n_tokens * self.header.dtype.width() as u64;
        let pad = (self.header.index_offset() - body_end) as usize;
        let w = self.file.writer();
        w.write_all(&[0u8; 8][..pad]).map_err(io)?;
        for o in &self.offsets {
            w.write_all(&o.to_le_bytes()).map_err(io)?;
        }
        w.seek(SeekFrom::Start(0)).map_err(io)?;
        w.write_all(&self.header.encode()).map_err(io)?;
        self.file.commit()?;
        let sha256 = file_sha256(&self.path)?;
        Ok(ShardEntry {
            file: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            tokens: self.header.n_tokens,
            docs: self.header.n_docs,
            sha256,
        })
    }
}

/// Hex SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Writes one split (`train` or `val`) of a domain as numbered shards of
/// about `shard_tokens` tokens; documents never straddle shards.
pub struct SplitWriter {
    dir: PathBuf,
    prefix: &'static str,
    shard_tokens: u64,
    vocab_size: u32,
    tokenizer_hash: [u8; 32],
    current: Option<ShardWriter>,
    done: Vec<ShardEntry>,
}

impl SplitWriter {
    /// Shards go to `dir/{prefix}-00000.bin`, ...
    pub fn new(dir: &Path, prefix: &'static str, shard_tokens: u64, vocab_size: u32, hash: [u8; 32]) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prefix,
            shard_tokens: shard_tokens.max(1),
            vocab_size,
            tokenizer_hash: hash,
            current: None,
            done: Vec::new(),
        }
    }

    /// Appends a document, starting a new shard when the current one is full.
    pub fn push_doc(&mut self, ids: &[u32]) -> Result<()> {
        if self.current.as_ref().is_some_and(|w| w.n_tokens() >= self.shard_tokens) {
            let full = self.current.take().expect("checked above");
            self.done.push(full.finish()?);
        }
        if self.current.is_none() {
            let name = format!("{}-{:05}.bin", self.prefix, self.done.len());
            self.current = Some(ShardWriter::create(
                &self.dir.join(name),
                self.vocab_size,
                self.tokenizer_hash,
            )?);
        }
        self.current.as_mut().expect("created above").push_doc(ids)
    }

    /// Finishes the last shard and returns all entries.
    pub fn finish(mut self) -> Result<Vec<ShardEntry>> {
        if let Some(w) = self.current.take() {
            self.done.push(w.finish()?);
        }
        Ok(self.done)
    }
}
