//! The safetensors header: an 8-byte little-endian length, then a JSON object
//! mapping tensor names to `{dtype, shape, data_offsets}` (plus an optional
//! `__metadata__` string map). Parsing validates everything before any tensor is
//! read and names the tensor at fault; encoding is deterministic (sorted metadata,
//! tensors in data order).

use super::{from_file_dtype, to_file_dtype};
use crate::{DType, Error, Result};
use ::safetensors::tensor::TensorInfo as FileInfo;
use ::safetensors::Dtype as FileDtype;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Bytes of the header-length prefix.
pub(crate) const LEN_PREFIX: usize = 8;
/// The reference implementation's limit; larger headers mean a corrupt file.
const MAX_HEADER_BYTES: u64 = 100_000_000;
const METADATA_KEY: &str = "__metadata__";

/// One tensor as a safetensors header describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// The dtype as the file spells it (`"F32"`, `"I32"`, ...).
    pub file_dtype: String,
    /// The matching moe-tensor dtype, or `None` when there is none (then the tensor
    /// can be listed but not loaded).
    pub dtype: Option<DType>,
    /// The shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Byte range within the data section (which starts after the header).
    pub data_offsets: (usize, usize),
}

/// A validated header.
#[derive(Debug)]
pub(crate) struct Header {
    /// Tensors in data order (increasing offsets).
    pub tensors: Vec<TensorInfo>,
    pub by_name: HashMap<String, usize>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// Offset of the data section from the start of the file.
    pub data_start: usize,
}

fn bad(path: &Path, msg: String) -> Error {
    Error::Safetensors {
        path: path.to_path_buf(),
        msg,
    }
}

/// A JSON object's entries in file order, keeping duplicate keys (serde maps drop them).
pub(crate) struct Entries(pub Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Entries {
    /// The first key that occurs twice, if any.
    pub fn first_duplicate(&self) -> Option<&str> {
        let mut seen = HashSet::new();
        self.0.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
    }
}

/// Parses and validates the header of a complete safetensors file held in `buf`.
/// `path` only names the file in errors.
pub(crate) fn parse(buf: &[u8], path: &Path) -> Result<Header> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Err(bad(
            path,
            format!("truncated: {} bytes, shorter than the 8-byte header length", buf.len()),
        ));
    };
    let mut len_bytes = [0u8; LEN_PREFIX];
    len_bytes.copy_from_slice(prefix);
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_HEADER_BYTES {
        return Err(bad(
            path,
            format!("header length {n} exceeds {MAX_HEADER_BYTES} bytes: not a safetensors file?"),
        ));
    }
    let data_start = LEN_PREFIX + n as usize;
    let Some(json) = buf.get(LEN_PREFIX..data_start) else {
        return Err(bad(
            path,
            format!(
                "truncated: header claims {n} bytes, only {} follow",
                buf.len() - LEN_PREFIX
            ),
        ));
    };
    let json = std::str::from_utf8(json).map_err(|e| bad(path, format!("corrupt header: not UTF-8 ({e})")))?;
    let entries: Entries = serde_json::from_str(json).map_err(|e| bad(path, format!("corrupt header JSON: {e}")))?;
    if let Some(dup) = entries.first_duplicate() {
        return Err(bad(path, format!("duplicate tensor name `{dup}` in header")));
    }
    let data_len = buf.len() - data_start;
    let mut metadata = None;
    let mut tensors = Vec::with_capacity(entries.0.len());
    for (name, value) in entries.0 {
        if name == METADATA_KEY {
            let m: BTreeMap<String, String> = serde_json::from_value(value).map_err(|e| {
                bad(
                    path,
                    format!("corrupt header: `{METADATA_KEY}` must map strings to strings ({e})"),
                )
            })?;
            metadata = Some(m);
        } else {
            tensors.push(entry(path, name, value, data_len)?);
        }
    }
    check_tiling(path, &mut tensors, data_len)?;
    let by_name = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
    Ok(Header {
        tensors,
        by_name,
        metadata,
        data_start,
    })
}

