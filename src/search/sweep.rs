//! Sweep files: what `coex explore` searches, under which specs, toward which goals.
//!
//! ```toml
//! name = "default"
//! objectives = ["max accuracy", "min latency", "min energy"]   # before any [table]
//! specs = ["latency_ms <= 5", "area_mm2 <= 10"]
//!
//! [network]
//! space = "nb201"            # or "nb201-unique"; or family = "resnet"; or files = [...]
//! dtype = "fp16"             # optional, also batch, image_size, seq_len
//! [network.params]           # family parameters: a list is a choice, a scalar is fixed
//! channels = 16
//! depth = { range = [2, 8, 2] }
//!
//! [hardware]
//! templates = ["../../accelerators/asic/eyeriss.toml"]   # [space] keys of each are free
//! set = { clock_mhz = 200 }  # fixed overrides (a key set here is not free)
//! mapper_budget = 300        # mappings per distinct Einsum (ASIC templates)
//! [hardware.space]           # extra free keys, every template
//! "level.DRAM.bandwidth_bytes_per_cycle" = [4, 8, 16]
//!
//! [accuracy]
//! source = "table"           # table | predictor | proxy
//! column = "cifar10_test_acc"
//!
//! [search]
//! algorithm = "nsga2"        # grid | random | nsga2 | evolution
//! budget = 2000              # evaluations (distinct design points)
//! seed = 1
//! ```
//!
//! Relative paths are resolved against the sweep file's folder first, then the current
//! folder.

use super::SearchError;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// A metric of a design point, in base units: accuracy in percent, latency in s,
/// energy in J, area in mm², energy-delay product in J·s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Accuracy,
    Latency,
    Energy,
    Area,
    Edp,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Accuracy,
        Metric::Latency,
        Metric::Energy,
        Metric::Area,
        Metric::Edp,
    ];

    /// The points.csv column holding the metric.
    pub fn column(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Latency => "latency_s",
            Metric::Energy => "energy_j",
            Metric::Area => "area_mm2",
            Metric::Edp => "edp_js",
        }
    }

    /// Parses a metric name with an optional unit suffix; returns the metric and the
    /// factor that converts a value in that unit to base units (`latency_ms` → 1e-3).
    pub fn parse(name: &str) -> Option<(Metric, f64)> {
        Some(match name.trim() {
            "accuracy" | "accuracy_pct" | "acc" => (Metric::Accuracy, 1.0),
            "latency" | "latency_s" => (Metric::Latency, 1.0),
            "latency_ms" => (Metric::Latency, 1e-3),
            "latency_us" => (Metric::Latency, 1e-6),
            "energy" | "energy_j" => (Metric::Energy, 1.0),
            "energy_mj" => (Metric::Energy, 1e-3),
            "energy_uj" => (Metric::Energy, 1e-6),
            "area" | "area_mm2" => (Metric::Area, 1.0),
            "edp" | "edp_js" => (Metric::Edp, 1.0),
            _ => return None,
        })
    }
}

const METRIC_NAMES: &str =
    "accuracy, latency_s, latency_ms, latency_us, energy_j, energy_mj, energy_uj, area_mm2, edp_js";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Objective {
    pub metric: Metric,
    pub goal: Goal,
}

impl Objective {
    /// The value to minimize (a maximized metric is negated).
    pub fn minimized(&self, v: f64) -> f64 {
        match self.goal {
            Goal::Min => v,
            Goal::Max => -v,
        }
    }

    pub fn parse(text: &str) -> Option<Objective> {
        let mut it = text.split_whitespace();
        let goal = match it.next()? {
            "min" => Goal::Min,
            "max" => Goal::Max,
            _ => return None,
        };
        let (metric, _) = Metric::parse(it.next()?)?;
        it.next().is_none().then_some(Objective { metric, goal })
    }

    pub fn text(&self) -> String {
        format!(
            "{} {}",
            match self.goal {
                Goal::Min => "min",
                Goal::Max => "max",
            },
            self.metric.column()
        )
    }
}

/// A hard constraint `metric op bound` (bound in base units).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Spec {
    pub text: String,
    pub metric: Metric,
    pub op: String,
    pub bound: f64,
}

