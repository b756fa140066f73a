//! `moe report`: a Markdown report over run folders, with a JSON file beside
//! every table and every plot as PNG and SVG.

pub mod plot;
pub mod png;
