//! Measurement files: one tidy CSV format, and importers that turn the shipped
//! reference tables into it.
//!
//! The format (one measured number per row; header names, any column order):
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `op` | one of `op`/`workload` | a one-line op spec, e.g. `gemm m=1024 n=1024 k=1024 dtype=fp16` |
//! | `workload` | one of `op`/`workload` | a workload file (relative paths: to the CSV's folder), or a family network on one line: `nasbench201 arch=\|...\| dead_ops=run dtype=fp32` (the family name, then `key=value` words: `dtype`, `image_size`, `seq_len` as in a workload file's top level, the rest its `[params]`) |
//! | `batch` | no | the workload's batch size |
//! | `metric` | yes | `latency_us`, `energy_uj`, `power_w`, `cycles`, or without the DRAM interface (as chips report "processing" latency and core power) `onchip_latency_us`, `onchip_power_w` |
//! | `value` | yes | the measured number, > 0 |
//! | `repeats` | no | how many timed runs the value summarizes |
//! | `std` | no | their standard deviation, in the metric's unit |
//! | `mode` | no | `eager` or `graph`: how the kernels were issued (default: the template's `model.mode`) |
//! | `device` | no | what was measured |
//! | `source` | no | where the number comes from |
//! | `group` | no | a label for per-group error reports (default: the op kind, e.g. `gemm`) |
//!
//! Row numbers in errors are the file's line numbers (the header is line 1).

use super::CalibrateError;
use crate::arch::gpu::Mode;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a row measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    LatencyUs,
    EnergyUj,
    PowerW,
    Cycles,
    /// Latency without the DRAM interface (a chip's "processing" latency).
    OnchipLatencyUs,
    /// Power without DRAM (a chip's core rail).
    OnchipPowerW,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s.trim() {
            "latency_us" => Metric::LatencyUs,
            "energy_uj" => Metric::EnergyUj,
            "power_w" => Metric::PowerW,
            "cycles" => Metric::Cycles,
            "onchip_latency_us" => Metric::OnchipLatencyUs,
            "onchip_power_w" => Metric::OnchipPowerW,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::LatencyUs => "latency_us",
            Metric::EnergyUj => "energy_uj",
            Metric::PowerW => "power_w",
            Metric::Cycles => "cycles",
            Metric::OnchipLatencyUs => "onchip_latency_us",
            Metric::OnchipPowerW => "onchip_power_w",
        }
    }
}

/// What was run: an op spec, a workload file, or a family network on one line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Target {
    Op(String),
    Workload {
        path: PathBuf,
        batch: Option<usize>,
    },
    /// `family key=value ...` (see [`network_toml`]).
    Network {
        spec: String,
        batch: Option<usize>,
    },
}

/// The workload-file text of a one-line network spec `family key=value ...`: `dtype`,
/// `image_size` and `seq_len` go to the top level, every other key to `[params]`;
/// values that read as integers or booleans are written so, the rest as strings.
pub fn network_toml(spec: &str) -> Result<String, String> {
    let mut words = spec.split_whitespace();
    let family = words
        .next()
        .ok_or("an empty network spec; write 'family key=value ...'")?;
    let (mut top, mut params) = (toml::Table::new(), toml::Table::new());
    top.insert("family".into(), toml::Value::String(family.into()));
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("'{w}' is not key=value"))?;
        let value = if let Ok(i) = v.parse::<i64>() {
            toml::Value::Integer(i)
        } else if let Ok(b) = v.parse::<bool>() {
            toml::Value::Boolean(b)
        } else {
            toml::Value::String(v.into())
        };
        let table = match k {
            "dtype" | "image_size" | "seq_len" => &mut top,
            _ => &mut params,
        };
        table.insert(k.into(), value);
    }
    top.insert("params".into(), toml::Value::Table(params));
    toml::to_string(&top).map_err(|e| e.to_string())
}

