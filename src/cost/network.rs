//! A whole network on one template: map every Einsum (cached by shape, in parallel),
//! cost every VectorOp, and compose layers in order.
//!
//! Activations stay on chip between layers when they fit: a tensor of at most half the
//! innermost shared level (the global buffer) is neither written to nor read back from
//! DRAM; a larger one makes a DRAM round trip, which the counts keep and the totals report.

use super::*;
use crate::lower::{self, Einsum, Kernel};
use crate::map::file::MappingFile;
use crate::map::mapper::{self, SearchConfig};
use crate::map::systolic::{self, Systolic};
use crate::map::{analyze, Problem};
use crate::workload::Graph;
use rayon::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct NetworkOptions {
    pub objective: Objective,
    pub search: SearchConfig,
    /// Show a progress bar while mapping.
    pub progress: bool,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            objective: Objective::Edp,
            search: SearchConfig::default(),
            progress: false,
        }
    }
}

/// One kernel (Einsum or VectorOp) of one layer: a tidy row.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCost {
    pub layer: String,
    pub kernel: String,
    pub kind: &'static str,
    /// The precision the kernel ran at (`int8`, `fp16`, ...); empty for vector kernels.
    pub precision: &'static str,
    pub mapping: String,
    pub macs: u64,
    pub padded_macs: u64,
    pub compute_cycles: f64,
    pub latency_cycles: f64,
    pub energy_pj: f64,
    pub utilization: f64,
    /// `compute`, or the level whose bandwidth bounds the kernel.
    pub bound: String,
    pub accesses: Vec<Access>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub latency_cycles: f64,
    pub latency_s: f64,
    pub energy_pj: f64,
    pub area_mm2: f64,
    pub macs: u64,
    pub utilization: f64,
    /// Activation tensors that do not fit on chip and go through DRAM.
    pub dram_round_trips: usize,
    pub mappings_evaluated: usize,
    /// Device resources a design uses, as `<R>.used` / `<R>.available` pairs
    /// (FPGA: DSP, BRAM36, URAM, LUT, FF); empty for kinds without them.
    pub resources: Vec<(String, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkCost {
    pub network: String,
    pub accelerator: String,
    pub objective: Objective,
    pub total: Totals,
    pub energy_by_level_pj: Vec<(String, f64)>,
    pub area_by_component_um2: Vec<(String, f64)>,
    pub layers: Vec<LayerCost>,
}

/// The mapped result of one distinct Einsum shape.
#[derive(Clone)]
struct Mapped {
    problem: Problem,
    schedule: Schedule,
    evaluated: usize,
}

/// How one Einsum runs on an ASIC template: a loop-nest mapping (searched or pinned by
/// a mapping file), or the fixed schedule of a systolic array.
#[derive(Clone, Copy, Debug)]
#[allow(clippy::large_enum_variant)] // one per distinct Einsum shape; copied, never boxed
pub enum Schedule {
    Nest(Mapping),
    Systolic(Systolic),
}

impl Schedule {
    /// The schedule's accesses and compute cycles, without the printed form.
    pub fn counts_only(
        &self,
        p: &Problem,
        t: &Template,
    ) -> Result<(Counts, f64, String), CostError> {
        Ok(match self {
            Schedule::Nest(m) => {
                let c = analyze(p, t, m);
                let cycles = c.temporal_steps as f64;
                (c, cycles, String::new())
            }
            Schedule::Systolic(_) => self.counts(p, t)?,
        })
    }

    /// The schedule's accesses, compute cycles and printed form.
    pub fn counts(&self, p: &Problem, t: &Template) -> Result<(Counts, f64, String), CostError> {
        Ok(match self {
            Schedule::Nest(m) => {
                let c = analyze(p, t, m);
                let cycles = c.temporal_steps as f64;
                (c, cycles, m.compact(p, t))
            }
            Schedule::Systolic(s) => {
                let df = s.dataflow;
                let ch = systolic::chains(t, df)
                    .map_err(|m| CostError::Unsupported(format!("{}: {m}", t.path.display())))?;
                (
                    s.counts(p, t, &ch),
                    s.compute_cycles() as f64,
                    s.describe(p),
                )
            }
        })
    }
}

/// The schedule `coex eval` gives `e` on `t`: the systolic one on systolic templates,
/// else the mapper's best mapping. Refuses a precision the MACs do not run.
pub fn schedule_einsum(
    e: &Einsum,
    t: &Template,
    opts: &NetworkOptions,
) -> Result<(Problem, Schedule, usize), CostError> {
    t.mac_energy_pj(e.dtype).map_err(|m| {
        CostError::Unsupported(format!("Einsum '{}' is {}: {m}", e.name, e.dtype.name()))
    })?;
    if t.array.dataflow.is_some() {
        let p = Problem::from_einsum(e)?;
        let s = Systolic::new(&p, t)?;
        let ch = systolic::chains(t, s.dataflow)
            .map_err(|m| CostError::Unsupported(format!("{}: {m}", t.path.display())))?;
        for (o, &(_, pe)) in ch.iter().enumerate() {
            if let Some(l) = pe.filter(|&l| !systolic::fits(t, l, 1, p.elem_bits)) {
                let lv = &t.levels[l];
                return Err(CostError::Unsupported(format!(
                    "{}: level '{}' ({} x {}-bit words) cannot hold one {} element of operand {}; raise level.{}.word_bits or size_words",
                    t.path.display(),
                    lv.name,
                    lv.size_words.unwrap_or(0),
                    lv.word_bits,
                    p.dtype.name(),
                    crate::arch::OPERANDS[o],
                    lv.name
                )));
            }
        }
        return Ok((p, Schedule::Systolic(s), 1));
    }
    let (p, found) = map_einsum(e, t, opts)?;
    Ok((p, Schedule::Nest(found.mapping), found.evaluated))
}

fn shape_key(e: &Einsum) -> Einsum {
    Einsum {
        name: String::new(),
        ..e.clone()
    }
}

/// Maps one Einsum as `evaluate_network` maps it (same search configuration and
/// objective), so that other commands (`coex check`) see the mapping `coex eval` uses.
pub fn map_einsum(
    e: &Einsum,
    t: &Template,
    opts: &NetworkOptions,
) -> Result<(Problem, mapper::Found), CostError> {
    let p = Problem::from_einsum(e)?;
    let found = mapper::search(&p, t, &opts.search, objective_fn(&p, t, opts.objective))?;
    Ok((p, found))
}

/// A cache of per-Einsum schedules for ONE hardware design, shared across networks
/// (the design-space search keeps one per design: `search::LayerCache`).
///
/// `get_or_map` returns the schedule of `shape` (an Einsum with its name cleared: the
/// key is its loop bounds, projections and dtype), running `map` at most once per shape.
/// The mapper is deterministic for a seed and budget, so a cached schedule is the one
/// an uncached `evaluate_network` finds.
pub trait ScheduleCache: Sync {
    fn get_or_map(
        &self,
        shape: &Einsum,
        map: &(dyn Fn() -> Result<(Problem, Schedule, usize), CostError> + Sync),
    ) -> Result<(Problem, Schedule, usize), CostError>;

    /// Whether the caller reads only the totals: per-kernel mapping text and access
    /// rows are then left empty (every number is the same).
    fn totals_only(&self) -> bool {
        false
    }
}

/// Maps and costs every layer of `graph` on `t`.
pub fn evaluate_network(
    graph: &Graph,
    t: &Template,
    opts: &NetworkOptions,
    fixed: Option<&MappingFile>,
) -> Result<NetworkCost, CostError> {
    evaluate_network_cached(graph, t, opts, fixed, None)
}

/// [`crate::cost::evaluate`] with an optional schedule cache for ASIC templates
/// (FPGA and GPU models are analytic per kernel and take no cache).
pub fn evaluate_cached(
    graph: &Graph,
    acc: &crate::arch::Accelerator,
    opts: &NetworkOptions,
    cache: Option<&dyn ScheduleCache>,
) -> Result<NetworkCost, CostError> {
    match acc {
        crate::arch::Accelerator::Asic(t) => evaluate_network_cached(graph, t, opts, None, cache),
        _ => super::evaluate(graph, acc, opts, None),
    }
}

/// [`evaluate_network`], taking each distinct Einsum's schedule from `cache` when given
/// (mapping it there on a miss).
pub fn evaluate_network_cached(
    graph: &Graph,
    t: &Template,
    opts: &NetworkOptions,
    fixed: Option<&MappingFile>,
    cache: Option<&dyn ScheduleCache>,
) -> Result<NetworkCost, CostError> {
    let work = lower::lower(graph)?;
    if let (Some(f), Some(df)) = (fixed, t.array.dataflow) {
        return Err(CostError::Map(crate::map::MapError::File {
            path: f.path.clone(),
            message: format!(
                "template '{}' is a {df:?} systolic array: its schedule is fixed (SCALE-Sim's folds), so it takes no mapping file; drop --mapping",
                t.name
            ),
        }));
    }
    if let Some(f) = fixed {
        let names: std::collections::HashSet<&str> = work
            .iter()
            .flat_map(|w| w.einsums())
            .map(|e| e.name.as_str())
            .collect();
        let mut unknown: Vec<&String> = f
            .by_layer
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            let mut known: Vec<&str> = names.into_iter().collect();
            known.sort();
            known.truncate(12);
            return Err(CostError::Map(crate::map::MapError::File {
                path: f.path.clone(),
                message: format!(
                    "mapping for '{k}' matches no Einsum of network '{}'; Einsum names include {}",
                    graph.name,
                    known.join(", ")
                ),
            }));
        }
    }
    // Distinct Einsum shapes not pinned by a mapping file.
    let mut unique: HashMap<Einsum, usize> = HashMap::new();
    // (shape, name of its first Einsum: for messages)
    let mut shapes: Vec<(Einsum, String)> = Vec::new();
    // The shape index of every Einsum not pinned, in work order (read back below).
    let mut shape_of: Vec<usize> = Vec::new();
    for w in &work {
        for e in w.einsums() {
            if fixed
                .map(|f| f.by_layer.contains_key(&e.name))
                .unwrap_or(false)
            {
                continue;
            }
            let key = shape_key(e);
            let i = match unique.get(&key) {
                Some(&i) => i,
                None => {
                    unique.insert(key.clone(), shapes.len());
                    shapes.push((key, e.name.clone()));
                    shapes.len() - 1
                }
            };
            shape_of.push(i);
        }
    }
    let mut next_shape = shape_of.into_iter();
    let totals_only = cache.is_some_and(|c| c.totals_only());
    let bar = progress_bar(opts.progress, shapes.len());
    let mapped: Vec<Result<Mapped, CostError>> = shapes
        .par_iter()
        .map(|(e, name)| {
            let named = Einsum {
                name: name.clone(),
                ..e.clone()
            };
            let (p, schedule, evaluated) = match cache {
                Some(c) => c.get_or_map(e, &|| schedule_einsum(&named, t, opts))?,
                None => schedule_einsum(&named, t, opts)?,
            };
            if let Some(b) = &bar {
                b.inc(1);
            }
            Ok(Mapped {
                problem: p,
                schedule,
                evaluated,
            })
        })
        .collect();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mapped: Vec<Mapped> = mapped.into_iter().collect::<Result<_, _>>()?;

    let mut layers = Vec::new();
    let mut round_trips = 0;
    let mut by_level = vec![0.0; t.levels.len()];
    for w in &work {
        let node = graph.node(w.node);
        let ctx = NodeContext {
            network_inputs: graph
                .inputs_of(w.node)
                .into_iter()
                .filter(|&i| matches!(graph.node(i).op, crate::workload::Op::Input { .. }))
                .map(|i| graph.node(i).output.elements())
                .collect(),
            output_elems: node.output.elements(),
            has_consumers: graph.g.neighbors(w.node).next().is_some(),
        };
        let has_consumers = graph.g.neighbors(w.node).next().is_some();
        if matches!(node.op, crate::workload::Op::Input { .. }) {
            continue;
        }
        let out_bits = node.output.bytes().saturating_mul(8);
        if has_consumers && !home(t, 2).is_some_and(|l| resident_bits(t, l, out_bits)) {
            round_trips += 1;
        }
        for k in &w.kernels {
            match k {
                Kernel::Einsum(e) => {
                    let pinned = fixed.map(|f| f.by_layer.contains_key(&e.name));
                    let (p, schedule) = match (fixed, pinned) {
                        (Some(f), Some(true)) => {
                            t.mac_energy_pj(e.dtype).map_err(CostError::Unsupported)?;
                            let p = Problem::from_einsum(e)?;
                            let m = f.resolve(&e.name, &p, t)?.ok_or_else(|| {
                                CostError::Unsupported(format!("no mapping for '{}'", e.name))
                            })?;
                            (p, Schedule::Nest(m))
                        }
                        _ => {
                            let i = next_shape.next().ok_or_else(|| {
                                CostError::Unsupported(format!(
                                    "internal: no shape for Einsum '{}'",
                                    e.name
                                ))
                            })?;
                            let r = &mapped[i];
                            (r.problem.clone(), r.schedule)
                        }
                    };
                    let (mut c, compute, mapping) = if totals_only {
                        schedule.counts_only(&p, t)?
                    } else {
                        schedule.counts(&p, t)?
                    };
                    keep_on_chip(e, &mut c, t, p.elem_bits, &ctx);
                    let q = quick_with(&p, t, &c, compute);
                    for (l, slot) in by_level.iter_mut().enumerate() {
                        *slot += level_energy_pj(t, &c, l, p.elem_bits);
                    }
                    layers.push(LayerCost {
                        layer: node.name.clone(),
                        kernel: e.name.clone(),
                        kind: "einsum",
                        precision: e.dtype.name(),
                        mapping,
                        macs: e.macs(),
                        padded_macs: c.padded_macs,
                        compute_cycles: q.compute_cycles,
                        latency_cycles: q.latency_cycles,
                        energy_pj: q.energy_pj,
                        utilization: e.macs() as f64 / (q.latency_cycles * t.array.pes() as f64),
                        bound: bound_name(t, q.bound_level),
                        accesses: if totals_only {
                            vec![]
                        } else {
                            access_rows(t, &c)
                        },
                    });
                }
                Kernel::Vector(v) => {
                    let (q, home) = vector_quick(t, v);
                    let lv = &t.levels[home];
                    let fused = vector_fused(t, v);
                    if !fused {
                        let wb = lv.word_bits as f64 / 8.0;
                        by_level[home] += v.bytes_read as f64 / wb * lv.read_energy_pj
                            + v.bytes_written as f64 / wb * lv.write_energy_pj;
                    }
                    layers.push(LayerCost {
                        layer: node.name.clone(),
                        kernel: v.name.clone(),
                        kind: "vector",
                        precision: "",
                        mapping: match fused {
                            true => format!("vector[{}] fused", t.vector.lanes),
                            false => format!("vector[{}] @{}", t.vector.lanes, lv.name),
                        },
                        macs: 0,
                        padded_macs: 0,
                        compute_cycles: q.compute_cycles,
                        latency_cycles: q.latency_cycles,
                        energy_pj: q.energy_pj,
                        utilization: 0.0,
                        bound: bound_name(t, q.bound_level),
                        accesses: vec![],
                    });
                }
            }
        }
    }
    let latency: f64 = layers.iter().map(|l| l.latency_cycles).sum();
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    Ok(NetworkCost {
        network: graph.name.clone(),
        accelerator: t.name.clone(),
        objective: opts.objective,
        total: Totals {
            latency_cycles: latency,
            latency_s: latency * t.cycle_s(),
            energy_pj: layers.iter().map(|l| l.energy_pj).sum(),
            area_mm2: t.area_mm2(),
            macs,
            utilization: if latency > 0.0 {
                macs as f64 / (latency * t.array.pes() as f64)
            } else {
                0.0
            },
            dram_round_trips: round_trips,
            mappings_evaluated: mapped.iter().map(|m| m.evaluated).sum(),
            resources: vec![],
        },
        energy_by_level_pj: t
            .levels
            .iter()
            .map(|l| l.name.clone())
            .zip(by_level)
            .collect(),
        area_by_component_um2: t.area_breakdown_um2(),
        layers,
    })
}

