//! The search algorithms and the sweep driver.
//!
//! - `grid`: every canonical point of the space in mixed-radix order (last dim
//!   fastest), at most `budget` of them.
//! - `random`: `budget` distinct canonical points drawn uniformly (ChaCha8, seeded).
//! - `nsga2`: NSGA-II (Deb et al. 2002) with Deb's constraint dominance: binary
//!   tournaments on (rank, crowding), uniform crossover, per-gene mutation with
//!   probability 1/genes; offspring that repeat an evaluated point are re-mutated.
//! - `evolution`: regularized evolution (Real et al. 2019) on the first objective
//!   (infeasible points rank by violation): a tournament of `sample` members picks a
//!   parent, one gene mutates, the child joins and the oldest member leaves.
//!
//! Every algorithm is deterministic for a seed: points are generated on one thread,
//! evaluated in parallel in fixed batches, and written in id order. `budget` counts
//! distinct design points. `--resume` replays the same decisions, taking the metrics
//! of points already in points.csv instead of evaluating them again.

use super::eval::Evaluator;
use super::output::{self, Row};
use super::pareto::{constraint_dominates, crowding, nondominated_sort, Scored};
use super::space::{Point, Space};
use super::sweep::{Algorithm, Sweep};
use super::SearchError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub algorithm: Option<Algorithm>,
    pub budget: Option<usize>,
    pub seed: Option<u64>,
    pub resume: bool,
    /// `(i, n)`: evaluate the points whose index is i mod n (grid and random only).
    pub shard: Option<(usize, usize)>,
    pub progress: bool,
    /// Most designs written to `best/`.
    pub max_best: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out: PathBuf::from("runs/explore"),
            algorithm: None,
            budget: None,
            seed: None,
            resume: false,
            shard: None,
            progress: false,
            max_best: 8,
        }
    }
}

pub struct RunResult {
    pub rows: Vec<Row>,
    pub pareto: usize,
    pub best: Vec<output::BestDesign>,
    pub wall_s: f64,
    /// Points evaluated by this run (not taken from a resumed points.csv).
    pub evaluated: usize,
    pub layer_hits: u64,
    pub layer_misses: u64,
    pub space: Space,
}

/// Points per evaluation batch of grid and random sweeps (and the flush unit).
const BATCH: usize = 128;
/// Children per regularized-evolution step.
const EVO_BATCH: usize = 16;

struct Driver<'s> {
    space: &'s Space,
    eval: Evaluator<'s>,
    writer: output::PointsWriter,
    rows: Vec<Row>,
    index: HashMap<Point, usize>,
    resumed: HashMap<Point, Row>,
    evaluated_now: usize,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl<'s> Driver<'s> {
    /// Evaluates (or takes from the resumed file) each `(id, point)`; appends new rows.
    fn batch(&mut self, pts: Vec<(u64, Point)>) -> Result<Vec<usize>, SearchError> {
        let todo: Vec<(u64, Point)> = pts
            .iter()
            .filter(|(_, p)| !self.resumed.contains_key(p))
            .cloned()
            .collect();
        let metrics = self.eval.evaluate(&todo)?;
        let mut fresh: HashMap<u64, Row> = todo
            .into_iter()
            .zip(metrics)
            .map(|((id, p), m)| (id, Row::new(self.space, id, p, m)))
            .collect();
        self.evaluated_now += fresh.len();
        let mut new_rows = Vec::new();
        let mut out = Vec::new();
        for (id, p) in pts {
            let row = match self.resumed.remove(&p) {
                Some(r) => r,
                None => {
                    let r = fresh.remove(&id).ok_or_else(|| {
                        SearchError::Usage(format!("internal: point {id} was not evaluated"))
                    })?;
                    new_rows.push(r.clone());
                    r
                }
            };
            self.index.insert(row.point.clone(), self.rows.len());
            out.push(self.rows.len());
            self.rows.push(row);
        }
        self.writer.append(&new_rows)?;
        self.tick(out.len());
        Ok(out)
    }

    fn tick(&self, n: usize) {
        if let Some(b) = &self.bar {
            b.inc(n as u64);
            let rate = self.rows.len() as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let o = self.space.sweep.objectives[0];
            let best = self
                .rows
                .iter()
                .filter(|r| r.feasible)
                .map(|r| r.metrics.get(o.metric))
                .min_by(|a, b| o.minimized(*a).total_cmp(&o.minimized(*b)));
            b.set_message(format!(
                "{rate:.0} points/s, best {} {}",
                o.text(),
                best.map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "(none feasible)".into())
            ));
        }
    }

    fn scored(&self, i: usize) -> Scored {
        let r = &self.rows[i];
        let sw = &self.space.sweep;
        let obj = r.minimized(&sw.objectives);
        let v = output::violation(&r.metrics, &sw.specs, &sw.objectives);
        Scored {
            obj: obj
                .into_iter()
                .map(|x| if x.is_finite() { x } else { f64::INFINITY })
                .collect(),
            violation: v,
        }
    }

    fn seen(&self, p: &Point) -> bool {
        self.index.contains_key(p)
    }
}

