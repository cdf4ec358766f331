//! Figures of design spaces, drawn with plotters from coex's own output files (a
//! sweep's `points.csv`, `coex eval --format json`, `coex calibrate --format json`),
//! so a sweep run on a cluster can be plotted later anywhere. PNG and SVG, chosen by
//! the output file's extension. The text font (DejaVu Sans) is embedded in the binary:
//! PNGs render on a machine with no fonts installed.

mod draw;
pub mod html;

pub use draw::{breakdown, calibration, heatmap, pareto, roofline, ParetoOptions};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: no column '{column}' (columns: {available})")]
    Column {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("drawing {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

/// Output size in pixels (PNG) or user units (SVG).
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            width: 1000,
            height: 700,
        }
    }
}

/// A tidy CSV read whole: header and rows of cells.
#[derive(Clone, Debug)]
pub struct Table {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn read(path: &Path) -> Result<Table, PlotError> {
        let err = |message: String| PlotError::Read {
            path: path.to_path_buf(),
            message,
        };
        let mut r = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
        let header: Vec<String> = r
            .headers()
            .map_err(|e| err(e.to_string()))?
            .iter()
            .map(String::from)
            .collect();
        let mut rows = Vec::new();
        for (i, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
            rows.push(rec.iter().map(String::from).collect());
        }
        Ok(Table {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    /// Index of column `name`, or an error listing the columns.
    pub fn col(&self, name: &str) -> Result<usize, PlotError> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| PlotError::Column {
                path: self.path.clone(),
                column: name.to_string(),
                available: self.header.join(", "),
            })
    }

    /// Column `name` as numbers (NaN where a cell is empty or not a number).
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>, PlotError> {
        let c = self.col(name)?;
        Ok(self
            .rows
            .iter()
            .map(|r| r.get(c).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
            .collect())
    }

    pub fn strings(&self, name: &str) -> Result<Vec<String>, PlotError> {
        let c = self.col(name)?;
        Ok(self
            .rows
            .iter()
            .map(|r| r.get(c).cloned().unwrap_or_default())
            .collect())
    }
}

/// How a metric column is shown: axis label with its unit, the scale from the stored
/// SI value, and whether larger is better.
pub struct Metric {
    pub column: String,
    pub label: String,
    pub scale: f64,
    pub maximize: bool,
}

/// The display of a known column (`latency_s` in ms, `energy_j` in mJ, ...); an
/// unknown column is shown as stored, minimized.
pub fn metric(column: &str) -> Metric {
    let (label, scale, maximize) = match column {
        "accuracy" => ("accuracy (%)", 1.0, true),
        "latency_s" => ("latency (ms)", 1e3, false),
        "energy_j" => ("energy (mJ)", 1e3, false),
        "area_mm2" => ("area (mm²)", 1.0, false),
        "edp_js" => ("energy-delay product (J·s)", 1.0, false),
        "throughput" => ("throughput (inferences/s)", 1.0, true),
        other => (other, 1.0, false),
    };
    Metric {
        column: column.to_string(),
        label: label.to_string(),
        scale,
        maximize,
    }
}

/// Indices of the points not dominated in (x, y) (each minimized, or maximized when
/// its flag says so), sorted by x: the Pareto front as a step line.
pub fn front_2d(xs: &[f64], ys: &[f64], max_x: bool, max_y: bool) -> Vec<usize> {
    let key = |v: f64, max: bool| if max { -v } else { v };
    let mut idx: Vec<usize> = (0..xs.len())
        .filter(|&i| xs[i].is_finite() && ys[i].is_finite())
        .collect();
    idx.sort_by(|&a, &b| {
        key(xs[a], max_x)
            .total_cmp(&key(xs[b], max_x))
            .then(key(ys[a], max_y).total_cmp(&key(ys[b], max_y)))
    });
    let mut front = Vec::new();
    let mut best = f64::INFINITY;
    for i in idx {
        let y = key(ys[i], max_y);
        if y < best {
            best = y;
            front.push(i);
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A front picked by hand: (1,5) (2,3) (4,1) dominate (3,4) and (5,2).
    #[test]
    fn front_by_hand() {
        let xs = [3.0, 1.0, 2.0, 5.0, 4.0];
        let ys = [4.0, 5.0, 3.0, 2.0, 1.0];
        assert_eq!(front_2d(&xs, &ys, false, false), vec![1, 2, 4]);
        // Maximizing y instead: only the largest y at the smallest x survives each step.
        assert_eq!(front_2d(&xs, &ys, false, true), vec![1]);
    }
}