impl Spec {
    pub fn parse(text: &str) -> Option<Spec> {
        let ops = ["<=", ">=", "<", ">"];
        let (i, op) = ops
            .iter()
            .filter_map(|op| text.find(op).map(|i| (i, *op)))
            .min_by_key(|&(i, op)| (i, std::cmp::Reverse(op.len())))?;
        let (metric, scale) = Metric::parse(&text[..i])?;
        let v: f64 = text[i + op.len()..].trim().parse().ok()?;
        v.is_finite().then(|| Spec {
            text: text.trim().to_string(),
            metric,
            op: op.to_string(),
            bound: v * scale,
        })
    }

    /// Whether `v` meets the spec.
    pub fn holds(&self, v: f64) -> bool {
        match self.op.as_str() {
            "<=" => v <= self.bound,
            "<" => v < self.bound,
            ">=" => v >= self.bound,
            _ => v > self.bound,
        }
    }

    /// How far `v` is outside the spec, relative to the bound (0 when it holds).
    pub fn violation(&self, v: f64) -> f64 {
        if self.holds(v) {
            return 0.0;
        }
        if !v.is_finite() {
            return f64::INFINITY;
        }
        (v - self.bound).abs() / self.bound.abs().max(1e-30)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Grid,
    Random,
    Nsga2,
    Evolution,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        Some(match s {
            "grid" => Algorithm::Grid,
            "random" => Algorithm::Random,
            "nsga2" | "nsga-ii" => Algorithm::Nsga2,
            "evolution" | "regularized-evolution" => Algorithm::Evolution,
            _ => return None,
        })
    }
}

/// How the networks of the space are given.
#[derive(Clone, Debug)]
pub enum NetworkKind {
    /// A family from `coex families` with free parameters.
    Family(String),
    /// Fixed workload files: a categorical choice.
    Files(Vec<PathBuf>),
    /// The NAS-Bench-201 cell space: six edges, each one of the allowed ops; `unique`
    /// keeps one arch per isomorphism class (the table's `unique_str`).
    Nb201 { unique: bool, ops: Vec<String> },
}

#[derive(Clone, Debug)]
pub struct NetworkSpace {
    pub kind: NetworkKind,
    /// Top-level workload keys (`dtype`, `batch`, `image_size`, `seq_len`).
    pub common: Table,
    /// Fixed family parameters.
    pub fixed: Table,
    /// Free family parameters and their choices.
    pub free: Vec<(String, Vec<Value>)>,
}

#[derive(Clone, Debug)]
pub struct HardwareSpace {
    pub templates: Vec<PathBuf>,
    /// Fixed overrides, every template.
    pub set: Vec<(String, Value)>,
    /// Extra free keys, every template.
    pub free: Vec<(String, Vec<Value>)>,
    /// Mappings scored per distinct Einsum on ASIC templates.
    pub mapper_budget: usize,
    pub mapper_seed: u64,
}

#[derive(Clone, Debug)]
pub enum AccuracySource {
    /// A CSV keyed by NAS-Bench-201 arch string.
    Table { file: PathBuf, column: String },
    /// An external command: JSON lines in, JSON lines out.
    Predictor {
        command: Vec<String>,
        timeout_s: f64,
        batch: usize,
    },
    /// The analytic proxy (see `accuracy::proxy_pct`).
    Proxy,
}

#[derive(Clone, Debug)]
pub struct Sweep {
    pub name: String,
    pub path: PathBuf,
    pub network: NetworkSpace,
    pub hardware: HardwareSpace,
    pub objectives: Vec<Objective>,
    pub specs: Vec<Spec>,
    pub accuracy: AccuracySource,
    pub algorithm: Algorithm,
    pub budget: usize,
    pub seed: u64,
    /// NSGA-II and evolution population.
    pub population: usize,
    /// Regularized evolution's tournament size.
    pub sample: usize,
}

/// The shipped NAS-Bench-201 accuracy table.
pub fn default_table() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nb201_accuracy.csv")
}

pub const NB201_OPS: [&str; 5] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
];

const TOP: &str = "name, objectives, specs, network, hardware, accuracy, search";

