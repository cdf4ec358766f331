//! The five figures. Each reads an output file, then draws the same picture on a PNG
//! or an SVG backend (`render!`).

use super::{front_2d, metric, PlotError, Size, Table};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// DejaVu Sans (assets/README.md), registered once as plotters' "sans-serif".
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are the shipped TTF: registration cannot fail on them.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, FONT);
    });
}

type R = Result<(), String>;

/// A named, coloured point set.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Draws with `$f` on a PNG or SVG backend picked by `$out`'s extension.
macro_rules! render {
    ($out:expr, $size:expr, $f:expr) => {{
        register_font();
        let out: &Path = $out;
        let dims = ($size.width, $size.height);
        let svg = out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        let result: R = if svg {
            let root = SVGBackend::new(out, dims).into_drawing_area();
            $f(root)
        } else {
            let root = BitMapBackend::new(out, dims).into_drawing_area();
            $f(root)
        };
        result.map_err(|message| PlotError::Draw {
            path: out.to_path_buf(),
            message,
        })
    }};
}

fn e<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, String> {
    r.map_err(|x| x.to_string())
}

/// Viridis, interpolated between five of its colours (t in [0, 1]).
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn range_of(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v.filter(|x| x.is_finite()) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 * hi.abs().max(1e-300) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Tick text for an axis that may be log10-transformed.
fn tick(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.1e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// A dashed straight line from `a` to `b` in chart coordinates.
fn dashed<DB: DrawingBackend>(
    chart: &mut ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    a: (f64, f64),
    b: (f64, f64),
    style: ShapeStyle,
) -> R {
    let n = 40;
    let segs = (0..n).step_by(2).map(|i| {
        let t0 = i as f64 / n as f64;
        let t1 = (i + 1) as f64 / n as f64;
        let p = |t: f64| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        PathElement::new(vec![p(t0), p(t1)], style)
    });
    e(chart.draw_series(segs)).map(|_| ())
}

/// A vertical colour bar for `lo..hi` of `label` in `area`.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
    label: &str,
) -> R {
    let mut c = e(ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(60)
        .margin_right(20)
        .y_label_area_size(75)
        .caption(label, ("sans-serif", 14))
        .build_cartesian_2d(0.0..1.0, lo..hi))?;
    e(c.configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_formatter(&|v| tick(*v, false))
        .label_style(("sans-serif", 13))
        .draw())?;
    let steps = 100;
    e(c.draw_series((0..steps).map(|i| {
        let y0 = lo + (hi - lo) * i as f64 / steps as f64;
        let y1 = lo + (hi - lo) * (i + 1) as f64 / steps as f64;
        Rectangle::new(
            [(0.0, y0), (1.0, y1)],
            viridis(i as f64 / steps as f64).filled(),
        )
    })))?;
    Ok(())
}

/// Options of the Pareto plot.
#[derive(Clone, Debug, Default)]
pub struct ParetoOptions {
    pub x: String,
    pub y: String,
    /// A third column shown as colour.
    pub color: Option<String>,
    /// Spec limits as `(column, value in the column's stored unit)`: dashed lines.
    pub limits: Vec<(String, f64)>,
    pub log_x: bool,
    pub log_y: bool,
    pub size: Size,
}

/// The Pareto front of a sweep's `points.csv`: feasible points (coloured by a third
/// metric when asked), infeasible ones hollow grey, the front of the feasible ones as a
/// step line, spec limits dashed; one panel per task.
pub fn pareto(points: &Path, out: &Path, o: &ParetoOptions) -> Result<(), PlotError> {
    let t = Table::read(points)?;
    let (mx, my) = (metric(&o.x), metric(&o.y));
    let xs: Vec<f64> = t.numbers(&o.x)?.iter().map(|v| v * mx.scale).collect();
    let ys: Vec<f64> = t.numbers(&o.y)?.iter().map(|v| v * my.scale).collect();
    let feasible: Vec<bool> = match t.col("feasible") {
        Ok(c) => t
            .rows
            .iter()
            .map(|r| r.get(c).is_some_and(|v| v == "true"))
            .collect(),
        Err(_) => vec![true; t.rows.len()],
    };
    let colors = match &o.color {
        Some(c) => Some((metric(c), t.numbers(c)?)),
        None => None,
    };
    let tasks = t
        .strings("task")
        .unwrap_or_else(|_| vec![String::new(); t.rows.len()]);
    let mut names: Vec<String> = tasks.clone();
    names.sort();
    names.dedup();
    if xs
        .iter()
        .zip(&ys)
        .all(|(x, y)| !x.is_finite() || !y.is_finite())
    {
        return Err(PlotError::Data {
            path: points.to_path_buf(),
            message: format!("no row has numbers in both {} and {}", o.x, o.y),
        });
    }
    let tf = |v: f64, log: bool| {
        if log {
            if v > 0.0 {
                v.log10()
            } else {
                f64::NAN
            }
        } else {
            v
        }
    };
    render!(out, o.size, |root: DrawingArea<_, Shift>| -> R {
        e(root.fill(&WHITE))?;
        let (plots, bar) = if colors.is_some() {
            let w = root.dim_in_pixel().0;
            let (a, b) = root.split_horizontally(w.saturating_sub(150));
            (a, Some(b))
        } else {
            (root.clone(), None)
        };
        let panels = plots.split_evenly((1, names.len().max(1)));
        let (clo, chi) = match &colors {
            Some((m, v)) => range_of(v.iter().map(|x| x * m.scale)),
            None => (0.0, 1.0),
        };
        for (panel, task) in panels.iter().zip(&names) {
            let idx: Vec<usize> = (0..xs.len()).filter(|&i| &tasks[i] == task).collect();
            let px: Vec<f64> = idx.iter().map(|&i| tf(xs[i], o.log_x)).collect();
            let py: Vec<f64> = idx.iter().map(|&i| tf(ys[i], o.log_y)).collect();
            let (x0, x1) = range_of(px.iter().copied());
            let (y0, y1) = range_of(py.iter().copied());
            let title = if names.len() <= 1 {
                format!("Pareto front: {} vs {}", my.label, mx.label)
            } else {
                format!("{task}: {} vs {}", my.label, mx.label)
            };
            let mut c = e(ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1))?;
            let (lx, ly) = (o.log_x, o.log_y);
            e(c.configure_mesh()
                .x_desc(format!(
                    "{}{}",
                    mx.label,
                    if lx { ", log scale" } else { "" }
                ))
                .y_desc(format!(
                    "{}{}",
                    my.label,
                    if ly { ", log scale" } else { "" }
                ))
                .x_labels(7)
                .y_labels(7)
                .x_label_formatter(&|v| tick(*v, lx))
                .y_label_formatter(&|v| tick(*v, ly))
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .light_line_style(RGBColor(235, 235, 235))
                .draw())?;
            let infeasible: Vec<(f64, f64)> = idx
                .iter()
                .zip(px.iter().zip(&py))
                .filter(|(&i, _)| !feasible[i])
                .map(|(_, (&x, &y))| (x, y))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            e(c.draw_series(
                infeasible
                    .iter()
                    .map(|&p| Circle::new(p, 3, RGBColor(170, 170, 170).stroke_width(1))),
            ))?
            .label(format!("infeasible ({})", infeasible.len()))
            .legend(|p| Circle::new(p, 4, RGBColor(170, 170, 170).stroke_width(1)));
            let ok: Vec<usize> = (0..idx.len())
                .filter(|&k| feasible[idx[k]] && px[k].is_finite() && py[k].is_finite())
                .collect();
            let colour = |k: usize| match &colors {
                Some((m, v)) => viridis((v[idx[k]] * m.scale - clo) / (chi - clo)),
                None => PALETTE[0],
            };
            e(c.draw_series(
                ok.iter()
                    .map(|&k| Circle::new((px[k], py[k]), 3, colour(k).filled())),
            ))?
            .label(format!("feasible ({})", ok.len()))
            .legend(|p| Circle::new(p, 4, PALETTE[0].filled()));
            let fx: Vec<f64> = ok.iter().map(|&k| px[k]).collect();
            let fy: Vec<f64> = ok.iter().map(|&k| py[k]).collect();
            // Log transforms keep order, so the front is the same in either scale.
            let front = front_2d(&fx, &fy, mx.maximize, my.maximize);
            let mut step = Vec::new();
            for (n, &k) in front.iter().enumerate() {
                if n > 0 {
                    step.push((fx[k], fy[front[n - 1]]));
                }
                step.push((fx[k], fy[k]));
            }
            e(c.draw_series(std::iter::once(PathElement::new(
                step,
                BLACK.stroke_width(2),
            ))))?
            .label(format!("Pareto front ({} designs)", front.len()))
            .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLACK.stroke_width(2)));
            for (col, v) in &o.limits {
                let red = RGBColor(200, 30, 30).stroke_width(2);
                if col == &o.x {
                    let v = tf(v * mx.scale, lx);
                    dashed(&mut c, (v, y0), (v, y1), red)?;
                } else if col == &o.y {
                    let v = tf(v * my.scale, ly);
                    dashed(&mut c, (x0, v), (x1, v), red)?;
                }
            }
            if o.limits.iter().any(|(col, _)| col == &o.x || col == &o.y) {
                e(c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()))?
                    .label("spec limit")
                    .legend(|(x, y)| {
                        PathElement::new(
                            vec![(x - 8, y), (x + 8, y)],
                            RGBColor(200, 30, 30).stroke_width(2),
                        )
                    });
            }
            // The front hugs the top when y is maximized, the bottom when minimized.
            let corner = if my.maximize {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            };
            e(c.configure_series_labels()
                .position(corner)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw())?;
        }
        if let (Some(bar), Some((m, _))) = (bar, &colors) {
            colour_bar(&bar, clo, chi, &m.label)?;
        }
        e(root.present())
    })
}

