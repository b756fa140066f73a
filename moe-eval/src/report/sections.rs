//! The report's sections: each writes its table (with JSON), figures and
//! plain-language findings through a [`Writer`].

use super::cpt_routing::{cpt_routing, is_moe_run, CptRouting, RoutingSettings};
use super::figures::{flops_curve, forgetting_bars, load_heatmap, loss_curve, mri_curve};
use super::markdown::Writer;
use super::table::{num, pct, signed, slug, Table};
use super::ReportOptions;
use crate::efficiency::efficiency_series;
use crate::error::Result;
use crate::forgetting::cpt_results;
use crate::runs::{parent_of, Run};
use serde_json::json;
use std::collections::BTreeMap;

pub(super) fn runs_section(w: &mut Writer, runs: &[Run]) -> Result<()> {
    w.text("## Runs\n");
    let mut t = Table::new(&[
        "run",
        "model",
        "starts from",
        "tokens before",
        "tokens trained",
        "trained on",
    ]);
    let mut rows = Vec::new();
    for r in runs {
        let tokens = r.train.last().map_or(0, |x| x.tokens);
        let dt = r.domain_tokens();
        let total: f64 = dt.values().sum();
        let mix = dt
            .iter()
            .map(|(k, v)| format!("{k} {}", pct(if total > 0.0 { v / total } else { 0.0 })))
            .collect::<Vec<_>>()
            .join(", ");
        let from = match (
            &r.info.init_from,
            r.info.init_from.as_deref().and_then(|p| parent_of(p, runs)),
        ) {
            (None, _) => "scratch".to_string(),
            (Some(p), Some(parent)) => format!(
                "{} @ {}",
                parent.info.name,
                p.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            ),
            (Some(p), None) => p.display().to_string(),
        };
        t.push(vec![
            r.info.name.clone(),
            r.model_label(),
            from.clone(),
            r.offset().to_string(),
            tokens.to_string(),
            mix,
        ]);
        rows.push(
            json!({"run": r.info.name, "model": r.model_label(), "init_from": r.info.init_from,
            "cpt_start_tokens": r.offset(), "tokens": tokens, "domain_tokens": dt, "dir": r.dir}),
        );
    }
    w.table(&t, "runs.json", &rows)
}

/// At most this many runs share one loss or MRI figure; more are split by model.
const RUNS_PER_FIGURE: usize = 8;

/// All runs as one group (label ""), or, when there are many, one group per model label.
pub(super) fn groups(runs: &[Run]) -> Vec<(String, Vec<&Run>)> {
    if runs.len() <= RUNS_PER_FIGURE {
        return vec![(String::new(), runs.iter().collect())];
    }
    let mut out: Vec<(String, Vec<&Run>)> = Vec::new();
    for r in runs {
        let label = r.model_label();
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, g)) => g.push(r),
            None => out.push((label, vec![r])),
        }
    }
    out
}

