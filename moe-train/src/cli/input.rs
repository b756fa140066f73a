//! Input-reading flags shared by `tokenizer train` and `prepare`.

use clap::{Args, ValueEnum};
use moe_data::{IngestOptions, TextSplit, Utf8Policy};

/// How `.txt` inputs are split into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitMode {
    /// One or more blank lines end a document.
    BlankLine,
    /// Each file is one document.
    File,
    /// A line equal to --separator ends a document.
    Separator,
}

/// What to do with documents that are not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Utf8Mode {
    /// Skip the document, count it and report where (default).
    Skip,
    /// Keep it with U+FFFD in place of invalid bytes (counted).
    Replace,
    /// Stop with an error naming the file and line.
    Error,
}

/// Flags that say how to read input files.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// How .txt files are split into documents.
    #[arg(long, value_enum, default_value_t = SplitMode::BlankLine)]
    pub split: SplitMode,
    /// Separator line for --split separator.
    #[arg(long, default_value = "<|endoftext|>")]
    pub separator: String,
    /// Policy for invalid UTF-8.
    #[arg(long, value_enum, default_value_t = Utf8Mode::Skip)]
    pub invalid_utf8: Utf8Mode,
}

impl InputArgs {
    /// The library's options.
    pub fn options(&self) -> IngestOptions {
        IngestOptions {
            text_field: self.text_field.clone(),
            text_split: match self.split {
                SplitMode::BlankLine => TextSplit::BlankLine,
                SplitMode::File => TextSplit::File,
                SplitMode::Separator => TextSplit::Separator(self.separator.clone()),
            },
            utf8: match self.invalid_utf8 {
                Utf8Mode::Skip => Utf8Policy::Skip,
                Utf8Mode::Replace => Utf8Policy::Replace,
                Utf8Mode::Error => Utf8Policy::Error,
            },
        }
    }
}

/// Prints what reading skipped, if anything.
pub fn report_skips(stats: &moe_data::ingest::IngestStats) {
    if stats.empty_documents > 0 {
        eprintln!("note: skipped {} empty documents", stats.empty_documents);
    }
    if stats.invalid_utf8_documents > 0 {
        eprintln!(
            "note: {} documents had invalid UTF-8 (first at: {})",
            stats.invalid_utf8_documents,
            stats.invalid_utf8_examples.join(", ")
        );
    }
}
