//! `coex calibrate`: fit a template's named parameters to measured hardware and report
//! the error honestly, on rows the fit did not see.
//!
//! 1. Rows come from a tidy measurement file or an importer (`measure`).
//! 2. Every row's op is parsed and lowered once, and costed on the template to prove it
//!    runs (a row that cannot run is an error naming its line).
//! 3. The rows are split: K folds (a seeded shuffle, row i of the shuffle in fold i mod K)
//!    or one held-out fraction. Each split's training rows are fitted from the file's
//!    values (`fit`: Levenberg–Marquardt on ln(predicted/measured), bounded), and its
//!    held-out rows predicted with the result. Held-out statistics pool every split's
//!    held-out predictions (in K-fold, every row exactly once); training statistics
//!    average the splits'. "Before" is the same with the file's values.
//! 4. The parameters written out are a fit on all rows.
//!
//! GPU, ASIC and FPGA templates are fitted (FPGA parameters: `fpga`).
//! On an ASIC, each Einsum shape is mapped once, on the template as given, and that
//! mapping is held while fitting: the fit moves costs (energies, efficiencies, static
//! power), not dataflows.

pub mod bench;
pub mod cli;
pub mod fit;
pub mod fpga;
pub mod measure;
pub mod report;
pub mod torch_trace;

use crate::arch::fpga::Fpga;
use crate::arch::gpu::{Gpu, Mode, OpClass};
use crate::arch::{self, Accelerator, Template};
use crate::cost::network::{Schedule, ScheduleCache};
use crate::cost::{self, NetworkOptions};
use crate::lower::Einsum;
use crate::lower::{self, LayerWork};
use crate::map::Problem;
use crate::workload::{self, spec, Graph};
use measure::{Measurement, Metric, Skipped, Target};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use report::Stats;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CalibrateError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Row {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Template { path: PathBuf, message: String },
}

/// A template being fitted. An ASIC carries the mappings found on the template as
/// given (shared by its clones), reused for every parameter value.
#[derive(Clone)]
pub enum Device {
    Gpu(Gpu),
    Asic(Template, Arc<Mappings>),
    Fpga(Fpga),
}

impl Device {
    pub fn name(&self) -> &str {
        match self {
            Device::Gpu(g) => &g.name,
            Device::Asic(t, _) => &t.name,
            Device::Fpga(f) => &f.name,
        }
    }
}

/// Mappings by Einsum shape, found once (see [`Device`]).
#[derive(Default)]
pub struct Mappings(Mutex<HashMap<Einsum, (Problem, Schedule, usize)>>);

impl ScheduleCache for Mappings {
    fn get_or_map(
        &self,
        shape: &Einsum,
        map: &(dyn Fn() -> Result<(Problem, Schedule, usize), cost::CostError> + Sync),
    ) -> Result<(Problem, Schedule, usize), cost::CostError> {
        if let Some(hit) = self.0.lock().unwrap().get(shape) {
            return Ok(hit.clone());
        }
        let v = map()?;
        self.0.lock().unwrap().insert(shape.clone(), v.clone());
        Ok(v)
    }
}

/// A parameter `coex calibrate` can fit: its key in the template file, its bounds,
/// and how to read and set it on a device.
pub struct Param {
    pub key: String,
    pub bounds: fit::Bounds,
    get: Getter,
    set: Setter,
}

type Getter = Box<dyn Fn(&Device) -> f64 + Send + Sync>;
type Setter = Box<dyn Fn(&mut Device, f64) + Send + Sync>;

/// A GPU parameter from its key and accessors.
fn gpu_param(
    key: &'static str,
    bounds: fit::Bounds,
    get: fn(&Gpu) -> f64,
    set: fn(&mut Gpu, f64),
) -> Param {
    Param {
        key: key.into(),
        bounds,
        get: Box::new(move |d| match d {
            Device::Gpu(g) => get(g),
            _ => f64::NAN,
        }),
        set: Box::new(move |d, v| {
            if let Device::Gpu(g) = d {
                set(g, v)
            }
        }),
    }
}

