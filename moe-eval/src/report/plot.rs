//! The report's figures, each drawn twice by plotters: as SVG and as PNG
//! (plotters' bitmap backend into memory, then [`super::png`]). Text uses a
//! bundled DejaVu Sans subset, so no system font is needed.

use super::png::encode_rgb;
use crate::error::{EvalError, Result};
use crate::io::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

/// One line of a line chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points in order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with optional dashed vertical markers (CPT boundaries).
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// `(x, label)`: dashed vertical lines.
    pub markers: Vec<(f64, String)>,
}

/// A grid of values (rows × columns) drawn as coloured cells.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// Panel title.
    pub title: String,
    /// Label of each row (top to bottom).
    pub rows: Vec<String>,
    /// X axis label (what the columns are).
    pub x_label: String,
    /// `values[row][col]`.
    pub values: Vec<Vec<f64>>,
}

/// Side-by-side heatmaps on one colour scale centred on `center`.
#[derive(Clone, Debug)]
pub struct HeatmapFigure {
    /// Figure title.
    pub title: String,
    /// The panels (e.g. before and after CPT).
    pub panels: Vec<Heatmap>,
    /// The value drawn white; lower is blue, higher is red.
    pub center: f64,
    /// The value drawn full red (0 is full blue).
    pub max: f64,
}

/// A bar chart panel.
#[derive(Clone, Debug)]
pub struct BarPanel {
    /// Panel title.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// `(label, value, colour index)`.
    pub bars: Vec<(String, f64, usize)>,
}

/// Any figure of the report.
#[derive(Clone, Debug)]
pub enum Figure {
    /// Lines over a numeric x axis.
    Line(LineChart),
    /// Heatmaps.
    Heatmap(HeatmapFigure),
    /// Bar panels side by side.
    Bars(Vec<BarPanel>),
}

/// Size of every figure in pixels.
pub const SIZE: (u32, u32) = (960, 600);

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bundled font is valid, so this cannot fail; if it did, text
        // layout would report the missing font as a plot error.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// A colour from a fixed qualitative palette.
pub fn colour(i: usize) -> RGBColor {
    const P: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = P[i % P.len()];
    RGBColor(r, g, b)
}

/// `1234567` as `1.23M`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (d, s) = match a {
        a if a >= 1e15 => (1e15, "P"),
        a if a >= 1e12 => (1e12, "T"),
        a if a >= 1e9 => (1e9, "G"),
        a if a >= 1e6 => (1e6, "M"),
        a if a >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let mut t = format!("{:.2}", v / d);
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{t}{s}")
}

type DrawResult = std::result::Result<(), String>;

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

fn range(vals: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}

