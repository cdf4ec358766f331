//! The one evaluation function of the search: (network, accelerator) → metrics.
//!
//! Hardware metrics come from [`crate::cost::network::evaluate_cached`] (what `coex
//! eval` computes), with every distinct Einsum's schedule cached by (hardware design,
//! Einsum shape incl. dtype) in a [`LayerCache`]: networks that share layers, and
//! designs the search revisits, never map a shape twice. Graphs, accelerators and
//! accuracies are cached by their own keys.

use super::accuracy::{Candidate, Provider};
use super::space::{Point, Space};
use super::SearchError;
use crate::arch::Accelerator;
use crate::cost::network::{evaluate_cached, plan_totals, Plan, Schedule, ScheduleCache};
use crate::cost::{CostError, NetworkOptions, Objective};
use crate::lower::Einsum;
use crate::map::mapper::SearchConfig;
use crate::map::Problem;
use crate::workload::Graph;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

type Scheduled = Result<(Problem, Schedule, usize), String>;
type Slot = Arc<OnceLock<Scheduled>>;

/// Per-Einsum schedules, keyed by (hardware design key, Einsum shape incl. dtype).
#[derive(Default)]
pub struct LayerCache {
    map: Mutex<HashMap<Arc<str>, HashMap<Einsum, Slot>>>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl LayerCache {
    /// The cache seen by one design.
    pub fn design<'a>(&'a self, key: &str) -> DesignCache<'a> {
        DesignCache {
            cache: self,
            key: Arc::from(key),
        }
    }

    pub fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
}

pub struct DesignCache<'a> {
    cache: &'a LayerCache,
    key: Arc<str>,
}

impl ScheduleCache for DesignCache<'_> {
    fn get_or_map(
        &self,
        shape: &Einsum,
        map: &(dyn Fn() -> Result<(Problem, Schedule, usize), CostError> + Sync),
    ) -> Result<(Problem, Schedule, usize), CostError> {
        let slot = {
            let mut m = self
                .cache
                .map
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let per = m.entry(self.key.clone()).or_default();
            match per.get(shape) {
                Some(s) => s.clone(),
                None => {
                    let s: Slot = Arc::default();
                    per.insert(shape.clone(), s.clone());
                    s
                }
            }
        };
        let mut computed = false;
        let r = slot.get_or_init(|| {
            computed = true;
            map().map_err(|e| e.to_string())
        });
        if computed {
            self.cache.misses.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
        }
        match r {
            Ok((p, s, _)) => Ok((p.clone(), *s, if computed { r_evaluated(r) } else { 0 })),
            Err(m) => Err(CostError::Unsupported(m.clone())),
        }
    }

    fn totals_only(&self) -> bool {
        true
    }
}

fn r_evaluated(r: &Scheduled) -> usize {
    r.as_ref().map(|x| x.2).unwrap_or(0)
}

/// The metrics of one design point (base units; NaN when the evaluation failed).
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    pub accuracy: f64,
    pub accuracy_source: String,
    pub latency_s: f64,
    pub energy_j: f64,
    pub area_mm2: f64,
    pub edp_js: f64,
    /// Why the point could not be evaluated, if it could not.
    pub error: String,
}

impl Metrics {
    pub fn get(&self, m: super::Metric) -> f64 {
        match m {
            super::Metric::Accuracy => self.accuracy,
            super::Metric::Latency => self.latency_s,
            super::Metric::Energy => self.energy_j,
            super::Metric::Area => self.area_mm2,
            super::Metric::Edp => self.edp_js,
        }
    }
}

/// What a network is, once built.
struct Net {
    graph: Option<Arc<Graph>>,
    /// The graph lowered once, for the fast path on ASIC designs.
    plan: Option<Plan>,
    error: String,
    macs: u64,
    params: u64,
    json: serde_json::Value,
    arch: Option<String>,
    classes: Option<u64>,
    disconnected: bool,
}

/// Hardware half of a point's metrics.
#[derive(Clone, Debug)]
pub struct HwMetrics {
    pub latency_s: f64,
    pub energy_j: f64,
    pub area_mm2: f64,
    pub error: String,
}

