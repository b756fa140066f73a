//! Markdown tables, each written with a JSON file beside it.

/// A table: headers and rows of already formatted cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows; each as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// GitHub-flavoured Markdown; `|` in cells is escaped.
    pub fn to_markdown(&self) -> String {
        let esc = |s: &String| s.replace('|', "\\|");
        let mut out = format!("| {} |\n", self.headers.iter().map(esc).collect::<Vec<_>>().join(" | "));
        out += &format!("|{}\n", "---|".repeat(self.headers.len()));
        for r in &self.rows {
            out += &format!("| {} |\n", r.iter().map(esc).collect::<Vec<_>>().join(" | "));
        }
        out
    }
}

/// `x` with 4 decimals, or `n/a`.
pub fn num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "n/a".into(),
    }
}

/// `x` with a sign and 4 decimals, or `n/a`.
pub fn signed(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:+.4}"),
        _ => "n/a".into(),
    }
}

/// `0.25` as `25.0%`.
pub fn pct(x: f64) -> String {
    // `+ 0.0` turns -0.0 (an empty f64 sum) into 0.0.
    format!("{:.1}%", 100.0 * x + 0.0)
}

/// A file-name-safe form of `name`: lowercase ASCII letters, digits, `-`,
/// and single `_` for anything else.
pub fn slug(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            s.push(c.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('_') {
            s.push('_');
        }
    }
    let s = s.trim_end_matches('_');
    if s.is_empty() {
        "unnamed".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_formatting() {
        let mut t = Table::new(&["a", "b"]);
        t.push(vec!["1|2".into(), "x".into()]);
        assert_eq!(t.to_markdown(), "| a | b |\n|---|---|\n| 1\\|2 | x |\n");
        assert_eq!(num(Some(1.23456)), "1.2346");
        assert_eq!(num(Some(f64::NAN)), "n/a");
        assert_eq!(signed(Some(0.5)), "+0.5000");
        assert_eq!(pct(0.05), "5.0%");
        assert_eq!(pct(-0.0), "0.0%");
        assert_eq!(slug("moe cpt/a"), "moe_cpt_a");
        assert_eq!(
            slug("MoE 31x top-3 + shared, Sinkhorn"),
            "moe_31x_top-3_shared_sinkhorn"
        );
        assert_eq!(slug("_x_"), "x");
    }
}
