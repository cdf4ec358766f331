//! The layer-pipelined dataflow engine (FINN: Umuroglu et al., FPGA'17; Blott et al.,
//! "FINN-R", TRETS 2018): one stage per kernel, all stages running at once, images
//! streaming through; every weight lives on chip.
//!
//! An Einsum stage is a matrix-vector unit over its GEMM view (b, M, N, K): PE lanes
//! split the b·N output channels, SIMD lanes the reduction, so (FINN's folding)
//!
//! ```text
//!   cycles = M · (b·N / PE) · (K / SIMD)      PE | b·N,  SIMD | K
//! ```
//!
//! For a convolution K = C·R·S and SIMD divides C (the sliding-window unit emits SIMD
//! channels of one tap at a time) or, with all C channels in parallel, is C times a
//! divisor of R·S (FINN's "parallel window" generator): a 3-channel first layer or a
//! depthwise layer (C = 1) can still unroll its taps.
//! A stage holds its weights as PE banks of SIMD·bits × (b·N/PE)·(K/SIMD) words, in
//! BRAM or URAM (the folding chooses), a convolution also a line buffer of the input
//! rows one output row needs (BRAM), and PE·SIMD MAC lanes (DSPs by precision).
//! A VectorOp stage is folded too: 1, 2, 4, … up to `vector_lanes` lanes, ⌈ops / lanes⌉
//! cycles (FINN's elementwise, pooling and thresholding units have PE parallelism).
//!
//! Cycles are per image (the batch is the leading dim of the network input). The
//! slowest stage sets the interval T (no faster than the DMA that streams the input
//! in and the result out); a stage starts once its producer has emitted what its
//! first output needs: a `fill` share of its own work (R/P of a convolution's rows,
//! one row of a row-wise GEMM, all of a global reduction or of a product of two
//! activations, nothing of a streaming elementwise or windowed op). So
//!
//! ```text
//!   latency = Σ_{i ≠ slowest} fill_i · c_i + images · T
//! ```
//!
//! and each row of the result reports a stage's busy cycles (c_i · images), not a
//! share of that latency: the rows overlap in time.

use super::fold::{self, Candidate, Fold, FoldError, Problem as FoldProblem};
use super::{check_fit, overflows, resource_rows, split_dims, FpgaError};
use crate::arch::fpga::{
    bram36_blocks, uram_blocks, Dataflow, Folding, Fpga, Resources, WeightMemory,
};
use crate::cost::network::{LayerCost, NetworkCost, Totals};
use crate::cost::{gemm_view, Access, Objective};
use crate::lower::{self, Einsum, Kernel, VectorOp};
use crate::map::{Problem, MAX_DIMS};
use crate::workload::{Graph, Op};
use std::collections::HashMap;

/// One pipeline stage and its candidate foldings.
#[derive(Clone, Debug)]
pub struct Stage {
    pub layer: String,
    pub kernel: String,
    pub kind: &'static str,
    pub macs: u64,
    /// VectorOp operations (0 for an Einsum stage).
    pub vector_ops: u64,
    pub candidates: Vec<Candidate>,
    /// Share of its work a stage does before its first output leaves.
    pub fill: f64,
    /// DRAM words this stage streams: network inputs read, network outputs written.
    pub dram_in_words: f64,
    pub dram_out_words: f64,
}

/// All divisors of `n`, ascending.
fn divisors(n: u64) -> Vec<u64> {
    let mut lo = Vec::new();
    let mut hi = Vec::new();
    let mut d = 1;
    while d * d <= n {
        if n.is_multiple_of(d) {
            lo.push(d);
            if d * d != n {
                hi.push(n / d);
            }
        }
        d += 1;
    }
    lo.extend(hi.into_iter().rev());
    lo
}

