//! The built-in corpus: deterministic, offline, procedurally generated text
//! in three clearly different domains, so `moe demo` can pre-train on one
//! and continue on another on a fresh machine with no downloads.
//!
//! | domain | what it is |
//! |---|---|
//! | `english` | short English-like stories/reports from a grammar: recurring protagonist, place and topic per document |
//! | `german` | German-like prose on similar topics: gendered articles, case endings, umlauts and ß |
//! | `code` | Python-like modules: functions, loops, conditions, docstrings, classes |
//!
//! Each document is generated from its own SplitMix64 stream keyed by
//! (seed, domain, document number), so the corpus is identical everywhere
//! and any prefix of it is the same whatever the size asked for.

mod code;
mod english;
mod german;
mod rng;

use crate::error::{DataError, Result};
use crate::prepare::{prepare_documents, PrepareOptions, Progress};
use crate::tokenizer::{train_bpe, BpeOptions, Tokenizer};
use rng::Rng;
use std::path::Path;

/// One built-in domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinDomain {
    /// English-like stories.
    English,
    /// German-like prose.
    German,
    /// Python-like code.
    Code,
}

impl BuiltinDomain {
    /// Every built-in domain.
    pub const ALL: [BuiltinDomain; 3] = [Self::English, Self::German, Self::Code];

    /// Its domain name in a dataset.
    pub fn name(self) -> &'static str {
        match self {
            Self::English => "english",
            Self::German => "german",
            Self::Code => "code",
        }
    }

    /// One line on what it is.
    pub fn description(self) -> &'static str {
        match self {
            Self::English => "English-like stories and reports generated from a grammar",
            Self::German => "German-like prose (articles, case endings, umlauts) generated from a grammar",
            Self::Code => "Python-like modules: functions, loops, conditions, docstrings, classes",
        }
    }

    /// Parses a domain name.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| DataError::Domain {
                name: name.to_string(),
                reason: "not a built-in domain (english, german, code)".into(),
            })
    }

    /// Document `i` of this domain.
    pub fn document(self, seed: u64, i: u64) -> String {
        let stream = (self as u64) << 56 ^ i;
        let mut r = Rng::new(seed, stream);
        match self {
            Self::English => english::document(&mut r),
            Self::German => german::document(&mut r),
            Self::Code => code::document(&mut r),
        }
    }

    /// Documents `0..n`.
    pub fn documents(self, seed: u64, n: u64) -> impl Iterator<Item = String> + Send {
        (0..n).map(move |i| self.document(seed, i))
    }
}

/// Options for [`build`].
#[derive(Debug, Clone)]
pub struct BuiltinOptions {
    /// Domains to write.
    pub domains: Vec<BuiltinDomain>,
    /// Documents per domain.
    pub docs_per_domain: u64,
    /// BPE vocabulary size of the tokenizer trained on the corpus.
    pub vocab_size: usize,
    /// Corpus and split seed.
    pub seed: u64,
    /// Share of documents held out for validation.
    pub val_fraction: f64,
    /// Documents per domain used to train the tokenizer.
    pub tokenizer_docs: u64,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        Self {
            domains: BuiltinDomain::ALL.to_vec(),
            docs_per_domain: 20_000,
            vocab_size: 2048,
            seed: 0,
            val_fraction: 0.05,
            tokenizer_docs: 2_000,
        }
    }
}

/// Trains a byte-level BPE on the corpus and writes every domain of it to
/// `out` (a folder that must not hold a dataset yet). Returns the tokenizer.
pub fn build(out: &Path, opts: &BuiltinOptions, progress: &(dyn Fn(&str, &Progress) + Sync)) -> Result<Tokenizer> {
    if out.join(crate::manifest::MANIFEST).exists() {
        return Err(DataError::invalid(
            "output",
            format!("{} already holds a dataset", out.display()),
        ));
    }
    if opts.domains.is_empty() {
        return Err(DataError::invalid("built-in domains", "none selected"));
    }
    let (seed, n_tok) = (opts.seed, opts.tokenizer_docs.min(opts.docs_per_domain));
    let domains = opts.domains.clone();
    // Interleave domains so the tokenizer sees each equally.
    let sample = (0..n_tok).flat_map(move |i| domains.clone().into_iter().map(move |d| d.document(seed, i)));
    let json = train_bpe(
        sample,
        &BpeOptions {
            vocab_size: opts.vocab_size,
            ..Default::default()
        },
    )?;
    let tok = Tokenizer::from_json_bytes(json.into_bytes(), &out.join("tokenizer.json"), None)?;
    for &d in &opts.domains {
        let mut p = PrepareOptions::new(d.name());
        p.seed = opts.seed;
        p.val_fraction = opts.val_fraction;
        let source = vec![format!(
            "builtin:{} (seed {}, {} documents)",
            d.name(),
            opts.seed,
            opts.docs_per_domain
        )];
        prepare_documents(
            &tok,
            d.documents(opts.seed, opts.docs_per_domain),
            source,
            out,
            &p,
            &|pr| progress(d.name(), pr),
        )?;
    }
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_deterministic_and_distinct() {
        for d in BuiltinDomain::ALL {
            let a: Vec<String> = d.documents(7, 50).collect();
            assert_eq!(a, d.documents(7, 50).collect::<Vec<_>>());
            assert_ne!(a, d.documents(8, 50).collect::<Vec<_>>());
            assert!(a.iter().all(|t| !t.trim().is_empty()));
            let unique: std::collections::HashSet<&String> = a.iter().collect();
            assert!(
                unique.len() > 45,
                "{}: only {} distinct documents",
                d.name(),
                unique.len()
            );
            assert_eq!(BuiltinDomain::from_name(d.name()).unwrap(), d);
        }
        let code: String = BuiltinDomain::Code.documents(0, 20).collect();
        let en: String = BuiltinDomain::English.documents(0, 20).collect();
        let de: String = BuiltinDomain::German.documents(0, 20).collect();
        assert!(code.contains("def ") && code.contains("return"));
        assert!(en.contains(" the ") && !en.contains("def "));
        assert!(de.contains(" der ") || de.contains(" die ") || de.contains(" dem "));
        assert!(!de.contains(" the "));
    }
}
