//! The `moe` command-line tool.
//!
//! Data commands are here now; training, evaluation and the demo arrive
//! with their own issues.

#[path = "../cli/mod.rs"]
mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// moe-cpt: pre-train, continually pre-train and study Mixture-of-Experts
/// language models.
#[derive(Debug, Parser)]
#[command(name = "moe", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train tokenizers.
    #[command(subcommand)]
    Tokenizer(cli::tokenizer::TokenizerCmd),
    /// Tokenize text/JSONL files into a domain of a dataset folder.
    Prepare(cli::prepare::PrepareArgs),
    /// Inspect, verify or build datasets.
    #[command(subcommand)]
    Data(cli::data::DataCmd),
    /// Evaluate a checkpoint (validation loss, routing metrics) or compare two checkpoints' routing.
    Eval(cli::eval::EvalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenizer(c) => cli::tokenizer::run(c),
        Command::Prepare(a) => cli::prepare::run(a),
        Command::Data(c) => cli::data::run(c),
        Command::Eval(a) => cli::eval::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
