//! moe-data: tokenizers, memory-mapped token shards, domain mixtures and
//! replay for moe-cpt. It depends on none of moe-cpt's model crates; batches
//! are plain `Vec<u32>` of shape [B, T + 1] (B batch rows, T sequence length).
//!
//! - [`tokenizer`]: load any Hugging Face `tokenizer.json`, hash it, train a
//!   byte-level BPE.
//! - [`ingest`] and [`prepare`]: stream `.txt`/`.jsonl` (plain, gzip, zstd)
//!   into shards with a seeded train/validation split by document.
//! - [`shard`], [`manifest`], [`dataset`]: the on-disk format and its
//!   verified, zero-copy reader.
//! - [`mixture`], [`sampler`]: weighted domain mixtures (replay), packed
//!   [B, T + 1] windows, exact resume from a small state, fixed validation
//!   windows.
//! - [`builtin`]: a deterministic, offline corpus of clearly different
//!   domains for `moe demo`.

pub mod atomic;
pub mod builtin;
pub mod dataset;
pub mod error;
pub mod ingest;
pub mod manifest;
pub mod mixture;
pub mod prepare;
pub mod sampler;
pub mod shard;
pub mod tokenizer;

pub use dataset::{Dataset, Domain, Split};
pub use error::{DataError, Result};
pub use ingest::{IngestOptions, TextSplit, Utf8Policy};
pub use manifest::Manifest;
pub use mixture::Mixture;
pub use prepare::{prepare_documents, prepare_files, PrepareOptions, PrepareReport, Progress};
pub use sampler::{Batch, DomainState, Sampler, SamplerConfig, SamplerState, ValWindows};
pub use tokenizer::Tokenizer;
