//! Reading safetensors files: validate the header once, then read tensors by name
//! from a memory map (or any byte buffer).

use super::codec::{tensor_from_bytes, typed};
use super::header::{self, Header, TensorInfo};
use crate::dtype::WithDType;
use crate::{Device, Error, Result, Tensor};
use memmap2::Mmap;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A safetensors file held in `B` (a memory map, a `Vec<u8>`, ...) whose header has
/// been validated: every tensor's byte range lies inside the buffer and matches its
/// shape and dtype, and no name repeats.
#[derive(Debug)]
pub struct SafetensorsReader<B> {
    path: PathBuf,
    buf: B,
    header: Header,
}

/// A memory-mapped safetensors file: only the tensors read are paged in.
pub type MmapedSafetensors = SafetensorsReader<Mmap>;

impl MmapedSafetensors {
    /// Maps and validates the file at `path`.
    ///
    /// The map is read-only; as with any memory map, the file must not be truncated
    /// or rewritten in place while it is open (our own saves replace files by rename,
    /// which leaves an open map intact).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this value; the documented
        // contract is that the file is not modified in place while mapped (writers in
        // this crate replace files by rename, which does not touch mapped pages).
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_buffer(mmap, path)
    }
}

impl<B: AsRef<[u8]>> SafetensorsReader<B> {
    /// Validates the header of the complete file held in `buf`; `path` names it in errors.
    pub fn from_buffer(buf: B, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let header = header::parse(buf.as_ref(), &path)?;
        Ok(SafetensorsReader { path, buf, header })
    }

    /// The file this reader was opened from (or the label it was given).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor's header entry, in data order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// Tensor names in data order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.header.tensors.iter().map(|t| t.name.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.header.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.header.tensors.is_empty()
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.header.by_name.contains_key(name)
    }

    /// The header entry of `name`, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.by_name.get(name).map(|&i| &self.header.tensors[i])
    }

    /// The header's `__metadata__` map, if any.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.header.metadata.as_ref()
    }

    fn entry(&self, name: &str) -> Result<&TensorInfo> {
        self.info(name).ok_or_else(|| Error::Safetensors {
            path: self.path.clone(),
            msg: format!("no tensor named `{name}`"),
        })
    }

    /// The raw little-endian bytes of `name`.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.entry(name)?;
        self.slice(t)
    }

    fn slice(&self, t: &TensorInfo) -> Result<&[u8]> {
        let start = self.header.data_start + t.data_offsets.0;
        let end = self.header.data_start + t.data_offsets.1;
        // Checked by header::parse; kept as an error rather than a panic.
        self.buf.as_ref().get(start..end).ok_or_else(|| Error::Safetensors {
            path: self.path.clone(),
            msg: format!("tensor `{}`: data range out of the buffer", t.name),
        })
    }

    /// The elements of `name` as `T` (which must be its dtype): borrowed from the
    /// buffer without a copy when aligned, else copied.
    pub fn view<T: WithDType>(&self, name: &str) -> Result<Cow<'_, [T]>> {
        let t = self.entry(name)?;
        if t.dtype != Some(T::DTYPE) {
            return Err(Error::Safetensors {
                path: self.path.clone(),
                msg: format!("tensor `{name}` has dtype {}, not {:?}", t.file_dtype, T::DTYPE),
            });
        }
        Ok(typed::<T>(self.slice(t)?))
    }

    /// Loads `name` as a tensor on `device` (in the file's dtype).
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        let t = self.entry(name)?;
        self.load_entry(t, device)
    }

    fn load_entry(&self, t: &TensorInfo, device: &Device) -> Result<Tensor> {
        let dtype = t.dtype.ok_or_else(|| Error::Safetensors {
            path: self.path.clone(),
            msg: format!("tensor `{}`: unsupported dtype {}", t.name, t.file_dtype),
        })?;
        tensor_from_bytes(self.slice(t)?, dtype, &t.shape, device, &self.path, &t.name)
    }

    /// Loads every tensor, by name.
    pub fn load_all(&self, device: &Device) -> Result<BTreeMap<String, Tensor>> {
        self.header
            .tensors
            .iter()
            .map(|t| Ok((t.name.clone(), self.load_entry(t, device)?)))
            .collect()
    }
}

/// Loads every tensor of the safetensors file at `path` onto `device`.
pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    MmapedSafetensors::open(path)?.load_all(device)
}
