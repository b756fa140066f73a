//! Assembles `report.md`: each section's table, its JSON and its figures.

use super::plot::{save_figure, Figure};
use super::sections::{
    domains_of, forgetting_section, losses_section, routing_section, runs_section, training_sections,
};
use super::table::Table;
use super::{ReportOptions, ReportSummary};
use crate::error::Result;
use crate::io::{write_atomic, write_json};
use crate::runs::Run;
use std::path::Path;

/// Collects the report's Markdown, files and findings.
pub(super) struct Writer<'a> {
    out: &'a Path,
    md: String,
    summary: ReportSummary,
    /// Plain-language findings, listed at the top.
    pub(super) findings: Vec<String>,
}

impl Writer<'_> {
    pub(super) fn text(&mut self, s: &str) {
        self.md.push_str(s);
        self.md.push('\n');
    }

    pub(super) fn table(&mut self, t: &Table, json_name: &str, value: &impl serde::Serialize) -> Result<()> {
        let path = self.out.join(json_name);
        write_json(&path, value)?;
        self.summary.json.push(path);
        self.md.push_str(&t.to_markdown());
        self.md.push_str(&format!("\n_Data: [{json_name}]({json_name})_\n\n"));
        Ok(())
    }

    pub(super) fn figure(&mut self, fig: &Figure, stem: &str, caption: &str) -> Result<()> {
        let (svg, png) = save_figure(fig, &self.out.join(stem))?;
        self.md.push_str(&format!(
            "![{caption}]({stem}.png)\n\n_{caption}_ ([SVG]({stem}.svg))\n\n"
        ));
        self.summary.images.extend([png, svg]);
        Ok(())
    }

    pub(super) fn note(&mut self, s: String) {
        self.summary.notes.push(s);
    }
}

const INTRO: &str = "\
This report compares training runs of language models, some of which continue pre-training (CPT) \
from another run's checkpoint on new data. It answers three questions: how much a model **forgets** \
its old data when it continues on new data, whether the **routers** of Mixture-of-Experts (MoE) models \
stay balanced, and whether MoEs keep their **sample efficiency** over dense models.

How to read it:
- *Validation loss* is the mean next-token cross-entropy (nats per token) on fixed held-out text of one \
domain; lower is better. Perplexity is `exp(loss)`.
- *Old domain*: data the run's parent was trained on. *New domain*: data it was not.
- *Forgetting* = old-domain loss at the end of CPT − the same loss where CPT started (positive = forgot). \
*Adaptation* = the same difference on a new domain (negative = learned it).
- *Replay share*: the part of the CPT run's training tokens drawn from old domains.
- *Re-training baseline*: a model of the same configuration trained on all domains from scratch.
- *Expert load*: the share of token-to-expert assignments each expert receives; 1/E each when balanced. \
A *dead* expert receives none.
- *MRI* (Maximum Routing Imbalance): in a batch, the largest fraction of tokens that pick one expert among \
their top-k; K/E when balanced, 1 when one expert takes every token. Reported as the median over batches.
- *Routing change*: for identical tokens, the share of a token's top-k experts before CPT that are no longer \
chosen after it (0 = same routing).
";

/// Writes every section of the report for `runs` into `out`.
pub(super) fn write(runs: &[Run], out: &Path, opts: &ReportOptions) -> Result<ReportSummary> {
    let mut w = Writer {
        out,
        md: String::new(),
        summary: ReportSummary::default(),
        findings: Vec::new(),
    };
    let domains = domains_of(runs);
    runs_section(&mut w, runs)?;
    losses_section(&mut w, runs, &domains)?;
    let results = forgetting_section(&mut w, runs)?;
    routing_section(&mut w, runs, &results, opts)?;
    training_sections(&mut w, runs, &domains)?;
    if !w.summary.notes.is_empty() {
        w.text("## Notes\n");
        let notes: Vec<String> = w.summary.notes.iter().map(|n| format!("- {n}")).collect();
        w.text(&notes.join("\n"));
    }
    let mut md = format!("# {}\n\n{INTRO}\n", opts.title);
    if !w.findings.is_empty() {
        md += "## Summary\n\n";
        for f in &w.findings {
            md += &format!("- {f}\n");
        }
        md.push('\n');
    }
    md += &w.md;
    let path = out.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    w.summary.markdown = path;
    Ok(w.summary)
}
