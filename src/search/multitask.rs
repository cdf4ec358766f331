//! Heterogeneous multi-task chips (`coex explore-tasks`), after NASAIC (Yang et al.,
//! DAC 2020): several tasks share one chip, each on its own sub-accelerator, under a
//! total area budget and per-task specs.
//!
//! A task file holds `[chip] area_mm2 = <budget>` and two or more `[[task]]` tables
//! (`name`, `sweep` = a normal sweep file relative to the task file, optional `budget`).
//! Each task's sweep runs as `coex explore` would (its algorithm, or the budget given
//! here); its feasible points (the task's specs hold) are reduced to the task's Pareto
//! front in (accuracy max, area min, latency min). The joint choice is a MILP (good_lp,
//! microlp): one binary per candidate, one candidate per task, Σ area ≤ the chip budget,
//! maximize Σ accuracy minus a tiny energy penalty (a tie-break).
//!
//! The sequential baseline: per task, the most accurate network the sweep saw first,
//! then the cheapest-area hardware design (every design of the task's hardware space
//! is evaluated for that network) that meets the task's specs; the next most accurate
//! network if none does. The chip area budget is checked afterwards.

use super::output::{judge, violation, Row};
use super::space::{Point, Role, Space};
use super::{Evaluator, RunOptions, SearchError, Sweep};
use good_lp::{microlp, variable, variables, Expression, Solution, SolverModel, Variable};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One task of a task file.
#[derive(Clone, Debug)]
pub struct Task {
    pub name: String,
    pub sweep: PathBuf,
    pub budget: Option<usize>,
}

/// A parsed task file.
#[derive(Clone, Debug)]
pub struct TaskFile {
    pub path: PathBuf,
    pub area_mm2: f64,
    pub tasks: Vec<Task>,
}

impl TaskFile {
    pub fn load(path: &Path) -> Result<TaskFile, SearchError> {
        let text = std::fs::read_to_string(path).map_err(|e| SearchError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let bad = |m: String| SearchError::Sweep {
            path: path.to_path_buf(),
            message: m,
        };
        let v: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
        for k in v.keys() {
            if k != "chip" && k != "task" {
                return Err(bad(format!(
                    "unknown key '{k}': write [chip] area_mm2 = N and [[task]] tables"
                )));
            }
        }
        let area_mm2 = v
            .get("chip")
            .and_then(|c| c.get("area_mm2"))
            .and_then(|a| a.as_float().or_else(|| a.as_integer().map(|i| i as f64)))
            .filter(|a| *a > 0.0)
            .ok_or_else(|| bad("[chip] needs area_mm2 = <positive number>".into()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tasks = Vec::new();
        for t in v
            .get("task")
            .and_then(|t| t.as_array())
            .map(|a| a.as_slice())
            .unwrap_or(&[])
        {
            let t = t
                .as_table()
                .ok_or_else(|| bad("[[task]] must be a table".into()))?;
            for k in t.keys() {
                if !["name", "sweep", "budget"].contains(&k.as_str()) {
                    return Err(bad(format!(
                        "[[task]]: unknown key '{k}' (name, sweep, budget)"
                    )));
                }
            }
            let name = t
                .get("name")
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad("[[task]] needs name = \"...\"".into()))?
                .to_string();
            let sweep = t
                .get("sweep")
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad(format!("task '{name}' needs sweep = \"<sweep file>\"")))?;
            let budget = match t.get("budget") {
                None => None,
                Some(b) => Some(
                    b.as_integer()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| bad(format!("task '{name}': budget must be > 0")))?
                        as usize,
                ),
            };
            tasks.push(Task {
                name,
                sweep: dir.join(sweep),
                budget,
            });
        }
        if tasks.len() < 2 {
            return Err(bad("write two or more [[task]] tables".into()));
        }
        Ok(TaskFile {
            path: path.to_path_buf(),
            area_mm2,
            tasks,
        })
    }
}

/// One design point of one task.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Candidate {
    pub network: String,
    pub hardware: String,
    pub accuracy: f64,
    pub latency_s: f64,
    pub energy_j: f64,
    pub area_mm2: f64,
    /// The task's specs hold.
    pub specs_hold: bool,
    pub failed_specs: String,
}

/// What one method chose.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub method: String,
    /// One per task, in task order; None where the method found nothing.
    pub choices: Vec<Option<Candidate>>,
    pub accuracy: f64,
    pub energy_j: f64,
    pub area_mm2: f64,
    pub area_holds: bool,
    /// Every task's specs and the chip area hold.
    pub specs_hold: bool,
}

