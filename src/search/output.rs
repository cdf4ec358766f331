//! What a sweep writes: `points.csv`, `pareto.csv`, `best/`, `summary.json`.
//!
//! Both CSVs have one row per design point: `id, task`, one column per free network
//! and hardware dimension (empty where the point's template does not have the key),
//! `accelerator` (the template's name), `accuracy` (percent), `accuracy_source`,
//! `latency_s, energy_j, area_mm2, edp_js`, `feasible`, `failed_specs` (the specs the
//! point misses, `; `-separated) and `error` (why a point could not be evaluated).
//! Floats are written in Rust's shortest round-trip form, so reading a row back gives
//! the same numbers bit for bit (what `--resume` and `coex merge` rely on).

use super::eval::Metrics;
use super::space::{Point, Space};
use super::sweep::{Objective, Spec};
use super::SearchError;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Row {
    pub id: u64,
    pub task: String,
    pub point: Point,
    /// One cell per space dimension ("" when inactive).
    pub cells: Vec<String>,
    pub accelerator: String,
    pub metrics: Metrics,
    pub feasible: bool,
    pub failed_specs: String,
}

/// Feasibility and failed specs of a point's metrics.
pub fn judge(m: &Metrics, specs: &[Spec]) -> (bool, String) {
    if !m.error.is_empty() {
        return (false, "error".into());
    }
    let failed: Vec<&str> = specs
        .iter()
        .filter(|s| !s.holds(m.get(s.metric)))
        .map(|s| s.text.as_str())
        .collect();
    (failed.is_empty(), failed.join("; "))
}

/// Σ relative violations (+inf for a failed evaluation or a NaN metric).
pub fn violation(m: &Metrics, specs: &[Spec], objectives: &[Objective]) -> f64 {
    if !m.error.is_empty() || objectives.iter().any(|o| m.get(o.metric).is_nan()) {
        return f64::INFINITY;
    }
    specs.iter().map(|s| s.violation(m.get(s.metric))).sum()
}

impl Row {
    pub fn new(space: &Space, id: u64, point: Point, metrics: Metrics) -> Row {
        let active = space.active(&point);
        let cells = space
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if active[i] {
                    d.labels[point[i] as usize].clone()
                } else {
                    String::new()
                }
            })
            .collect();
        let (feasible, failed_specs) = judge(&metrics, &space.sweep.specs);
        Row {
            id,
            task: "main".into(),
            accelerator: space.templates[space.template_of(&point)].name.clone(),
            point,
            cells,
            metrics,
            feasible,
            failed_specs,
        }
    }

    /// The objectives to minimize.
    pub fn minimized(&self, objectives: &[Objective]) -> Vec<f64> {
        objectives
            .iter()
            .map(|o| o.minimized(self.metrics.get(o.metric)))
            .collect()
    }
}

pub fn header(space: &Space) -> Vec<String> {
    let mut h: Vec<String> = vec!["id".into(), "task".into()];
    h.extend(space.dims.iter().map(|d| d.column.clone()));
    for c in [
        "accelerator",
        "accuracy",
        "accuracy_source",
        "latency_s",
        "energy_j",
        "area_mm2",
        "edp_js",
        "feasible",
        "failed_specs",
        "error",
    ] {
        h.push(c.into());
    }
    h
}

fn record(r: &Row) -> Vec<String> {
    let m = &r.metrics;
    let mut v = vec![r.id.to_string(), r.task.clone()];
    v.extend(r.cells.iter().cloned());
    v.push(r.accelerator.clone());
    v.push(m.accuracy.to_string());
    v.push(m.accuracy_source.clone());
    for x in [m.latency_s, m.energy_j, m.area_mm2, m.edp_js] {
        v.push(x.to_string());
    }
    v.push(r.feasible.to_string());
    v.push(r.failed_specs.clone());
    v.push(m.error.clone());
    v
}

/// CSV text of `rows` with the header.
pub fn csv_text(space: &Space, rows: &[&Row]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header(space))?;
    for r in rows {
        w.write_record(record(r))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Appends rows to points.csv, one flushed write per batch.
pub struct PointsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl PointsWriter {
    /// Opens `points.csv` in `dir`: fresh (with a header) or, when resuming, for append.
    pub fn open(space: &Space, dir: &Path, append: bool) -> Result<PointsWriter, SearchError> {
        let path = dir.join("points.csv");
        let exists = append && path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(exists)
            .write(true)
            .truncate(!exists)
            .open(&path)
            .map_err(|e| SearchError::out(&path, e))?;
        if !exists {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(header(space))
                .map_err(|e| SearchError::out(&path, e))?;
            let bytes = w.into_inner().map_err(|e| SearchError::out(&path, e))?;
            file.write_all(&bytes)
                .map_err(|e| SearchError::out(&path, e))?;
        }
        Ok(PointsWriter { path, file })
    }

    pub fn append(&mut self, rows: &[Row]) -> Result<(), SearchError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        for r in rows {
            w.write_record(record(r))
                .map_err(|e| SearchError::out(&self.path, e))?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| SearchError::out(&self.path, e))?;
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(|e| SearchError::out(&self.path, e))
    }
}