/// Words of input one output row needs (a conv's line buffer): the input footprint
/// with the rows dim at 1 and the images dim at 1.
fn line_buffer_words(p: &Problem) -> u64 {
    let mut ext = [1u64; MAX_DIMS];
    for (d, e) in ext.iter_mut().enumerate().take(p.ndims) {
        *e = match p.names[d] {
            "P" | "N" => 1,
            _ => p.bounds[d],
        };
    }
    p.operands[0].footprint(&ext)
}

/// The memory kinds a stage may keep weights in.
fn weight_memories(f: &Fpga, d: &Dataflow) -> Vec<&'static str> {
    match d.weight_memory {
        WeightMemory::Bram => vec!["BRAM"],
        WeightMemory::Uram => vec!["URAM"],
        WeightMemory::Auto if f.device.resources.uram > 0.0 => vec!["BRAM", "URAM"],
        WeightMemory::Auto => vec!["BRAM"],
    }
}

/// Candidate foldings of one Einsum stage: per (PE·SIMD, memory), the split that needs
/// the fewest memory blocks (MAC lanes cost the same for every split).
fn einsum_candidates(p: &Problem, f: &Fpga, d: &Dataflow, images: f64) -> Vec<Candidate> {
    let (b, m, n, k) = gemm_view(p);
    let dims = split_dims(p);
    let lanes_out = b * n;
    let simds: Vec<u64> = if dims.conv {
        let mut v = divisors(dims.n);
        v.extend(divisors(dims.taps).into_iter().skip(1).map(|t| dims.n * t));
        v
    } else {
        divisors(k)
    };
    let prec = &f.precision;
    let bits = prec.bits as u64;
    let line = if dims.conv && dims.taps > 1 {
        Some(line_buffer_words(p))
    } else {
        None
    };
    let mut best: HashMap<(u64, &'static str), Candidate> = HashMap::new();
    for pe in divisors(lanes_out) {
        for &simd in &simds {
            let cycles = (m * (lanes_out / pe) * (k / simd)) as f64 / images;
            let depth = (lanes_out / pe) * (k / simd);
            for mem in weight_memories(f, d) {
                let mut r = prec.mac_lanes(pe * simd);
                r.lut += d.lut_per_stage;
                r.ff += d.ff_per_stage;
                match mem {
                    "URAM" => r.uram = pe as f64 * uram_blocks(simd * bits, depth),
                    _ => r.bram36 = pe as f64 * bram36_blocks(simd * bits, depth),
                }
                if let Some(words) = line {
                    r.bram36 += bram36_blocks(simd * bits, words.div_ceil(simd));
                }
                let c = Candidate {
                    cycles,
                    res: r,
                    lanes: pe * simd,
                    label: format!("PE{pe} SIMD{simd} W@{mem}"),
                };
                let key = (pe * simd, mem);
                let smaller = best
                    .get(&key)
                    .is_none_or(|o| (c.res.bram36 + c.res.uram) < (o.res.bram36 + o.res.uram));
                if smaller {
                    best.insert(key, c);
                }
            }
        }
    }
    let mut v: Vec<Candidate> = best.into_values().collect();
    v.sort_by(|a, b| a.label.cmp(&b.label));
    v
}

/// Share of an Einsum stage's work before its first output: R/P of a conv's rows,
/// one row of a GEMM with stored weights over rows, else all of it.
fn einsum_fill(e: &Einsum) -> f64 {
    let bound = |n: &str| e.dim_index(n).map(|i| e.dims[i].bound as f64);
    match (e.weight.is_param, bound("P")) {
        (true, Some(rows)) => (bound("R").unwrap_or(1.0) / rows).min(1.0),
        _ => 1.0,
    }
}

/// A VectorOp stage: `lanes` ∈ {1, 2, 4, …, vector_lanes}, ⌈ops / lanes⌉ cycles.
fn vector_stage(v: &VectorOp, layer: &str, f: &Fpga, d: &Dataflow, images: f64) -> Stage {
    let c = &f.common;
    let mut widths: Vec<u64> = std::iter::successors(Some(1u64), |l| Some(l * 2))
        .take_while(|&l| l < c.vector_lanes)
        .collect();
    widths.push(c.vector_lanes);
    let candidates = widths
        .into_iter()
        .map(|lanes| Candidate {
            cycles: (v.ops() as f64 / lanes as f64).ceil() / images,
            res: Resources {
                lut: lanes as f64 * c.lut_per_vector_lane + d.lut_per_stage,
                ff: lanes as f64 * c.ff_per_vector_lane + d.ff_per_stage,
                ..Resources::default()
            },
            lanes: 0,
            label: format!("vector[{lanes}]"),
        })
        .collect();
    Stage {
        layer: layer.to_string(),
        kernel: v.name.clone(),
        kind: "vector",
        macs: 0,
        vector_ops: v.ops(),
        candidates,
        fill: vector_fill(v),
        dram_in_words: 0.0,
        dram_out_words: 0.0,
    }
}

/// A VectorOp that writes less than an eighth of what it reads reduces whole tensors
/// (global pooling): it emits after all its work. Everything else (activations,
/// adds, norms with known statistics, pooling windows, scans) streams: no fill.
fn vector_fill(v: &VectorOp) -> f64 {
    if v.bytes_written * 8 < v.bytes_read {
        1.0
    } else {
        0.0
    }
}

/// Images per batch: the leading dim of the network's first input.
fn images(graph: &Graph) -> u64 {
    graph
        .g
        .node_indices()
        .map(|i| graph.node(i))
        .find(|n| matches!(n.op, Op::Input { .. }))
        .and_then(|n| n.output.shape.first().copied())
        .unwrap_or(1)
        .max(1) as u64
}

/// Every kernel of `graph` as a stage, in execution order, and the images per batch.
pub fn dataflow_stages(
    graph: &Graph,
    f: &Fpga,
    d: &Dataflow,
) -> Result<(Vec<Stage>, u64), FpgaError> {
    let work = lower::lower(graph)?;
    let imgs = images(graph);
    let per = imgs as f64;
    let mut stages = Vec::new();
    let mut cache: HashMap<Einsum, Vec<Candidate>> = HashMap::new();
    for w in &work {
        let node = graph.node(w.node);
        if matches!(node.op, Op::Input { .. }) {
            continue;
        }
        let from_input = graph
            .inputs_of(w.node)
            .into_iter()
            .filter(|&i| matches!(graph.node(i).op, Op::Input { .. }))
            .map(|i| graph.node(i).output.elements() as f64)
            .sum::<f64>();
        let is_output = graph.g.neighbors(w.node).next().is_none();
        let first = stages.len();
        for k in &w.kernels {
            let st = match k {
                Kernel::Einsum(e) => {
                    let key = Einsum {
                        name: String::new(),
                        ..e.clone()
                    };
                    let candidates = match cache.get(&key) {
                        Some(c) => c.clone(),
                        None => {
                            let p = Problem::from_einsum(e)?;
                            let c = einsum_candidates(&p, f, d, per);
                            cache.insert(key, c.clone());
                            c
                        }
                    };
                    Stage {
                        layer: node.name.clone(),
                        kernel: e.name.clone(),
                        kind: "einsum",
                        macs: e.macs(),
                        vector_ops: 0,
                        candidates,
                        fill: einsum_fill(e),
                        dram_in_words: 0.0,
                        dram_out_words: 0.0,
                    }
                }
                Kernel::Vector(v) => vector_stage(v, &node.name, f, d, per),
            };
            stages.push(st);
        }
        if let Some(s) = stages.get_mut(first) {
            s.dram_in_words += from_input;
        }
        if is_output {
            if let Some(s) = stages.last_mut() {
                s.dram_out_words += node.output.elements() as f64;
            }
        }
    }
    Ok((stages, imgs))
}

/// The folding problem's fixed part: control, DMA and interconnect outside the stages.
fn fixed(f: &Fpga) -> Resources {
    Resources {
        lut: f.common.lut_base,
        ff: f.common.ff_base,
        ..Resources::default()
    }
}

/// Cycles per image the DMA needs to stream the network's inputs and outputs.
fn dma_floor(stages: &[Stage], f: &Fpga, images: u64) -> f64 {
    let words: f64 = stages
        .iter()
        .map(|s| s.dram_in_words + s.dram_out_words)
        .sum();
    words * f.precision.bytes() / f.device.dram_bytes_per_cycle() / images as f64
}

/// Greedy and (if asked) ILP foldings of a network; an infeasible problem is the
/// error naming what overflows.
pub struct Plan {
    pub stages: Vec<Stage>,
    pub images: u64,
    pub floor: f64,
    pub greedy: Option<Fold>,
    pub ilp: Option<Fold>,
}

pub fn plan(graph: &Graph, f: &Fpga, d: &Dataflow, with_ilp: bool) -> Result<Plan, FpgaError> {
    let (stages, imgs) = dataflow_stages(graph, f, d)?;
    let cands: Vec<Vec<Candidate>> = stages.iter().map(|s| s.candidates.clone()).collect();
    let floor = dma_floor(&stages, f, imgs);
    let fills: Vec<f64> = stages.iter().map(|s| s.fill).collect();
    let p = FoldProblem {
        stages: &cands,
        fill: &fills,
        fixed: fixed(f),
        budget: f.common.budget(&f.device),
        floor,
    };
    let not_fit = |e: FoldError| match e {
        FoldError::Infeasible { needs } => {
            let o = overflows(&needs, f);
            FpgaError::DoesNotFit {
                path: f.path.clone(),
                part: f.device.part.clone(),
                what: format!(
                    "network '{}' on the dataflow engine (every weight on chip, {} stages)",
                    graph.name,
                    stages.len()
                ),
                overflows: o,
            }
        }
        FoldError::Solver(message) => FpgaError::Solver {
            path: f.path.clone(),
            message,
        },
    };
    let greedy = fold::greedy(&p);
    let ilp = if with_ilp {
        Some(fold::ilp(&p, greedy.as_ref().ok(), d.ilp_time_limit_s).map_err(not_fit)?)
    } else {
        None
    };
    let greedy = match (greedy, &ilp) {
        (Ok(g), _) => Some(g),
        (Err(_), Some(_)) => None,
        (Err(e), None) => return Err(not_fit(e)),
    };
    Ok(Plan {
        stages,
        images: imgs,
        floor,
        greedy,
        ilp,
    })
}

/// Pipeline latency for a folding: Σ_{i≠slowest} fill_i·c_i + images·T.
pub fn pipeline_latency(stages: &[Stage], fold: &Fold, images: u64) -> f64 {
    let c: Vec<f64> = stages
        .iter()
        .zip(&fold.choice)
        .map(|(s, &j)| s.candidates[j].cycles)
        .collect();
    let slowest = c
        .iter()
        .enumerate()
        .filter(|(_, &x)| x >= fold.t)
        .map(|(i, _)| i)
        .next();
    let fill: f64 = stages
        .iter()
        .zip(&c)
        .enumerate()
        .filter(|(i, _)| Some(*i) != slowest)
        .map(|(_, (s, &ci))| s.fill * ci)
        .sum();
    fill + images as f64 * fold.t
}

/// The network on the dataflow engine, and the folding used.
pub fn evaluate(graph: &Graph, f: &Fpga, d: &Dataflow) -> Result<(NetworkCost, Fold), FpgaError> {
    let plan = plan(graph, f, d, d.folding == Folding::Ilp)?;
    let fold = match d.folding {
        Folding::Ilp => plan.ilp.clone(),
        Folding::Greedy => plan.greedy.clone(),
    }
    .ok_or_else(|| FpgaError::Solver {
        path: f.path.clone(),
        message: "no folding".into(),
    })?;
    check_fit(&fold.used, f, "the folded pipeline")?;
    let imgs = plan.images as f64;
    let latency = pipeline_latency(&plan.stages, &fold, plan.images);
    let busy: Vec<f64> = plan
        .stages
        .iter()
        .zip(&fold.choice)
        .map(|(s, &j)| s.candidates[j].cycles * imgs)
        .collect();
    let busy_sum: f64 = busy.iter().sum::<f64>().max(1.0);
    let static_total = f.device.static_pj(latency);
    let word_b = f.precision.bytes();
    let dma_bound = plan.floor >= fold.t && plan.floor > 0.0;
    let (mut mac_pj, mut dram_pj, mut vec_pj) = (0.0, 0.0, 0.0);
    let mut lanes_total = 0.0;
    let mut layers = Vec::new();
    for (i, (s, &j)) in plan.stages.iter().zip(&fold.choice).enumerate() {
        let c = &s.candidates[j];
        let pe_simd = c.lanes as f64;
        let mac = s.macs as f64 * f.precision.mac_energy_pj;
        lanes_total += pe_simd;
        let vec_e = s.vector_ops as f64 * f.common.vector_pj_per_op;
        let dram_words = s.dram_in_words + s.dram_out_words;
        let dram = dram_words * word_b * f.common.dram_pj_per_byte;
        let stat = static_total * busy[i] / busy_sum;
        (mac_pj, dram_pj, vec_pj) = (mac_pj + mac, dram_pj + dram, vec_pj + vec_e);
        let dma_here = dma_bound && (s.dram_in_words > 0.0 || s.dram_out_words > 0.0);
        layers.push(LayerCost {
            layer: s.layer.clone(),
            kernel: s.kernel.clone(),
            kind: s.kind,
            precision: if s.macs > 0 {
                f.precision.static_name()
            } else {
                ""
            },
            mapping: c.label.clone(),
            macs: s.macs,
            padded_macs: (pe_simd * busy[i]) as u64,
            compute_cycles: busy[i],
            latency_cycles: busy[i],
            energy_pj: mac + vec_e + dram + stat,
            utilization: if pe_simd > 0.0 {
                s.macs as f64 / (pe_simd * fold.t * imgs)
            } else {
                0.0
            },
            bound: if dma_here { "DRAM" } else { "compute" }.into(),
            accesses: if dram_words > 0.0 {
                vec![Access {
                    level: "DRAM".into(),
                    operand: if s.dram_in_words > 0.0 { "I" } else { "O" }.into(),
                    reads: s.dram_in_words as u64,
                    fills: 0,
                    updates: s.dram_out_words as u64,
                }]
            } else {
                vec![]
            },
        });
    }
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    let cost = NetworkCost {
        network: graph.name.clone(),
        accelerator: f.name.clone(),
        objective: Objective::Latency,
        total: Totals {
            latency_cycles: latency,
            latency_s: latency * f.device.cycle_s(),
            energy_pj: layers.iter().map(|l| l.energy_pj).sum(),
            area_mm2: 0.0,
            macs,
            utilization: if latency > 0.0 && lanes_total > 0.0 {
                macs as f64 / (latency * lanes_total)
            } else {
                0.0
            },
            dram_round_trips: 0,
            mappings_evaluated: plan.stages.iter().map(|s| s.candidates.len()).sum(),
            resources: resource_rows(&fold.used, f),
        },
        energy_by_level_pj: vec![
            ("MAC".into(), mac_pj),
            ("DRAM".into(), dram_pj),
            ("vector".into(), vec_pj),
            ("static".into(), static_total),
        ],
        area_by_component_um2: vec![],
        layers,
    };
    Ok((cost, fold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisors_ascending() {
        assert_eq!(divisors(12), vec![1, 2, 3, 4, 6, 12]);
        assert_eq!(divisors(1), vec![1]);
        assert_eq!(divisors(49), vec![1, 7, 49]);
    }
}