/// Every fittable GPU parameter: efficiencies in (0, 1], overheads ≥ 0.
pub fn gpu_params() -> Vec<Param> {
    let eff = || fit::Bounds {
        lo: 1e-3,
        hi: 1.0,
        scale: 0.1,
    };
    let us = || fit::Bounds {
        lo: 0.0,
        hi: 1e4,
        scale: 1.0,
    };
    vec![
        gpu_param(
            "model.tensor_efficiency",
            eff(),
            |g| g.model.tensor_efficiency,
            |g, v| g.model.tensor_efficiency = v,
        ),
        gpu_param(
            "model.unaligned_tensor_efficiency",
            eff(),
            |g| g.unaligned_efficiency(),
            |g, v| g.model.unaligned_tensor_efficiency = Some(v),
        ),
        gpu_param(
            "model.unaligned_conv_efficiency",
            eff(),
            |g| g.unaligned_conv_efficiency(),
            |g, v| g.model.unaligned_conv_efficiency = Some(v),
        ),
        gpu_param(
            "model.conv_efficiency",
            eff(),
            |g| g.model.conv_efficiency,
            |g, v| g.model.conv_efficiency = v,
        ),
        gpu_param(
            "model.cuda_efficiency",
            eff(),
            |g| g.model.cuda_efficiency,
            |g, v| g.model.cuda_efficiency = v,
        ),
        gpu_param(
            "model.dram_efficiency",
            eff(),
            |g| g.model.dram_efficiency,
            |g, v| g.model.dram_efficiency = v,
        ),
        gpu_param(
            "model.vector_dram_efficiency",
            eff(),
            |g| g.vector_dram_efficiency(),
            |g, v| g.model.vector_dram_efficiency = Some(v),
        ),
        gpu_param(
            "model.l2_efficiency",
            eff(),
            |g| g.model.l2_efficiency,
            |g, v| g.model.l2_efficiency = v,
        ),
        gpu_param(
            "device.launch_overhead_us",
            us(),
            |g| g.device.launch_overhead_us,
            |g, v| g.device.launch_overhead_us = v,
        ),
        gpu_param(
            "model.dispatch_overhead_us",
            us(),
            |g| g.model.dispatch_overhead_us,
            |g, v| g.model.dispatch_overhead_us = v,
        ),
        gpu_param(
            "model.gemm_dispatch_overhead_us",
            us(),
            |g| g.dispatch_overhead_us(OpClass::Gemm),
            |g, v| g.model.gemm_dispatch_overhead_us = Some(v),
        ),
        gpu_param(
            "model.conv_dispatch_overhead_us",
            us(),
            |g| g.dispatch_overhead_us(OpClass::Conv),
            |g, v| g.model.conv_dispatch_overhead_us = Some(v),
        ),
        gpu_param(
            "model.attention_dispatch_overhead_us",
            us(),
            |g| g.dispatch_overhead_us(OpClass::Attention),
            |g, v| g.model.attention_dispatch_overhead_us = Some(v),
        ),
        gpu_param(
            "model.vector_dispatch_overhead_us",
            us(),
            |g| g.dispatch_overhead_us(OpClass::Vector),
            |g, v| g.model.vector_dispatch_overhead_us = Some(v),
        ),
    ]
}

/// The parameters fitted when `--params` is not given.
pub const DEFAULT_GPU_PARAMS: &str = "tensor_efficiency,unaligned_tensor_efficiency,unaligned_conv_efficiency,conv_efficiency,cuda_efficiency,dram_efficiency,l2_efficiency,launch_overhead_us,dispatch_overhead_us";

/// How to split rows into training and held-out sets.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Folds(usize),
    Holdout(f64),
    /// Fit on this many random rows, report on all the others (a few measured networks
    /// calibrate a template for the rest of a search space). The written parameters
    /// are that fit, not a refit on every row.
    Train(usize),
}

/// What `coex calibrate` was asked to do.
#[derive(Clone, Debug)]
pub struct Config {
    pub accel: PathBuf,
    pub measurements: PathBuf,
    pub format: measure::Format,
    pub format_name: String,
    pub split: Split,
    /// Parameter names (with or without their `model.`/`device.` prefix).
    pub params: Vec<String>,
    pub seed: u64,
    /// What the fit minimizes.
    pub loss: fit::Loss,
}

/// A measured row, parsed and lowered once.
#[derive(Clone)]
pub struct Prepared {
    pub m: Measurement,
    graph: Graph,
    work: Vec<LayerWork>,
}

/// Training and held-out statistics.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub train: Stats,
    pub heldout: Stats,
    /// Bootstrap 90% interval of the held-out MAPE.
    pub heldout_mape_90: [f64; 2],
}

/// A fitted parameter.
#[derive(Clone, Debug, Serialize)]
pub struct ParamResult {
    pub before: f64,
    pub after: f64,
    /// `fitted`, or why it was left unchanged.
    pub status: String,
}

/// One measured row with its predictions (held-out ones for "after").
#[derive(Clone, Debug, Serialize)]
pub struct RowResult {
    pub line: u64,
    pub op: String,
    pub group: String,
    pub metric: &'static str,
    pub measured: f64,
    pub before: f64,
    pub after_heldout: f64,
    /// The prediction of the template fitted on every row (this row included): the
    /// in-sample fit, beside the held-out prediction.
    pub after_fit: f64,
}

/// Everything `coex calibrate` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub accelerator: String,
    pub measurements: String,
    pub rows: usize,
    pub split: Split,
    pub seed: u64,
    pub before: Phase,
    pub after: Phase,
    pub params: BTreeMap<String, ParamResult>,
    /// Held-out statistics by group (op kind or the file's `group` column).
    pub groups: BTreeMap<String, GroupResult>,
    pub skipped: Vec<Skipped>,
    #[serde(skip)]
    pub per_row: Vec<RowResult>,
    /// The calibrated template's text.
    #[serde(skip)]
    pub calibrated_toml: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupResult {
    pub before: Stats,
    pub after: Stats,
    /// Held-out rows the calibrated template (fit on all rows) puts on the eager host
    /// floor: their predicted time is the dispatch overhead, whatever the kernel, so
    /// the model says nothing about their order.
    pub host_bound_rows: usize,
    /// The held-out statistics over the group's other rows (the kernel-bound ones);
    /// `None` when no row of the group is host-bound.
    pub kernel_bound: Option<GroupStats>,
}

/// Before/after held-out statistics over a subset of a group.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GroupStats {
    pub before: Stats,
    pub after: Stats,
}

/// Loads `path` as a GPU template (other kinds are refused).
pub fn load_gpu(path: &Path) -> Result<Gpu, CalibrateError> {
    match load_device(path)? {
        Device::Gpu(g) => Ok(g),
        _ => Err(CalibrateError::Template {
            path: path.to_path_buf(),
            message: "expected a GPU template (accelerators/gpu/*.toml)".into(),
        }),
    }
}

