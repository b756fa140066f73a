//! safetensors I/O: round trips of every dtype, memory-mapped and zero-copy reads,
//! atomic saves, sharded checkpoints, and a clear error for each kind of bad file.

use half::{bf16, f16};
use moe_tensor::safetensors::{
    load, save, save_sharded, serialize, MmapedSafetensors, SafetensorsReader, ShardedSafetensors, INDEX_FILE,
    SINGLE_FILE,
};
use moe_tensor::{DType, Device, Error, Tensor};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

const CPU: Device = Device::Cpu;

fn t<T: moe_tensor::WithDType>(v: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape.to_vec(), &CPU).unwrap()
}

/// A safetensors file from a literal header and data section (no padding, no checks).
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The message of a `Safetensors` error, checking that it names `path`.
fn st_err<T: std::fmt::Debug>(r: moe_tensor::Result<T>, path: &Path) -> String {
    match r {
        Err(Error::Safetensors { path: p, msg }) => {
            assert_eq!(p, path, "error names the wrong file: {msg}");
            msg
        }
        other => panic!("expected a Safetensors error, got {other:?}"),
    }
}

fn sample() -> Vec<(&'static str, Tensor)> {
    vec![
        ("w.f32", t(vec![1.5f32, -2.0, 3.25, 0.0, 1e-30, -7.0], &[2, 3])),
        (
            "w.f16",
            t(
                [0.5f32, -1.0, 65504.0].iter().map(|&x| f16::from_f32(x)).collect(),
                &[3],
            ),
        ),
        (
            "w.bf16",
            t(
                [1.0f32, -3.5, 1e20, 7.0].iter().map(|&x| bf16::from_f32(x)).collect(),
                &[2, 2],
            ),
        ),
        ("w.f64", t(vec![std::f64::consts::PI, -1e-300], &[2, 1])),
        ("ids", t(vec![i64::MIN, -1, 0, i64::MAX, 42], &[5])),
        ("mask", t(vec![0u8, 1, 255], &[3])),
        ("scalar", t(vec![9.0f32], &[])),
        ("empty", t(Vec::<f32>::new(), &[0, 3])),
    ]
}

fn assert_same(a: &Tensor, b: &Tensor) {
    assert_eq!(a.dtype(), b.dtype());
    assert_eq!(a.dims(), b.dims());
    // Bit patterns, so -0.0 vs 0.0 or NaN payloads would show.
    let bits = |x: &Tensor| -> Vec<u64> {
        match x.dtype() {
            DType::F32 => x.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits() as u64).collect(),
            DType::F16 => x.to_vec::<f16>().unwrap().iter().map(|v| v.to_bits() as u64).collect(),
            DType::BF16 => x.to_vec::<bf16>().unwrap().iter().map(|v| v.to_bits() as u64).collect(),
            DType::F64 => x.to_vec::<f64>().unwrap().iter().map(|v| v.to_bits()).collect(),
            DType::I64 => x.to_vec::<i64>().unwrap().iter().map(|&v| v as u64).collect(),
            DType::U8 => x.to_vec::<u8>().unwrap().iter().map(|&v| v as u64).collect(),
        }
    };
    assert_eq!(bits(a), bits(b));
}

