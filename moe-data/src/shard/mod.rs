//! Token shards: the on-disk format, its writer and its memory-mapped reader.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{Header, TokenDtype};
pub use reader::{Shard, Tokens};
pub use writer::{ShardWriter, SplitWriter};