/// Where operand `o` lives on chip between layers: the innermost shared level with a
/// capacity that keeps it (the global buffer, or the operand's own SRAM).
fn home(t: &Template, o: usize) -> Option<usize> {
    (1..t.fanout_level())
        .rev()
        .find(|&l| t.levels[l].keeps[o] && t.levels[l].size_words.is_some())
}

/// Whether a tensor of `bits` may stay resident in level `l`: at most half of it.
fn resident_bits(t: &Template, l: usize, bits: u64) -> bool {
    let lv = &t.levels[l];
    lv.size_words
        .is_some_and(|cap| bits.div_ceil(lv.word_bits as u64) <= cap / 2)
}

/// Removes DRAM traffic for activations that stay on chip: an operand that fits half
/// its home level (`home`) and is either an intermediate of this op or a tensor another
/// layer produced on chip. The network's own inputs start in DRAM; outputs nobody
/// consumes are written back to DRAM. A schedule that does not hold the operand in its
/// home level (a bypass, or a systolic operand streaming through) keeps its traffic.
fn keep_on_chip(e: &Einsum, c: &mut Counts, t: &Template, elem_bits: u32, ctx: &NodeContext) {
    let stays = |o: usize, elems: u64| -> Option<usize> {
        let l = home(t, o)?;
        (c.tile_words[l][o] > 0 && resident_bits(t, l, elems.saturating_mul(elem_bits as u64)))
            .then_some(l)
    };
    for (o, op) in [(0usize, &e.input), (1, &e.weight)] {
        let elems = op.elements();
        let network_input = ctx.network_inputs.contains(&elems);
        if op.is_param || network_input {
            continue;
        }
        if let Some(l) = stays(o, elems) {
            c.reads[0][o] = 0;
            c.fills[l][o] = 0;
        }
    }
    let elems = e.output.elements();
    let network_output = elems == ctx.output_elems && !ctx.has_consumers;
    if network_output {
        return;
    }
    if let Some(l) = stays(2, elems) {
        c.updates[0][2] = 0;
        c.reads[0][2] = 0;
        c.fills[l][2] = 0;
    }
}

