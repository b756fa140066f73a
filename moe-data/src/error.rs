//! The crate's error type: every variant names the file, line, field or
//! value at fault so a user can fix the input without reading the code.

use std::path::PathBuf;

/// Errors returned by moe-data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An input file does not exist.
    #[error("{path}: no such file")]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// A file's extension does not name a supported input format.
    #[error("{path}: unsupported input format (expected .txt, .jsonl, .jsonl.gz or .jsonl.zst)")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// A JSONL line that is not a JSON object.
    #[error("{path}:{line}: not a JSON object: {reason}")]
    BadJsonLine {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What the JSON parser said.
        reason: String,
    },
    /// A JSONL line whose object lacks the text field or has a non-string value there.
    #[error("{path}:{line}: field `{field}` is missing or not a string")]
    MissingField {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The field that was expected.
        field: String,
    },
    /// Invalid UTF-8 under the `error` policy.
    #[error("{path}: document {document} (line {line}) is not valid UTF-8")]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based document number inside the file.
        document: u64,
        /// 1-based line where the document starts.
        line: u64,
    },
    /// The inputs held no non-empty document.
    #[error("no non-empty documents in the inputs ({skipped_empty} empty, {skipped_utf8} with invalid UTF-8 skipped)")]
    NoDocuments {
        /// Empty documents skipped.
        skipped_empty: u64,
        /// Documents skipped for invalid UTF-8.
        skipped_utf8: u64,
    },
    /// A tokenizer file could not be loaded, trained or saved.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer.json (or the output path when training).
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A shard file fails a structural check (magic, version, sizes, index).
    #[error("shard {path}: {reason}")]
    CorruptShard {
        /// The shard file.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// A shard's contents do not match the checksum the manifest recorded.
    #[error("shard {path}: checksum mismatch (manifest {expected}, file {actual})")]
    ChecksumMismatch {
        /// The shard file.
        path: PathBuf,
        /// Hex SHA-256 in the manifest.
        expected: String,
        /// Hex SHA-256 of the file.
        actual: String,
    },
    /// Data made with a different tokenizer than the one expected.
    #[error("{path}: made with tokenizer {found}, but the expected tokenizer is {expected}")]
    TokenizerMismatch {
        /// The shard or manifest.
        path: PathBuf,
        /// Hex hash of the expected tokenizer.
        expected: String,
        /// Hex hash recorded in the data.
        found: String,
    },
    /// The manifest is missing, unreadable or inconsistent.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A domain name that the dataset does not have, or that is not allowed.
    #[error("domain `{name}`: {reason}")]
    Domain {
        /// The domain.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An invalid argument (mixture weights, batch shape, split fraction...).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument.
        what: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A sampler state that does not belong to this dataset or mixture.
    #[error("sampler state does not match: {reason}")]
    StateMismatch {
        /// What differs.
        reason: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &str, reason: impl Into<String>) -> Self {
        DataError::InvalidArgument {
            what: what.to_string(),
            reason: reason.into(),
        }
    }
}
