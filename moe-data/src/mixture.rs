//! Domain mixtures: which domains a sampler draws from, and in what share.
//! `german=0.6,english=0.4` is CPT on German with 40% replay of English.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Normalised, positive domain weights, sorted by domain name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, f64>", into = "BTreeMap<String, f64>")]
pub struct Mixture {
    entries: Vec<(String, f64)>,
}

impl Mixture {
    /// Builds a mixture; weights must be finite and non-negative with a
    /// positive sum. They are normalised; zero-weight domains are dropped.
    pub fn new(weights: BTreeMap<String, f64>) -> Result<Self> {
        let bad = |reason: String| DataError::invalid("mixture", reason);
        if let Some((n, w)) = weights.iter().find(|(_, w)| !w.is_finite() || **w < 0.0) {
            return Err(bad(format!("weight of `{n}` is {w}; weights must be finite and >= 0")));
        }
        let sum: f64 = weights.values().sum();
        if sum <= 0.0 {
            return Err(bad(
                "weights sum to 0; give at least one domain a positive weight".into()
            ));
        }
        let entries = weights
            .into_iter()
            .filter(|(_, w)| *w > 0.0)
            .map(|(n, w)| (n, w / sum))
            .collect();
        Ok(Self { entries })
    }

    /// One domain only.
    pub fn single(domain: &str) -> Self {
        Self {
            entries: vec![(domain.to_string(), 1.0)],
        }
    }

    /// Parses `name=weight[,name=weight...]` (a bare `name` means weight 1).
    pub fn parse(spec: &str) -> Result<Self> {
        let mut map = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = match part.split_once('=') {
                Some((n, w)) => {
                    let w: f64 = w.trim().parse().map_err(|_| {
                        DataError::invalid("mixture", format!("`{part}`: weight `{}` is not a number", w.trim()))
                    })?;
                    (n.trim(), w)
                }
                None => (part, 1.0),
            };
            if map.insert(name.to_string(), w).is_some() {
                return Err(DataError::invalid("mixture", format!("domain `{name}` named twice")));
            }
        }
        if map.is_empty() {
            return Err(DataError::invalid("mixture", format!("`{spec}` names no domain")));
        }
        Self::new(map)
    }

    /// `(domain, normalised weight)` pairs, sorted by name.
    pub fn entries(&self) -> &[(String, f64)] {
        &self.entries
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true for a constructed mixture.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TryFrom<BTreeMap<String, f64>> for Mixture {
    type Error = DataError;
    fn try_from(m: BTreeMap<String, f64>) -> Result<Self> {
        Self::new(m)
    }
}

impl From<Mixture> for BTreeMap<String, f64> {
    fn from(m: Mixture) -> Self {
        m.entries.into_iter().collect()
    }
}

impl std::fmt::Display for Mixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.entries.iter().map(|(n, w)| format!("{n}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_normalises_and_rejects() {
        let m = Mixture::parse("german=3, english=2,code=0").unwrap();
        assert_eq!(
            m.entries(),
            &[("english".to_string(), 0.4), ("german".to_string(), 0.6)]
        );
        assert_eq!(Mixture::parse("a").unwrap().entries(), &[("a".to_string(), 1.0)]);
        for bad in ["", "a=x", "a=-1", "a=0", "a=1,a=2", "a=inf"] {
            assert!(Mixture::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Mixture>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Mixture>(r#"{"a":-1}"#).is_err());
    }
}
