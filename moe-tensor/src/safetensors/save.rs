//! Writing safetensors files.

use super::atomic::{write_all, write_atomic};
use super::codec::with_tensor_bytes;
use super::header::{encode, write_order, Planned};
use crate::{Result, Tensor};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Writes the header and data of `tensors` to `w`; `path` names the target in errors.
pub(crate) fn write_tensors<S: AsRef<str>>(
    w: &mut impl Write,
    path: &Path,
    tensors: &[(S, &Tensor)],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let items: Vec<Planned> = tensors
        .iter()
        .map(|(name, t)| Planned {
            name: name.as_ref(),
            dtype: t.dtype(),
            shape: t.dims(),
            nbytes: t.elem_count() * t.dtype().size_in_bytes(),
        })
        .collect();
    let order = write_order(&items);
    write_all(w, &encode(path, &items, &order, metadata)?, path)?;
    for i in order {
        with_tensor_bytes(tensors[i].1, |bytes| write_all(w, bytes, path))?;
    }
    Ok(())
}

/// The bytes of a safetensors file holding `tensors` (any layout; views are written
/// in logical order) and an optional `__metadata__` map.
///
/// Fails on a duplicate name, naming it.
pub fn serialize<'a, S: AsRef<str>>(
    tensors: impl IntoIterator<Item = (S, &'a Tensor)>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Vec<u8>> {
    let tensors: Vec<(S, &Tensor)> = tensors.into_iter().collect();
    let mut out = Vec::new();
    write_tensors(&mut out, Path::new("<memory>"), &tensors, metadata)?;
    Ok(out)
}

/// Saves `tensors` to `path` atomically (temporary file in the same directory, fsync,
/// rename): `path` holds either its previous content or the complete new file.
///
/// HF loaders expect `metadata` to contain `"format": "pt"`.
pub fn save<'a, S: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (S, &'a Tensor)>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let tensors: Vec<(S, &Tensor)> = tensors.into_iter().collect();
    write_atomic(path, |w| write_tensors(w, path, &tensors, metadata))
}