/// Loads `path` as a GPU, ASIC or FPGA template to fit.
pub fn load_device(path: &Path) -> Result<Device, CalibrateError> {
    let acc = arch::load_accelerator(path, &[]).map_err(|e| CalibrateError::Template {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    match acc {
        Accelerator::Gpu(g) => Ok(Device::Gpu(g)),
        Accelerator::Asic(t) => Ok(Device::Asic(t, Arc::default())),
        Accelerator::Fpga(f) => Ok(Device::Fpga(f)),
    }
}

/// Parses, lowers and test-costs every row on `g` (on an ASIC this maps every Einsum
/// shape once).
pub fn prepare(
    rows: Vec<Measurement>,
    path: &Path,
    g: &Device,
) -> Result<Vec<Prepared>, CalibrateError> {
    use rayon::prelude::*;
    rows.into_par_iter()
        .map(|m| {
            let line = m.line;
            let row_err = |message: String| CalibrateError::Row {
                path: path.to_path_buf(),
                line,
                message,
            };
            let graph = match &m.target {
                Target::Op(s) => spec::single_op_graph(s)
                    .map_err(|e| row_err(format!("op '{s}' does not parse: {e}")))?,
                Target::Workload { path: w, batch } => workload::load(w, *batch)
                    .map_err(|e| row_err(format!("workload {}: {e}", w.display())))?,
                Target::Network { spec: s, batch } => measure::network_toml(s)
                    .and_then(|text| {
                        workload::file::parse(&text, "network", *batch).map_err(|e| e.to_string())
                    })
                    .map_err(|e| row_err(format!("network '{s}': {e}")))?,
            };
            let work = lower::lower(&graph).map_err(|e| {
                row_err(format!("'{}' cannot be lowered: {e}", m.target.describe()))
            })?;
            let p = Prepared { m, graph, work };
            let v = predict(g, &p).map_err(|e| {
                row_err(format!(
                    "'{}' cannot run on {}: {e}",
                    p.m.target.describe(),
                    g.name()
                ))
            })?;
            if !(v.is_finite() && v > 0.0) {
                return Err(row_err(format!(
                    "'{}' predicts {v} {} on {}: the template cannot cost it",
                    p.m.target.describe(),
                    p.m.metric.name(),
                    g.name()
                )));
            }
            Ok(p)
        })
        .collect()
}

/// The template's prediction of a row's metric (in the metric's unit).
///
/// On-chip metrics leave out the DRAM level (as chip measurements that exclude the
/// memory interface do): on-chip latency = Σ compute cycles (the array's, or a GPU
/// kernel's compute-bound time); on-chip power = (energy − DRAM access energy) ÷
/// on-chip latency.
pub fn predict(d: &Device, p: &Prepared) -> Result<f64, cost::CostError> {
    predict_in(d, p, p.m.mode)
}

/// As `predict`, with a GPU row run in `mode` (`None`: the template's).
fn predict_in(d: &Device, p: &Prepared, mode: Option<Mode>) -> Result<f64, cost::CostError> {
    let opts = NetworkOptions::default();
    let (r, cycle_s) = match d {
        Device::Gpu(g) => {
            let mode = mode.unwrap_or(g.model.mode);
            let r = if mode == g.model.mode {
                cost::gpu::evaluate_lowered(&p.graph, &p.work, g, &opts)?
            } else {
                let mut h = g.clone();
                h.model.mode = mode;
                cost::gpu::evaluate_lowered(&p.graph, &p.work, &h, &opts)?
            };
            (r, g.cycle_s())
        }
        Device::Asic(t, maps) => (
            cost::network::evaluate_network_cached(&p.graph, t, &opts, None, Some(&**maps))?,
            t.cycle_s(),
        ),
        Device::Fpga(f) => (
            cost::evaluate(&p.graph, &Accelerator::Fpga(f.clone()), &opts, None)?,
            f.device.cycle_s(),
        ),
    };
    let onchip_s = || r.layers.iter().map(|l| l.compute_cycles).sum::<f64>() * cycle_s;
    let dram_pj: f64 = r
        .energy_by_level_pj
        .iter()
        .filter(|(l, _)| l == "DRAM")
        .map(|(_, e)| e)
        .sum();
    Ok(match p.m.metric {
        Metric::LatencyUs => r.total.latency_s * 1e6,
        Metric::EnergyUj => r.total.energy_pj * 1e-6,
        Metric::PowerW => r.total.energy_pj * 1e-12 / r.total.latency_s,
        Metric::Cycles => r.total.latency_cycles,
        Metric::OnchipLatencyUs => onchip_s() * 1e6,
        Metric::OnchipPowerW => (r.total.energy_pj - dram_pj) * 1e-12 / onchip_s(),
    })
}

/// Every fittable parameter of `d`'s kind.
pub fn params_of(d: &Device) -> Vec<Param> {
    match d {
        Device::Gpu(_) => gpu_params(),
        Device::Asic(t, _) => asic_params(t),
        Device::Fpga(f) => fpga::params(f),
    }
}

/// Resolves parameter names (`tensor_efficiency` or `model.tensor_efficiency`).
pub fn resolve_params(names: &[String], d: &Device) -> Result<Vec<Param>, CalibrateError> {
    let mut all = params_of(d);
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let n = n.trim();
        if names[..i].iter().any(|m| m.trim() == n) {
            return Err(CalibrateError::Usage(format!(
                "--params: '{n}' is given twice; list each parameter once"
            )));
        }
        let pos = all
            .iter()
            .position(|p| p.key == n || p.key.split_once('.').map(|x| x.1) == Some(n))
            .ok_or_else(|| {
                CalibrateError::Usage(format!(
                    "--params: unknown parameter '{n}'; {} fits {}",
                    d.name(),
                    params_of(d)
                        .iter()
                        .map(|p| p.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        out.push(all.remove(pos));
    }
    if out.is_empty() {
        return Err(CalibrateError::Usage("--params: give at least one".into()));
    }
    Ok(out)
}

fn with_params(g: &Device, params: &[Param], x: &[f64]) -> Device {
    let mut h = g.clone();
    for (p, &v) in params.iter().zip(x) {
        (p.set)(&mut h, v);
    }
    h
}

/// Whether `d` puts a one-op latency row on the eager host floor: its eager
/// prediction exceeds the kernels' own time (the same row under CUDA graphs). Whole
/// networks (whose floors add up per op, so their order still follows the op
/// count), other metrics, graph-mode rows and non-GPU devices: `false`.
pub fn host_bound(d: &Device, p: &Prepared) -> Result<bool, cost::CostError> {
    let Device::Gpu(g) = d else {
        return Ok(false);
    };
    if !matches!(p.m.target, Target::Op(_))
        || p.m.metric != Metric::LatencyUs
        || p.m.mode.unwrap_or(g.model.mode) != Mode::Eager
    {
        return Ok(false);
    }
    Ok(predict(d, p)? > predict_in(d, p, Some(Mode::Graph))? * (1.0 + 1e-9))
}

fn predict_all(g: &Device, rows: &[&Prepared]) -> Result<Vec<f64>, cost::CostError> {
    use rayon::prelude::*;
    rows.par_iter().map(|p| predict(g, p)).collect()
}

/// The residuals ln(predicted / measured) of `rows` under parameters `x`.
fn residuals(
    g: &Device,
    params: &[Param],
    rows: &[&Prepared],
    x: &[f64],
    loss: fit::Loss,
) -> Result<Vec<f64>, cost::CostError> {
    let h = with_params(g, params, x);
    Ok(predict_all(&h, rows)?
        .iter()
        .zip(rows)
        .map(|(p, r)| {
            let ratio = p.max(1e-30) / r.m.value;
            if loss.relative() {
                ratio - 1.0
            } else {
                ratio.ln()
            }
        })
        .collect())
}

/// Fits `params` of `g` on `rows` from the template's values.
pub fn fit_rows(
    g: &Device,
    params: &[Param],
    rows: &[&Prepared],
    loss: fit::Loss,
) -> Result<fit::Fit, cost::CostError> {
    let x0: Vec<f64> = params.iter().map(|p| (p.get)(g)).collect();
    let bounds: Vec<fit::Bounds> = params.iter().map(|p| p.bounds.clone()).collect();
    let names: Vec<String> = params.iter().map(|p| p.key.to_string()).collect();
    fit::fit(loss, &x0, &bounds, &names, &|x: &[f64]| {
        residuals(g, params, rows, x, loss)
    })
}

/// Training/held-out index sets for `split` over `n` rows, deterministic for `seed`.
pub fn splits(n: usize, split: Split, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    match split {
        Split::Folds(k) => (0..k)
            .map(|f| {
                let (mut tr, mut te) = (Vec::new(), Vec::new());
                for (i, &r) in order.iter().enumerate() {
                    if i % k == f {
                        te.push(r)
                    } else {
                        tr.push(r)
                    }
                }
                (tr, te)
            })
            .collect(),
        Split::Holdout(f) => {
            let nt = ((n as f64 * f).round() as usize).clamp(1, n.saturating_sub(1));
            let te = order[..nt].to_vec();
            let tr = order[nt..].to_vec();
            vec![(tr, te)]
        }
        Split::Train(k) => {
            let k = k.min(n);
            vec![(order[..k].to_vec(), order[k..].to_vec())]
        }
    }
}

fn mean_stats(s: &[Stats]) -> Stats {
    let k = s.len().max(1) as f64;
    let avg = |f: fn(&Stats) -> f64| s.iter().map(f).sum::<f64>() / k;
    Stats {
        n: s.iter().map(|x| x.n).sum::<usize>() / s.len().max(1),
        mape: avg(|x| x.mape),
        median_ape: avg(|x| x.median_ape),
        max_ape: avg(|x| x.max_ape),
        rmse_log: avg(|x| x.rmse_log),
        kendall_tau: avg(|x| x.kendall_tau),
        spearman_rho: avg(|x| x.spearman_rho),
    }
}

/// Runs a calibration: load, prepare, cross-validate, fit on all rows, write the text
/// of the calibrated template.
pub fn run(cfg: &Config) -> Result<Outcome, CalibrateError> {
    let g = load_device(&cfg.accel)?;
    let (rows, skipped) = measure::import(cfg.format, &cfg.measurements)?;
    // Named parameters are checked before the rows are costed; the default set
    // depends on what the rows hold.
    let named = match cfg.params.is_empty() {
        true => None,
        false => Some(resolve_params(&cfg.params, &g)?),
    };
    let rows = prepare(rows, &cfg.measurements, &g)?;
    let params = match named {
        Some(p) => p,
        None => {
            let classes: Vec<OpClass> = rows.iter().flat_map(op_classes).collect();
            let kinds = RowKinds {
                whole_networks: rows.iter().any(|r| !matches!(r.m.target, Target::Op(_))),
                eager: match &g {
                    Device::Gpu(gpu) => rows
                        .iter()
                        .any(|r| r.m.mode.unwrap_or(gpu.model.mode) == Mode::Eager),
                    _ => false,
                },
                classes: [
                    OpClass::Gemm,
                    OpClass::Conv,
                    OpClass::Attention,
                    OpClass::Vector,
                ]
                .map(|c| classes.contains(&c)),
            };
            resolve_params(&default_params(&g, kinds), &g)?
        }
    };
    let n = rows.len();
    let cost_err = |e: cost::CostError| CalibrateError::File {
        path: cfg.measurements.clone(),
        message: format!("costing the rows failed: {e}"),
    };
    let few = |have: usize, what: &str| {
        CalibrateError::File {
        path: cfg.measurements.clone(),
        message: format!(
            "{have} {what} for {} parameters ({}); a fit needs more rows than parameters: add rows, or fit fewer with --params",
            params.len(),
            params.iter().map(|p| p.key.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
    };
    if n <= params.len() {
        return Err(few(n, "rows"));
    }
    match cfg.split {
        Split::Folds(k) if k < 2 || k > n => {
            return Err(CalibrateError::Usage(format!(
                "--folds {k}: give 2 to {n} (the number of rows)"
            )))
        }
        Split::Holdout(f) if !(f > 0.0 && f < 1.0) => {
            return Err(CalibrateError::Usage(format!(
                "--holdout {f}: give a fraction between 0 and 1, e.g. 0.2"
            )))
        }
        Split::Train(k) if k >= n => {
            return Err(CalibrateError::Usage(format!(
                "--train {k}: give fewer than the {n} rows, so that some are held out"
            )))
        }
        _ => {}
    }
    let sets = splits(n, cfg.split, cfg.seed);
    for (tr, _) in &sets {
        if tr.len() <= params.len() {
            return Err(few(tr.len(), "training rows in a split"));
        }
    }
    let meas: Vec<f64> = rows.iter().map(|r| r.m.value).collect();
    let before_pred = predict_all(&g, &rows.iter().collect::<Vec<_>>()).map_err(cost_err)?;
    let mut after_pred = vec![f64::NAN; n];
    let (mut tr_before, mut tr_after) = (Vec::new(), Vec::new());
    let mut heldout_idx = Vec::new();
    let mut split_fit = None;
    // One step per split's fit and one for the fit on all rows (drawn only on a
    // terminal).
    let bar = indicatif::ProgressBar::new(sets.len() as u64 + 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "calibrate: fit {pos}/{len} ({msg}) {bar:30} {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{n} rows, {} parameters", params.len()));
    for (tr, te) in &sets {
        let train: Vec<&Prepared> = tr.iter().map(|&i| &rows[i]).collect();
        let test: Vec<&Prepared> = te.iter().map(|&i| &rows[i]).collect();
        let f = fit_rows(&g, &params, &train, cfg.loss).map_err(cost_err)?;
        let h = with_params(&g, &params, &f.x);
        let pt = predict_all(&h, &train).map_err(cost_err)?;
        let mt: Vec<f64> = tr.iter().map(|&i| meas[i]).collect();
        tr_after.push(report::stats(&pt, &mt));
        let bt: Vec<f64> = tr.iter().map(|&i| before_pred[i]).collect();
        tr_before.push(report::stats(&bt, &mt));
        for (&i, v) in te.iter().zip(predict_all(&h, &test).map_err(cost_err)?) {
            after_pred[i] = v;
        }
        heldout_idx.extend_from_slice(te);
        split_fit = Some(f);
        bar.inc(1);
    }
    heldout_idx.sort_unstable();
    heldout_idx.dedup();
    let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let hm = pick(&meas, &heldout_idx);
    let (hb, ha) = (
        pick(&before_pred, &heldout_idx),
        pick(&after_pred, &heldout_idx),
    );
    let phase = |train: Stats, pred: &[f64], salt: u64| Phase {
        train,
        heldout: report::stats(pred, &hm),
        heldout_mape_90: report::bootstrap_mape_90(pred, &hm, 2000, cfg.seed ^ salt),
    };
    let before = phase(mean_stats(&tr_before), &hb, 1);
    let after = phase(mean_stats(&tr_after), &ha, 2);
    // The parameters written out: a fit on every row (with --train, the training fit).
    let all: Vec<&Prepared> = rows.iter().collect();
    let full = match (cfg.split, split_fit) {
        (Split::Train(_), Some(f)) => f,
        _ => fit_rows(&g, &params, &all, cfg.loss).map_err(cost_err)?,
    };
    let full_device = with_params(&g, &params, &full.x);
    let host: Vec<bool> = {
        use rayon::prelude::*;
        rows.par_iter()
            .map(|r| host_bound(&full_device, r))
            .collect::<Result<_, _>>()
            .map_err(cost_err)?
    };
    let mut groups = BTreeMap::new();
    let mut names: Vec<&str> = heldout_idx
        .iter()
        .map(|&i| rows[i].m.group.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let idx: Vec<usize> = heldout_idx
            .iter()
            .cloned()
            .filter(|&i| rows[i].m.group == name)
            .collect();
        let m = pick(&meas, &idx);
        let kernel: Vec<usize> = idx.iter().cloned().filter(|&i| !host[i]).collect();
        let km = pick(&meas, &kernel);
        let host_bound_rows = idx.len() - kernel.len();
        groups.insert(
            name.to_string(),
            GroupResult {
                before: report::stats(&pick(&before_pred, &idx), &m),
                after: report::stats(&pick(&after_pred, &idx), &m),
                host_bound_rows,
                kernel_bound: (host_bound_rows > 0 && kernel.len() > 1).then(|| GroupStats {
                    before: report::stats(&pick(&before_pred, &kernel), &km),
                    after: report::stats(&pick(&after_pred, &kernel), &km),
                }),
            },
        );
    }
    bar.finish_and_clear();
    let mut presult = BTreeMap::new();
    for (i, p) in params.iter().enumerate() {
        let at_bound = full.x[i] <= p.bounds.lo || full.x[i] >= p.bounds.hi;
        let status = full
            .unidentifiable
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, why)| format!("unidentifiable: {why}; left unchanged"))
            .unwrap_or_else(|| {
                if at_bound {
                    "fitted, at its bound: the rows push it past what is physical; check them"
                        .into()
                } else {
                    "fitted".into()
                }
            });
        presult.insert(
            p.key.to_string(),
            ParamResult {
                before: (p.get)(&g),
                after: full.x[i],
                status,
            },
        );
    }
    let fitted_all = predict_all(&full_device, &all).map_err(cost_err)?;
    let per_row = rows
        .iter()
        .enumerate()
        .map(|(i, r)| RowResult {
            line: r.m.line,
            op: r.m.target.describe(),
            group: r.m.group.clone(),
            metric: r.m.metric.name(),
            measured: r.m.value,
            before: before_pred[i],
            after_heldout: after_pred[i],
            after_fit: fitted_all[i],
        })
        .collect();
    let text = std::fs::read_to_string(&cfg.accel).map_err(|e| CalibrateError::Template {
        path: cfg.accel.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let fitted: Vec<(String, f64)> = presult
        .iter()
        .filter(|(_, r)| r.status.starts_with("fitted"))
        .map(|(k, r)| (k.clone(), r.after))
        .collect();
    let split_text = match cfg.split {
        Split::Folds(k) => format!("{k}-fold cross-validation"),
        Split::Holdout(f) => format!("{:.0}% held out", f * 100.0),
        Split::Train(k) => format!("fitted on {k} random rows, tested on the other {}", n - k),
    };
    let header = format!(
        "# Calibrated by `coex calibrate` on {date} from {data} ({n} rows{from}).\n\
         # Fit: {how} over {over}; fitted: {fitted}.{unid}\n\
         # Held-out error ({split_text}, seed {seed}): MAPE {mb:.1}% -> {ma:.1}% (90% bootstrap {lo:.1}-{hi:.1}%), \
         median APE {db:.1}% -> {da:.1}%, Kendall tau {tb:.3} -> {ta:.3}.\n",
        date = today(),
        how = match cfg.loss {
            fit::Loss::LeastSquares => {
                "bounded Levenberg-Marquardt, least squares of ln(predicted/measured)"
            }
            fit::Loss::L1 => "bounded sequential LP, L1 of ln(predicted/measured)",
            fit::Loss::Minimax => "bounded sequential LP, minimax of ln(predicted/measured)",
            fit::Loss::Mape => "bounded sequential LP (L1 of relative error, i.e. MAPE)",
        },
        over = match cfg.split {
            Split::Train(k) => format!("{k} training rows"),
            _ => "all rows".into(),
        },
        data = cfg.measurements.display(),
        from = if cfg.format == measure::Format::Tidy {
            String::new()
        } else {
            format!(", imported with --from {}", cfg.format_name)
        },
        fitted = if fitted.is_empty() {
            "none".to_string()
        } else {
            fitted.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
        },
        unid = {
            let u: Vec<String> = presult
                .iter()
                .filter(|(_, r)| !r.status.starts_with("fitted"))
                .map(|(k, _)| k.clone())
                .collect();
            if u.is_empty() {
                String::new()
            } else {
                format!(" Unidentifiable from this data (unchanged): {}.", u.join(", "))
            }
        },
        seed = cfg.seed,
        mb = before.heldout.mape * 100.0,
        ma = after.heldout.mape * 100.0,
        lo = after.heldout_mape_90[0] * 100.0,
        hi = after.heldout_mape_90[1] * 100.0,
        db = before.heldout.median_ape * 100.0,
        da = after.heldout.median_ape * 100.0,
        tb = before.heldout.kendall_tau,
        ta = after.heldout.kendall_tau,
    );
    let body = rewrite_toml(&text, &fitted).map_err(|message| CalibrateError::Template {
        path: cfg.accel.clone(),
        message,
    })?;
    Ok(Outcome {
        accelerator: g.name().to_string(),
        measurements: cfg.measurements.display().to_string(),
        rows: n,
        split: cfg.split,
        seed: cfg.seed,
        before,
        after,
        params: presult,
        groups,
        skipped,
        per_row,
        calibrated_toml: header + &body,
    })
}

/// A float as TOML writes it, to 4 significant digits, always with a decimal point.
fn toml_float(v: f64) -> String {
    if v == 0.0 {
        return "0.0".into();
    }
    let digits = (3 - v.abs().log10().floor() as i32).max(1) as usize;
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').to_string()
    } else {
        s
    };
    if s.ends_with('.') {
        s + "0"
    } else {
        s
    }
}

/// Replaces the values of `keys` (`section.key`) in a template's text, keeping every
/// other byte (comments, order, layout) so the calibrated file diffs cleanly; a key the
/// file omits (a default) is added right after its section's header.
pub fn rewrite_toml(text: &str, keys: &[(String, f64)]) -> Result<String, String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.to_string()).collect();
    for (key, v) in keys {
        let (head, name) = match key.strip_prefix("level.").and_then(|k| k.split_once('.')) {
            // `level.<name>.<key>`: the `[[level]]` table whose name is <name>.
            Some((level, name)) => {
                let named = format!("name = \"{level}\"");
                let head = (0..lines.len())
                    .filter(|&i| lines[i].trim() == "[[level]]")
                    .find(|&i| {
                        lines[i + 1..]
                            .iter()
                            .take_while(|l| !l.trim_start().starts_with('['))
                            .any(|l| l.trim().replace("  ", " ") == named)
                    })
                    .ok_or_else(|| format!("no [[level]] named '{level}' to write '{key}' into"))?;
                (head, name)
            }
            None => {
                // The last dot splits the table from the key: `precision.fp32.mac_energy_pj`
                // is `mac_energy_pj` of `[precision.fp32]`.
                let (section, name) = key
                    .rsplit_once('.')
                    .ok_or_else(|| format!("key '{key}' has no section"))?;
                let head = match lines
                    .iter()
                    .position(|l| l.trim() == format!("[{section}]"))
                {
                    Some(h) => h,
                    None => {
                        // A section the file leaves to defaults: add it at the end.
                        lines.push(String::new());
                        lines.push(format!("[{section}]"));
                        lines.len() - 1
                    }
                };
                (head, name)
            }
        };
        let end = lines[head + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map(|p| head + 1 + p)
            .unwrap_or(lines.len());
        let found = (head + 1..end).find(|&i| {
            let t = lines[i].trim_start();
            t.strip_prefix(name)
                .map(|rest| rest.trim_start().starts_with('='))
                .unwrap_or(false)
        });
        match found {
            Some(i) => {
                let l = &lines[i];
                let eq = l.find('=').expect("found a '='");
                let comment = l[eq..].find(" #").map(|c| l[eq + c..].to_string());
                lines[i] = format!(
                    "{} {}{}",
                    &l[..=eq],
                    toml_float(*v),
                    comment.unwrap_or_default()
                );
            }
            None => lines.insert(head + 1, format!("{name} = {}", toml_float(*v))),
        }
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Today's UTC date, YYYY-MM-DD (civil-from-days, Hinnant's algorithm).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}")
}

/// What the measured rows hold, for the default parameter set.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowKinds {
    /// Some row is a whole workload or network, not one op.
    pub whole_networks: bool,
    /// Some GPU row runs in eager mode.
    pub eager: bool,
    /// Which op classes the rows run: GEMM, conv, attention, vector (in that order;
    /// `arch::gpu::OpClass`).
    pub classes: [bool; 4],
}

/// The host-dispatch classes of the kernels a row runs (`cost::gpu::op_class`;
/// attention nodes as one class, as the fused kernel runs them).
fn op_classes(p: &Prepared) -> Vec<OpClass> {
    p.work
        .iter()
        .flat_map(|w| {
            if matches!(p.graph.node(w.node).op, workload::Op::Attention(_)) {
                return vec![OpClass::Attention];
            }
            w.kernels
                .iter()
                .map(|k| match k {
                    lower::Kernel::Einsum(e) => cost::gpu::op_class(e),
                    lower::Kernel::Vector(_) => OpClass::Vector,
                })
                .collect()
        })
        .collect()
}

/// The parameters fitted when `--params` is not given, by template kind. On GPUs:
/// the conv efficiencies only where some row runs a conv; the host dispatch floor
/// only where some row runs in eager mode (no graph-mode row depends on it).
/// Per-op-class parameters only on per-kernel rows, for the classes the rows run:
/// the per-class floors (`GPU_CLASS_DISPATCH_PARAMS`) when eager, and
/// `vector_dram_efficiency`. Whole-network rows fit neither, because a class that
/// every network runs in the same proportion (NAS-Bench-201's one classifier GEMM) is
/// confounded with a per-network constant and would absorb it.
pub fn default_params(d: &Device, rows: RowKinds) -> Vec<String> {
    let mut list: Vec<&str> = match d {
        Device::Gpu(_) => DEFAULT_GPU_PARAMS.split(',').collect(),
        Device::Asic(..) => DEFAULT_ASIC_PARAMS.split(',').collect(),
        Device::Fpga(f) => {
            return fpga::default_params(f)
                .split(',')
                .map(String::from)
                .collect()
        }
    };
    if matches!(d, Device::Gpu(_)) {
        let [_, conv, _, vector] = rows.classes;
        list.retain(|p| match *p {
            "unaligned_conv_efficiency" | "conv_efficiency" => conv,
            "dispatch_overhead_us" => rows.eager,
            _ => true,
        });
        if !rows.whole_networks {
            if rows.eager {
                let floors = GPU_CLASS_DISPATCH_PARAMS.split(',');
                list.extend(
                    floors
                        .zip(rows.classes)
                        .filter(|(_, on)| *on)
                        .map(|(p, _)| p),
                );
            }
            if vector {
                list.push("vector_dram_efficiency");
            }
        }
    }
    list.into_iter().map(String::from).collect()
}

/// The per-class eager dispatch floors, in `RowKinds::classes` order (GEMM, conv,
/// attention, vector), fitted by default on per-kernel rows.
pub const GPU_CLASS_DISPATCH_PARAMS: &str =
    "gemm_dispatch_overhead_us,conv_dispatch_overhead_us,attention_dispatch_overhead_us,vector_dispatch_overhead_us";

/// The ASIC parameters fitted by default: the array's efficiency (latency), static
/// power and the MAC energy (power). Per-level energy scales can be added.
pub const DEFAULT_ASIC_PARAMS: &str = "array.efficiency,accelerator.static_power_mw,mac.energy_pj";

/// Every fittable ASIC parameter: `array.efficiency` in (0, 1]; static power ≥ 0;
/// the MAC energy at the template's word width (other precisions scale with it); each
/// level's `energy_scale` (multiplies its read, write and update energies).
pub fn asic_params(t: &Template) -> Vec<Param> {
    fn asic(d: &Device) -> Option<&Template> {
        match d {
            Device::Asic(t, _) => Some(t),
            _ => None,
        }
    }
    let mut v = vec![
        Param {
            key: "array.efficiency".into(),
            bounds: fit::Bounds {
                lo: 1e-3,
                hi: 1.0,
                scale: 0.1,
            },
            get: Box::new(move |d| asic(d).map_or(f64::NAN, |t| t.array.efficiency)),
            set: Box::new(|d, v| {
                if let Device::Asic(t, _) = d {
                    t.array.efficiency = v
                }
            }),
        },
        Param {
            key: "accelerator.static_power_mw".into(),
            bounds: fit::Bounds {
                lo: 0.0,
                hi: 1e6,
                scale: 10.0,
            },
            get: Box::new(move |d| asic(d).map_or(f64::NAN, |t| t.static_power_mw)),
            set: Box::new(|d, v| {
                if let Device::Asic(t, _) = d {
                    t.static_power_mw = v
                }
            }),
        },
        Param {
            key: "mac.energy_pj".into(),
            bounds: fit::Bounds {
                lo: 1e-4,
                hi: 1e3,
                scale: 0.1,
            },
            get: Box::new(move |d| asic(d).map_or(f64::NAN, native_mac_pj)),
            set: Box::new(|d, v| {
                if let Device::Asic(t, _) = d {
                    let f = v / native_mac_pj(t);
                    t.mac_energy_pj.iter_mut().for_each(|(_, e)| *e *= f);
                }
            }),
        },
    ];
    for (i, l) in t.levels.iter().enumerate() {
        v.push(Param {
            key: format!("level.{}.energy_scale", l.name),
            bounds: fit::Bounds {
                lo: 1e-3,
                hi: 1e3,
                scale: 0.1,
            },
            get: Box::new(move |d| asic(d).map_or(f64::NAN, |t| t.levels[i].energy_scale)),
            set: Box::new(move |d, v| {
                if let Device::Asic(t, _) = d {
                    let l = &mut t.levels[i];
                    let f = v / l.energy_scale;
                    l.read_energy_pj *= f;
                    l.write_energy_pj *= f;
                    l.update_energy_pj *= f;
                    l.energy_scale = v;
                }
            }),
        });
    }
    v
}

/// The MAC energy at the template's word width (what `[mac] energy_pj` gives), pJ.
fn native_mac_pj(t: &Template) -> f64 {
    t.mac_energy_pj
        .iter()
        .find(|(d, _)| d.bytes() * 8 == t.word_bits as u64)
        .or(t.mac_energy_pj.first())
        .map_or(0.0, |(_, e)| *e)
}

/// The mode a row is costed in (its own, else the template's).
pub fn row_mode(g: &Gpu, m: &Measurement) -> Mode {
    m.mode.unwrap_or(g.model.mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_keeps_layout_and_comments() {
        let t = "# top\n[device]\nlaunch_overhead_us = 3.0 # note\n[model]\ntensor_efficiency = 0.85\nl2_efficiency = 0.7\n";
        let out = rewrite_toml(
            t,
            &[
                ("model.l2_efficiency".into(), 0.81234),
                ("device.launch_overhead_us".into(), 2.5),
                ("model.dispatch_overhead_us".into(), 11.0),
            ],
        )
        .unwrap();
        assert_eq!(out, "# top\n[device]\nlaunch_overhead_us = 2.5 # note\n[model]\ndispatch_overhead_us = 11.0\ntensor_efficiency = 0.85\nl2_efficiency = 0.8123\n");
    }

    #[test]
    fn rewrite_finds_named_levels_and_adds_missing_sections() {
        let t = "[accelerator]\nname = \"x\"\n\n[[level]]\nname = \"DRAM\"\n\n[[level]]\nname = \"GLB\"\nsize_kib = 8\n\n[array]\nrows = 2\n";
        let out = rewrite_toml(
            t,
            &[
                ("level.GLB.energy_scale".into(), 1.5),
                ("mac.energy_pj".into(), 0.25),
                ("array.efficiency".into(), 0.8),
            ],
        )
        .unwrap();
        assert_eq!(out, "[accelerator]\nname = \"x\"\n\n[[level]]\nname = \"DRAM\"\n\n[[level]]\nenergy_scale = 1.5\nname = \"GLB\"\nsize_kib = 8\n\n[array]\nefficiency = 0.8\nrows = 2\n\n[mac]\nenergy_pj = 0.25\n");
        assert!(rewrite_toml(t, &[("level.SPAD.energy_scale".into(), 1.0)]).is_err());
    }

    #[test]
    fn folds_cover_every_row_once() {
        let s = splits(23, Split::Folds(5), 7);
        let mut all: Vec<usize> = s.iter().flat_map(|(_, te)| te.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        assert_eq!(s, splits(23, Split::Folds(5), 7));
    }

    #[test]
    fn floats_read_back() {
        for v in [0.85, 11.0, 0.0, 1234.5678, 0.000123] {
            let s = toml_float(v);
            assert!(s.contains('.'), "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= v.abs() * 1e-3, "{v} {s}");
        }
    }
}
