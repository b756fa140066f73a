//! Small file helpers: JSON and text written atomically (temporary file,
//! fsync, rename), so a report or result file is never left half-written.

use crate::error::{EvalError, Result};
use std::path::Path;

/// Writes `bytes` to `path` atomically (moe-data's temporary file, fsync,
/// rename), creating its parent folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| EvalError::io(parent, e))?;
    }
    Ok(moe_data::atomic::write_atomic(path, bytes)?)
}

/// Writes `value` as pretty JSON (with a final newline) to `path`, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| EvalError::Json {
        path: path.to_path_buf(),
        line: None,
        msg: e.to_string(),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}