pub struct Evaluator<'s> {
    pub space: &'s Space,
    pub opts: NetworkOptions,
    pub layers: LayerCache,
    nets: Mutex<HashMap<String, Arc<Net>>>,
    accels: Mutex<HashMap<String, Arc<Result<Accelerator, String>>>>,
    accuracy: Mutex<HashMap<String, (f64, String)>>,
    provider: Provider,
    /// Ids of Einsum shapes (across networks) and of designs, for `kernel_costs`.
    shape_ids: Mutex<HashMap<Einsum, u32>>,
    design_ids: Mutex<HashMap<String, u32>>,
    /// (design, shape, context bits) → one Einsum's (latency cycles, energy pJ) on an
    /// ASIC design: a point then costs one lookup per Einsum (`cost::network::Plan`).
    kernel_costs: RwLock<KernelMemo>,
}

/// (design id, shape id, context bits) → (latency cycles, energy pJ).
type KernelMemo = HashMap<(u32, u32, u8), (f64, f64)>;

/// Most graphs kept at once (NB201 has 15,625; a graph is ~100 KB).
const MAX_GRAPHS: usize = 4096;

impl<'s> Evaluator<'s> {
    pub fn new(space: &'s Space) -> Result<Evaluator<'s>, SearchError> {
        let hw = &space.sweep.hardware;
        Ok(Evaluator {
            space,
            opts: NetworkOptions {
                objective: Objective::Edp,
                search: SearchConfig {
                    budget: hw.mapper_budget,
                    seed: hw.mapper_seed,
                    ..SearchConfig::default()
                },
                progress: false,
            },
            layers: LayerCache::default(),
            nets: Mutex::default(),
            accels: Mutex::default(),
            accuracy: Mutex::default(),
            provider: Provider::new(&space.sweep.accuracy)?,
            shape_ids: Mutex::default(),
            design_ids: Mutex::default(),
            kernel_costs: RwLock::default(),
        })
    }

    fn net(&self, p: &Point) -> Arc<Net> {
        let key = self.space.net_key(p);
        if let Some(n) = self.nets.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return n;
        }
        let net = Arc::new(self.build_net(p));
        if let Ok(mut m) = self.nets.lock() {
            if m.len() >= MAX_GRAPHS {
                m.clear();
            }
            m.insert(key, net.clone());
        }
        net
    }

    fn build_net(&self, p: &Point) -> Net {
        let edges = self.space.nb201_edges(p);
        let arch = edges.map(|e| super::space::arch_string(&e));
        let disconnected = edges
            .map(|e| super::space::nb201_disconnected(&e))
            .unwrap_or(false);
        let (graph, json) = match self.space.workload(p) {
            Ok(text) => {
                let json = toml::from_str::<toml::Table>(&text)
                    .ok()
                    .and_then(|t| serde_json::to_value(t).ok())
                    .unwrap_or_default();
                (crate::workload::file::parse(&text, "network", None), json)
            }
            Err(path) => (
                crate::workload::load(&path, None),
                serde_json::json!({ "file": path.display().to_string() }),
            ),
        };
        let classes = json
            .get("params")
            .and_then(|p| p.get("classes"))
            .and_then(|c| c.as_u64())
            .or(edges.map(|_| 10));
        let counted = graph.and_then(|g| {
            let macs: u64 = crate::lower::lower(&g)?.iter().map(|w| w.macs()).sum();
            Ok((macs, g.params(), g))
        });
        match counted {
            Ok((macs, params, g)) => Net {
                plan: Plan::new(&g, &mut |e| self.shape_id(e)).ok(),
                graph: Some(Arc::new(g)),
                error: String::new(),
                macs,
                params,
                json,
                arch,
                classes,
                disconnected,
            },
            Err(e) => Net {
                plan: None,
                graph: None,
                error: format!("network: {e}"),
                macs: 0,
                params: 0,
                json,
                arch,
                classes,
                disconnected,
            },
        }
    }

