//! Streaming document readers for `moe prepare`: `.txt` and `.jsonl`, each
//! optionally compressed (`.gz`, `.zst`). Documents are read one at a time,
//! so memory stays bounded by the largest document, not the input size.
//!
//! Policies (also in the README):
//! - Invalid UTF-8: by default the document is skipped and counted; the
//!   first locations are kept for the report. `Replace` keeps it with U+FFFD
//!   in place of bad bytes (also counted); `Error` stops with file and line.
//! - Empty documents (only whitespace) are skipped and counted.
//! - A JSONL line that is not a JSON object, or lacks the text field, stops
//!   ingestion with the file and line number. Blank JSONL lines are ignored.

mod jsonl;
mod reader;

pub use reader::DocumentReader;

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How `.txt` files are split into documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSplit {
    /// The whole file is one document.
    File,
    /// Documents are separated by one or more blank lines.
    BlankLine,
    /// Documents are separated by a line equal to this string.
    Separator(String),
}

/// What to do with a document that is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Utf8Policy {
    /// Skip the document and count it (default).
    #[default]
    Skip,
    /// Keep it with U+FFFD replacing invalid bytes, and count it.
    Replace,
    /// Stop with an error naming the file and line.
    Error,
}

impl std::str::FromStr for Utf8Policy {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "skip" => Ok(Self::Skip),
            "replace" => Ok(Self::Replace),
            "error" => Ok(Self::Error),
            _ => Err(DataError::invalid(
                "UTF-8 policy",
                format!("`{s}` (expected skip, replace or error)"),
            )),
        }
    }
}

/// Options for reading input files.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The JSONL field that holds the text.
    pub text_field: String,
    /// How `.txt` files are split into documents.
    pub text_split: TextSplit,
    /// What to do with invalid UTF-8.
    pub utf8: Utf8Policy,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            text_field: "text".into(),
            text_split: TextSplit::BlankLine,
            utf8: Utf8Policy::Skip,
        }
    }
}

/// One document read from an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The text.
    pub text: String,
    /// Index of the input file it came from.
    pub file: usize,
    /// 1-based line where it starts.
    pub line: u64,
}

/// Counts gathered while reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestStats {
    /// Documents returned.
    pub documents: u64,
    /// UTF-8 bytes of the returned documents.
    pub bytes: u64,
    /// Empty (whitespace-only) documents skipped.
    pub empty_documents: u64,
    /// Documents with invalid UTF-8 (skipped or repaired by the policy).
    pub invalid_utf8_documents: u64,
    /// `file:line` of the first invalid-UTF-8 documents.
    pub invalid_utf8_examples: Vec<String>,
}

/// Input compression, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain.
    None,
    /// `.gz`.
    Gzip,
    /// `.zst` / `.zstd`.
    Zstd,
}

/// Input format, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.txt`: split by [`TextSplit`].
    Text,
    /// `.jsonl`: one JSON object per line.
    Jsonl,
}

/// Recognises `NAME.{txt,jsonl}[.gz|.zst|.zstd]`.
pub fn detect_format(path: &Path) -> Result<(Format, Compression)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let (stem, comp) = if let Some(s) = name.strip_suffix(".gz") {
        (s, Compression::Gzip)
    } else if let Some(s) = name.strip_suffix(".zst").or(name.strip_suffix(".zstd")) {
        (s, Compression::Zstd)
    } else {
        (name.as_str(), Compression::None)
    };
    let format = if stem.ends_with(".txt") {
        Format::Text
    } else if stem.ends_with(".jsonl") {
        Format::Jsonl
    } else {
        return Err(DataError::UnsupportedFormat {
            path: path.to_path_buf(),
        });
    };
    Ok((format, comp))
}

/// Checks, before anything is written, that every input exists, is a file
/// and has a supported format.
pub fn check_inputs(files: &[PathBuf]) -> Result<()> {
    if files.is_empty() {
        return Err(DataError::invalid("inputs", "no input files given"));
    }
    for f in files {
        if !f.is_file() {
            return Err(DataError::MissingFile { path: f.clone() });
        }
        detect_format(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_from_names() {
        let d = |s: &str| detect_format(Path::new(s));
        assert_eq!(d("a.txt").unwrap(), (Format::Text, Compression::None));
        assert_eq!(d("a.JSONL.gz").unwrap(), (Format::Jsonl, Compression::Gzip));
        assert_eq!(d("x/a.jsonl.zst").unwrap(), (Format::Jsonl, Compression::Zstd));
        assert_eq!(d("a.txt.zstd").unwrap(), (Format::Text, Compression::Zstd));
        assert!(d("a.parquet").unwrap_err().to_string().contains("a.parquet"));
    }
}