/// Whether a `workload` cell is a one-line network spec (a family name followed by
/// `key=value` words) rather than a file path.
fn is_network_spec(s: &str) -> bool {
    let mut w = s.split_whitespace();
    w.next()
        .is_some_and(|f| crate::workload::families::find(f).is_some())
        && w.all(|x| x.contains('='))
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Op(s) => s.clone(),
            Target::Network { spec, batch } => match batch {
                Some(b) => format!("{spec} (batch {b})"),
                None => spec.clone(),
            },
            Target::Workload { path, batch } => match batch {
                Some(b) => format!("{} (batch {b})", path.display()),
                None => path.display().to_string(),
            },
        }
    }
}

/// One measured number.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Line in the source file (header = 1), for errors.
    pub line: u64,
    pub target: Target,
    pub metric: Metric,
    pub value: f64,
    pub repeats: Option<u64>,
    pub std: Option<f64>,
    pub mode: Option<Mode>,
    pub device: String,
    pub source: String,
    pub group: String,
}

fn mode_name(m: Option<Mode>) -> &'static str {
    match m {
        Some(Mode::Eager) => "eager",
        Some(Mode::Graph) => "graph",
        None => "",
    }
}

/// Writes rows in the tidy format (the inverse of `read_tidy`).
pub fn write_tidy<W: std::io::Write>(rows: &[Measurement], w: W) -> Result<(), csv::Error> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record([
        "op", "workload", "batch", "metric", "value", "repeats", "std", "mode", "device", "source",
        "group",
    ])?;
    for r in rows {
        let (op, wl, batch) = match &r.target {
            Target::Op(s) => (s.clone(), String::new(), String::new()),
            Target::Workload { path, batch } => (
                String::new(),
                path.display().to_string(),
                batch.map(|b| b.to_string()).unwrap_or_default(),
            ),
            Target::Network { spec, batch } => (
                String::new(),
                spec.clone(),
                batch.map(|b| b.to_string()).unwrap_or_default(),
            ),
        };
        out.write_record([
            op,
            wl,
            batch,
            r.metric.name().to_string(),
            format!("{}", r.value),
            r.repeats.map(|x| x.to_string()).unwrap_or_default(),
            r.std.map(|x| x.to_string()).unwrap_or_default(),
            mode_name(r.mode).to_string(),
            r.device.clone(),
            r.source.clone(),
            r.group.clone(),
        ])?;
    }
    out.flush()?;
    Ok(())
}