/// What `keep_on_chip` needs to know about the node an Einsum belongs to.
struct NodeContext {
    /// Element counts of inputs that come straight from the network's inputs.
    network_inputs: Vec<u64>,
    output_elems: u64,
    has_consumers: bool,
}

fn bound_name(t: &Template, level: Option<usize>) -> String {
    level
        .map(|l| t.levels[l].name.clone())
        .unwrap_or_else(|| "compute".into())
}

fn progress_bar(show: bool, n: usize) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let b = indicatif::ProgressBar::new(n as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "mapping {pos}/{len} distinct Einsums {bar:30} {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}

/// A network lowered once, for costing on many designs (a sweep's fast path): every
/// kernel in `evaluate_network`'s order with what its cost depends on besides the
/// design. Totals from [`plan_totals`] equal `evaluate_network`'s bit for bit (same
/// functions, same summation order).
pub struct Plan {
    kernels: Vec<PlanKernel>,
}

/// An Einsum of a plan: its shape (name cleared), the node context `keep_on_chip`
/// reads, the caller's id for the shape, and the context bits (input and weight are
/// network inputs, output is a network output) that with the shape and the design
/// fix the kernel's cost.
struct PlanEinsum {
    shape: Einsum,
    ctx: NodeContext,
    id: u32,
    flags: u8,
}

enum PlanKernel {
    Einsum(Box<PlanEinsum>),
    Vector(crate::lower::VectorOp),
}

impl Plan {
    /// Lowers `graph` once; `intern` gives each Einsum shape an id (the same id for
    /// the same shape, across plans).
    pub fn new(graph: &Graph, intern: &mut dyn FnMut(&Einsum) -> u32) -> Result<Plan, CostError> {
        let work = lower::lower(graph)?;
        let mut kernels = Vec::new();
        for w in &work {
            let node = graph.node(w.node);
            if matches!(node.op, crate::workload::Op::Input { .. }) {
                continue;
            }
            for k in &w.kernels {
                kernels.push(match k {
                    Kernel::Einsum(e) => {
                        let ctx = NodeContext {
                            network_inputs: graph
                                .inputs_of(w.node)
                                .into_iter()
                                .filter(|&i| {
                                    matches!(graph.node(i).op, crate::workload::Op::Input { .. })
                                })
                                .map(|i| graph.node(i).output.elements())
                                .collect(),
                            output_elems: node.output.elements(),
                            has_consumers: graph.g.neighbors(w.node).next().is_some(),
                        };
                        let i = ctx.network_inputs.contains(&e.input.elements()) as u8;
                        let wt = ctx.network_inputs.contains(&e.weight.elements()) as u8;
                        let o =
                            (e.output.elements() == ctx.output_elems && !ctx.has_consumers) as u8;
                        let shape = shape_key(e);
                        let id = intern(&shape);
                        PlanKernel::Einsum(Box::new(PlanEinsum {
                            shape,
                            ctx,
                            id,
                            flags: i | wt << 1 | o << 2,
                        }))
                    }
                    Kernel::Vector(v) => PlanKernel::Vector(v.clone()),
                });
            }
        }
        Ok(Plan { kernels })
    }
}

/// One Einsum's (latency cycles, energy pJ), computed on demand.
pub type KernelCost<'a> = dyn FnMut() -> Result<(f64, f64), CostError> + 'a;

/// The caller's memo: (shape id, context bits, compute) → (latency cycles, energy pJ).
pub type EinsumCost<'a> =
    dyn FnMut(u32, u8, &mut KernelCost<'_>) -> Result<(f64, f64), CostError> + 'a;

/// Network latency (cycles) and energy (pJ) of `plan` on `t`. For each Einsum,
/// `einsum_cost(shape id, context bits, compute)` returns its (latency, energy): from
/// the caller's memo of (design, shape id, bits), or by calling `compute`, which maps
/// the shape through `cache` and charges it as `evaluate_network` does.
pub fn plan_totals(
    plan: &Plan,
    t: &Template,
    opts: &NetworkOptions,
    cache: &dyn ScheduleCache,
    einsum_cost: &mut EinsumCost<'_>,
) -> Result<(f64, f64), CostError> {
    let (mut latency, mut energy) = (0.0, 0.0);
    for k in &plan.kernels {
        let (l, e) = match k {
            PlanKernel::Einsum(pe) => {
                let mut compute = || {
                    let named = &pe.shape;
                    let (p, s, _) = cache.get_or_map(named, &|| schedule_einsum(named, t, opts))?;
                    let (mut c, cycles, _) = s.counts_only(&p, t)?;
                    keep_on_chip(named, &mut c, t, p.elem_bits, &pe.ctx);
                    let q = quick_with(&p, t, &c, cycles);
                    Ok((q.latency_cycles, q.energy_pj))
                };
                einsum_cost(pe.id, pe.flags, &mut compute)?
            }
            PlanKernel::Vector(v) => {
                let (q, _) = vector_quick(t, v);
                (q.latency_cycles, q.energy_pj)
            }
        };
        latency += l;
        energy += e;
    }
    Ok((latency, energy))
}