fn random_point(space: &Space, rng: &mut ChaCha8Rng) -> Point {
    space
        .dims
        .iter()
        .map(|d| rng.random_range(0..d.values.len() as u32))
        .collect()
}

/// Distinct random canonical points not in `taken`, at most `n` (fewer when the
/// space runs out: 1,000 draws in a row that find nothing new).
fn fresh_random(
    space: &Space,
    rng: &mut ChaCha8Rng,
    n: usize,
    taken: &dyn Fn(&Point) -> bool,
) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    let mut local: HashSet<Point> = HashSet::new();
    let mut misses = 0;
    while out.len() < n && misses < 1000 {
        let p = space.canonical(&random_point(space, rng));
        if taken(&p) || local.contains(&p) {
            misses += 1;
            continue;
        }
        misses = 0;
        local.insert(p.clone());
        out.push(p);
    }
    out
}

/// Changes each active gene with probability `rate` (at least one gene changes).
fn mutate(space: &Space, p: &Point, rate: f64, rng: &mut ChaCha8Rng) -> Point {
    let mut q = p.clone();
    let active = space.active(p);
    let movable: Vec<usize> = (0..q.len())
        .filter(|&i| active[i] && space.dims[i].values.len() > 1)
        .collect();
    if movable.is_empty() {
        return q;
    }
    let mut changed = false;
    for &i in &movable {
        if rng.random_bool(rate.clamp(0.0, 1.0)) {
            q[i] = other_value(space.dims[i].values.len(), q[i], rng);
            changed = true;
        }
    }
    if !changed {
        let i = movable[rng.random_range(0..movable.len())];
        q[i] = other_value(space.dims[i].values.len(), q[i], rng);
    }
    space.canonical(&q)
}

fn other_value(n: usize, cur: u32, rng: &mut ChaCha8Rng) -> u32 {
    let v = rng.random_range(0..n as u32 - 1);
    if v >= cur {
        v + 1
    } else {
        v
    }
}

