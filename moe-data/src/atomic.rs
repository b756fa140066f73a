//! Crash-safe file writes: write to a temporary name in the same folder,
//! fsync, rename over the final name, fsync the folder. A reader therefore
//! sees either the old file, the complete new file, or nothing.

use crate::error::{DataError, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// A file being written under a temporary name; [`AtomicFile::commit`]
/// fsyncs it and renames it into place. Dropped without commit, the
/// temporary file is removed.
pub struct AtomicFile {
    final_path: PathBuf,
    tmp_path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates `temp_path(path)` for writing.
    pub fn create(path: &Path) -> Result<Self> {
        let tmp_path = temp_path(path);
        let file = File::create(&tmp_path).map_err(|e| DataError::io(&tmp_path, e))?;
        Ok(Self {
            final_path: path.to_path_buf(),
            tmp_path,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The buffered writer.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        // Only `commit` takes the writer, and it consumes `self`.
        self.writer.as_mut().expect("writer present until commit")
    }

    /// The temporary path being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Flushes, fsyncs and renames the file to its final name.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer
            .into_inner()
            .map_err(|e| DataError::io(&self.tmp_path, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&self.tmp_path, e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(|e| DataError::io(&self.final_path, e))?;
        sync_dir(&self.final_path);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.writer = None;
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    let tmp = f.tmp_path().to_path_buf();
    f.writer().write_all(bytes).map_err(|e| DataError::io(tmp, e))?;
    f.commit()
}

/// Best-effort fsync of the folder holding `path`, so the rename itself is
/// durable. Some filesystems refuse to open folders; that is not an error.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        {
            let mut f = AtomicFile::create(&dir.path().join("b.bin")).unwrap();
            f.writer().write_all(b"partial").unwrap();
            assert!(f.tmp_path().exists());
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.bin")]);
    }
}
