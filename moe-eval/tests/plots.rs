//! Every figure kind renders to a PNG that an independent decoder (the `png`
//! crate) reads back at the expected size with text pixels drawn, and to an
//! SVG that parses as XML and holds the expected series and labels.

use moe_eval::report::plot::{save_figure, BarPanel, Figure, Heatmap, HeatmapFigure, LineChart, Series, SIZE};

mod common;
use common::{decode_png, svg_texts};

fn distinct_colours(rgb: &[u8]) -> usize {
    let mut set = std::collections::HashSet::new();
    for p in rgb.chunks(3) {
        set.insert((p[0], p[1], p[2]));
    }
    set.len()
}

#[test]
fn line_heatmap_and_bar_figures_render_to_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let line = Figure::Line(LineChart {
        title: "Validation loss: english".into(),
        x_label: "tokens".into(),
        y_label: "loss".into(),
        series: vec![
            Series {
                name: "moe-pretrain".into(),
                points: vec![(0.0, 5.0), (1e6, 4.0), (2e6, 3.5)],
            },
            Series {
                name: "moe-cpt".into(),
                points: vec![(2e6, 3.5), (3e6, 3.9)],
            },
        ],
        markers: vec![(2e6, "CPT start".into())],
    });
    let heat = Figure::Heatmap(HeatmapFigure {
        title: "Expert load".into(),
        panels: vec![
            Heatmap {
                title: "before CPT".into(),
                rows: vec!["layer 0".into(), "layer 1".into()],
                x_label: "expert".into(),
                values: vec![vec![1.0, 1.0, 1.0, 1.0], vec![2.0, 0.5, 0.5, 1.0]],
            },
            Heatmap {
                title: "after CPT".into(),
                rows: vec!["layer 0".into(), "layer 1".into()],
                x_label: "expert".into(),
                values: vec![vec![3.0, 0.0, 0.5, 0.5], vec![1.0, 1.0, 1.0, 1.0]],
            },
        ],
        center: 1.0,
        max: 3.0,
    });
    let bars = Figure::Bars(vec![BarPanel {
        title: "Forgetting".into(),
        y_label: "Δ loss".into(),
        bars: vec![("dense, replay 0%".into(), 0.4, 0), ("MoE, replay 5%".into(), -0.1, 1)],
    }]);
    for (name, fig, want) in [
        (
            "line",
            line,
            vec![
                "Validation loss: english",
                "moe-pretrain",
                "moe-cpt",
                "CPT start",
                "tokens",
            ],
        ),
        (
            "heat",
            heat,
            vec!["Expert load", "before CPT", "after CPT", "layer 1", "3.00"],
        ),
        ("bars", bars, vec!["Forgetting", "MoE, replay 5%", "+0.400", "-0.100"]),
    ] {
        let out = std::env::var_os("MOE_EVAL_KEEP_PLOTS").map_or(dir.path().to_path_buf(), Into::into);
        let (svg, png_path) = save_figure(&fig, &out.join(name)).unwrap();
        let (w, h, rgb) = decode_png(&png_path);
        assert_eq!((w, h), SIZE);
        assert_eq!(rgb.len(), (w * h * 3) as usize);
        // Anti-aliased text and coloured series give many colours; a blank image has one.
        assert!(
            distinct_colours(&rgb) > 20,
            "{name}: {} colours",
            distinct_colours(&rgb)
        );
        let texts = svg_texts(&svg);
        for s in want {
            assert!(texts.contains(s), "{name}: {s:?} not in SVG texts {texts:?}");
        }
    }
}