pub(super) fn domains_of(runs: &[Run]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in runs.iter().flat_map(|r| r.val_domains()) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

pub(super) fn losses_section(w: &mut Writer, runs: &[Run], domains: &[String]) -> Result<()> {
    w.text("## Final validation loss\n");
    w.text("Loss of each run's last evaluation on each domain (perplexity in brackets).\n");
    let mut headers = vec!["run", "model"];
    headers.extend(domains.iter().map(|d| d.as_str()));
    let mut t = Table::new(&headers);
    let mut json_rows = Vec::new();
    for r in runs {
        let mut row = vec![r.info.name.clone(), r.model_label()];
        let mut m = BTreeMap::new();
        for d in domains {
            let l = r.final_val(d);
            row.push(match l {
                Some(x) if x.is_finite() => format!("{x:.4} ({:.2})", x.exp()),
                _ => "n/a".into(),
            });
            m.insert(d.clone(), l);
        }
        t.push(row);
        json_rows.push(json!({"run": r.info.name, "model": r.model_label(), "final_loss": m}));
    }
    w.table(&t, "final_losses.json", &json_rows)?;
    for d in domains {
        let cap = format!(
            "Validation loss on {d} over training tokens; dashed lines mark where CPT runs start (they continue \
             their parent's curve)."
        );
        for (label, group) in groups(runs) {
            let stem = if label.is_empty() {
                format!("loss_{}", slug(d))
            } else {
                format!("loss_{}_{}", slug(d), slug(&label))
            };
            w.figure(&loss_curve(&group, d, &label), &stem, &cap)?;
        }
    }
    Ok(())
}

pub(super) fn forgetting_section(w: &mut Writer, runs: &[Run]) -> Result<Vec<crate::forgetting::CptResult>> {
    w.text("## Forgetting and adaptation\n");
    let mut skipped = Vec::new();
    let results = cpt_results(runs, &mut skipped);
    for s in skipped {
        w.note(s);
    }
    if results.is_empty() {
        w.text("No CPT run with a known starting loss among these runs.\n");
        return Ok(results);
    }
    w.text(
        "For each CPT run and domain: the loss where CPT started (*before*), at its end (*after*), the change \
         (Δ; on an old domain a positive Δ is forgetting), and the final loss of the re-training baseline with \
         the gap to it (positive = the CPT run is worse than re-training from scratch).\n",
    );
    let mut t = Table::new(&[
        "run",
        "model",
        "replay",
        "domain",
        "role",
        "before",
        "after",
        "Δ",
        "baseline",
        "gap to baseline",
    ]);
    for r in &results {
        for d in &r.domains {
            t.push(vec![
                r.run.clone(),
                r.model.clone(),
                pct(r.replay_share),
                d.domain.clone(),
                if d.old { "old (forgetting)" } else { "new (adaptation)" }.into(),
                num(Some(d.before)),
                num(Some(d.after)),
                signed(Some(d.delta)),
                d.baseline.map_or("n/a".into(), |b| {
                    format!("{b:.4} ({})", r.baseline_run.clone().unwrap_or_default())
                }),
                signed(d.gap_to_baseline),
            ]);
        }
    }
    w.table(&t, "forgetting.json", &results)?;
    for r in &results {
        let olds: Vec<&str> = r.domains.iter().filter(|d| d.old).map(|d| d.domain.as_str()).collect();
        let news: Vec<&str> = r.domains.iter().filter(|d| !d.old).map(|d| d.domain.as_str()).collect();
        let mut line = format!(
            "**{}** ({}, replay {}): old-domain loss ({}) changed by {} (forgetting when positive); new-domain \
             loss ({}) by {}.",
            r.run,
            r.model,
            pct(r.replay_share),
            olds.join(", "),
            signed(r.forgetting()),
            news.join(", "),
            signed(r.adaptation())
        );
        if let Some(b) = &r.baseline_run {
            let gaps: Vec<String> = r
                .domains
                .iter()
                .filter_map(|d| d.gap_to_baseline.map(|g| format!("{} {}", d.domain, signed(Some(g)))))
                .collect();
            line += &format!(" Against the re-training baseline {b}: {}.", gaps.join(", "));
        }
        w.findings.push(line);
    }
    if let Some(best) = results
        .iter()
        .filter_map(|r| r.forgetting().map(|f| (r, f)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
    {
        if results.len() > 1 {
            w.findings.push(format!(
                "Least forgetting: **{}** ({}, replay {}).",
                best.0.run,
                best.0.model,
                pct(best.0.replay_share)
            ));
        }
    }
    if let Some(fig) = forgetting_bars(&results) {
        w.figure(&fig, "forgetting", "Mean forgetting (old domains) and adaptation (new domains) per CPT run, labelled with its model and replay share.")?;
    }
    Ok(results)
}

pub(super) fn routing_section(
    w: &mut Writer,
    runs: &[Run],
    results: &[crate::forgetting::CptResult],
    opts: &ReportOptions,
) -> Result<()> {
    let cpt_moe: Vec<&Run> = runs.iter().filter(|r| r.is_cpt() && is_moe_run(r)).collect();
    if cpt_moe.is_empty() {
        return Ok(());
    }
    w.text("## Routing on the old domain before and after CPT\n");
    if !opts.routing {
        w.text("Skipped (routing evaluation turned off).\n");
        return Ok(());
    }
    let settings = RoutingSettings {
        data: opts.data.clone(),
        domain: opts.routing_domain.clone(),
        max_windows: opts.max_windows,
        batch_size: opts.batch_size,
        device: opts.device,
    };
    let mut all: Vec<CptRouting> = Vec::new();
    for r in cpt_moe {
        let old = results
            .iter()
            .find(|x| x.run == r.info.name)
            .and_then(|x| x.domains.iter().find(|d| d.old).map(|d| d.domain.clone()));
        let Some(domain) = settings.domain.clone().or(old) else {
            w.note(format!(
                "{}: no old domain known, so its routing was not evaluated",
                r.info.name
            ));
            continue;
        };
        match cpt_routing(r, runs, &domain, &settings) {
            Ok(x) => all.push(x),
            Err(e) => w.note(format!("{}: routing not evaluated: {e}", r.info.name)),
        }
    }
    if all.is_empty() {
        w.text("No CPT run's routing could be evaluated (see the notes at the end).\n");
        return Ok(());
    }
    w.text(
        "Each CPT run's checkpoint where CPT started (*before*) and its last checkpoint (*after*), run on the same \
         validation tokens of an old domain. MRI is K/E when perfectly balanced. Load max/mean: the busiest \
         expert's load over the mean load (1 = balanced). Dead: share of experts that received no token.\n",
    );
    let mut t = Table::new(&[
        "run",
        "domain",
        "layer",
        "MRI before",
        "MRI after",
        "max/mean before",
        "max/mean after",
        "dead before",
        "dead after",
        "routing change",
    ]);
    for x in &all {
        for ((b, a), c) in x.before.iter().zip(&x.after).zip(&x.change) {
            t.push(vec![
                x.run.clone(),
                x.domain.clone(),
                b.layer.to_string(),
                num(Some(b.mri_median)),
                num(Some(a.mri_median)),
                num(Some(b.max_over_mean)),
                num(Some(a.max_over_mean)),
                pct(b.dead_fraction),
                pct(a.dead_fraction),
                pct(c.change),
            ]);
        }
    }
    w.table(&t, "routing.json", &all)?;
    for x in &all {
        let mean = |v: &mut dyn Iterator<Item = f64>| {
            let v: Vec<f64> = v.collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let balanced = x
            .before
            .first()
            .map_or(0.0, |l| l.top_k as f64 / l.num_experts.max(1) as f64);
        let dead = |ls: &[crate::routing::LayerLoad]| ls.iter().map(|l| l.dead_experts.len()).sum::<usize>();
        w.findings.push(format!(
            "**{}** routing on {}: MRI (mean over layers) {:.3} before CPT → {:.3} after (balanced: K/E = {:.3}); \
             {} of top-k choices changed; dead experts {} → {}.",
            x.run,
            x.domain,
            mean(&mut x.before.iter().map(|l| l.mri_median)),
            mean(&mut x.after.iter().map(|l| l.mri_median)),
            balanced,
            pct(mean(&mut x.change.iter().map(|c| c.change))),
            dead(&x.before),
            dead(&x.after)
        ));
    }
    for x in &all {
        let cap = format!(
            "{}: per-layer expert load on {} before and after CPT, as a multiple of the mean load (white = 1 = \
             balanced, red = overloaded, blue = underused, 0 = dead).",
            x.run, x.domain
        );
        w.figure(&load_heatmap(x), &format!("load_{}", slug(&x.run)), &cap)?;
    }
    Ok(())
}

pub(super) fn training_sections(w: &mut Writer, runs: &[Run], domains: &[String]) -> Result<()> {
    let mut heading = false;
    for (label, group) in groups(runs) {
        if let Some(fig) = mri_curve(&group, &label) {
            if !heading {
                w.text("## Routing balance during training\n");
                heading = true;
            }
            let stem = if label.is_empty() {
                "mri".to_string()
            } else {
                format!("mri_{}", slug(&label))
            };
            w.figure(
                &fig,
                &stem,
                "Maximum Routing Imbalance of each training step (lower is more balanced).",
            )?;
        }
    }
    w.text("## Sample efficiency\n");
    w.text(
        "Loss against training tokens is the loss-curve figure above; here against training compute (FLOPs), \
         where an MoE and a FLOP-matched dense model can be compared directly.\n",
    );
    let series = efficiency_series(runs);
    let mut t = Table::new(&["run", "model", "domain", "tokens", "FLOPs", "final loss"]);
    for s in &series {
        if let Some(p) = s.points.last() {
            t.push(vec![
                s.run.clone(),
                s.model.clone(),
                s.domain.clone(),
                p.tokens.to_string(),
                p.flops.map_or("n/a".into(), |f| format!("{f:.3e}")),
                num(Some(p.loss)),
            ]);
        }
    }
    w.table(&t, "efficiency.json", &series)?;
    for d in domains {
        if let Some(fig) = flops_curve(&series, d) {
            let cap = format!("Validation loss on {d} against training FLOPs.");
            w.figure(&fig, &format!("efficiency_{}", slug(d)), &cap)?;
        }
    }
    Ok(())
}
