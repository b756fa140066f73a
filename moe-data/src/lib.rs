//! moe-data: tokenizers, memory-mapped token shards, domain mixtures and replay.
//!
//! Not implemented yet: this crate is filled by the data issue. It depends on
//! none of moe-cpt's model crates.