/// Reads a points.csv written for `space`: every complete row, in file order. A last
/// line cut short (a killed run) is dropped and, with `repair`, cut from the file.
pub fn read_points(space: &Space, path: &Path, repair: bool) -> Result<Vec<Row>, SearchError> {
    let text = std::fs::read_to_string(path).map_err(|source| SearchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Only whole lines count: a row ends with a newline.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    if repair && complete.len() != text.len() {
        std::fs::write(path, complete).map_err(|e| SearchError::out(path, e))?;
    }
    let want = header(space);
    let mut r = csv::ReaderBuilder::new().from_reader(complete.as_bytes());
    let h: Vec<String> = r
        .headers()
        .map_err(|e| SearchError::out(path, e))?
        .iter()
        .map(str::to_string)
        .collect();
    if h != want {
        return Err(SearchError::out(
            path,
            format!(
                "its columns ({}) are not this sweep's ({}); resume or merge with the sweep file that wrote it",
                h.join(","),
                want.join(",")
            ),
        ));
    }
    let nd = space.dims.len();
    let mut rows = Vec::new();
    for (n, rec) in r.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| SearchError::out(path, format!("line {line}: {e}")))?;
        let bad = |what: &str| SearchError::out(path, format!("line {line}: {what}"));
        let get = |i: usize| rec.get(i).unwrap_or_default();
        let num = |i: usize| -> Result<f64, SearchError> {
            get(i)
                .parse::<f64>()
                .map_err(|_| bad(&format!("column {} is '{}', not a number", want[i], get(i))))
        };
        let id: u64 = get(0).parse().map_err(|_| bad("id is not an integer"))?;
        let mut point = vec![0u32; nd];
        let mut cells = Vec::with_capacity(nd);
        for (k, slot) in point.iter_mut().enumerate() {
            let cell = get(2 + k);
            if !cell.is_empty() {
                *slot = space.index_of(k, cell).ok_or_else(|| {
                    bad(&format!(
                        "'{cell}' is not a choice of {} in this sweep",
                        space.dims[k].column
                    ))
                })?;
            }
            cells.push(cell.to_string());
        }
        let b = 2 + nd;
        let metrics = Metrics {
            accuracy: num(b + 1)?,
            accuracy_source: get(b + 2).to_string(),
            latency_s: num(b + 3)?,
            energy_j: num(b + 4)?,
            area_mm2: num(b + 5)?,
            edp_js: num(b + 6)?,
            error: get(b + 9).to_string(),
        };
        rows.push(Row {
            id,
            task: get(1).to_string(),
            point,
            cells,
            accelerator: get(b).to_string(),
            metrics,
            feasible: get(b + 7) == "true",
            failed_specs: get(b + 8).to_string(),
        });
    }
    Ok(rows)
}

/// The feasible non-dominated rows, ordered by the objectives (each minimized, first
/// objective first) and then by id.
pub fn pareto_rows<'a>(rows: &'a [Row], objectives: &[Objective]) -> Vec<&'a Row> {
    let feasible: Vec<&Row> = rows
        .iter()
        .filter(|r| r.feasible && r.minimized(objectives).iter().all(|x| x.is_finite()))
        .collect();
    let objs: Vec<Vec<f64>> = feasible.iter().map(|r| r.minimized(objectives)).collect();
    let mut front: Vec<&Row> = super::pareto::pareto_front(&objs)
        .into_iter()
        .map(|i| feasible[i])
        .collect();
    front.sort_by(|a, b| {
        let (x, y) = (a.minimized(objectives), b.minimized(objectives));
        x.iter()
            .zip(&y)
            .map(|(p, q)| p.total_cmp(q))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.id.cmp(&b.id))
    });
    front
}

/// The `coex eval` command that reproduces a best design.
pub fn eval_command(space: &Space, workload: &str, accel: &str) -> String {
    format!(
        "coex eval --workload {workload} --accel {accel} --budget {} --seed {}",
        space.sweep.hardware.mapper_budget, space.sweep.hardware.mapper_seed
    )
}

