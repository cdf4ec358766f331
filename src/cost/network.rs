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
    mapping: Mapping,
    evaluated: usize,
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

/// Maps and costs every layer of `graph` on `t`.
pub fn evaluate_network(
    graph: &Graph,
    t: &Template,
    opts: &NetworkOptions,
    fixed: Option<&MappingFile>,
) -> Result<NetworkCost, CostError> {
    let work = lower::lower(graph)?;
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
    for w in &work {
        for e in w.einsums() {
            if fixed
                .map(|f| f.by_layer.contains_key(&e.name))
                .unwrap_or(false)
            {
                continue;
            }
            let key = shape_key(e);
            if !unique.contains_key(&key) {
                unique.insert(key.clone(), shapes.len());
                shapes.push((key, e.name.clone()));
            }
        }
    }
    let bar = progress_bar(opts.progress, shapes.len());
    let mapped: Vec<Result<Mapped, CostError>> = shapes
        .par_iter()
        .map(|(e, name)| {
            let named = Einsum {
                name: name.clone(),
                ..e.clone()
            };
            let (p, found) = map_einsum(&named, t, opts)?;
            if let Some(b) = &bar {
                b.inc(1);
            }
            Ok(Mapped {
                problem: p,
                mapping: found.mapping,
                evaluated: found.evaluated,
            })
        })
        .collect();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mapped: Vec<Mapped> = mapped.into_iter().collect::<Result<_, _>>()?;

    let onchip = global_buffer(t);
    let fits = |words: u64| onchip.map(|(_, cap)| words <= cap / 2).unwrap_or(false);
    let wb = t.word_bytes();
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
        let out_words = (node.output.bytes() as f64 / wb).ceil() as u64;
        if matches!(node.op, crate::workload::Op::Input { .. }) {
            continue;
        }
        if has_consumers && !fits(out_words) {
            round_trips += 1;
        }
        for k in &w.kernels {
            match k {
                Kernel::Einsum(e) => {
                    let (p, m) = match fixed
                        .map(|f| f.by_layer.contains_key(&e.name))
                        .unwrap_or(false)
                    {
                        true => {
                            let p = Problem::from_einsum(e)?;
                            let m = fixed
                                .and_then(|f| f.resolve(&e.name, &p, t).transpose())
                                .transpose()?
                                .expect("mapping present");
                            (p, m)
                        }
                        false => {
                            let r = &mapped[unique[&shape_key(e)]];
                            (r.problem.clone(), r.mapping)
                        }
                    };
                    let mut c = analyze(&p, t, &m);
                    if let Some((glb, _)) = onchip {
                        keep_on_chip(e, &mut c, glb, &ctx, &fits);
                    }
                    let q = quick(&p, t, &c);
                    for (l, slot) in by_level.iter_mut().enumerate() {
                        *slot += level_energy_pj(t, &c, l);
                    }
                    layers.push(LayerCost {
                        layer: node.name.clone(),
                        kernel: e.name.clone(),
                        kind: "einsum",
                        mapping: m.compact(&p, t),
                        macs: e.macs(),
                        padded_macs: c.padded_macs,
                        compute_cycles: q.compute_cycles,
                        latency_cycles: q.latency_cycles,
                        energy_pj: q.energy_pj,
                        utilization: e.macs() as f64 / (q.latency_cycles * t.array.pes() as f64),
                        bound: bound_name(t, q.bound_level),
                        accesses: access_rows(t, &c),
                    });
                }
                Kernel::Vector(v) => {
                    let (q, home) = vector_quick(t, v);
                    let lv = &t.levels[home];
                    let fused = vector_fused(t, v);
                    if !fused {
                        by_level[home] += v.bytes_read as f64 / wb * lv.read_energy_pj
                            + v.bytes_written as f64 / wb * lv.write_energy_pj;
                    }
                    layers.push(LayerCost {
                        layer: node.name.clone(),
                        kernel: v.name.clone(),
                        kind: "vector",
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

/// The global buffer: innermost shared level with a capacity, `(index, words)`.
fn global_buffer(t: &Template) -> Option<(usize, u64)> {
    (1..t.fanout_level())
        .rev()
        .find_map(|l| t.levels[l].size_words.map(|s| (l, s)))
}

/// Removes DRAM traffic for activations that stay in the global buffer: an operand
/// that fits and is either an intermediate of this op or a tensor another layer
/// produced on chip. The network's own inputs start in DRAM; outputs nobody
/// consumes are written back to DRAM.
fn keep_on_chip(
    e: &Einsum,
    c: &mut Counts,
    glb: usize,
    ctx: &NodeContext,
    fits: &dyn Fn(u64) -> bool,
) {
    for (o, op) in [(0usize, &e.input), (1, &e.weight)] {
        let elems = op.elements();
        let network_input = ctx.network_inputs.contains(&elems);
        if !op.is_param && fits(elems) && !network_input {
            c.reads[0][o] = 0;
            c.fills[glb][o] = 0;
        }
    }
    let elems = e.output.elements();
    let network_output = elems == ctx.output_elems && !ctx.has_consumers;
    if fits(elems) && !network_output {
        c.updates[0][2] = 0;
        c.reads[0][2] = 0;
        c.fills[glb][2] = 0;
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