    fn accel(&self, p: &Point) -> (String, Arc<Result<Accelerator, String>>) {
        let key = self.space.hw_key(p);
        if let Some(a) = self.accels.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return (key, a);
        }
        let (t, overrides) = self.space.hardware(p);
        let a = Arc::new(
            crate::arch::load_accelerator(&self.space.templates[t].path, &overrides)
                .map_err(|e| format!("hardware: {e}")),
        );
        if let Ok(mut m) = self.accels.lock() {
            m.insert(key.clone(), a.clone());
        }
        (key, a)
    }

    fn shape_id(&self, e: &Einsum) -> u32 {
        let mut m = self.shape_ids.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.len() as u32;
        *m.entry(e.clone()).or_insert(n)
    }

    fn design_id(&self, key: &str) -> u32 {
        let mut m = self.design_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = m.get(key) {
            return i;
        }
        let n = m.len() as u32;
        m.insert(key.to_string(), n);
        n
    }

    /// Latency, energy and area of one point (no accuracy).
    pub fn hardware_metrics(&self, p: &Point) -> HwMetrics {
        let fail = |error: String| HwMetrics {
            latency_s: f64::NAN,
            energy_j: f64::NAN,
            area_mm2: f64::NAN,
            error,
        };
        let net = self.net(p);
        let Some(g) = &net.graph else {
            return fail(net.error.clone());
        };
        let (key, acc) = self.accel(p);
        let acc = match acc.as_ref() {
            Ok(a) => a,
            Err(e) => return fail(e.clone()),
        };
        let design = self.layers.design(&key);
        if let (Accelerator::Asic(t), Some(plan)) = (acc, &net.plan) {
            let did = self.design_id(&key);
            let mut memo = |sid: u32,
                            bits: u8,
                            compute: &mut crate::cost::network::KernelCost<'_>|
             -> Result<(f64, f64), CostError> {
                let k = (did, sid, bits);
                if let Some(v) = self
                    .kernel_costs
                    .read()
                    .ok()
                    .and_then(|m| m.get(&k).copied())
                {
                    return Ok(v);
                }
                let v = compute()?;
                if let Ok(mut m) = self.kernel_costs.write() {
                    m.insert(k, v);
                }
                Ok(v)
            };
            // The same totals as cost::evaluate (README "Explore"; tests/explore.rs checks
            // every best/ design against `coex eval`).
            return match plan_totals(plan, t, &self.opts, &design, &mut memo) {
                Ok((latency_cycles, energy_pj)) => HwMetrics {
                    latency_s: latency_cycles * t.cycle_s(),
                    energy_j: energy_pj * 1e-12,
                    area_mm2: t.area_mm2(),
                    error: String::new(),
                },
                Err(e) => fail(format!("cost: {e}")),
            };
        }
        match evaluate_cached(g, acc, &self.opts, Some(&design)) {
            Ok(c) => HwMetrics {
                latency_s: c.total.latency_s,
                energy_j: c.total.energy_pj * 1e-12,
                area_mm2: c.total.area_mm2,
                error: String::new(),
            },
            Err(e) => fail(format!("cost: {e}")),
        }
    }

    /// Metrics of every point, in order: hardware in parallel, then accuracy for the
    /// networks not asked before (one predictor batch).
    pub fn evaluate(&self, points: &[(u64, Point)]) -> Result<Vec<Metrics>, SearchError> {
        let hw: Vec<HwMetrics> = points
            .par_iter()
            .map(|(_, p)| self.hardware_metrics(p))
            .collect();
        // Accuracy, once per network.
        let mut ask: Vec<Candidate> = Vec::new();
        let mut ask_keys: Vec<String> = Vec::new();
        {
            let known = self
                .accuracy
                .lock()
                .map_err(|_| SearchError::Usage("internal: accuracy cache poisoned".into()))?;
            for (id, p) in points {
                let key = self.space.net_key(p);
                if known.contains_key(&key) || ask_keys.contains(&key) {
                    continue;
                }
                let net = self.net(p);
                if net.graph.is_none() {
                    continue;
                }
                let label = match &net.arch {
                    Some(a) => format!("id {id} (arch {a})"),
                    None => format!("id {id} (network {})", net.json),
                };
                ask.push(Candidate {
                    id: *id,
                    label,
                    network: net.json.clone(),
                    arch: net.arch.clone(),
                    macs: net.macs,
                    params: net.params,
                    classes: net.classes,
                    disconnected: net.disconnected,
                });
                ask_keys.push(key);
            }
        }
        if !ask.is_empty() {
            let vals = self.provider.predict(&ask)?;
            if let Ok(mut known) = self.accuracy.lock() {
                for (k, v) in ask_keys.into_iter().zip(vals) {
                    known.insert(k, v);
                }
            }
        }
        let known = self
            .accuracy
            .lock()
            .map_err(|_| SearchError::Usage("internal: accuracy cache poisoned".into()))?;
        Ok(points
            .iter()
            .zip(hw)
            .map(|((_, p), h)| {
                let (accuracy, accuracy_source) = known
                    .get(&self.space.net_key(p))
                    .cloned()
                    .unwrap_or((f64::NAN, String::new()));
                Metrics {
                    accuracy,
                    accuracy_source,
                    latency_s: h.latency_s,
                    energy_j: h.energy_j,
                    area_mm2: h.area_mm2,
                    edp_js: h.latency_s * h.energy_j,
                    error: h.error,
                }
            })
            .collect())
    }
}