/// A CSV read into header → column index, with errors that name the file and line.
struct Table {
    path: PathBuf,
    cols: HashMap<String, usize>,
    header: Vec<String>,
    rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    fn read(path: &Path) -> Result<Table, CalibrateError> {
        let io = |message: String| CalibrateError::File {
            path: path.to_path_buf(),
            message,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| io(format!("cannot read: {e}")))?;
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| io(format!("cannot read the header: {e}")))?
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cols = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.clone(), i))
            .collect();
        let mut rows = Vec::new();
        loop {
            // The line the next record starts on (the header is line 1).
            // (the reader reports line 1 before the first record: the header is line 1).
            let line = rdr.position().line().max(2);
            let mut rec = csv::StringRecord::new();
            match rdr.read_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(io(format!("malformed CSV: {e}"))),
            }
            if rec.iter().all(|f| f.is_empty()) {
                continue;
            }
            rows.push((line, rec));
        }
        Ok(Table {
            path: path.to_path_buf(),
            cols,
            header,
            rows,
        })
    }

    fn require(&self, names: &[&str], what: &str) -> Result<(), CalibrateError> {
        for n in names {
            if !self.cols.contains_key(*n) {
                return Err(CalibrateError::File {
                    path: self.path.clone(),
                    message: format!(
                        "missing column '{n}' (the header has: {}); {what}",
                        self.header.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    fn get<'a>(&self, rec: &'a csv::StringRecord, col: &str) -> &'a str {
        self.cols.get(col).and_then(|&i| rec.get(i)).unwrap_or("")
    }

    fn row_err(&self, line: u64, message: String) -> CalibrateError {
        CalibrateError::Row {
            path: self.path.clone(),
            line,
            message,
        }
    }

    fn number(&self, line: u64, rec: &csv::StringRecord, col: &str) -> Result<f64, CalibrateError> {
        let s = self.get(rec, col);
        let v: f64 = s.parse().map_err(|_| {
            self.row_err(
                line,
                format!("column '{col}': '{s}' is not a number; write a decimal such as 12.5"),
            )
        })?;
        if !v.is_finite() {
            return Err(self.row_err(line, format!("column '{col}': '{s}' is not finite")));
        }
        Ok(v)
    }

    fn positive(
        &self,
        line: u64,
        rec: &csv::StringRecord,
        col: &str,
    ) -> Result<f64, CalibrateError> {
        let v = self.number(line, rec, col)?;
        if v <= 0.0 {
            return Err(self.row_err(
                line,
                format!("column '{col}': {v} must be > 0 (a measured time, energy or power)"),
            ));
        }
        Ok(v)
    }

    fn count(
        &self,
        line: u64,
        rec: &csv::StringRecord,
        col: &str,
    ) -> Result<Option<u64>, CalibrateError> {
        let s = self.get(rec, col);
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<u64>().map(Some).map_err(|_| {
            self.row_err(
                line,
                format!("column '{col}': '{s}' is not a whole number ≥ 0"),
            )
        })
    }
}

/// The op kind of a spec (its first word), the default group.
pub fn op_kind(spec: &str) -> String {
    spec.split_whitespace().next().unwrap_or("").to_string()
}

/// Reads a measurement file in the tidy format (see the module docs).
pub fn read_tidy(path: &Path) -> Result<Vec<Measurement>, CalibrateError> {
    let t = Table::read(path)?;
    t.require(
        &["metric", "value"],
        "a measurement file needs op (or workload), metric and value columns",
    )?;
    if !t.cols.contains_key("op") && !t.cols.contains_key("workload") {
        return Err(CalibrateError::File {
            path: path.to_path_buf(),
            message: format!(
                "missing column 'op' or 'workload' (the header has: {}); each row names a one-line op spec or a workload file",
                t.header.join(", ")
            ),
        });
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (line, rec) in &t.rows {
        let line = *line;
        let (op, wl) = (t.get(rec, "op"), t.get(rec, "workload"));
        let target = match (op.is_empty(), wl.is_empty()) {
            (false, true) => Target::Op(op.to_string()),
            (true, false) if is_network_spec(wl) => Target::Network {
                spec: wl.to_string(),
                batch: t.count(line, rec, "batch")?.map(|b| b as usize),
            },
            (true, false) => {
                let batch = t.count(line, rec, "batch")?.map(|b| b as usize);
                let p = Path::new(wl);
                Target::Workload {
                    path: if p.is_relative() {
                        base.join(p)
                    } else {
                        p.to_path_buf()
                    },
                    batch,
                }
            }
            (true, true) => {
                return Err(t.row_err(line, "give an op spec or a workload file".into()))
            }
            (false, false) => {
                return Err(t.row_err(line, "give an op spec or a workload file, not both".into()))
            }
        };
        let m = t.get(rec, "metric");
        let metric = Metric::parse(m).ok_or_else(|| {
            t.row_err(
                line,
                format!("metric '{m}' is not one of latency_us, energy_uj, power_w, cycles, onchip_latency_us, onchip_power_w"),
            )
        })?;
        let value = t.positive(line, rec, "value")?;
        let std = match t.get(rec, "std") {
            "" => None,
            _ => {
                let s = t.number(line, rec, "std")?;
                if s < 0.0 {
                    return Err(t.row_err(line, format!("column 'std': {s} must be ≥ 0")));
                }
                Some(s)
            }
        };
        let mode = match t.get(rec, "mode") {
            "" => None,
            "eager" => Some(Mode::Eager),
            "graph" => Some(Mode::Graph),
            other => {
                return Err(t.row_err(
                    line,
                    format!("mode '{other}' is not 'eager' or 'graph' (or empty)"),
                ))
            }
        };
        let group = match t.get(rec, "group") {
            "" => match &target {
                Target::Op(s) => op_kind(s),
                Target::Workload { .. } | Target::Network { .. } => "network".into(),
            },
            g => g.to_string(),
        };
        out.push(Measurement {
            line,
            target,
            metric,
            value,
            repeats: t.count(line, rec, "repeats")?,
            std,
            mode,
            device: t.get(rec, "device").to_string(),
            source: t.get(rec, "source").to_string(),
            group,
        });
    }
    if out.is_empty() {
        return Err(CalibrateError::File {
            path: path.to_path_buf(),
            message: "no measurement rows".into(),
        });
    }
    Ok(out)
}

/// The reference tables an importer reads (`--from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The tidy format above.
    Tidy,
    /// Baidu DeepBench GEMM results (`deepbench_gemm_v100.csv`): M, N, K, precision, time_us.
    DeepbenchGemm,
    /// DeepBench convolutions (`deepbench_conv_v100.csv`): forward times.
    DeepbenchConv,
    /// The H200 kernel table (`h200_kernels_train.csv`): eager PyTorch medians.
    H200Kernels,
    /// NAS-Bench-201 end-to-end latencies (`nb201_latency_dev.csv`, HW-NAS-Bench/HELP),
    /// one device column.
    Nb201Latency(Nb201Column),
    /// Eyeriss v1 silicon, AlexNet CONV1-5 (`eyeriss_alexnet_silicon.csv`, JSSC 2017).
    EyerissSilicon,
    /// A PyTorch profiler trace (`prof.export_chrome_trace`, `record_shapes=True`):
    /// GPU kernel time per GEMM, conv and attention call (`super::torch_trace`).
    TorchTrace,
}

/// A device column of the NAS-Bench-201 latency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nb201Column {
    /// GTX 1080 Ti, batch 1 (`1080ti_1`).
    Gtx1080TiB1,
    /// GTX 1080 Ti, batch 256 (`1080ti_256`).
    Gtx1080TiB256,
    /// Pixel 3, TFLite (`pixel3`).
    Pixel3,
    /// Raspberry Pi 4 (`raspi4`).
    Raspi4,
}

impl Nb201Column {
    pub const ALL: [(&'static str, Nb201Column); 4] = [
        ("1080ti_1", Nb201Column::Gtx1080TiB1),
        ("1080ti_256", Nb201Column::Gtx1080TiB256),
        ("pixel3", Nb201Column::Pixel3),
        ("raspi4", Nb201Column::Raspi4),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, c)| *c == self).unwrap().0
    }

    fn batch(self) -> usize {
        match self {
            Nb201Column::Gtx1080TiB256 => 256,
            _ => 1,
        }
    }

    /// The GPU columns were measured in eager PyTorch (dead edges run, one dispatch per
    /// op); the phone and Pi ran TFLite, a compiled graph that drops dead edges.
    fn eager(self) -> bool {
        matches!(self, Nb201Column::Gtx1080TiB1 | Nb201Column::Gtx1080TiB256)
    }

    fn device(self) -> &'static str {
        match self {
            Nb201Column::Gtx1080TiB1 | Nb201Column::Gtx1080TiB256 => "NVIDIA GTX 1080 Ti",
            Nb201Column::Pixel3 => "Google Pixel 3 (TFLite)",
            Nb201Column::Raspi4 => "Raspberry Pi 4",
        }
    }
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "tidy" | "coex" => Format::Tidy,
            "deepbench-gemm" => Format::DeepbenchGemm,
            "deepbench-conv" => Format::DeepbenchConv,
            "h200-kernels" => Format::H200Kernels,
            "eyeriss-silicon" => Format::EyerissSilicon,
            "torch-trace" => Format::TorchTrace,
            other => {
                let col = other.strip_prefix("nb201-latency:")?;
                let (_, c) = Nb201Column::ALL.iter().find(|(n, _)| *n == col)?;
                Format::Nb201Latency(*c)
            }
        })
    }

    pub const NAMES: &'static str = "tidy, deepbench-gemm, deepbench-conv, h200-kernels, eyeriss-silicon, torch-trace, \
         nb201-latency:1080ti_1, nb201-latency:1080ti_256, nb201-latency:pixel3, nb201-latency:raspi4";
}