impl Sweep {
    pub fn load(path: &Path) -> Result<Sweep, SearchError> {
        let text = std::fs::read_to_string(path).map_err(|source| SearchError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Sweep::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Sweep, SearchError> {
        let bad = |message: String| SearchError::Sweep {
            path: path.to_path_buf(),
            message,
        };
        let key = |k: &str, message: String| SearchError::Key {
            path: path.to_path_buf(),
            key: k.to_string(),
            message,
        };
        let mut top: Table =
            toml::from_str(text).map_err(|e| bad(format!("malformed TOML: {e}")))?;
        for k in top.keys() {
            if !TOP.split(", ").any(|t| t == k) {
                return Err(key(k, format!("unknown key; accepted: {TOP}")));
            }
        }
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let resolve = |p: &str| -> PathBuf {
            let rel = dir.join(p);
            if rel.exists() || Path::new(p).is_absolute() {
                rel
            } else {
                PathBuf::from(p)
            }
        };
        let name = match top.remove("name") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(v) => return Err(key("name", format!("expected a non-empty string, got {v}"))),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into()),
        };
        let strings = |k: &str, v: Option<Value>| -> Result<Vec<String>, SearchError> {
            match v {
                None => Ok(vec![]),
                Some(Value::Array(a)) => a
                    .into_iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s),
                        x => Err(key(k, format!("expected strings, got {x}"))),
                    })
                    .collect(),
                Some(v) => Err(key(k, format!("expected a list of strings, got {v}"))),
            }
        };
        let objectives = strings("objectives", top.remove("objectives"))?
            .iter()
            .map(|s| {
                Objective::parse(s).ok_or_else(|| {
                    key(
                        "objectives",
                        format!("'{s}': write 'min METRIC' or 'max METRIC' with METRIC one of {METRIC_NAMES}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if objectives.is_empty() {
            return Err(key(
                "objectives",
                "give at least one, e.g. objectives = [\"max accuracy\", \"min latency\"]".into(),
            ));
        }
        let specs = strings("specs", top.remove("specs"))?
            .iter()
            .map(|s| {
                Spec::parse(s).ok_or_else(|| {
                    key(
                        "specs",
                        format!("'{s}': write METRIC OP NUMBER, e.g. 'latency_ms <= 5', with OP one of <=, <, >=, > and METRIC one of {METRIC_NAMES}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let table = |top: &mut Table, k: &str| -> Result<Table, SearchError> {
            match top.remove(k) {
                Some(Value::Table(t)) => Ok(t),
                Some(v) => Err(key(k, format!("expected a table [{k}], got {v}"))),
                None => Ok(Table::new()),
            }
        };
        let mut net = table(&mut top, "network")?;
        let mut hw = table(&mut top, "hardware")?;
        let mut acc = table(&mut top, "accuracy")?;
        let mut search = table(&mut top, "search")?;

        // [network]
        const NET: &str =
            "space, family, files, ops, params, dtype, batch, image_size, seq_len, name";
        for k in net.keys() {
            if !NET.split(", ").any(|t| t == k) {
                return Err(key(
                    &format!("network.{k}"),
                    format!("unknown key; accepted: {NET}"),
                ));
            }
        }
        let mut common = Table::new();
        for k in ["dtype", "batch", "image_size", "seq_len", "name"] {
            if let Some(v) = net.remove(k) {
                common.insert(k.into(), v);
            }
        }
        let ops = strings("network.ops", net.remove("ops"))?;
        for op in &ops {
            if !NB201_OPS.contains(&op.as_str()) {
                return Err(key(
                    "network.ops",
                    format!("unknown op '{op}'; use some of {}", NB201_OPS.join(", ")),
                ));
            }
        }
        let kind = match (net.remove("space"), net.remove("family"), net.remove("files")) {
            (Some(Value::String(s)), None, None) => match s.as_str() {
                "nb201" | "nb201-unique" => NetworkKind::Nb201 {
                    unique: s == "nb201-unique",
                    ops: if ops.is_empty() {
                        NB201_OPS.iter().map(|s| s.to_string()).collect()
                    } else {
                        ops.clone()
                    },
                },
                _ => {
                    return Err(key(
                        "network.space",
                        format!("unknown space '{s}'; use \"nb201\" or \"nb201-unique\" (or family = \"...\" / files = [...])"),
                    ))
                }
            },
            (None, Some(Value::String(f)), None) => {
                if crate::workload::families::find(&f).is_none() {
                    return Err(key(
                        "network.family",
                        format!("unknown family '{f}' (run `coex families`)"),
                    ));
                }
                NetworkKind::Family(f)
            }
            (None, None, Some(v)) => {
                let files = strings("network.files", Some(v))?;
                if files.is_empty() {
                    return Err(key("network.files", "give at least one workload file".into()));
                }
                NetworkKind::Files(files.iter().map(|f| resolve(f)).collect())
            }
            _ => {
                return Err(key(
                    "network",
                    "give exactly one of space = \"nb201\" | \"nb201-unique\", family = \"<name>\" or files = [\"a.toml\", ...]".into(),
                ))
            }
        };
        if !ops.is_empty() && !matches!(kind, NetworkKind::Nb201 { .. }) {
            return Err(key(
                "network.ops",
                "ops applies to space = \"nb201\" only".into(),
            ));
        }
        let params = table(&mut net, "params")?;
        if matches!(kind, NetworkKind::Files(_)) && !params.is_empty() {
            return Err(key(
                "network.params",
                "a list of files takes no [network.params]; use family = \"...\" to sweep parameters".into(),
            ));
        }
        let mut fixed = Table::new();
        let mut free = Vec::new();
        for (k, v) in params {
            if matches!(kind, NetworkKind::Nb201 { .. }) && k == "arch" {
                return Err(key(
                    "network.params.arch",
                    "the nb201 space sweeps the arch itself; use ops = [...] to restrict it".into(),
                ));
            }
            match choices(&v).map_err(|m| key(&format!("network.params.{k}"), m))? {
                Some(c) => free.push((k, c)),
                None => {
                    fixed.insert(k, v);
                }
            }
        }
        let network = NetworkSpace {
            kind,
            common,
            fixed,
            free,
        };

        // [hardware]
        const HW: &str = "templates, set, space, mapper_budget, mapper_seed";
        for k in hw.keys() {
            if !HW.split(", ").any(|t| t == k) {
                return Err(key(
                    &format!("hardware.{k}"),
                    format!("unknown key; accepted: {HW}"),
                ));
            }
        }
        let templates: Vec<PathBuf> = strings("hardware.templates", hw.remove("templates"))?
            .iter()
            .map(|t| resolve(t))
            .collect();
        if templates.is_empty() {
            return Err(key(
                "hardware.templates",
                "give at least one accelerator file, e.g. templates = [\"accelerators/asic/eyeriss.toml\"]".into(),
            ));
        }
        let set: Vec<(String, Value)> = table(&mut hw, "set")?.into_iter().collect();
        let mut hfree = Vec::new();
        for (k, v) in table(&mut hw, "space")? {
            match choices(&v).map_err(|m| key(&format!("hardware.space.{k}"), m))? {
                Some(c) => hfree.push((k, c)),
                None => hfree.push((k, vec![v])),
            }
        }
        let int =
            |t: &mut Table, k: &str, default: i64, lo: i64, hi: i64| -> Result<i64, SearchError> {
                match t.remove(k) {
                    None => Ok(default),
                    Some(Value::Integer(i)) if (lo..=hi).contains(&i) => Ok(i),
                    Some(v) => Err(key(
                        k,
                        format!("expected an integer from {lo} to {hi}, got {v}"),
                    )),
                }
            };
        let hardware = HardwareSpace {
            templates,
            set,
            free: hfree,
            mapper_budget: int(&mut hw, "mapper_budget", 300, 1, 10_000_000)? as usize,
            mapper_seed: int(&mut hw, "mapper_seed", 1, 0, i64::MAX)? as u64,
        };

        // [accuracy]
        const ACC: &str = "source, column, file, command, timeout_s, batch";
        for k in acc.keys() {
            if !ACC.split(", ").any(|t| t == k) {
                return Err(key(
                    &format!("accuracy.{k}"),
                    format!("unknown key; accepted: {ACC}"),
                ));
            }
        }
        let is_nb201 = matches!(network.kind, NetworkKind::Nb201 { .. });
        let source = match acc.remove("source") {
            Some(Value::String(s)) => s,
            None if acc.contains_key("command") => "predictor".into(),
            None if is_nb201 => "table".into(),
            None => "proxy".into(),
            Some(v) => {
                return Err(key(
                    "accuracy.source",
                    format!("expected a string, got {v}"),
                ))
            }
        };
        let accuracy = match source.as_str() {
            "table" => {
                if !is_nb201 {
                    return Err(key(
                        "accuracy.source",
                        "the accuracy table is keyed by NAS-Bench-201 arch strings: use it with space = \"nb201\", or source = \"proxy\" / \"predictor\"".into(),
                    ));
                }
                for p in ["channels", "cells_per_stage", "classes", "image_size"] {
                    if network.fixed.contains_key(p) || network.free.iter().any(|(k, _)| k == p) {
                        return Err(key(
                            &format!("network.params.{p}"),
                            "the NAS-Bench-201 table holds accuracies of the benchmark's network (C = 16, N = 5, 10 classes, 32x32); drop this key or use source = \"proxy\" / \"predictor\"".into(),
                        ));
                    }
                }
                let column = match acc.remove("column") {
                    None => "cifar10_test_acc".to_string(),
                    Some(Value::String(s)) => s,
                    Some(v) => {
                        return Err(key(
                            "accuracy.column",
                            format!("expected a string, got {v}"),
                        ))
                    }
                };
                const COLS: [&str; 3] = [
                    "cifar10_test_acc",
                    "cifar100_test_acc",
                    "imagenet16_120_test_acc",
                ];
                if !COLS.contains(&column.as_str()) {
                    return Err(key(
                        "accuracy.column",
                        format!("unknown column '{column}'; use one of {}", COLS.join(", ")),
                    ));
                }
                let file = match acc.remove("file") {
                    None => default_table(),
                    Some(Value::String(s)) => resolve(&s),
                    Some(v) => {
                        return Err(key("accuracy.file", format!("expected a path, got {v}")))
                    }
                };
                AccuracySource::Table { file, column }
            }
            "predictor" => {
                let command = match acc.remove("command") {
                    Some(Value::String(s)) => vec!["sh".into(), "-c".into(), s],
                    Some(v @ Value::Array(_)) => strings("accuracy.command", Some(v))?,
                    _ => {
                        return Err(key(
                            "accuracy.command",
                            "a predictor needs command = \"python3 predict.py\" (run by sh -c) or [\"prog\", \"arg\"]".into(),
                        ))
                    }
                };
                if command.is_empty() {
                    return Err(key("accuracy.command", "the command is empty".into()));
                }
                let timeout_s = match acc.remove("timeout_s") {
                    None => 60.0,
                    Some(v) => match v.as_float().or(v.as_integer().map(|i| i as f64)) {
                        Some(t) if t > 0.0 && t.is_finite() => t,
                        _ => {
                            return Err(key(
                                "accuracy.timeout_s",
                                format!("expected seconds > 0, got {v}"),
                            ))
                        }
                    },
                };
                let batch = int(&mut acc, "batch", 256, 1, 1_000_000)? as usize;
                AccuracySource::Predictor {
                    command,
                    timeout_s,
                    batch,
                }
            }
            "proxy" => AccuracySource::Proxy,
            s => {
                return Err(key(
                    "accuracy.source",
                    format!("unknown source '{s}'; use table, predictor or proxy"),
                ))
            }
        };
        if let Some(k) = acc.keys().next() {
            return Err(key(
                &format!("accuracy.{k}"),
                format!("does not apply to source = \"{source}\""),
            ));
        }

        // [search]
        const SEARCH: &str = "algorithm, budget, seed, population, sample";
        for k in search.keys() {
            if !SEARCH.split(", ").any(|t| t == k) {
                return Err(key(
                    &format!("search.{k}"),
                    format!("unknown key; accepted: {SEARCH}"),
                ));
            }
        }
        let algorithm = match search.remove("algorithm") {
            None => Algorithm::Nsga2,
            Some(Value::String(s)) => Algorithm::parse(&s).ok_or_else(|| {
                key(
                    "search.algorithm",
                    format!("unknown algorithm '{s}'; use grid, random, nsga2 or evolution"),
                )
            })?,
            Some(v) => {
                return Err(key(
                    "search.algorithm",
                    format!("expected a string, got {v}"),
                ))
            }
        };
        let budget = int(&mut search, "budget", 1000, 1, 100_000_000)? as usize;
        let seed = int(&mut search, "seed", 1, 0, i64::MAX)? as u64;
        let population = int(&mut search, "population", 40, 4, 100_000)? as usize;
        let sample = int(&mut search, "sample", 10, 2, 100_000)? as usize;
        Ok(Sweep {
            name,
            path: path.to_path_buf(),
            network,
            hardware,
            objectives,
            specs,
            accuracy,
            algorithm,
            budget,
            seed,
            population,
            sample: sample.min(population),
        })
    }
}

/// The choices a value stands for: a list (each entry a choice), `{ range = [lo, hi,
/// step] }` (lo, lo+step, … ≤ hi), `{ pow2 = [lo, hi] }` (powers of two in [lo, hi]);
/// `None` for a scalar (a fixed value).
pub fn choices(v: &Value) -> Result<Option<Vec<Value>>, String> {
    match v {
        Value::Array(a) if a.is_empty() => Err("an empty list of choices".into()),
        Value::Array(a) => Ok(Some(a.clone())),
        Value::Table(t) if t.len() == 1 && t.contains_key("range") => {
            let r = t["range"]
                .as_array()
                .filter(|r| r.len() == 3)
                .ok_or("write { range = [lo, hi, step] }")?;
            if let (Some(lo), Some(hi), Some(step)) =
                (r[0].as_integer(), r[1].as_integer(), r[2].as_integer())
            {
                if step <= 0 || hi < lo || (hi - lo) / step > 100_000 {
                    return Err(format!(
                        "range [{lo}, {hi}, {step}] needs step > 0, lo <= hi and at most 100,000 values"
                    ));
                }
                return Ok(Some(
                    (0..=(hi - lo) / step)
                        .map(|i| Value::Integer(lo + i * step))
                        .collect(),
                ));
            }
            let f = |x: &Value| x.as_float().or(x.as_integer().map(|i| i as f64));
            match (f(&r[0]), f(&r[1]), f(&r[2])) {
                (Some(lo), Some(hi), Some(step))
                    if step > 0.0 && hi >= lo && (hi - lo) / step <= 100_000.0 =>
                {
                    let n = ((hi - lo) / step + 1e-9).floor() as i64;
                    Ok(Some(
                        (0..=n)
                            .map(|i| Value::Float(lo + i as f64 * step))
                            .collect(),
                    ))
                }
                _ => Err("range [lo, hi, step] needs numbers with step > 0, lo <= hi and at most 100,000 values".into()),
            }
        }
        Value::Table(t) if t.len() == 1 && t.contains_key("pow2") => {
            let r = t["pow2"]
                .as_array()
                .filter(|r| r.len() == 2)
                .and_then(|r| Some((r[0].as_integer()?, r[1].as_integer()?)))
                .filter(|&(lo, hi)| lo >= 1 && hi >= lo && hi <= 1 << 40)
                .ok_or("write { pow2 = [lo, hi] } with 1 <= lo <= hi")?;
            let mut v = Vec::new();
            let mut x = 1i64;
            while x <= r.1 {
                if x >= r.0 {
                    v.push(Value::Integer(x));
                }
                x *= 2;
            }
            if v.is_empty() {
                return Err(format!("no power of two in [{}, {}]", r.0, r.1));
            }
            Ok(Some(v))
        }
        Value::Table(_) => {
            Err("a table here must be { range = [lo, hi, step] } or { pow2 = [lo, hi] }".into())
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_objectives_parse_with_units() {
        let s = Spec::parse("latency_ms <= 5").unwrap();
        assert_eq!(s.metric, Metric::Latency);
        assert!((s.bound - 5e-3).abs() < 1e-15);
        assert!(s.holds(4e-3) && !s.holds(6e-3));
        assert!((s.violation(7.5e-3) - 0.5).abs() < 1e-12);
        let s = Spec::parse("accuracy>=90").unwrap();
        assert_eq!((s.metric, s.op.as_str()), (Metric::Accuracy, ">="));
        assert!(Spec::parse("speed <= 3").is_none());
        assert!(Spec::parse("latency_ms <= fast").is_none());
        assert_eq!(
            Objective::parse("max accuracy"),
            Some(Objective {
                metric: Metric::Accuracy,
                goal: Goal::Max
            })
        );
        assert!(Objective::parse("maximize accuracy").is_none());
    }

    #[test]
    fn ranges_expand() {
        let v: Value = toml::from_str::<Table>("v = { range = [2, 8, 3] }").unwrap()["v"].clone();
        let c = choices(&v).unwrap().unwrap();
        assert_eq!(
            c,
            vec![Value::Integer(2), Value::Integer(5), Value::Integer(8)]
        );
        let v: Value = toml::from_str::<Table>("v = { pow2 = [3, 20] }").unwrap()["v"].clone();
        assert_eq!(choices(&v).unwrap().unwrap().len(), 3);
        assert!(choices(&Value::Integer(3)).unwrap().is_none());
    }
}