#[test]
fn round_trip_every_dtype_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let tensors = sample();
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    save(&path, tensors.iter().map(|(n, t)| (*n, t)), Some(&meta)).unwrap();
    let loaded = load(&path, &CPU).unwrap();
    assert_eq!(loaded.len(), tensors.len());
    for (name, t) in &tensors {
        assert_same(&loaded[*name], t);
    }
    let f = MmapedSafetensors::open(&path).unwrap();
    assert_eq!(f.metadata(), Some(&meta));
    let info = f.info("w.bf16").unwrap();
    assert_eq!(
        (info.file_dtype.as_str(), info.dtype, info.shape.as_slice()),
        ("BF16", Some(DType::BF16), &[2, 2][..])
    );
    // The file is exactly what serialize produces.
    let bytes = serialize(tensors.iter().map(|(n, t)| (*n, t)), Some(&meta)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn strided_views_are_saved_in_logical_order() {
    let x = t((0..6).map(|v| v as f32).collect(), &[2, 3]);
    let xt = x.t().unwrap();
    assert!(!xt.is_contiguous());
    let bytes = serialize([("xt", &xt)], None).unwrap();
    let r = SafetensorsReader::from_buffer(bytes, "<mem>").unwrap();
    let back = r.load("xt", &CPU).unwrap();
    assert_eq!(back.dims(), &[3, 2]);
    assert_eq!(back.to_vec::<f32>().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    // A contiguous view at an offset into shared storage writes only its own elements.
    let row = x.narrow(0, 1, 1).unwrap();
    let r = SafetensorsReader::from_buffer(serialize([("row", &row)], None).unwrap(), "<mem>").unwrap();
    assert_eq!(
        r.load("row", &CPU).unwrap().to_vec::<f32>().unwrap(),
        vec![3.0, 4.0, 5.0]
    );
}

#[test]
fn mmap_views_borrow_aligned_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let tensors = sample();
    save(&path, tensors.iter().map(|(n, t)| (*n, t)), None).unwrap();
    let f = MmapedSafetensors::open(&path).unwrap();
    // Saves order data by element size, so every tensor is aligned in the map.
    let v = f.view::<f32>("w.f32").unwrap();
    assert!(matches!(v, Cow::Borrowed(_)));
    assert_eq!(&v[..3], &[1.5, -2.0, 3.25]);
    assert!(matches!(f.view::<f64>("w.f64").unwrap(), Cow::Borrowed(_)));
    assert!(matches!(f.view::<i64>("ids").unwrap(), Cow::Borrowed(_)));
    let msg = st_err(f.view::<f64>("w.f32"), &path);
    assert!(msg.contains("w.f32") && msg.contains("F32"), "{msg}");
}

#[test]
fn misaligned_data_is_copied_not_misread() {
    let values = [1.0f32, -2.5, 3.75];
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    // Pad the header with spaces until the data section starts at an address that is
    // not 4-aligned (the capacity is reserved, so the buffer does not move).
    let base = buf.as_ptr() as usize;
    let mut header = r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}"#.to_string();
    while (base + 8 + header.len()) % 4 != 1 {
        header.push(' ');
    }
    buf.extend_from_slice(&raw(&header, &data));
    assert_eq!(buf.as_ptr() as usize, base);
    let r = SafetensorsReader::from_buffer(&buf[..], "<mem>").unwrap();
    let v = r.view::<f32>("x").unwrap();
    assert!(matches!(v, Cow::Owned(_)));
    assert_eq!(&v[..], &values);
    assert_eq!(r.load("x", &CPU).unwrap().to_vec::<f32>().unwrap(), values);
}

#[test]
fn save_replaces_atomically_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let a = t(vec![1.0f32, 2.0], &[2]);
    save(&path, [("a", &a)], None).unwrap();
    let before = std::fs::read(&path).unwrap();
    // A failing save (duplicate names) keeps the old file and cleans up.
    let msg = st_err(save(&path, [("a", &a), ("a", &a)], None), &path);
    assert!(msg.contains("duplicate tensor name `a`"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A successful overwrite.
    let b = t(vec![5i64, 6, 7], &[3]);
    save(&path, [("b", &b)], None).unwrap();
    let loaded = load(&path, &CPU).unwrap();
    assert_eq!(loaded.keys().collect::<Vec<_>>(), vec!["b"]);
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("m.safetensors")]);
}

#[test]
fn reserved_and_missing_names() {
    let a = t(vec![1.0f32], &[1]);
    let msg = st_err(serialize([("__metadata__", &a)], None), Path::new("<memory>"));
    assert!(msg.contains("reserved"), "{msg}");
    let r = SafetensorsReader::from_buffer(serialize([("a", &a)], None).unwrap(), "<mem>").unwrap();
    let msg = st_err(r.load("nope", &CPU), Path::new("<mem>"));
    assert!(msg.contains("`nope`"), "{msg}");
}

/// Writes `bytes` to a file and returns the error its opening gives.
fn open_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    st_err(MmapedSafetensors::open(&path), &path)
}