/// Validates one header entry against the data section's length.
fn entry(path: &Path, name: String, value: serde_json::Value, data_len: usize) -> Result<TensorInfo> {
    if let Some(d) = value.get("dtype").and_then(|d| d.as_str()) {
        if serde_json::from_value::<FileDtype>(serde_json::Value::from(d)).is_err() {
            return Err(bad(path, format!("tensor `{name}`: unsupported dtype `{d}`")));
        }
    }
    let info: FileInfo =
        serde_json::from_value(value).map_err(|e| bad(path, format!("tensor `{name}`: corrupt header entry: {e}")))?;
    let (start, end) = info.data_offsets;
    let bits = info
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(info.dtype.bitsize()))
        .ok_or_else(|| bad(path, format!("tensor `{name}`: shape {:?} overflows", info.shape)))?;
    if bits % 8 != 0 {
        return Err(bad(
            path,
            format!(
                "tensor `{name}`: {bits} bits of {} is not a whole number of bytes",
                info.dtype
            ),
        ));
    }
    if end < start || end - start != bits / 8 {
        return Err(bad(
            path,
            format!(
                "tensor `{name}`: data_offsets [{start}, {end}) do not match shape {:?} of {} ({} bytes)",
                info.shape,
                info.dtype,
                bits / 8
            ),
        ));
    }
    if end > data_len {
        return Err(bad(
            path,
            format!("tensor `{name}`: data_offsets [{start}, {end}) out of range: the data section has {data_len} bytes (truncated file?)"),
        ));
    }
    Ok(TensorInfo {
        dtype: from_file_dtype(info.dtype),
        file_dtype: info.dtype.to_string(),
        shape: info.shape,
        data_offsets: (start, end),
        name,
    })
}

/// Sorts by offset and requires the tensors to tile the data section exactly, as the
/// reference implementation does: no overlap, no gap, no trailing bytes.
fn check_tiling(path: &Path, tensors: &mut [TensorInfo], data_len: usize) -> Result<()> {
    tensors.sort_by_key(|t| t.data_offsets);
    let mut pos = 0;
    let mut prev: Option<&str> = None;
    for t in tensors.iter() {
        let (start, end) = t.data_offsets;
        if start != pos {
            let after = prev.map_or("the start of the data section".to_string(), |p| format!("tensor `{p}`"));
            let what = if start < pos { "overlap" } else { "leave a gap after" };
            return Err(bad(
                path,
                format!("tensor `{}`: data_offsets [{start}, {end}) {what} {after}", t.name),
            ));
        }
        pos = end;
        prev = Some(&t.name);
    }
    if pos != data_len {
        return Err(bad(
            path,
            format!(
                "{} bytes after the last tensor are not described by the header",
                data_len - pos
            ),
        ));
    }
    Ok(())
}

/// A tensor to be written: its name, dtype, shape and byte length.
pub(crate) struct Planned<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub nbytes: usize,
}

/// The data order used on save: largest element size first (so every tensor starts
/// aligned to its element size in the 8-aligned data section), then by name.
pub(crate) fn write_order(items: &[Planned]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&items[a], &items[b]);
        b.dtype
            .size_in_bytes()
            .cmp(&a.dtype.size_in_bytes())
            .then(a.name.cmp(b.name))
    });
    order
}

/// Encodes the length prefix and the JSON header (space-padded to a multiple of 8)
/// for `items` written in `order`. `path` names the target in errors.
pub(crate) fn encode(
    path: &Path,
    items: &[Planned],
    order: &[usize],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    for it in items {
        if it.name == METADATA_KEY {
            return Err(bad(
                path,
                format!("`{METADATA_KEY}` is reserved and cannot name a tensor"),
            ));
        }
        if !seen.insert(it.name) {
            return Err(bad(path, format!("duplicate tensor name `{}`", it.name)));
        }
    }
    let mut json = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut json);
    let ser_err = |e: serde_json::Error| bad(path, format!("encoding the header: {e}"));
    let mut map = ser.serialize_map(None).map_err(ser_err)?;
    if let Some(m) = metadata {
        map.serialize_entry(METADATA_KEY, m).map_err(ser_err)?;
    }
    let mut offset = 0;
    for &i in order {
        let it = &items[i];
        let info = FileInfo {
            dtype: to_file_dtype(it.dtype),
            shape: it.shape.to_vec(),
            data_offsets: (offset, offset + it.nbytes),
        };
        offset += it.nbytes;
        map.serialize_entry(it.name, &info).map_err(ser_err)?;
    }
    map.end().map_err(ser_err)?;
    json.resize(json.len().next_multiple_of(LEN_PREFIX), b' ');
    let mut out = Vec::with_capacity(LEN_PREFIX + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}