impl Plan {
    fn new(method: &str, choices: Vec<Option<Candidate>>, budget: f64) -> Plan {
        let sum = |f: fn(&Candidate) -> f64| choices.iter().flatten().map(f).sum::<f64>();
        let area = sum(|c| c.area_mm2);
        let complete = choices.iter().all(|c| c.is_some());
        Plan {
            method: method.into(),
            accuracy: sum(|c| c.accuracy),
            energy_j: sum(|c| c.energy_j),
            area_mm2: area,
            area_holds: complete && area <= budget,
            specs_hold: complete
                && area <= budget
                && choices.iter().flatten().all(|c| c.specs_hold),
            choices,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TaskStats {
    pub name: String,
    pub sweep: String,
    pub evaluated: usize,
    pub feasible: usize,
    pub front: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub task_file: String,
    pub area_budget_mm2: f64,
    pub tasks: Vec<TaskStats>,
    pub joint: Plan,
    pub sequential: Plan,
    pub wall_s: f64,
}

/// The MILP: pick one candidate per task (`acc[t][i]`, `area[t][i]`, `energy[t][i]`)
/// with Σ area ≤ `budget`, maximizing Σ accuracy − a tie-break energy penalty (below
/// 1e-4 in total). None when no choice fits.
pub fn solve(
    acc: &[Vec<f64>],
    area: &[Vec<f64>],
    energy: &[Vec<f64>],
    budget: f64,
) -> Result<Option<Vec<usize>>, SearchError> {
    if acc.iter().any(|a| a.is_empty()) {
        return Ok(None);
    }
    let emax = energy
        .iter()
        .flatten()
        .fold(0.0f64, |m, &e| if e.is_finite() { m.max(e) } else { m });
    let eps = 1e-4 / acc.len() as f64 / if emax > 0.0 { emax } else { 1.0 };
    let mut vars = variables!();
    let x: Vec<Vec<Variable>> = acc
        .iter()
        .map(|a| a.iter().map(|_| vars.add(variable().binary())).collect())
        .collect();
    let mut obj = Expression::default();
    let mut used = Expression::default();
    for t in 0..acc.len() {
        for i in 0..acc[t].len() {
            obj.add_mul(acc[t][i] - eps * energy[t][i], x[t][i]);
            used.add_mul(area[t][i], x[t][i]);
        }
    }
    let mut model = vars.maximise(obj).using(microlp);
    for xs in &x {
        let one: Expression = xs.iter().copied().sum();
        model = model.with(one.eq(1.0));
    }
    model = model.with(used.leq(budget));
    match model.solve() {
        Ok(sol) => Ok(Some(
            x.iter()
                .map(|xs| {
                    xs.iter()
                        .enumerate()
                        .max_by(|a, b| sol.value(*a.1).total_cmp(&sol.value(*b.1)))
                        .map(|(i, _)| i)
                        .unwrap_or(0)
                })
                .collect(),
        )),
        Err(good_lp::ResolutionError::Infeasible) => Ok(None),
        Err(e) => Err(SearchError::Usage(format!("MILP: {e}"))),
    }
}

fn network_label(space: &Space, p: &Point) -> String {
    if let Some(e) = space.nb201_edges(p) {
        return super::space::arch_string(&e);
    }
    space
        .dims
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_network())
        .map(|(i, d)| format!("{}={}", short(&d.column), d.labels[p[i] as usize]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn short(column: &str) -> String {
    let c = column.trim_start_matches("hw.").trim_start_matches("net.");
    let parts: Vec<&str> = c.split('.').collect();
    match parts.as_slice() {
        ["level", name, ..] => name.to_string(),
        [.., last] => last.to_string(),
        [] => c.to_string(),
    }
}

fn hardware_label(space: &Space, r: &Row) -> String {
    let active = space.active(&r.point);
    let mut s = r.accelerator.clone();
    for (i, d) in space.dims.iter().enumerate() {
        if active[i] && matches!(d.role, Role::Hw { .. }) {
            s.push_str(&format!(" {}={}", short(&d.column), r.cells[i]));
        }
    }
    s
}

fn candidate(space: &Space, r: &Row) -> Candidate {
    Candidate {
        network: network_label(space, &r.point),
        hardware: hardware_label(space, r),
        accuracy: r.metrics.accuracy,
        latency_s: r.metrics.latency_s,
        energy_j: r.metrics.energy_j,
        area_mm2: r.metrics.area_mm2,
        specs_hold: r.feasible,
        failed_specs: r.failed_specs.clone(),
    }
}

/// Every hardware design of the space, with the network genes of `net`.
fn designs_for(space: &Space, net: &Point) -> Vec<Point> {
    let hw: Vec<usize> = (0..space.dims.len())
        .filter(|&i| !space.dims[i].is_network())
        .collect();
    let n: usize = hw.iter().map(|&i| space.dims[i].values.len()).product();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for mut k in 0..n {
        let mut p = net.clone();
        for &i in hw.iter().rev() {
            let m = space.dims[i].values.len();
            p[i] = (k % m) as u32;
            k /= m;
        }
        let p = space.canonical(&p);
        if seen.insert(p.clone()) {
            out.push(p);
        }
    }
    out
}

/// Sequential: the most accurate network the sweep saw, then the cheapest-area design
/// (of every design in the task's hardware space) that meets the task's specs; when none
/// does, the design with the smallest spec violation (reported as failing). Returns the
/// choice and the rows it evaluated.
fn sequential(space: &Space, rows: &[Row]) -> Result<(Option<Row>, Vec<Row>), SearchError> {
    let Some(net) = rows
        .iter()
        .filter(|r| r.metrics.error.is_empty() && r.metrics.accuracy.is_finite())
        .max_by(|a, b| a.metrics.accuracy.total_cmp(&b.metrics.accuracy))
    else {
        return Ok((None, Vec::new()));
    };
    let ev = Evaluator::new(space)?;
    let pts: Vec<(u64, Point)> = designs_for(space, &net.point)
        .into_iter()
        .enumerate()
        .map(|(j, p)| ((1u64 << 40) + j as u64, p))
        .collect();
    let ms = ev.evaluate(&pts)?;
    let evald: Vec<Row> = pts
        .into_iter()
        .zip(ms)
        .map(|((id, p), m)| Row::new(space, id, p, m))
        .collect();
    let sw = &space.sweep;
    let best = evald
        .iter()
        .filter(|r| judge(&r.metrics, &sw.specs).0)
        .min_by(|a, b| {
            a.metrics
                .area_mm2
                .total_cmp(&b.metrics.area_mm2)
                .then(a.metrics.latency_s.total_cmp(&b.metrics.latency_s))
        })
        .or_else(|| {
            evald.iter().min_by(|a, b| {
                violation(&a.metrics, &sw.specs, &sw.objectives)
                    .total_cmp(&violation(&b.metrics, &sw.specs, &sw.objectives))
                    .then(a.metrics.area_mm2.total_cmp(&b.metrics.area_mm2))
            })
        })
        .cloned();
    Ok((best, evald))
}

/// Runs every task's sweep into `out/<task>/`, then the joint MILP and the sequential
/// baseline; writes `out/tasks.csv` and `out/summary.json`.
pub fn run(file: &TaskFile, out: &Path) -> Result<Report, SearchError> {
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(out).map_err(|e| SearchError::out(out, e))?;
    let mut stats = Vec::new();
    let mut fronts: Vec<Vec<Candidate>> = Vec::new();
    let mut seq = Vec::new();
    for task in &file.tasks {
        let sw = Sweep::load(&task.sweep)?;
        let opts = RunOptions {
            out: out.join(&task.name),
            budget: task.budget,
            max_best: 1,
            ..RunOptions::default()
        };
        let r = super::run(sw, &opts)?;
        let (choice, extra) = sequential(&r.space, &r.rows)?;
        seq.push(choice.as_ref().map(|c| candidate(&r.space, c)));
        let all: Vec<&Row> = r.rows.iter().chain(extra.iter()).collect();
        let feas: Vec<&Row> = all.iter().copied().filter(|r| r.feasible).collect();
        let objs: Vec<Vec<f64>> = feas
            .iter()
            .map(|r| vec![-r.metrics.accuracy, r.metrics.area_mm2, r.metrics.latency_s])
            .collect();
        let mut front: Vec<Candidate> = super::pareto_front(&objs)
            .into_iter()
            .map(|i| candidate(&r.space, feas[i]))
            .collect();
        // Points with equal objectives all survive `pareto_front`: keep one.
        let mut keys = HashSet::new();
        front.retain(|c| keys.insert(format!("{}|{}|{}", c.accuracy, c.area_mm2, c.latency_s)));
        stats.push(TaskStats {
            name: task.name.clone(),
            sweep: task.sweep.display().to_string(),
            evaluated: all.len(),
            feasible: feas.len(),
            front: front.len(),
        });
        fronts.push(front);
    }
    let col = |f: fn(&Candidate) -> f64| -> Vec<Vec<f64>> {
        fronts.iter().map(|c| c.iter().map(f).collect()).collect()
    };
    let pick = solve(
        &col(|c| c.accuracy),
        &col(|c| c.area_mm2),
        &col(|c| c.energy_j),
        file.area_mm2,
    )?;
    let joint: Vec<Option<Candidate>> = match pick {
        Some(p) => p
            .iter()
            .zip(&fronts)
            .map(|(&i, f)| Some(f[i].clone()))
            .collect(),
        None => vec![None; fronts.len()],
    };
    let report = Report {
        task_file: file.path.display().to_string(),
        area_budget_mm2: file.area_mm2,
        tasks: stats,
        joint: Plan::new("joint", joint, file.area_mm2),
        sequential: Plan::new("sequential", seq, file.area_mm2),
        wall_s: t0.elapsed().as_secs_f64(),
    };
    write(&report, file, out)?;
    Ok(report)
}

fn write(r: &Report, file: &TaskFile, out: &Path) -> Result<(), SearchError> {
    let p = out.join("tasks.csv");
    let mut w = csv::Writer::from_path(&p).map_err(|e| SearchError::out(&p, e))?;
    let head = [
        "method",
        "task",
        "network",
        "hardware",
        "accuracy",
        "latency_s",
        "energy_j",
        "area_mm2",
        "task_specs_hold",
        "failed_specs",
    ];
    w.write_record(head).map_err(|e| SearchError::out(&p, e))?;
    for plan in [&r.joint, &r.sequential] {
        for (t, c) in file.tasks.iter().zip(&plan.choices) {
            let rec: Vec<String> = match c {
                Some(c) => vec![
                    plan.method.clone(),
                    t.name.clone(),
                    c.network.clone(),
                    c.hardware.clone(),
                    c.accuracy.to_string(),
                    c.latency_s.to_string(),
                    c.energy_j.to_string(),
                    c.area_mm2.to_string(),
                    c.specs_hold.to_string(),
                    c.failed_specs.clone(),
                ],
                None => {
                    let mut v = vec![plan.method.clone(), t.name.clone()];
                    v.extend(std::iter::repeat_n(String::new(), 6));
                    v.extend(["false".to_string(), "no candidate".to_string()]);
                    v
                }
            };
            w.write_record(&rec).map_err(|e| SearchError::out(&p, e))?;
        }
    }
    w.flush().map_err(|e| SearchError::out(&p, e))?;
    let s = out.join("summary.json");
    let json = serde_json::to_string_pretty(r).map_err(|e| SearchError::out(&s, e))?;
    std::fs::write(&s, json).map_err(|e| SearchError::out(&s, e))
}

/// The joint-vs-sequential table (80 columns) and each choice's network/hardware.
pub fn table(r: &Report, file: &TaskFile) -> String {
    let mut s = format!(
        "{:<12} {:<10} {:>7} {:>8} {:>9} {:>9}  {}\n",
        "task", "method", "acc %", "lat ms", "energy mJ", "area mm2", "specs"
    );
    let mut notes = String::new();
    for (t, task) in file.tasks.iter().enumerate() {
        for plan in [&r.joint, &r.sequential] {
            match &plan.choices[t] {
                Some(c) => {
                    s.push_str(&format!(
                        "{:<12} {:<10} {:>7.2} {:>8.3} {:>9.3} {:>9.3}  {}\n",
                        trunc(&task.name, 12),
                        plan.method,
                        c.accuracy,
                        c.latency_s * 1e3,
                        c.energy_j * 1e3,
                        c.area_mm2,
                        if c.specs_hold { "ok" } else { "FAIL" }
                    ));
                    notes.push_str(&format!(
                        "  {} {}: {}\n    on {}\n",
                        task.name, plan.method, c.network, c.hardware
                    ));
                }
                None => s.push_str(&format!(
                    "{:<12} {:<10} {:>48}\n",
                    trunc(&task.name, 12),
                    plan.method,
                    "no choice"
                )),
            }
        }
    }
    for plan in [&r.joint, &r.sequential] {
        s.push_str(&format!(
            "{:<12} {:<10} {:>7.2} {:>8} {:>9.3} {:>9.3}  {}\n",
            "total",
            plan.method,
            plan.accuracy,
            "",
            plan.energy_j * 1e3,
            plan.area_mm2,
            if plan.area_holds {
                format!("area <= {} ok", r.area_budget_mm2)
            } else {
                format!("area <= {} FAIL", r.area_budget_mm2)
            }
        ));
    }
    s.push_str(&notes);
    s
}

fn trunc(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
