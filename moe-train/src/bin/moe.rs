//! The `moe` command-line tool: each subcommand is a thin module in
//! `src/cli/` over the library crates.

#[path = "../cli/mod.rs"]
mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// moe-cpt: pre-train, continually pre-train and study Mixture-of-Experts
/// language models. Start with `moe demo`; `moe <command> --help` explains each command.
#[derive(Debug, Parser)]
#[command(name = "moe", version)]
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
    /// Write a Markdown report (tables, JSON, PNG and SVG plots) over run folders.
    Report(cli::report::ReportArgs),
    /// Initialise an MoE from a dense model folder (naive, Drop-Upcycling or
    /// granular upcycling).
    Upcycle(cli::upcycle::UpcycleArgs),
    /// Train a model from a run config; resume a run; continue pre-training
    /// from a checkpoint (--init-from).
    Train(cli::train::TrainArgs),
    /// The study in miniature, offline: pre-train five families on built-in
    /// English, continue on German with and without replay, compare, report.
    Demo(cli::demo::DemoArgs),
    /// Run a model folder on a batch of token ids: logits, losses, routing
    /// and (with --grads) every gradient, saved as safetensors.
    Forward(cli::forward::ForwardArgs),
    /// Continue a prompt with a model folder (KV cache; greedy, temperature, top-p).
    Generate(cli::generate::GenerateArgs),
    /// Training throughput (tokens/s) and peak memory of a model config on
    /// random tokens: forward, backward, clipping and AdamW.
    Bench(cli::bench::BenchArgs),
}

/// The error and its causes on one line, leaving out causes whose text the
/// message already contains (typed errors often quote their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    msg
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenizer(c) => cli::tokenizer::run(c),
        Command::Prepare(a) => cli::prepare::run(a),
        Command::Data(c) => cli::data::run(c),
        Command::Eval(a) => cli::eval::run(a),
        Command::Report(a) => cli::report::run(a),
        Command::Upcycle(a) => cli::upcycle::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::Forward(a) => cli::forward::run(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Bench(a) => cli::bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
