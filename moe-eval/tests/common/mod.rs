//! Shared test fixtures: a tiny built-in dataset and tiny random models.
#![allow(dead_code)]

use moe_data::builtin::{build, BuiltinDomain, BuiltinOptions};
use moe_model::presets::debug_dense;
use moe_model::{Decoder, ModelConfig};
use moe_tensor::init::Rng;
use moe_tensor::Device;
use std::path::Path;

/// A two-domain (english, german) dataset in `dir`; returns the tokenizer's vocabulary size.
pub fn tiny_dataset(dir: &Path, seed: u64, vocab: usize) -> usize {
    let opts = BuiltinOptions {
        domains: vec![BuiltinDomain::English, BuiltinDomain::German],
        docs_per_domain: 300,
        vocab_size: vocab,
        seed,
        val_fraction: 0.2,
        tokenizer_docs: 300,
    };
    let tok = build(dir, &opts, &|_, _| {}).expect("build dataset");
    tok.vocab_size() as usize
}

/// A tiny config: 2 layers, D 32, V `vocab`; MoE with top-2 of 4 experts when `moe`.
pub fn tiny_config(vocab: usize, moe: bool) -> ModelConfig {
    let mut c = debug_dense();
    c.vocab_size = vocab;
    c.init_std = 0.2;
    if moe {
        c = c.switch_from_dense(4).unwrap();
        let m = c.moe.as_mut().unwrap();
        m.router.top_k = 2;
        m.expert_intermediate_size = 32;
    }
    c
}

/// A random model of `tiny_config`.
pub fn tiny_model(vocab: usize, moe: bool, seed: u64) -> Decoder {
    Decoder::new(&tiny_config(vocab, moe), &mut Rng::seed(seed), &Device::Cpu).unwrap()
}

/// Saves `model` into `dir` with the dataset `data`'s tokenizer beside it.
pub fn save_checkpoint(model: &Decoder, dir: &Path, data: &Path) {
    moe_model::save_model_dir(model, dir).unwrap();
    std::fs::copy(data.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
}

/// Decodes a PNG with the `png` crate (an independent decoder); returns (width, height, RGB bytes).
pub fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature of {}", path.display());
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// The text content of every node of an SVG file (asserting it parses as XML with an `svg` root).
pub fn svg_texts(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("valid XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants().filter_map(|n| n.text()).collect::<Vec<_>>().join("|")
}
