//! [`DocumentReader`]: an iterator of documents over a list of input files.

use super::jsonl::{extract_field, FieldError};
use super::{detect_format, Compression, Document, Format, IngestOptions, IngestStats, TextSplit, Utf8Policy};
use crate::error::{DataError, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

/// How many invalid-UTF-8 locations the stats keep.
const MAX_EXAMPLES: usize = 10;

/// Reads documents from files one at a time; see the module docs for the
/// policies. After an error the iterator ends.
pub struct DocumentReader {
    files: Vec<PathBuf>,
    opts: IngestOptions,
    next_file: usize,
    current: Option<Open>,
    stats: IngestStats,
    failed: bool,
}

struct Open {
    index: usize,
    format: Format,
    input: Box<dyn BufRead + Send>,
    line: u64,
    done: bool,
}

/// A document before the UTF-8 and emptiness checks, with its start line.
enum Raw {
    /// Text-file bytes.
    Bytes(Vec<u8>, u64),
    /// Text already extracted from a valid JSONL line.
    Text(String, u64),
    /// A JSONL line that is not valid UTF-8.
    JsonBytes(Vec<u8>, u64),
}

impl DocumentReader {
    /// A reader over `files`, in order.
    pub fn new(files: Vec<PathBuf>, opts: IngestOptions) -> Self {
        Self {
            files,
            opts,
            next_file: 0,
            current: None,
            stats: IngestStats::default(),
            failed: false,
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some(path) = self.files.get(self.next_file) else {
            return Ok(false);
        };
        let (format, comp) = detect_format(path)?;
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::MissingFile { path: path.clone() },
            _ => DataError::io(path, e),
        })?;
        let raw: Box<dyn Read + Send> = match comp {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| DataError::io(path, e))?),
        };
        self.current = Some(Open {
            index: self.next_file,
            format,
            input: Box::new(BufReader::with_capacity(1 << 20, raw)),
            line: 0,
            done: false,
        });
        self.next_file += 1;
        Ok(true)
    }

    fn next_doc(&mut self) -> Result<Option<Document>> {
        loop {
            if self.current.as_ref().is_none_or(|c| c.done) && !self.open_next()? {
                return Ok(None);
            }
            let cur = self.current.as_mut().expect("opened above");
            let path = &self.files[cur.index];
            let Some(raw) = read_raw(cur, &self.opts, path)? else {
                cur.done = true;
                continue;
            };
            let (text, line) = match raw {
                Raw::Text(t, l) => (t, l),
                Raw::Bytes(b, l) | Raw::JsonBytes(b, l) if std::str::from_utf8(&b).is_ok() => {
                    (String::from_utf8(b).expect("checked above"), l)
                }
                Raw::Bytes(b, l) | Raw::JsonBytes(b, l) if self.opts.utf8 == Utf8Policy::Skip => {
                    let _ = b;
                    self.stats.note_invalid(path, l);
                    continue;
                }
                Raw::Bytes(b, l) if self.opts.utf8 == Utf8Policy::Replace => {
                    self.stats.note_invalid(path, l);
                    (String::from_utf8_lossy(&b).into_owned(), l)
                }
                Raw::JsonBytes(b, l) if self.opts.utf8 == Utf8Policy::Replace => {
                    self.stats.note_invalid(path, l);
                    (field(&String::from_utf8_lossy(&b), &self.opts, path, l)?, l)
                }
                Raw::Bytes(_, l) | Raw::JsonBytes(_, l) => {
                    return Err(DataError::InvalidUtf8 {
                        path: path.clone(),
                        document: self.stats.documents
                            + self.stats.empty_documents
                            + self.stats.invalid_utf8_documents
                            + 1,
                        line: l,
                    })
                }
            };
            if text.trim().is_empty() {
                self.stats.empty_documents += 1;
                continue;
            }
            self.stats.documents += 1;
            self.stats.bytes += text.len() as u64;
            return Ok(Some(Document {
                text,
                file: cur.index,
                line,
            }));
        }
    }
}

impl IngestStats {
    fn note_invalid(&mut self, path: &std::path::Path, line: u64) {
        self.invalid_utf8_documents += 1;
        if self.invalid_utf8_examples.len() < MAX_EXAMPLES {
            self.invalid_utf8_examples.push(format!("{}:{line}", path.display()));
        }
    }
}

impl Iterator for DocumentReader {
    type Item = Result<Document>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_doc() {
            Ok(d) => d.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads one line including its terminator; `None` at end of input.
fn read_line(cur: &mut Open, buf: &mut Vec<u8>, path: &PathBuf) -> Result<bool> {
    buf.clear();
    let n = cur.input.read_until(b'\n', buf).map_err(|e| DataError::io(path, e))?;
    if n > 0 {
        cur.line += 1;
    }
    Ok(n > 0)
}

fn strip_newline(mut b: Vec<u8>) -> Vec<u8> {
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    b
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

/// The next raw document of the open file, `None` when the file is done.
fn read_raw(cur: &mut Open, opts: &IngestOptions, path: &PathBuf) -> Result<Option<Raw>> {
    let mut line = Vec::new();
    match (cur.format, &opts.text_split) {
        (Format::Jsonl, _) => loop {
            if !read_line(cur, &mut line, path)? {
                return Ok(None);
            }
            if is_blank(&line) {
                continue;
            }
            let n = cur.line;
            return match std::str::from_utf8(&line) {
                Ok(text) => field(text, opts, path, n).map(|t| Some(Raw::Text(t, n))),
                Err(_) => Ok(Some(Raw::JsonBytes(line, n))),
            };
        },
        (Format::Text, TextSplit::File) => {
            let mut all = Vec::new();
            cur.input.read_to_end(&mut all).map_err(|e| DataError::io(path, e))?;
            cur.done = true;
            Ok(Some(Raw::Bytes(all, 1)))
        }
        (Format::Text, split) => {
            let mut doc = Vec::new();
            let mut start = 0;
            while read_line(cur, &mut line, path)? {
                let sep = match split {
                    TextSplit::BlankLine => is_blank(&line),
                    TextSplit::Separator(s) => strip_newline(line.clone()) == s.as_bytes(),
                    TextSplit::File => false,
                };
                if sep {
                    // Runs of blank lines are one separator, not empty documents.
                    if doc.is_empty() && matches!(split, TextSplit::BlankLine) {
                        continue;
                    }
                    return Ok(Some(Raw::Bytes(strip_newline(doc), start)));
                }
                if doc.is_empty() {
                    start = cur.line;
                }
                doc.extend_from_slice(&line);
            }
            if doc.is_empty() {
                Ok(None)
            } else {
                Ok(Some(Raw::Bytes(strip_newline(doc), start)))
            }
        }
    }
}

/// The text field of a JSONL line, or an error naming file and line.
fn field(line: &str, opts: &IngestOptions, path: &std::path::Path, n: u64) -> Result<String> {
    extract_field(line, &opts.text_field).map_err(|e| match e {
        FieldError::NotJson(reason) => DataError::BadJsonLine {
            path: path.to_path_buf(),
            line: n,
            reason,
        },
        FieldError::Missing => DataError::MissingField {
            path: path.to_path_buf(),
            line: n,
            field: opts.text_field.clone(),
        },
    })
}