#[test]
fn truncated_files_are_rejected() {
    let a = t(vec![1.0f32; 4], &[4]);
    let b = t(vec![2.0f32; 4], &[4]);
    let good = serialize([("a", &a), ("b", &b)], None).unwrap();
    let msg = open_err(&good[..good.len() - 3]);
    assert!(
        msg.contains("tensor `b`") && msg.contains("out of range") && msg.contains("truncated"),
        "{msg}"
    );
    let msg = open_err(&good[..5]);
    assert!(msg.contains("truncated"), "{msg}");
    let msg = open_err(&good[..20]);
    assert!(msg.contains("truncated: header claims"), "{msg}");
    let msg = open_err(&[]);
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn corrupt_headers_are_rejected() {
    let msg = open_err(&raw(r#"{"a":{"dtype":"F32","#, &[0; 4]));
    assert!(msg.contains("corrupt header JSON"), "{msg}");
    let msg = open_err(&raw("[1,2]", &[]));
    assert!(msg.contains("corrupt header JSON"), "{msg}");
    let msg = open_err(&raw(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &[0; 4]));
    assert!(msg.contains("tensor `a`") && msg.contains("data_offsets"), "{msg}");
    let msg = open_err(&raw(r#"{"__metadata__":{"k":1}}"#, &[]));
    assert!(msg.contains("__metadata__"), "{msg}");
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let msg = open_err(&huge);
    assert!(msg.contains("header length"), "{msg}");
    let mut not_utf8 = 3u64.to_le_bytes().to_vec();
    not_utf8.extend_from_slice(b"{\xff}");
    let msg = open_err(&not_utf8);
    assert!(msg.contains("corrupt header"), "{msg}");
}

#[test]
fn bad_offsets_are_rejected_naming_the_tensor() {
    // Past the end of the data section.
    let msg = open_err(&raw(
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        &[0; 8],
    ));
    assert!(msg.contains("tensor `a`") && msg.contains("out of range"), "{msg}");
    // Byte count disagrees with shape × dtype.
    let msg = open_err(&raw(
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#,
        &[0; 12],
    ));
    assert!(
        msg.contains("tensor `a`") && msg.contains("do not match shape [4]"),
        "{msg}"
    );
    // End before start.
    let msg = open_err(&raw(
        r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#,
        &[0; 4],
    ));
    assert!(msg.contains("tensor `a`"), "{msg}");
    // Overlap and gap.
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let msg = open_err(&raw(h, &[0; 8]));
    assert!(msg.contains("tensor `b`") && msg.contains("overlap"), "{msg}");
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    let msg = open_err(&raw(h, &[0; 12]));
    assert!(
        msg.contains("tensor `b`") && msg.contains("gap after tensor `a`"),
        "{msg}"
    );
    // Trailing bytes no tensor describes.
    let msg = open_err(&raw(
        r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#,
        &[0; 5],
    ));
    assert!(msg.contains("3 bytes after the last tensor"), "{msg}");
    // Shape whose size overflows.
    let h = r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
    let msg = open_err(&raw(h, &[0; 8]));
    assert!(msg.contains("tensor `a`") && msg.contains("overflows"), "{msg}");
}

#[test]
fn duplicate_names_in_a_header_are_rejected() {
    let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let msg = open_err(&raw(h, &[0; 8]));
    assert!(msg.contains("duplicate tensor name `a`"), "{msg}");
}

#[test]
fn unsupported_dtypes_are_listed_but_not_loaded() {
    let h = r#"{"n":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"x":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    let r = SafetensorsReader::from_buffer(raw(h, &[0; 12]), "f.safetensors").unwrap();
    let info = r.info("n").unwrap();
    assert_eq!((info.file_dtype.as_str(), info.dtype), ("I32", None));
    assert_eq!(r.load("x", &CPU).unwrap().to_vec::<f32>().unwrap(), vec![0.0]);
    let msg = st_err(r.load("n", &CPU), Path::new("f.safetensors"));
    assert!(
        msg.contains("tensor `n`") && msg.contains("unsupported dtype I32"),
        "{msg}"
    );
    assert!(r.load_all(&CPU).is_err());
    // A dtype safetensors itself does not know is a header error naming the tensor.
    let msg = open_err(&raw(
        r#"{"q":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}"#,
        &[0; 1],
    ));
    assert!(
        msg.contains("tensor `q`") && msg.contains("unsupported dtype `Q4`"),
        "{msg}"
    );
}

#[test]
fn io_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.safetensors");
    match MmapedSafetensors::open(&path) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Io error, got {other:?}"),
    }
}

// ---- sharded checkpoints ----

/// Six f32 tensors of 64 bytes each plus one of 256 bytes.
fn checkpoint() -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = (0..6)
        .map(|i| {
            (
                format!("layers.{i}.w"),
                t((0..16).map(|j| (i * 16 + j) as f32).collect(), &[4, 4]),
            )
        })
        .collect();
    v.insert(2, ("big".into(), t((0..64).map(|j| j as f32 * 0.5).collect(), &[64])));
    v
}

fn by_ref(v: &[(String, Tensor)]) -> impl Iterator<Item = (&str, &Tensor)> {
    v.iter().map(|(n, t)| (n.as_str(), t))
}

#[test]
fn sharded_save_splits_like_hf_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let ck = checkpoint();
    // 128-byte shards: [l0, l1], [big] (alone: larger than a shard), [l3, l4], [l5].
    let files = save_sharded(dir.path(), by_ref(&ck), 128, None).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "model-00001-of-00004.safetensors",
            "model-00002-of-00004.safetensors",
            "model-00003-of-00004.safetensors",
            "model-00004-of-00004.safetensors",
            INDEX_FILE
        ]
    );
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[4]).unwrap()).unwrap();
    assert_eq!(index["metadata"]["total_size"], 6 * 64 + 256);
    assert_eq!(index["weight_map"]["big"], "model-00002-of-00004.safetensors");
    assert_eq!(index["weight_map"]["layers.5.w"], "model-00004-of-00004.safetensors");
    for source in [dir.path().to_path_buf(), files[4].clone()] {
        let s = ShardedSafetensors::open(&source).unwrap();
        assert_eq!(s.len(), ck.len());
        assert_eq!(s.shard_paths().count(), 4);
        assert_eq!(s.total_size(), Some(6 * 64 + 256));
        let all = s.load_all(&CPU).unwrap();
        for (n, t) in &ck {
            assert_same(&all[n], t);
        }
    }
}