/// A metric over two swept parameters: per cell the best feasible value among the
/// points with those parameters (colour), cells with only infeasible points grey with
/// a cross, the best cell outlined.
pub fn heatmap(
    points: &Path,
    out: &Path,
    x: &str,
    y: &str,
    metric_col: &str,
    size: Size,
) -> Result<(), PlotError> {
    let t = Table::read(points)?;
    let xs = t.strings(x)?;
    let ys = t.strings(y)?;
    let m = metric(metric_col);
    let vals: Vec<f64> = t.numbers(metric_col)?.iter().map(|v| v * m.scale).collect();
    let feasible: Vec<bool> = match t.col("feasible") {
        Ok(c) => t
            .rows
            .iter()
            .map(|r| r.get(c).is_some_and(|v| v == "true"))
            .collect(),
        Err(_) => vec![true; t.rows.len()],
    };
    let sorted = |v: &[String]| -> Vec<String> {
        let mut u: Vec<String> = v.iter().filter(|s| !s.is_empty()).cloned().collect();
        u.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(p), Ok(q)) => p.total_cmp(&q),
            _ => a.cmp(b),
        });
        u.dedup();
        u
    };
    let (ux, uy) = (sorted(&xs), sorted(&ys));
    if ux.is_empty() || uy.is_empty() {
        return Err(PlotError::Data {
            path: points.to_path_buf(),
            message: format!("columns {x} and {y} hold no values"),
        });
    }
    // cell → (best feasible value, any point at all)
    let mut cell: Vec<Vec<(Option<f64>, bool)>> = vec![vec![(None, false); uy.len()]; ux.len()];
    for i in 0..t.rows.len() {
        let (Some(a), Some(b)) = (
            ux.iter().position(|v| v == &xs[i]),
            uy.iter().position(|v| v == &ys[i]),
        ) else {
            continue;
        };
        let c = &mut cell[a][b];
        c.1 = true;
        if feasible[i] && vals[i].is_finite() {
            let better = |old: f64| {
                if m.maximize {
                    vals[i] > old
                } else {
                    vals[i] < old
                }
            };
            if c.0.is_none_or(better) {
                c.0 = Some(vals[i]);
            }
        }
    }
    let all: Vec<f64> = cell.iter().flatten().filter_map(|c| c.0).collect();
    let (lo, hi) = range_of(all.iter().copied());
    let best = all.iter().copied().reduce(|a, b| {
        if (m.maximize && b > a) || (!m.maximize && b < a) {
            b
        } else {
            a
        }
    });
    render!(out, size, |root: DrawingArea<_, Shift>| -> R {
        e(root.fill(&WHITE))?;
        let w = root.dim_in_pixel().0;
        let (main, bar) = root.split_horizontally(w.saturating_sub(150));
        let mut c = e(ChartBuilder::on(&main)
            .caption(
                format!("best {} per ({x}, {y})", m.label),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..ux.len() as f64, 0.0..uy.len() as f64))?;
        e(c.configure_mesh()
            .disable_mesh()
            .x_desc(x)
            .y_desc(y)
            .x_labels(ux.len() * 2 + 1)
            .y_labels(uy.len() * 2 + 1)
            .x_label_formatter(&|v| label_at(&ux, *v))
            .y_label_formatter(&|v| label_at(&uy, *v))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw())?;
        for (a, col) in cell.iter().enumerate() {
            for (b, &(v, any)) in col.iter().enumerate() {
                let r = [(a as f64, b as f64), (a as f64 + 1.0, b as f64 + 1.0)];
                match v {
                    Some(v) => {
                        e(c.draw_series(std::iter::once(Rectangle::new(
                            r,
                            viridis((v - lo) / (hi - lo)).filled(),
                        ))))?;
                        if Some(v) == best {
                            e(c.draw_series(std::iter::once(Rectangle::new(
                                r,
                                RED.stroke_width(4),
                            ))))?;
                            e(c.draw_series(std::iter::once(Text::new(
                                "best",
                                (a as f64 + 0.08, b as f64 + 0.6),
                                ("sans-serif", 16).into_font().color(&WHITE),
                            ))))?;
                        }
                    }
                    None if any => {
                        e(c.draw_series(std::iter::once(Rectangle::new(
                            r,
                            RGBColor(215, 215, 215).filled(),
                        ))))?;
                        let grey = RGBColor(120, 120, 120).stroke_width(1);
                        e(c.draw_series([
                            PathElement::new(vec![r[0], r[1]], grey),
                            PathElement::new(vec![(r[0].0, r[1].1), (r[1].0, r[0].1)], grey),
                        ]))?;
                    }
                    None => {}
                }
            }
        }
        e(c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()))?
            .label("infeasible (no design meets the specs)")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x - 6, y - 6), (x + 6, y + 6)],
                    RGBColor(215, 215, 215).filled(),
                )
            });
        e(c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw())?;
        colour_bar(&bar, lo, hi, &m.label)?;
        e(root.present())
    })
}