/// Runs a sweep into `opts.out`; see the module notes.
pub fn run(mut sweep: Sweep, opts: &RunOptions) -> Result<RunResult, SearchError> {
    if let Some(a) = opts.algorithm {
        sweep.algorithm = a;
    }
    if let Some(b) = opts.budget {
        sweep.budget = b;
    }
    if let Some(s) = opts.seed {
        sweep.seed = s;
    }
    if let Some((i, n)) = opts.shard {
        if n == 0 || i >= n {
            return Err(SearchError::Usage(format!(
                "--shard {i}/{n}: write i/N with 0 <= i < N"
            )));
        }
        if !matches!(sweep.algorithm, Algorithm::Grid | Algorithm::Random) {
            return Err(SearchError::Usage(format!(
                "--shard splits grid and random sweeps; {:?} decides each point from the ones before, so run it whole",
                sweep.algorithm
            )));
        }
    }
    let space = Space::new(&sweep)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| SearchError::out(&opts.out, e))?;
    let points_path = opts.out.join("points.csv");
    let mut resumed = HashMap::new();
    if opts.resume && points_path.exists() {
        for r in output::read_points(&space, &points_path, true)? {
            resumed.insert(r.point.clone(), r);
        }
    }
    let writer = output::PointsWriter::open(&space, &opts.out, opts.resume)?;
    let bar = opts.progress.then(|| {
        let b = indicatif::ProgressBar::new(sweep.budget as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("explore {pos}/{len} {bar:25} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let started = Instant::now();
    let mut d = Driver {
        space: &space,
        eval: Evaluator::new(&space)?,
        writer,
        rows: Vec::new(),
        index: HashMap::new(),
        resumed,
        evaluated_now: 0,
        bar,
        started,
    };
    let outcome = match sweep.algorithm {
        Algorithm::Grid => grid(&mut d, opts.shard),
        Algorithm::Random => random(&mut d, opts.shard),
        Algorithm::Nsga2 => nsga2(&mut d),
        Algorithm::Evolution => evolution(&mut d),
    };
    if let Some(b) = &d.bar {
        b.finish_and_clear();
    }
    let wall_s = started.elapsed().as_secs_f64();
    // Whatever happened, the finished points get their front and summary.
    let mut rows = std::mem::take(&mut d.rows);
    if !d.resumed.is_empty() && outcome.is_err() {
        rows.extend(d.resumed.drain().map(|(_, r)| r));
    }
    rows.sort_by_key(|r| r.id);
    let (pareto, best) = output::write_front(&space, &opts.out, &rows, opts.max_best)?;
    let (hits, misses) = (
        d.eval
            .layers
            .hits
            .load(std::sync::atomic::Ordering::Relaxed),
        d.eval
            .layers
            .misses
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let evaluated = d.evaluated_now;
    drop(d);
    write_summary(
        &space, opts, &rows, pareto, &best, wall_s, evaluated, hits, misses,
    )?;
    outcome?;
    Ok(RunResult {
        rows,
        pareto,
        best,
        wall_s,
        evaluated,
        layer_hits: hits,
        layer_misses: misses,
        space,
    })
}

#[allow(clippy::too_many_arguments)]
fn write_summary(
    space: &Space,
    opts: &RunOptions,
    rows: &[Row],
    pareto: usize,
    best: &[output::BestDesign],
    wall_s: f64,
    evaluated: usize,
    hits: u64,
    misses: u64,
) -> Result<(), SearchError> {
    let sw = &space.sweep;
    let sweep_file = std::fs::canonicalize(&sw.path).unwrap_or_else(|_| sw.path.clone());
    let summary = serde_json::json!({
        "name": sw.name,
        "sweep_file": sweep_file.display().to_string(),
        "algorithm": sw.algorithm,
        "budget": sw.budget,
        "seed": sw.seed,
        "shard": opts.shard.map(|(i, n)| format!("{i}/{n}")),
        "objectives": sw.objectives.iter().map(|o| o.text()).collect::<Vec<_>>(),
        "specs": sw.specs.iter().map(|s| s.text.clone()).collect::<Vec<_>>(),
        "mapper_budget": sw.hardware.mapper_budget,
        "mapper_seed": sw.hardware.mapper_seed,
        "space_points": space.product().to_string(),
        "points": rows.len(),
        "evaluated_this_run": evaluated,
        "feasible": rows.iter().filter(|r| r.feasible).count(),
        "failed": rows.iter().filter(|r| !r.metrics.error.is_empty()).count(),
        "pareto": pareto,
        "wall_s": wall_s,
        "points_per_s": evaluated as f64 / wall_s.max(1e-9),
        "layer_cache": { "hits": hits, "misses": misses },
        "best": best,
    });
    let path = opts.out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| SearchError::out(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| SearchError::out(&path, e))
}

fn in_shard(i: u64, shard: Option<(usize, usize)>) -> bool {
    shard.is_none_or(|(s, n)| i % n as u64 == s as u64)
}

fn grid(d: &mut Driver, shard: Option<(usize, usize)>) -> Result<(), SearchError> {
    let space = d.space;
    let budget = space.sweep.budget as u64;
    let total = space.product();
    let mut id = 0u64;
    let mut pending = Vec::new();
    let mut i = 0u128;
    while i < total && id < budget {
        let p = space.nth(i);
        i += 1;
        if space.canonical(&p) != p {
            continue;
        }
        if in_shard(id, shard) {
            pending.push((id, p));
        }
        id += 1;
        if pending.len() == BATCH {
            d.batch(std::mem::take(&mut pending))?;
        }
    }
    d.batch(pending)?;
    Ok(())
}

fn random(d: &mut Driver, shard: Option<(usize, usize)>) -> Result<(), SearchError> {
    let space = d.space;
    let mut rng = ChaCha8Rng::seed_from_u64(space.sweep.seed);
    let pts = fresh_random(space, &mut rng, space.sweep.budget, &|_| false);
    let mine: Vec<(u64, Point)> = pts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i as u64, p))
        .filter(|(i, _)| in_shard(*i, shard))
        .collect();
    for chunk in mine.chunks(BATCH) {
        d.batch(chunk.to_vec())?;
    }
    Ok(())
}

/// NSGA-II selection state: rank and crowding of each member of a population.
/// Fronts (row indices) and each member's (rank, crowding distance).
type Ranked = (Vec<Vec<usize>>, HashMap<usize, (usize, f64)>);

fn rank_crowd(d: &Driver, pop: &[usize]) -> Ranked {
    let items: Vec<Scored> = pop.iter().map(|&i| d.scored(i)).collect();
    let fronts = nondominated_sort(&items);
    let mut info = HashMap::new();
    for (rank, f) in fronts.iter().enumerate() {
        let c = crowding(&items, f);
        for (k, &m) in f.iter().enumerate() {
            info.insert(pop[m], (rank, c[k]));
        }
    }
    let fronts = fronts
        .into_iter()
        .map(|f| f.into_iter().map(|m| pop[m]).collect())
        .collect();
    (fronts, info)
}

fn nsga2(d: &mut Driver) -> Result<(), SearchError> {
    let space = d.space;
    let sw = &space.sweep;
    let n = sw.population.min(sw.budget);
    let mut rng = ChaCha8Rng::seed_from_u64(sw.seed);
    let mut next_id = 0u64;
    let init = fresh_random(space, &mut rng, n, &|_| false);
    let init: Vec<(u64, Point)> = init
        .into_iter()
        .map(|p| {
            next_id += 1;
            (next_id - 1, p)
        })
        .collect();
    let mut pop = d.batch(init)?;
    let genes = space.dims.len().max(1) as f64;
    while d.rows.len() < sw.budget {
        let (_, info) = rank_crowd(d, &pop);
        let better = |a: usize, b: usize| -> usize {
            let (ra, ca) = info[&a];
            let (rb, cb) = info[&b];
            if ra != rb {
                return if ra < rb { a } else { b };
            }
            if ca != cb {
                return if ca > cb { a } else { b };
            }
            a.min(b)
        };
        let want = n.min(sw.budget - d.rows.len());
        let mut kids: Vec<Point> = Vec::new();
        let mut tries = 0;
        while kids.len() < want && tries < want * 50 {
            tries += 1;
            let pick = |rng: &mut ChaCha8Rng| {
                let a = pop[rng.random_range(0..pop.len())];
                let b = pop[rng.random_range(0..pop.len())];
                better(a, b)
            };
            let (pa, pb) = (pick(&mut rng), pick(&mut rng));
            let (a, b) = (&d.rows[pa].point, &d.rows[pb].point);
            let mut child: Point = if rng.random_bool(0.9) {
                a.iter()
                    .zip(b)
                    .map(|(&x, &y)| if rng.random_bool(0.5) { x } else { y })
                    .collect()
            } else {
                a.clone()
            };
            // The template gene decides which keys are active: keep the parent's keys
            // consistent by canonicalizing after crossover.
            child = space.canonical(&child);
            child = mutate(space, &child, 1.0 / genes, &mut rng);
            let mut k = 0;
            while (d.seen(&child) || kids.contains(&child)) && k < 20 {
                child = mutate(space, &child, 1.0 / genes, &mut rng);
                k += 1;
            }
            if !d.seen(&child) && !kids.contains(&child) {
                kids.push(child);
            }
        }
        if kids.is_empty() {
            let seen = |p: &Point| d.seen(p);
            kids = fresh_random(space, &mut rng, want, &seen);
            if kids.is_empty() {
                break; // the space is exhausted
            }
        }
        let batch: Vec<(u64, Point)> = kids
            .into_iter()
            .map(|p| {
                next_id += 1;
                (next_id - 1, p)
            })
            .collect();
        let new = d.batch(batch)?;
        let mut all = pop.clone();
        all.extend(new);
        let (fronts, info) = rank_crowd(d, &all);
        let mut next = Vec::with_capacity(n);
        for f in fronts {
            if next.len() + f.len() <= n {
                next.extend(f);
            } else {
                let mut f = f;
                f.sort_by(|&a, &b| info[&b].1.total_cmp(&info[&a].1).then(a.cmp(&b)));
                next.extend(f.into_iter().take(n - next.len()));
                break;
            }
        }
        pop = next;
    }
    Ok(())
}

fn evolution(d: &mut Driver) -> Result<(), SearchError> {
    let space = d.space;
    let sw = &space.sweep;
    let n = sw.population.min(sw.budget);
    let mut rng = ChaCha8Rng::seed_from_u64(sw.seed);
    let mut next_id = 0u64;
    let init = fresh_random(space, &mut rng, n, &|_| false);
    let init: Vec<(u64, Point)> = init
        .into_iter()
        .map(|p| {
            next_id += 1;
            (next_id - 1, p)
        })
        .collect();
    let mut pop: VecDeque<usize> = d.batch(init)?.into_iter().collect();
    // Single objective: the first; infeasible points rank by violation.
    let better = |d: &Driver, a: usize, b: usize| -> bool {
        let (sa, sb) = (d.scored(a), d.scored(b));
        let first = |s: &Scored| Scored {
            obj: vec![s.obj[0]],
            violation: s.violation,
        };
        let (fa, fb) = (first(&sa), first(&sb));
        constraint_dominates(&fa, &fb) || (!constraint_dominates(&fb, &fa) && a < b)
    };
    while d.rows.len() < sw.budget && !pop.is_empty() {
        let want = EVO_BATCH.min(sw.budget - d.rows.len());
        let mut kids: Vec<Point> = Vec::new();
        let mut tries = 0;
        while kids.len() < want && tries < want * 50 {
            tries += 1;
            let mut best = pop[rng.random_range(0..pop.len())];
            for _ in 1..sw.sample {
                let c = pop[rng.random_range(0..pop.len())];
                if better(d, c, best) {
                    best = c;
                }
            }
            let mut child = mutate(space, &d.rows[best].point, 0.0, &mut rng);
            let mut k = 0;
            while (d.seen(&child) || kids.contains(&child)) && k < 20 {
                child = mutate(space, &child, 0.0, &mut rng);
                k += 1;
            }
            if !d.seen(&child) && !kids.contains(&child) {
                kids.push(child);
            }
        }
        if kids.is_empty() {
            let seen = |p: &Point| d.seen(p);
            kids = fresh_random(space, &mut rng, want, &seen);
            if kids.is_empty() {
                break;
            }
        }
        let batch: Vec<(u64, Point)> = kids
            .into_iter()
            .map(|p| {
                next_id += 1;
                (next_id - 1, p)
            })
            .collect();
        for i in d.batch(batch)? {
            pop.push_back(i);
            if pop.len() > n {
                pop.pop_front();
            }
        }
    }
    Ok(())
}

/// Combines the points.csv of shard runs of one sweep into `out`: the union by id
/// (each point once), in id order, with its pareto.csv, best/ and summary.json.
pub fn merge(
    dirs: &[PathBuf],
    out: &std::path::Path,
    max_best: usize,
) -> Result<usize, SearchError> {
    let first = dirs
        .first()
        .ok_or_else(|| SearchError::Usage("coex merge needs at least one run folder".into()))?;
    let summary_path = first.join("summary.json");
    let text = std::fs::read_to_string(&summary_path).map_err(|source| SearchError::Io {
        path: summary_path.clone(),
        source,
    })?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| SearchError::out(&summary_path, e))?;
    let sweep_file = summary
        .get("sweep_file")
        .and_then(|v| v.as_str())
        .ok_or_else(|| SearchError::out(&summary_path, "no sweep_file"))?;
    let mut sweep = Sweep::load(std::path::Path::new(sweep_file))?;
    for (k, v) in [("budget", &mut sweep.budget)] {
        if let Some(b) = summary.get(k).and_then(|x| x.as_u64()) {
            *v = b as usize;
        }
    }
    if let Some(s) = summary.get("seed").and_then(|x| x.as_u64()) {
        sweep.seed = s;
    }
    let space = Space::new(&sweep)?;
    let mut by_id: std::collections::BTreeMap<u64, Row> = std::collections::BTreeMap::new();
    for dir in dirs {
        let p = dir.join("points.csv");
        for r in output::read_points(&space, &p, false)? {
            if let Some(old) = by_id.get(&r.id) {
                if old.point != r.point {
                    return Err(SearchError::out(
                        &p,
                        format!(
                            "id {} is a different point here than in another folder; merge shards of one sweep and seed",
                            r.id
                        ),
                    ));
                }
                continue;
            }
            by_id.insert(r.id, r);
        }
    }
    let rows: Vec<Row> = by_id.into_values().collect();
    std::fs::create_dir_all(out).map_err(|e| SearchError::out(out, e))?;
    let path = out.join("points.csv");
    let refs: Vec<&Row> = rows.iter().collect();
    let text = output::csv_text(&space, &refs).map_err(|e| SearchError::out(&path, e))?;
    std::fs::write(&path, text).map_err(|e| SearchError::out(&path, e))?;
    let (pareto, best) = output::write_front(&space, out, &rows, max_best)?;
    let opts = RunOptions {
        out: out.to_path_buf(),
        ..RunOptions::default()
    };
    write_summary(&space, &opts, &rows, pareto, &best, 0.0, 0, 0, 0)?;
    Ok(rows.len())
}