#[test]
fn sharded_save_to_one_file_replaces_an_old_sharded_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ck = checkpoint();
    save_sharded(dir.path(), by_ref(&ck), 128, None).unwrap();
    let small = vec![("only".to_string(), t(vec![1.0f32], &[1]))];
    let files = save_sharded(dir.path(), by_ref(&small), 1 << 20, None).unwrap();
    assert_eq!(files, vec![dir.path().join(SINGLE_FILE)]);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from(SINGLE_FILE)]);
    let s = ShardedSafetensors::open(dir.path()).unwrap();
    assert_eq!(s.names().collect::<Vec<_>>(), vec!["only"]);
    // And back to shards: the single file is removed.
    save_sharded(dir.path(), by_ref(&ck), 128, None).unwrap();
    assert!(!dir.path().join(SINGLE_FILE).exists());
    assert_eq!(ShardedSafetensors::open(dir.path()).unwrap().len(), ck.len());
}

#[test]
fn sharded_save_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let a = t(vec![1.0f32], &[1]);
    let msg = st_err(save_sharded(dir.path(), [("a", &a), ("a", &a)], 100, None), dir.path());
    assert!(msg.contains("duplicate tensor name `a`"), "{msg}");
    let msg = st_err(save_sharded(dir.path(), [("a", &a)], 0, None), dir.path());
    assert!(msg.contains("max_shard_bytes"), "{msg}");
}