/// The category label at a half-integer tick, blank elsewhere.
fn label_at(u: &[String], v: f64) -> String {
    let k = v - 0.5;
    if (k - k.round()).abs() < 1e-6 && k >= 0.0 && (k.round() as usize) < u.len() {
        u[k.round() as usize].clone()
    } else {
        String::new()
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|x| PlotError::Read {
        path: path.to_path_buf(),
        message: x.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|x| PlotError::Read {
        path: path.to_path_buf(),
        message: format!("not JSON: {x}"),
    })
}

fn data_err(path: &Path, message: impl Into<String>) -> PlotError {
    PlotError::Data {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn bytes_of(precision: &str) -> f64 {
    match precision {
        "int8" => 1.0,
        "fp32" | "int32" => 4.0,
        _ => 2.0,
    }
}

/// The roofline of one `coex eval --format json` result: the compute roof (peak MACs/s)
/// and one bandwidth roof per memory level from its `roofline` object, and each Einsum
/// kernel at its operational intensity (MACs per DRAM byte) and achieved MACs/s,
/// coloured by what bounds it. Measured points (`measured`: a CSV with `intensity` and
/// `macs_per_s` columns) are drawn as crosses when given.
pub fn roofline(
    eval_json: &Path,
    out: &Path,
    measured: Option<&Path>,
    size: Size,
) -> Result<(), PlotError> {
    let v = read_json(eval_json)?;
    let roof = &v["roofline"];
    let peak = roof["peak_macs_per_s"].as_f64().ok_or_else(|| {
        data_err(
            eval_json,
            "no roofline.peak_macs_per_s: write it with `coex eval --format json`",
        )
    })?;
    let bws: Vec<(String, f64)> = roof["bandwidths_bytes_per_s"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| Some((b[0].as_str()?.to_string(), b[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let cycle_s = match (
        v["total"]["latency_s"].as_f64(),
        v["total"]["latency_cycles"].as_f64(),
    ) {
        (Some(s), Some(c)) if c > 0.0 => s / c,
        _ => {
            return Err(data_err(
                eval_json,
                "total.latency_s / latency_cycles missing",
            ))
        }
    };
    let mut pts: Vec<(f64, f64, String)> = Vec::new();
    for l in v["layers"].as_array().into_iter().flatten() {
        if l["kind"] != "einsum" {
            continue;
        }
        let macs = l["macs"].as_f64().unwrap_or(0.0);
        let cycles = l["latency_cycles"].as_f64().unwrap_or(0.0);
        let bytes = bytes_of(l["precision"].as_str().unwrap_or("fp16"));
        let dram: f64 = l["accesses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["level"] == "DRAM")
            .map(|a| {
                ["reads", "fills", "updates"]
                    .iter()
                    .map(|k| a[*k].as_f64().unwrap_or(0.0))
                    .sum::<f64>()
            })
            .sum::<f64>()
            * bytes;
        if macs > 0.0 && cycles > 0.0 && dram > 0.0 {
            pts.push((
                macs / dram,
                macs / (cycles * cycle_s),
                l["bound"].as_str().unwrap_or("?").to_string(),
            ));
        }
    }
    let meas: Vec<(f64, f64)> = match measured {
        Some(p) => {
            let t = Table::read(p)?;
            t.numbers("intensity")?
                .into_iter()
                .zip(t.numbers("macs_per_s")?)
                .filter(|(a, b)| *a > 0.0 && *b > 0.0)
                .collect()
        }
        None => vec![],
    };
    let ix = pts.iter().map(|p| p.0).chain(meas.iter().map(|p| p.0));
    let (mut ilo, mut ihi) = ix.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !ilo.is_finite() {
        (ilo, ihi) = (0.1, 1000.0);
    }
    let (x0, x1) = ((ilo / 4.0).log10(), (ihi * 4.0).log10());
    let ymax = peak * 3.0;
    let ymin = pts
        .iter()
        .map(|p| p.1)
        .chain(meas.iter().map(|p| p.1))
        .fold(peak, f64::min)
        / 5.0;
    let (y0, y1) = (ymin.log10(), ymax.log10());
    let mut bounds: Vec<String> = pts.iter().map(|p| p.2.clone()).collect();
    bounds.sort();
    bounds.dedup();
    let title = format!(
        "Roofline: {} on {}",
        v["network"].as_str().unwrap_or("?"),
        v["accelerator"].as_str().unwrap_or("?")
    );
    render!(out, size, |root: DrawingArea<_, Shift>| -> R {
        e(root.fill(&WHITE))?;
        let mut c = e(ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1))?;
        e(c.configure_mesh()
            .x_desc("operational intensity (MACs per DRAM byte), log scale")
            .y_desc("attained MACs/s, log scale")
            .x_label_formatter(&|v| tick(*v, true))
            .y_label_formatter(&|v| tick(*v, true))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw())?;
        e(c.draw_series(std::iter::once(PathElement::new(
            vec![(x0, peak.log10()), (x1, peak.log10())],
            BLACK.stroke_width(2),
        ))))?
        .label(format!("compute roof {} MACs/s", tick(peak, false)))
        .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLACK.stroke_width(2)));
        for (k, (name, bw)) in bws.iter().enumerate() {
            let colour = PALETTE[(k + 1) % PALETTE.len()];
            // MACs/s = bandwidth × intensity, up to the compute roof.
            let knee = (peak / bw).log10();
            let line = vec![
                (x0, (bw * 10f64.powf(x0)).log10()),
                (knee.min(x1), (bw * 10f64.powf(knee.min(x1))).log10()),
            ];
            e(c.draw_series(std::iter::once(PathElement::new(
                line,
                colour.stroke_width(2),
            ))))?
            .label(format!("{name} roof {}B/s", tick(*bw, false)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x - 8, y), (x + 8, y)], colour.stroke_width(2))
            });
        }
        for (k, b) in bounds.iter().enumerate() {
            let colour = PALETTE[(k + 3) % PALETTE.len()];
            let these: Vec<(f64, f64)> = pts
                .iter()
                .filter(|p| &p.2 == b)
                .map(|p| (p.0.log10(), p.1.log10()))
                .collect();
            e(c.draw_series(these.iter().map(|&p| Circle::new(p, 4, colour.filled()))))?
                .label(format!("kernels bound by {b} ({})", these.len()))
                .legend(move |p| Circle::new(p, 4, colour.filled()));
        }
        if !meas.is_empty() {
            e(c.draw_series(
                meas.iter()
                    .map(|&(a, b)| Cross::new((a.log10(), b.log10()), 5, BLACK.stroke_width(2))),
            ))?
            .label("measured")
            .legend(|p| Cross::new(p, 5, BLACK.stroke_width(2)));
        }
        e(c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw())?;
        e(root.present())
    })
}

/// Side by side, for one or more `coex eval --format json` results: stacked bars of
/// energy per memory level (plus MACs and static power: the total less the levels)
/// and of latency per layer (the `top` slowest layers over all designs, the rest as
/// "other").
pub fn breakdown(evals: &[&Path], out: &Path, top: usize, size: Size) -> Result<(), PlotError> {
    let mut designs = Vec::new();
    for p in evals {
        let v = read_json(p)?;
        let name = format!(
            "{} on {}",
            v["network"].as_str().unwrap_or("?"),
            v["accelerator"].as_str().unwrap_or("?")
        );
        let total_pj = v["total"]["energy_pj"]
            .as_f64()
            .ok_or_else(|| data_err(p, "no total.energy_pj"))?;
        let cycle_s = match (
            v["total"]["latency_s"].as_f64(),
            v["total"]["latency_cycles"].as_f64(),
        ) {
            (Some(s), Some(c)) if c > 0.0 => s / c,
            _ => 0.0,
        };
        let mut energy: Vec<(String, f64)> = v["energy_by_level_pj"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| Some((x[0].as_str()?.to_string(), x[1].as_f64()?)))
            .collect();
        let rest = total_pj - energy.iter().map(|x| x.1).sum::<f64>();
        if rest > 1e-9 * total_pj {
            energy.push(("MACs + static".into(), rest));
        }
        let mut layers: Vec<(String, f64)> = Vec::new();
        for l in v["layers"].as_array().into_iter().flatten() {
            let name = l["layer"].as_str().unwrap_or("?").to_string();
            let s = l["latency_cycles"].as_f64().unwrap_or(0.0) * cycle_s;
            match layers.iter_mut().find(|x| x.0 == name) {
                Some(x) => x.1 += s,
                None => layers.push((name, s)),
            }
        }
        designs.push((name, energy, layers));
    }
    if designs.is_empty() {
        return Err(PlotError::Usage(
            "breakdown needs at least one eval JSON".into(),
        ));
    }
    // Energy parts and top layers, in a fixed order across designs.
    let mut parts: Vec<String> = Vec::new();
    for d in &designs {
        for (n, _) in &d.1 {
            if !parts.contains(n) {
                parts.push(n.clone());
            }
        }
    }
    let mut totals: Vec<(String, f64)> = Vec::new();
    for d in &designs {
        for (n, s) in &d.2 {
            match totals.iter_mut().find(|x| &x.0 == n) {
                Some(x) => x.1 += s,
                None => totals.push((n.clone(), *s)),
            }
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut keep: Vec<String> = totals.iter().take(top).map(|x| x.0.clone()).collect();
    keep.push("other".into());
    render!(out, size, |root: DrawingArea<_, Shift>| -> R {
        e(root.fill(&WHITE))?;
        let halves = root.split_evenly((1, 2));
        let n = designs.len() as f64;
        // Energy (mJ).
        let emax = designs
            .iter()
            .map(|d| d.1.iter().map(|x| x.1).sum::<f64>())
            .fold(0.0, f64::max)
            * 1e-9
            * 1.15;
        let mut c = e(ChartBuilder::on(&halves[0])
            .caption("energy by memory level", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, 0.0..emax.max(1e-12)))?;
        e(c.configure_mesh()
            .disable_x_mesh()
            .x_labels(designs.len() * 2 + 1)
            .x_label_formatter(&|v| {
                label_at(&designs.iter().map(|d| d.0.clone()).collect::<Vec<_>>(), *v)
            })
            .y_desc("energy (mJ)")
            .y_label_formatter(&|v| tick(*v, false))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw())?;
        for (k, part) in parts.iter().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let bars = designs.iter().enumerate().filter_map(|(i, d)| {
                let below: f64 =
                    d.1.iter()
                        .take_while(|x| &x.0 != part)
                        .map(|x| x.1)
                        .sum::<f64>()
                        * 1e-9;
                let v = d.1.iter().find(|x| &x.0 == part)?.1 * 1e-9;
                Some(Rectangle::new(
                    [(i as f64 + 0.2, below), (i as f64 + 0.8, below + v)],
                    colour.filled(),
                ))
            });
            e(c.draw_series(bars))?
                .label(part.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], colour.filled())
                });
        }
        e(c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw())?;
        // Latency (ms) per layer, the slowest `top` layers stacked, the rest as "other".
        let lmax = designs
            .iter()
            .map(|d| d.2.iter().map(|x| x.1).sum::<f64>())
            .fold(0.0, f64::max)
            * 1e3
            * 1.15;
        let mut c = e(ChartBuilder::on(&halves[1])
            .caption(format!("latency by layer (top {top})"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n, 0.0..lmax.max(1e-12)))?;
        e(c.configure_mesh()
            .disable_x_mesh()
            .x_labels(designs.len() * 2 + 1)
            .x_label_formatter(&|v| {
                label_at(&designs.iter().map(|d| d.0.clone()).collect::<Vec<_>>(), *v)
            })
            .y_desc("latency (ms)")
            .y_label_formatter(&|v| tick(*v, false))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw())?;
        let share = |d: &Vec<(String, f64)>, name: &str| -> f64 {
            if name == "other" {
                d.iter().filter(|x| !keep.contains(&x.0)).map(|x| x.1).sum()
            } else {
                d.iter().filter(|x| x.0 == name).map(|x| x.1).sum()
            }
        };
        for (k, name) in keep.iter().enumerate() {
            let colour = if name == "other" {
                RGBColor(200, 200, 200)
            } else {
                PALETTE[k % PALETTE.len()]
            };
            let bars = designs.iter().enumerate().map(|(i, d)| {
                let below: f64 = keep[..k].iter().map(|m| share(&d.2, m)).sum::<f64>() * 1e3;
                let v = share(&d.2, name) * 1e3;
                Rectangle::new(
                    [(i as f64 + 0.2, below), (i as f64 + 0.8, below + v)],
                    colour.filled(),
                )
            });
            e(c.draw_series(bars))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], colour.filled())
                });
        }
        e(c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw())?;
        e(root.present())
    })
}