/// Rows an importer left out, with why (reported, never silent).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Skipped {
    pub line: u64,
    pub why: String,
}

/// Reads `path` in `format` into tidy rows, and the rows it skipped.
pub fn import(
    format: Format,
    path: &Path,
) -> Result<(Vec<Measurement>, Vec<Skipped>), CalibrateError> {
    match format {
        Format::Tidy => Ok((read_tidy(path)?, vec![])),
        Format::DeepbenchGemm => deepbench_gemm(path),
        Format::DeepbenchConv => deepbench_conv(path),
        Format::H200Kernels => h200_kernels(path),
        Format::Nb201Latency(c) => nb201_latency(path, c),
        Format::EyerissSilicon => eyeriss_silicon(path),
        Format::TorchTrace => super::torch_trace::import(path),
    }
}

/// AlexNet's convolutions as Eyeriss ran them (Krizhevsky et al. 2012: 227×227 input,
/// grouped conv2/4/5; Chen et al., JSSC 2017), at batch `n`.
fn alexnet_conv(layer: &str, n: u64) -> Option<String> {
    let shape = match layer {
        "CONV1" => "c=3 h=227 w=227 k=96 r=11 s=11 stride=4 pad=0",
        "CONV2" => "c=96 h=27 w=27 k=256 r=5 s=5 pad=2 groups=2",
        "CONV3" => "c=256 h=13 w=13 k=384 r=3 s=3 pad=1",
        "CONV4" => "c=384 h=13 w=13 k=384 r=3 s=3 pad=1 groups=2",
        "CONV5" => "c=384 h=13 w=13 k=256 r=3 s=3 pad=1 groups=2",
        _ => return None,
    };
    Some(format!("conv2d n={n} {shape} dtype=fp16"))
}