/// A two-shard checkpoint written by hand, HF style (no save id).
fn hf_checkpoint(dir: &Path, weight_map: &str) {
    let a = t(vec![1.0f32, 2.0], &[2]);
    let b = t(vec![3.0f32], &[1]);
    save(dir.join("model-00001-of-00002.safetensors"), [("a", &a)], None).unwrap();
    save(dir.join("model-00002-of-00002.safetensors"), [("b", &b)], None).unwrap();
    let index = format!(r#"{{"metadata": {{"total_size": 12}}, "weight_map": {weight_map}}}"#);
    std::fs::write(dir.join(INDEX_FILE), index).unwrap();
}

const S1: &str = "model-00001-of-00002.safetensors";
const S2: &str = "model-00002-of-00002.safetensors";

fn sharded_err(dir: &Path, weight_map: &str) -> (std::path::PathBuf, String) {
    hf_checkpoint(dir, weight_map);
    match ShardedSafetensors::open(dir) {
        Err(Error::Safetensors { path, msg }) => (path, msg),
        other => panic!("expected a Safetensors error, got {other:?}"),
    }
}

#[test]
fn hf_index_without_save_id_loads() {
    let dir = tempfile::tempdir().unwrap();
    hf_checkpoint(dir.path(), &format!(r#"{{"a": "{S1}", "b": "{S2}"}}"#));
    let s = ShardedSafetensors::open(dir.path().join(INDEX_FILE)).unwrap();
    assert_eq!(s.load("a", &CPU).unwrap().to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    assert_eq!(s.load("b", &CPU).unwrap().to_vec::<f32>().unwrap(), vec![3.0]);
    assert_eq!(s.total_size(), Some(12));
}

#[test]
fn index_naming_a_missing_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (path, msg) = sharded_err(
        dir.path(),
        r#"{"a": "model-00001-of-00003.safetensors", "b": "model-00003-of-00003.safetensors"}"#,
    );
    assert_eq!(path, dir.path().join("model-00001-of-00003.safetensors"));
    assert!(
        msg.contains("does not exist") && msg.contains("tensor `a`") && msg.contains(INDEX_FILE),
        "{msg}"
    );
}

#[test]
fn tensor_listed_in_index_but_absent_from_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (path, msg) = sharded_err(dir.path(), &format!(r#"{{"a": "{S1}", "b": "{S2}", "c": "{S2}"}}"#));
    assert_eq!(path, dir.path().join(S2));
    assert!(
        msg.contains("tensor `c`") && msg.contains("absent from this shard"),
        "{msg}"
    );
}

#[test]
fn tensor_in_a_shard_but_not_in_index() {
    let dir = tempfile::tempdir().unwrap();
    hf_checkpoint(dir.path(), &format!(r#"{{"a": "{S1}", "b": "{S2}"}}"#));
    let (a, x) = (t(vec![1.0f32, 2.0], &[2]), t(vec![0.0f32], &[1]));
    save(dir.path().join(S1), [("a", &a), ("x", &x)], None).unwrap();
    match ShardedSafetensors::open(dir.path()) {
        Err(Error::Safetensors { path, msg }) => {
            assert_eq!(path, dir.path().join(S1));
            assert!(
                msg.contains("tensor `x` is not listed") && msg.contains(INDEX_FILE),
                "{msg}"
            );
        }
        other => panic!("expected a Safetensors error, got {other:?}"),
    }
}

#[test]
fn duplicate_tensors_across_shards_and_in_weight_map() {
    let dir = tempfile::tempdir().unwrap();
    hf_checkpoint(dir.path(), &format!(r#"{{"a": "{S1}", "b": "{S2}"}}"#));
    // Shard 2 also stores `a`.
    let a = t(vec![9.0f32, 9.0], &[2]);
    let b = t(vec![3.0f32], &[1]);
    save(dir.path().join(S2), [("a", &a), ("b", &b)], None).unwrap();
    match ShardedSafetensors::open(dir.path()) {
        Err(Error::Safetensors { path, msg }) => {
            assert_eq!(path, dir.path().join(S2));
            assert!(msg.contains("duplicate tensor `a`") && msg.contains(S1), "{msg}");
        }
        other => panic!("expected a Safetensors error, got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, msg) = sharded_err(dir.path(), &format!(r#"{{"a": "{S1}", "a": "{S2}", "b": "{S2}"}}"#));
    assert_eq!(path, dir.path().join(INDEX_FILE));
    assert!(msg.contains("duplicate tensor name `a` in weight_map"), "{msg}");
}

#[test]
fn corrupt_or_unsafe_index() {
    let dir = tempfile::tempdir().unwrap();
    let (path, msg) = sharded_err(dir.path(), r#"{"a": "#);
    assert_eq!(path, dir.path().join(INDEX_FILE));
    assert!(msg.contains("corrupt index JSON"), "{msg}");
    let (_, msg) = sharded_err(dir.path(), r#"{"a": "../model-00001-of-00002.safetensors"}"#);
    assert!(
        msg.contains("weight_map entry `a`") && msg.contains("not a file name"),
        "{msg}"
    );
    let (_, msg) = sharded_err(dir.path(), r#"{"a": 3}"#);
    assert!(msg.contains("weight_map entry `a`"), "{msg}");
    let empty = tempfile::tempdir().unwrap();
    let msg = st_err(ShardedSafetensors::open(empty.path()), empty.path());
    assert!(msg.contains(INDEX_FILE) && msg.contains(SINGLE_FILE), "{msg}");
}

#[test]
fn shards_from_an_interrupted_save_are_detected() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ck = checkpoint();
    let ck2: Vec<(String, Tensor)> = ck
        .iter()
        .map(|(n, t)| (n.clone(), t.mul_scalar(2.0).unwrap()))
        .collect();
    save_sharded(d1.path(), by_ref(&ck), 128, None).unwrap();
    save_sharded(d2.path(), by_ref(&ck2), 128, None).unwrap();
    // As if a second save into d1 died after rewriting shard 3 but before the index.
    let s3 = "model-00003-of-00004.safetensors";
    std::fs::copy(d2.path().join(s3), d1.path().join(s3)).unwrap();
    match ShardedSafetensors::open(d1.path()) {
        Err(Error::Safetensors { path, msg }) => {
            assert_eq!(path, d1.path().join(s3));
            assert!(msg.contains("interrupted save"), "{msg}");
        }
        other => panic!("expected a Safetensors error, got {other:?}"),
    }
}

// ---- files written by the Python ecosystem (tools/goldens/gen_io.py) ----

fn hf_io(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens/hf_io")
        .join(p)
}

#[test]
fn file_written_by_safetensors_torch_loads_exactly() {
    let f = MmapedSafetensors::open(hf_io("torch_dtypes.safetensors")).unwrap();
    assert_eq!(
        f.metadata().and_then(|m| m.get("format")).map(String::as_str),
        Some("pt")
    );
    let all = f.load_all(&CPU).unwrap();
    // Values of (k - 5) / 8, exact in every float dtype.
    let k: Vec<f64> = (0..12).map(|k| (k as f64 - 5.0) * 0.125).collect();
    assert_same(&all["f32"], &t(k.iter().map(|&v| v as f32).collect(), &[3, 4]));
    assert_same(&all["f16"], &t(k.iter().map(|&v| f16::from_f64(v)).collect(), &[12]));
    assert_same(
        &all["bf16"],
        &t(k.iter().map(|&v| bf16::from_f64(v)).collect(), &[2, 6]),
    );
    assert_same(&all["f64"], &t((0..5).map(|i| (i as f64 - 2.0) * 0.1).collect(), &[5]));
    assert_same(&all["i64"], &t((0..4).map(|i| i * (1i64 << 40) - 7).collect(), &[4]));
    assert_same(&all["u8"], &t((0..7u8).map(|i| i * 37).collect(), &[7]));
    assert_same(&all["scalar"], &t(vec![2.5f32], &[]));
}

#[test]
fn checkpoint_sharded_by_huggingface_hub_loads() {
    let s = ShardedSafetensors::open(hf_io("sharded")).unwrap();
    assert_eq!(s.shard_paths().count(), 5);
    assert_eq!(s.total_size(), Some(1280));
    assert_eq!(s.len(), 10);
    for i in 0..10 {
        let name = format!("layers.{i}.weight");
        let want = t((0..32).map(|j| (j + 100 * i) as f32 * 0.5).collect(), &[8, 4]);
        assert_same(&s.load(&name, &CPU).unwrap(), &want);
        let shard = s
            .shard_of(&name)
            .unwrap()
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(shard, format!("model-{:05}-of-00005.safetensors", i / 2 + 1));
    }
}