#[derive(serde::Serialize)]
pub struct BestDesign {
    pub id: u64,
    pub workload: String,
    pub accelerator: String,
    pub command: String,
    pub accuracy: f64,
    pub latency_s: f64,
    pub energy_j: f64,
    pub area_mm2: f64,
}

/// Writes `best/`: for each row, `<id>.workload.toml` (or the fixed file, copied) and
/// `<id>.accel.toml`, plus `commands.sh` with the `coex eval` line of each.
pub fn write_best(
    space: &Space,
    dir: &Path,
    rows: &[&Row],
) -> Result<Vec<BestDesign>, SearchError> {
    let best = dir.join("best");
    if best.exists() {
        std::fs::remove_dir_all(&best).map_err(|e| SearchError::out(&best, e))?;
    }
    std::fs::create_dir_all(&best).map_err(|e| SearchError::out(&best, e))?;
    let mut out = Vec::new();
    let mut script = String::from(
        "#!/bin/sh\n# Re-evaluates every best design with coex eval (the sweep's mapper budget and seed).\ncd \"$(dirname \"$0\")\"\n",
    );
    for r in rows {
        let workload = match space.workload(&r.point) {
            Ok(text) => {
                let name = format!("{}.workload.toml", r.id);
                std::fs::write(best.join(&name), text)
                    .map_err(|e| SearchError::out(&best.join(&name), e))?;
                name
            }
            Err(path) => {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "toml".into());
                let name = format!("{}.workload.{ext}", r.id);
                std::fs::copy(&path, best.join(&name)).map_err(|e| SearchError::out(&path, e))?;
                name
            }
        };
        let accel = format!("{}.accel.toml", r.id);
        let text = space
            .accelerator_toml(&r.point)
            .map_err(|m| SearchError::out(&best.join(&accel), m))?;
        std::fs::write(best.join(&accel), text)
            .map_err(|e| SearchError::out(&best.join(&accel), e))?;
        let command = eval_command(space, &workload, &accel);
        script.push_str(&command);
        script.push('\n');
        out.push(BestDesign {
            id: r.id,
            workload: best.join(&workload).display().to_string(),
            accelerator: best.join(&accel).display().to_string(),
            command,
            accuracy: r.metrics.accuracy,
            latency_s: r.metrics.latency_s,
            energy_j: r.metrics.energy_j,
            area_mm2: r.metrics.area_mm2,
        });
    }
    std::fs::write(best.join("commands.sh"), script)
        .map_err(|e| SearchError::out(&best.join("commands.sh"), e))?;
    Ok(out)
}

/// Writes pareto.csv and best/ for `rows` (every evaluated point of the sweep).
pub fn write_front(
    space: &Space,
    dir: &Path,
    rows: &[Row],
    max_best: usize,
) -> Result<(usize, Vec<BestDesign>), SearchError> {
    let front = pareto_rows(rows, &space.sweep.objectives);
    let path = dir.join("pareto.csv");
    let text = csv_text(space, &front).map_err(|e| SearchError::out(&path, e))?;
    std::fs::write(&path, text).map_err(|e| SearchError::out(&path, e))?;
    let picked = pick_best(&front, &space.sweep.objectives, max_best);
    let best = write_best(space, dir, &picked)?;
    Ok((front.len(), best))
}

/// At most `n` rows of a front: the best row of each objective first, then evenly
/// spaced members of the (sorted) front.
pub fn pick_best<'a>(front: &[&'a Row], objectives: &[Objective], n: usize) -> Vec<&'a Row> {
    let mut picked: Vec<&Row> = Vec::new();
    for (k, _) in objectives.iter().enumerate() {
        if let Some(r) = front.iter().min_by(|a, b| {
            a.minimized(objectives)[k]
                .total_cmp(&b.minimized(objectives)[k])
                .then(a.id.cmp(&b.id))
        }) {
            if !picked.iter().any(|p| p.id == r.id) {
                picked.push(r);
            }
        }
    }
    let m = front.len();
    let want = n.min(m);
    let mut i = 0;
    while picked.len() < want && i < want {
        let r = front[i * m / want];
        if !picked.iter().any(|p| p.id == r.id) {
            picked.push(r);
        }
        i += 1;
    }
    for r in front {
        if picked.len() >= want {
            break;
        }
        if !picked.iter().any(|p| p.id == r.id) {
            picked.push(r);
        }
    }
    picked.truncate(n.max(objectives.len()));
    picked
}
