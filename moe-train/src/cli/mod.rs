//! Thin command modules of the `moe` binary: each parses nothing itself
//! (clap does), calls a library, and prints results.

pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod forward;
pub mod generate;
pub mod input;
pub mod prepare;
pub mod progress;
pub mod report;
pub mod tokenizer;
pub mod train;
pub mod upcycle;