/// Eyeriss v1 silicon rows: per layer, the processing latency (which excludes DRAM
/// transfers) as `onchip_latency_us` and the chip power (which excludes DRAM) as
/// `onchip_power_w`, each layer a 16-bit conv at the table's batch. The `Total` row
/// (the layers' sum) is skipped.
fn eyeriss_silicon(path: &Path) -> Result<(Vec<Measurement>, Vec<Skipped>), CalibrateError> {
    let t = Table::read(path)?;
    t.require(
        &["layer", "batch", "latency_processing_ms", "power_mw"],
        "is this the Eyeriss silicon table (eyeriss_alexnet_silicon.csv)?",
    )?;
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for (line, rec) in &t.rows {
        let line = *line;
        let layer = t.get(rec, "layer");
        let batch = t
            .count(line, rec, "batch")?
            .ok_or_else(|| t.row_err(line, "batch is empty".into()))?;
        let Some(op) = alexnet_conv(layer, batch) else {
            skipped.push(Skipped {
                line,
                why: format!(
                    "layer '{layer}' is not one of AlexNet's CONV1-5 (the Total row is their sum)"
                ),
            });
            continue;
        };
        for (col, metric, unit) in [
            ("latency_processing_ms", Metric::OnchipLatencyUs, 1e3),
            ("power_mw", Metric::OnchipPowerW, 1e-3),
        ] {
            out.push(Measurement {
                line,
                target: Target::Op(op.clone()),
                metric,
                value: t.positive(line, rec, col)? * unit,
                repeats: None,
                std: None,
                mode: None,
                device: "Eyeriss v1 (65 nm, 200 MHz)".into(),
                source: "Chen et al., IEEE JSSC 52(1) 2017, Tables V/VI".into(),
                group: metric.name().into(),
            });
        }
    }
    Ok((out, skipped))
}