fn draw_line<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let xs = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(c.markers.iter().map(|m| m.0));
    let (x0, x1) = range(xs, 0.02);
    let (y0, y1) = range(c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), 0.08);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .x_label_formatter(&|v| si(*v))
        .y_label_formatter(&|v| format!("{:.3}", v + 0.0))
        .label_style((FAMILY, 14))
        .draw()
        .map_err(e)?;
    for (x, label) in &c.markers {
        let style = BLACK.mix(0.6).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(vec![(*x, y0), (*x, y1)], 8, 6, style))
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(Text::new(label.clone(), (*x, y1), (FAMILY, 14))))
            .map_err(e)?;
    }
    for (i, s) in c.series.iter().enumerate() {
        let col = colour(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), col.stroke_width(2)))
            .map_err(e)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(3)));
        if s.points.len() <= 60 {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, col.filled())))
                .map_err(e)?;
        }
    }
    if !c.series.is_empty() {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// Blue (at 0) → white (at `center`) → red (at `max`).
pub fn diverging(v: f64, center: f64, max: f64) -> RGBColor {
    let t = if v >= center {
        (v - center) / (max - center).max(1e-12)
    } else {
        (v - center) / center.abs().max(1e-12)
    }
    .clamp(-1.0, 1.0);
    let mix = |a: u8, b: u8, w: f64| (a as f64 + (b as f64 - a as f64) * w).round() as u8;
    if t >= 0.0 {
        RGBColor(mix(255, 178, t), mix(255, 24, t), mix(255, 43, t))
    } else {
        RGBColor(mix(255, 33, -t), mix(255, 102, -t), mix(255, 172, -t))
    }
}

fn draw_heatmaps<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &HeatmapFigure) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(&f.title, (FAMILY, 22)).map_err(e)?;
    let n = f.panels.len().max(1);
    let panels = root.split_evenly((1, n));
    for (area, h) in panels.iter().zip(&f.panels) {
        let rows = h.values.len().max(1);
        let cols = h.values.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
        let row_labels = h.rows.clone();
        // Cell (r, c) is centred on (c, rows - 1 - r), so axis ticks fall on cell centres.
        let mut chart = ChartBuilder::on(area)
            .caption(&h.title, (FAMILY, 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..cols as f64 - 0.5, -0.5f64..rows as f64 - 0.5)
            .map_err(e)?;
        let on_cell = |v: f64| (v - v.round()).abs() < 1e-6;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&h.x_label)
            .x_labels(cols.min(16))
            .y_labels(rows.min(24))
            .x_label_formatter(&|v| {
                if on_cell(*v) {
                    format!("{}", v.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&move |v| {
                if !on_cell(*v) || *v < 0.0 {
                    return String::new();
                }
                row_labels
                    .get(rows.saturating_sub(1 + v.round() as usize))
                    .cloned()
                    .unwrap_or_default()
            })
            .label_style((FAMILY, 13))
            .draw()
            .map_err(e)?;
        for (r, vals) in h.values.iter().enumerate() {
            let y = (rows - 1 - r) as f64;
            for (c, &v) in vals.iter().enumerate() {
                let x = c as f64;
                let corners = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                let fill = Rectangle::new(corners, diverging(v, f.center, f.max).filled());
                let border = Rectangle::new(corners, RGBColor(200, 200, 200).stroke_width(1));
                chart.draw_series([fill, border]).map_err(e)?;
                if cols <= 16 && rows <= 24 {
                    let t = Text::new(format!("{v:.2}"), (x - 0.25, y + 0.1), (FAMILY, 12));
                    chart.draw_series(std::iter::once(t)).map_err(e)?;
                }
            }
        }
    }
    root.present().map_err(e)
}

/// Horizontal bars (labels on the left, one bar per row, first bar on top);
/// panels stacked vertically.
fn draw_bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, panels: &[BarPanel]) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, p) in areas.iter().zip(panels) {
        let n = p.bars.len().max(1);
        let (lo, hi) = range(p.bars.iter().map(|b| b.1).chain([0.0]), 0.15);
        let labels: Vec<String> = p.bars.iter().map(|b| b.0.clone()).collect();
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32 * 7 + 16;
        let mut chart = ChartBuilder::on(area)
            .caption(&p.title, (FAMILY, 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(label_width.clamp(60, 420))
            .build_cartesian_2d(lo..hi, -0.5f64..n as f64 - 0.5)
            .map_err(e)?;
        let on_row = |v: f64| (v - v.round()).abs() < 1e-6 && v >= 0.0;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&move |v| {
                if !on_row(*v) {
                    return String::new();
                }
                labels
                    .get(n.saturating_sub(1 + v.round() as usize))
                    .cloned()
                    .unwrap_or_default()
            })
            .x_desc(&p.y_label)
            .x_label_formatter(&|v| format!("{:.3}", v + 0.0))
            .label_style((FAMILY, 13))
            .draw()
            .map_err(e)?;
        let zero = PathElement::new(vec![(0.0, -0.5), (0.0, n as f64 - 0.5)], BLACK);
        chart.draw_series(std::iter::once(zero)).map_err(e)?;
        for (i, (_, v, c)) in p.bars.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let bar = Rectangle::new([(0.0, y - 0.35), (*v, y + 0.35)], colour(*c).filled());
            chart.draw_series(std::iter::once(bar)).map_err(e)?;
            let tx = v.max(0.0) + (hi - lo) * 0.01;
            let text = Text::new(format!("{v:+.3}"), (tx, y + 0.15), (FAMILY, 13));
            chart.draw_series(std::iter::once(text)).map_err(e)?;
        }
    }
    root.present().map_err(e)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> DrawResult {
    match fig {
        Figure::Line(c) => draw_line(root, c),
        Figure::Heatmap(h) => draw_heatmaps(root, h),
        Figure::Bars(b) => draw_bars(root, b),
    }
}

/// Renders `fig` as an SVG document.
pub fn render_svg(fig: &Figure) -> std::result::Result<String, String> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, fig)?;
    }
    Ok(svg)
}

/// Renders `fig` as RGB pixels of [`SIZE`].
pub fn render_rgb(fig: &Figure) -> std::result::Result<Vec<u8>, String> {
    register_font();
    let mut buf = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        draw(&root, fig)?;
    }
    Ok(buf)
}

/// Writes `fig` to `{stem}.svg` and `{stem}.png`; returns both paths.
pub fn save_figure(fig: &Figure, stem: &Path) -> Result<(PathBuf, PathBuf)> {
    let svg_path = stem.with_extension("svg");
    let png_path = stem.with_extension("png");
    let plot_err = |path: &Path, msg: String| EvalError::Plot {
        path: path.to_path_buf(),
        msg,
    };
    let svg = render_svg(fig).map_err(|m| plot_err(&svg_path, m))?;
    write_atomic(&svg_path, svg.as_bytes())?;
    let rgb = render_rgb(fig).map_err(|m| plot_err(&png_path, m))?;
    let png = encode_rgb(&rgb, SIZE.0, SIZE.1).map_err(|err| plot_err(&png_path, err.to_string()))?;
    write_atomic(&png_path, &png)?;
    Ok((svg_path, png_path))
}