/// Predicted against measured, log-log, before and after calibration as two panels:
/// y = x and a ±20% band; after calibration, each row's held-out prediction (the
/// cross-validation fold that did not see it) and its in-sample fit (the template
/// fitted on every row) are distinguished; held-out MAPE and Kendall τ in the titles.
/// Reads a `coex calibrate` report folder: `predictions.csv` (`measured`, `before`,
/// `after_heldout`, `after_fit`, `metric`) and `report.json` (the summaries).
pub fn calibration(dir: &Path, out: &Path, size: Size) -> Result<(), PlotError> {
    let v = read_json(&dir.join("report.json"))?;
    let t = Table::read(&dir.join("predictions.csv"))?;
    let (m, b, h) = (
        t.numbers("measured")?,
        t.numbers("before")?,
        t.numbers("after_heldout")?,
    );
    let f = t
        .numbers("after_fit")
        .unwrap_or_else(|_| vec![f64::NAN; m.len()]);
    let pts: Vec<(f64, f64, f64, f64)> = (0..m.len())
        .map(|i| (m[i], b[i], h[i], f[i]))
        .filter(|p| p.0 > 0.0 && p.1 > 0.0)
        .collect();
    if pts.is_empty() {
        return Err(data_err(
            &t.path,
            "no row with positive measured and predicted values",
        ));
    }
    let unit = t
        .strings("metric")
        .ok()
        .and_then(|s| s.first().cloned())
        .unwrap_or_else(|| "latency_us".into());
    let all = pts
        .iter()
        .flat_map(|p| [p.0, p.1, p.2, p.3])
        .filter(|x| *x > 0.0);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (l0, l1) = ((lo / 1.5).log10(), (hi * 1.5).log10());
    let summary = |phase: &str| -> String {
        let h = &v[phase]["heldout"];
        format!(
            "{phase}: held-out MAPE {:.1}%, Kendall τ {:.2}",
            h["mape"].as_f64().unwrap_or(f64::NAN) * 100.0,
            h["kendall_tau"].as_f64().unwrap_or(f64::NAN)
        )
    };
    render!(out, size, |root: DrawingArea<_, Shift>| -> R {
        e(root.fill(&WHITE))?;
        let halves = root.split_evenly((1, 2));
        for (half, phase) in halves.iter().zip(["before", "after"]) {
            let mut c = e(ChartBuilder::on(half)
                .caption(summary(phase), ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d(l0..l1, l0..l1))?;
            e(c.configure_mesh()
                .x_desc(format!("measured {unit}, log scale"))
                .y_desc(format!("predicted {unit}, log scale"))
                .x_label_formatter(&|v| tick(*v, true))
                .y_label_formatter(&|v| tick(*v, true))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 15))
                .light_line_style(RGBColor(235, 235, 235))
                .draw())?;
            let band = RGBColor(200, 200, 200).mix(0.4);
            e(c.draw_series(std::iter::once(Polygon::new(
                vec![
                    (l0, l0 + 1.2f64.log10()),
                    (l1, l1 + 1.2f64.log10()),
                    (l1, l1 + 0.8f64.log10()),
                    (l0, l0 + 0.8f64.log10()),
                ],
                band.filled(),
            ))))?
            .label("±20%")
            .legend(move |(x, y)| Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], band.filled()));
            e(c.draw_series(std::iter::once(PathElement::new(
                vec![(l0, l0), (l1, l1)],
                BLACK.stroke_width(1),
            ))))?
            .label("y = x")
            .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLACK.stroke_width(1)));
            let series: Vec<Series> = if phase == "before" {
                vec![(
                    "uncalibrated",
                    PALETTE[7],
                    pts.iter().map(|p| (p.0, p.1)).collect(),
                )]
            } else {
                vec![
                    (
                        "training (fit on all rows)",
                        PALETTE[0],
                        pts.iter().map(|p| (p.0, p.3)).collect(),
                    ),
                    (
                        "held out (cross-validated)",
                        PALETTE[1],
                        pts.iter().map(|p| (p.0, p.2)).collect(),
                    ),
                ]
            };
            for (name, colour, xy) in series {
                let these: Vec<(f64, f64)> = xy
                    .into_iter()
                    .filter(|(a, b)| *a > 0.0 && *b > 0.0)
                    .map(|(a, b)| (a.log10(), b.log10()))
                    .collect();
                e(c.draw_series(these.iter().map(|&p| Circle::new(p, 3, colour.filled()))))?
                    .label(format!("{name} ({})", these.len()))
                    .legend(move |p| Circle::new(p, 4, colour.filled()));
            }
            e(c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw())?;
        }
        e(root.present())
    })
}