/// NAS-Bench-201 latency rows of one device column: each arch as the CIFAR-10
/// `nasbench201` network in fp32 (PyTorch's and TFLite's default), the table's ms as
/// µs. GPU columns run every edge in eager mode; the TFLite columns prune dead edges,
/// and archs whose cell output is always zero (a constant network: nothing to model)
/// are skipped with that reason.
fn nb201_latency(
    path: &Path,
    col: Nb201Column,
) -> Result<(Vec<Measurement>, Vec<Skipped>), CalibrateError> {
    let t = Table::read(path)?;
    t.require(
        &["arch_str", col.name()],
        "is this the NAS-Bench-201 latency table (nb201_latency_dev.csv)?",
    )?;
    let dead_ops = if col.eager() { "run" } else { "prune" };
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for (line, rec) in &t.rows {
        let line = *line;
        let arch = t.get(rec, "arch_str");
        if arch.is_empty() || arch.contains(char::is_whitespace) {
            return Err(t.row_err(line, format!("arch_str '{arch}' is empty or has spaces")));
        }
        let spec = format!("nasbench201 arch={arch} dead_ops={dead_ops} dtype=fp32");
        if !col.eager() {
            let text = network_toml(&spec).map_err(|e| t.row_err(line, e))?;
            if let Err(e) = crate::workload::file::parse(&text, "nasbench201", Some(1)) {
                if e.to_string().contains("always outputs zero") {
                    skipped.push(Skipped {
                        line,
                        why: "the cell output is always zero: TFLite runs a constant network"
                            .into(),
                    });
                    continue;
                }
            }
        }
        out.push(Measurement {
            line,
            target: Target::Network {
                spec,
                batch: Some(col.batch()),
            },
            metric: Metric::LatencyUs,
            value: t.positive(line, rec, col.name())? * 1e3,
            repeats: None,
            std: None,
            mode: Some(if col.eager() {
                Mode::Eager
            } else {
                Mode::Graph
            }),
            device: col.device().into(),
            source: "nb201_latency_dev.csv (HW-NAS-Bench / HELP)".into(),
            group: format!("nb201-{}", col.name()),
        });
    }
    Ok((out, skipped))
}

fn deepbench_dtype(precision: &str) -> &'static str {
    if precision.starts_with("fp16") {
        "fp16"
    } else {
        "fp32"
    }
}

fn deepbench_gemm(path: &Path) -> Result<(Vec<Measurement>, Vec<Skipped>), CalibrateError> {
    let t = Table::read(path)?;
    t.require(
        &["precision", "M", "N", "K", "time_us"],
        "is this a DeepBench GEMM table (deepbench_gemm_v100.csv)?",
    )?;
    let mut out = Vec::new();
    for (line, rec) in &t.rows {
        let line = *line;
        let [m, n, k] = ["M", "N", "K"].map(|c| t.count(line, rec, c));
        let (m, n, k) = (m?, n?, k?);
        let (Some(m), Some(n), Some(k)) = (m, n, k) else {
            return Err(t.row_err(line, "M, N and K must be given".into()));
        };
        let dtype = deepbench_dtype(t.get(rec, "precision"));
        out.push(Measurement {
            line,
            target: Target::Op(format!("gemm m={m} n={n} k={k} dtype={dtype}")),
            metric: Metric::LatencyUs,
            value: t.positive(line, rec, "time_us")?,
            repeats: None,
            std: None,
            mode: Some(Mode::Graph),
            device: t.get(rec, "device").to_string(),
            source: "Baidu DeepBench (cuBLAS kernel time)".into(),
            group: format!("gemm-{dtype}"),
        });
    }
    Ok((out, vec![]))
}

