//! The report's figures, built from run logs and routing results.

use super::cpt_routing::CptRouting;
use super::plot::{BarPanel, Figure, Heatmap, HeatmapFigure, LineChart, Series};
use super::table::pct;
use crate::efficiency::EfficiencySeries;
use crate::forgetting::CptResult;
use crate::runs::Run;

/// At most this many points per line (longer logs are thinned evenly).
const MAX_POINTS: usize = 400;

fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let step = points.len().div_ceil(MAX_POINTS).max(1);
    let last = points.last().copied();
    let mut out: Vec<(f64, f64)> = points.into_iter().step_by(step).collect();
    if let (Some(l), Some(o)) = (last, out.last()) {
        if *o != l {
            out.push(l);
        }
    }
    out
}

/// Dashed markers where CPT runs start (one per distinct token position).
fn cpt_markers(runs: &[&Run]) -> Vec<(f64, String)> {
    let mut xs: Vec<u64> = runs.iter().filter(|r| r.is_cpt()).map(|r| r.offset()).collect();
    xs.sort_unstable();
    xs.dedup();
    xs.into_iter().map(|x| (x as f64, "CPT start".to_string())).collect()
}

/// Validation loss of `domain` over tokens seen (CPT runs placed after their
/// parent); `group` (a model label, or empty) is added to the title.
pub fn loss_curve(runs: &[&Run], domain: &str, group: &str) -> Figure {
    let series = runs
        .iter()
        .map(|r| Series {
            name: r.info.name.clone(),
            points: r
                .val_series(domain)
                .into_iter()
                .filter(|p| p.1.is_finite())
                .map(|(t, l)| ((r.offset() + t) as f64, l))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    Figure::Line(LineChart {
        title: if group.is_empty() {
            format!("Validation loss on {domain}")
        } else {
            format!("Validation loss on {domain}: {group}")
        },
        x_label: "training tokens seen (CPT runs continue from their parent)".into(),
        y_label: "cross-entropy (nats/token)".into(),
        series,
        markers: cpt_markers(runs),
    })
}

/// Maximum Routing Imbalance logged during training: per layer when few
/// lines result, else the mean over each run's MoE layers.
pub fn mri_curve(runs: &[&Run], group: &str) -> Option<Figure> {
    let moe: Vec<&Run> = runs
        .iter()
        .copied()
        .filter(|r| r.train.iter().any(|t| !t.moe.is_empty()))
        .collect();
    if moe.is_empty() {
        return None;
    }
    let layers: usize = moe
        .iter()
        .map(|r| r.train.iter().map(|t| t.moe.len()).max().unwrap_or(0))
        .sum();
    let per_layer = layers <= 8;
    let mut series = Vec::new();
    for r in &moe {
        let x = |t: u64| (r.offset() + t) as f64;
        if per_layer {
            let ids: Vec<usize> = r
                .train
                .iter()
                .find(|t| !t.moe.is_empty())
                .map_or(vec![], |t| t.moe.iter().map(|l| l.layer).collect());
            for id in ids {
                let pts = r
                    .train
                    .iter()
                    .filter_map(|t| t.moe.iter().find(|l| l.layer == id).map(|l| (x(t.tokens), l.mri)))
                    .collect();
                series.push(Series {
                    name: format!("{} layer {id}", r.info.name),
                    points: thin(pts),
                });
            }
        } else {
            let pts = r
                .train
                .iter()
                .filter(|t| !t.moe.is_empty())
                .map(|t| {
                    (
                        x(t.tokens),
                        t.moe.iter().map(|l| l.mri).sum::<f64>() / t.moe.len() as f64,
                    )
                })
                .collect();
            series.push(Series {
                name: format!("{} (mean over layers)", r.info.name),
                points: thin(pts),
            });
        }
    }
    Some(Figure::Line(LineChart {
        title: if group.is_empty() {
            "Maximum Routing Imbalance during training".into()
        } else {
            format!("Maximum Routing Imbalance during training: {group}")
        },
        x_label: "training tokens seen".into(),
        y_label: "MRI (K/E = balanced, 1 = one expert takes every token)".into(),
        series,
        markers: cpt_markers(runs),
    }))
}

/// Forgetting (old domains) and adaptation (new domains) per CPT run.
pub fn forgetting_bars(results: &[CptResult]) -> Option<Figure> {
    if results.is_empty() {
        return None;
    }
    let mut models: Vec<String> = Vec::new();
    let mut colour = |m: &str| match models.iter().position(|x| x == m) {
        Some(i) => i,
        None => {
            models.push(m.to_string());
            models.len() - 1
        }
    };
    let mut forget = Vec::new();
    let mut adapt = Vec::new();
    for r in results {
        let c = colour(&r.model);
        let label = format!("{}, replay {}", r.model, pct(r.replay_share));
        if let Some(f) = r.forgetting() {
            forget.push((label.clone(), f, c));
        }
        if let Some(a) = r.adaptation() {
            adapt.push((label, a, c));
        }
    }
    let mut panels = vec![BarPanel {
        title: "Forgetting: old-domain loss after − before CPT".into(),
        y_label: "Δ validation loss (higher = more forgetting)".into(),
        bars: forget,
    }];
    if !adapt.is_empty() {
        panels.push(BarPanel {
            title: "Adaptation: new-domain loss after − before CPT".into(),
            y_label: "Δ validation loss (lower = learned more)".into(),
            bars: adapt,
        });
    }
    Some(Figure::Bars(panels))
}

/// Per-layer expert load (share × E, 1 = the mean) before and after CPT.
pub fn load_heatmap(r: &CptRouting) -> Figure {
    let panel = |title: &str, loads: &[crate::routing::LayerLoad]| Heatmap {
        title: title.to_string(),
        rows: loads.iter().map(|l| format!("layer {}", l.layer)).collect(),
        x_label: "expert".into(),
        values: loads
            .iter()
            .map(|l| l.load_share.iter().map(|s| s * l.num_experts as f64).collect())
            .collect(),
    };
    let max = r
        .before
        .iter()
        .chain(&r.after)
        .map(|l| l.max_over_mean)
        .fold(2.0, f64::max);
    Figure::Heatmap(HeatmapFigure {
        title: format!(
            "{}: expert load on {} relative to the mean (blue under, red over)",
            r.run, r.domain
        ),
        panels: vec![panel("before CPT", &r.before), panel("after CPT", &r.after)],
        center: 1.0,
        max,
    })
}

/// Validation loss of `domain` against training FLOPs.
pub fn flops_curve(series: &[EfficiencySeries], domain: &str) -> Option<Figure> {
    let lines: Vec<Series> = series
        .iter()
        .filter(|s| s.domain == domain)
        .map(|s| Series {
            name: format!("{} ({})", s.run, s.model),
            points: s
                .points
                .iter()
                .filter_map(|p| p.flops.map(|f| (f, p.loss)))
                .filter(|p| p.1.is_finite())
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(Figure::Line(LineChart {
        title: format!("Sample efficiency on {domain}: loss against training compute"),
        x_label: "training FLOPs (CPT runs include their parent's)".into(),
        y_label: "cross-entropy (nats/token)".into(),
        series: lines,
        markers: Vec::new(),
    }))
}