fn deepbench_conv(path: &Path) -> Result<(Vec<Measurement>, Vec<Skipped>), CalibrateError> {
    let t = Table::read(path)?;
    t.require(
        &[
            "precision",
            "N",
            "C",
            "H",
            "W",
            "K",
            "R",
            "S",
            "pad_h",
            "pad_w",
            "stride_h",
            "stride_w",
            "fwd_us",
        ],
        "is this a DeepBench convolution table (deepbench_conv_v100.csv)?",
    )?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (line, rec) in &t.rows {
        let line = *line;
        let mut v = HashMap::new();
        for c in [
            "N", "C", "H", "W", "K", "R", "S", "pad_h", "pad_w", "stride_h", "stride_w",
        ] {
            let x = t.count(line, rec, c)?.ok_or_else(|| {
                t.row_err(line, format!("column '{c}' is empty; give a whole number"))
            })?;
            v.insert(c, x);
        }
        if v["pad_h"] != v["pad_w"] || v["stride_h"] != v["stride_w"] {
            skipped.push(Skipped {
                line,
                why: "unequal padding or stride per axis (op specs take one pad and stride)".into(),
            });
            continue;
        }
        if t.get(rec, "fwd_us").is_empty() {
            skipped.push(Skipped {
                line,
                why: "no forward time".into(),
            });
            continue;
        }
        let dtype = deepbench_dtype(t.get(rec, "precision"));
        out.push(Measurement {
            line,
            target: Target::Op(format!(
                "conv2d n={} c={} h={} w={} k={} r={} s={} stride={} pad={} dtype={dtype}",
                v["N"], v["C"], v["H"], v["W"], v["K"], v["R"], v["S"], v["stride_h"], v["pad_h"]
            )),
            metric: Metric::LatencyUs,
            value: t.positive(line, rec, "fwd_us")?,
            repeats: None,
            std: None,
            mode: Some(Mode::Graph),
            device: t.get(rec, "device").to_string(),
            source: format!(
                "Baidu DeepBench (cuDNN forward, {})",
                t.get(rec, "fwd_algorithm")
            ),
            group: format!("conv-{dtype}"),
        });
    }
    Ok((out, skipped))
}

/// Turns the table's vector rows (`add rows=R cols=C dtype=fp16`) into op specs.
fn vector_spec(spec: &str) -> Option<String> {
    let mut words = spec.split_whitespace();
    let kind = words.next()?;
    let (mut rows, mut cols, mut dtype) = (None, None, "fp16".to_string());
    for w in words {
        match w.split_once('=')? {
            ("rows", v) => rows = v.parse::<u64>().ok(),
            ("cols", v) => cols = v.parse::<u64>().ok(),
            ("dtype", v) => dtype = v.to_string(),
            _ => return None,
        }
    }
    let (r, c) = (rows?, cols?);
    Some(match kind {
        "layernorm" | "rmsnorm" => format!("{kind} b=1 seq={r} d={c} dtype={dtype}"),
        _ => format!("{kind} shape={r}x{c} dtype={dtype}"),
    })
}

fn h200_kernels(path: &Path) -> Result<(Vec<Measurement>, Vec<Skipped>), CalibrateError> {
    let t = Table::read(path)?;
    t.require(
        &["section", "spec", "dtype", "time_us"],
        "is this the H200 kernel table (h200_kernels_train.csv)?",
    )?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (line, rec) in &t.rows {
        let line = *line;
        let section = t.get(rec, "section");
        let spec = t.get(rec, "spec");
        if section == "idle" {
            skipped.push(Skipped {
                line,
                why: "idle power row (no kernel)".into(),
            });
            continue;
        }
        if t.get(rec, "dtype") == "tf32" {
            skipped.push(Skipped {
                line,
                why: "TF32 row: needs model.tf32 = true, which the other fp32 rows do not use"
                    .into(),
            });
            continue;
        }
        let op = if section == "vector" {
            vector_spec(spec)
                .ok_or_else(|| t.row_err(line, format!("vector spec '{spec}' not understood")))?
        } else {
            spec.to_string()
        };
        let group = match section {
            "bmm" => "gemm".to_string(),
            s => s.to_string(),
        };
        out.push(Measurement {
            line,
            target: Target::Op(op),
            metric: Metric::LatencyUs,
            value: t.positive(line, rec, "time_us")?,
            repeats: t.count(line, rec, "reps")?,
            std: None,
            mode: Some(Mode::Eager),
            device: "NVIDIA H200 SXM".into(),
            source: "h200_kernels_train.csv (PyTorch 2.11 eager, median of 5 batches)".into(),
            group,
        });
    }
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_rows_become_specs() {
        assert_eq!(
            vector_spec("add rows=128 cols=768 dtype=fp16").unwrap(),
            "add shape=128x768 dtype=fp16"
        );
        assert_eq!(
            vector_spec("layernorm rows=4 cols=8 dtype=fp16").unwrap(),
            "layernorm b=1 seq=4 d=8 dtype=fp16"
        );
    }
}
