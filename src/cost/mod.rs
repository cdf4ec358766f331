//! From access counts to latency, energy and area; and from layers to a network.
//!
//! Latency semantics (also in README): every level moves its words at its bandwidth
//! while the array computes, fully overlapped (tiles are prefetched), so a layer
//! takes the slowest of (a) its compute cycles and (b) each level's transfer cycles.
//! Systolic templates add SCALE-Sim's per-fold fill and drain to the compute cycles.
//! Energy = Σ accesses × per-access energy + MACs × MAC energy + leakage × time.

pub mod fpga;
pub mod gpu;
pub mod network;

pub use network::{evaluate_network, LayerCost, NetworkCost, NetworkOptions};

/// Evaluates a network on any kind of accelerator; every kind returns the same schema.
pub fn evaluate(
    graph: &crate::workload::Graph,
    acc: &crate::arch::Accelerator,
    opts: &NetworkOptions,
    fixed: Option<&crate::map::file::MappingFile>,
) -> Result<NetworkCost, CostError> {
    match acc {
        crate::arch::Accelerator::Asic(t) => evaluate_network(graph, t, opts, fixed),
        crate::arch::Accelerator::Fpga(f) => fpga::evaluate_network(graph, f, opts),
        crate::arch::Accelerator::Gpu(g) => gpu::evaluate_network(graph, g, opts),
    }
}

use crate::arch::{Dataflow, Template, OPERANDS};
use crate::lower::VectorOp;
use crate::map::{Counts, Mapping, Problem};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error(transparent)]
    Map(#[from] crate::map::MapError),
    #[error(transparent)]
    Workload(#[from] crate::workload::WorkloadError),
    #[error(transparent)]
    Fpga(#[from] fpga::FpgaError),
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    Latency,
    Energy,
    Edp,
}

/// Latency and energy of one mapped Einsum, without allocation (the search's score).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quick {
    pub compute_cycles: f64,
    pub latency_cycles: f64,
    pub energy_pj: f64,
    /// Index of the level whose bandwidth bounds the layer, if memory-bound.
    pub bound_level: Option<usize>,
}

pub use crate::map::systolic::gemm_view;

/// Compute cycles of one GEMM on a `rows × cols` systolic array, as SCALE-Sim 3 reports
/// them (one less than coex's count, `map::systolic::Systolic::compute_cycles`).
///
/// The stationary operand is laid on the array in `folds = ⌈Sr/rows⌉·⌈Sc/cols⌉` tiles;
/// each fold streams `T` vectors through the skewed array. Output-stationary: Sr = M,
/// Sc = N, T = K, and a fold takes `rows + cols + T − 2` cycles (operands enter skewed
/// from two edges; the last result leaves `rows + cols − 2` cycles after the last
/// input). Weight-/input-stationary also pay `rows` cycles to preload the stationary
/// tile: `2·rows + cols + T − 2` per fold, with (ws) Sr = K, Sc = N, T = M and (is)
/// Sr = K, Sc = M, T = N. SCALE-Sim reports the index of the last busy cycle, one
/// less than the count: total = folds · per_fold − 1.
pub fn scalesim_compute_cycles(df: Dataflow, m: u64, n: u64, k: u64, rows: u64, cols: u64) -> u64 {
    let (sr, sc, t, preload) = match df {
        Dataflow::Os => (m, n, k, 0),
        Dataflow::Ws => (k, n, m, rows),
        Dataflow::Is => (k, m, n, rows),
    };
    let folds = sr.div_ceil(rows) * sc.div_ceil(cols);
    folds * (preload + rows + cols + t - 2) - 1
}

/// Energy of the accesses at level `l` (all operands), pJ: each element access costs
/// its share of the level's word energy (`arch::words_per_element`).
pub fn level_energy_pj(t: &Template, c: &Counts, l: usize, elem_bits: u32) -> f64 {
    let lv = &t.levels[l];
    let words = lv.words_per_element(elem_bits);
    (0..3)
        .map(|o| {
            c.reads[l][o] as f64 * lv.read_energy_pj
                + c.fills[l][o] as f64 * lv.write_energy_pj
                + c.updates[l][o] as f64 * lv.update_energy_pj
        })
        .sum::<f64>()
        * words
}

/// Leakage and static energy over `cycles`, pJ (every instance leaks, used or not).
pub fn leakage_pj(t: &Template, cycles: f64) -> f64 {
    let pes = t.array.pes() as f64;
    let per_cycle: f64 = t
        .levels
        .iter()
        .map(|l| l.leakage_pj_per_cycle * if l.per_pe { pes } else { 1.0 })
        .sum();
    // mW × s = mJ = 1e9 pJ
    per_cycle * cycles + t.static_power_mw * cycles * t.cycle_s() * 1e9
}

/// Latency and energy of an Einsum whose accesses are `c` and whose compute takes
/// `compute_cycles`: latency = max(compute, each level's words per instance ÷ its
/// bandwidth); energy = MACs × MAC energy at the precision + Σ accesses × access energy
/// + leakage and static power over the latency.
pub fn quick_with(p: &Problem, t: &Template, c: &Counts, compute_cycles: f64) -> Quick {
    // `[array] efficiency`: control and fill cycles the mapping does not show.
    let compute_cycles = compute_cycles / t.array.efficiency;
    let mut latency = compute_cycles;
    let mut bound = None;
    // A precision the template cannot run never reaches here (see `mac_energy`).
    let mut energy = c.padded_macs as f64 * mac_energy(t, p);
    for l in 0..c.nlevels {
        energy += level_energy_pj(t, c, l, p.elem_bits);
        let lv = &t.levels[l];
        if lv.bandwidth_limited() {
            let words = lv.words_per_element(p.elem_bits);
            let cycles = match lv.bandwidth_words_per_cycle {
                // One shared port: everything the instance moves.
                Some(bw) => c.words_per_instance(l) as f64 * words / bw,
                None => lv.transfer_cycles(
                    c.reads_per_instance(l) as f64 * words,
                    c.writes_per_instance(l) as f64 * words,
                ),
            };
            if cycles > latency {
                latency = cycles;
                bound = Some(l);
            }
        }
    }
    energy += leakage_pj(t, latency);
    Quick {
        compute_cycles,
        latency_cycles: latency,
        energy_pj: energy,
        bound_level: bound,
    }
}

/// Energy of one MAC at the problem's precision (0 if the template cannot run it:
/// `evaluate_network` refuses such ops before costing them).
pub fn mac_energy(t: &Template, p: &Problem) -> f64 {
    t.mac_energy_pj(p.dtype).unwrap_or(0.0)
}

/// Latency and energy of a mapped Einsum on a template without a systolic dataflow:
/// one temporal step per cycle.
pub fn quick(p: &Problem, t: &Template, c: &Counts) -> Quick {
    quick_with(p, t, c, c.temporal_steps as f64)
}

/// The score the mapper minimizes.
pub fn score(objective: Objective, q: &Quick) -> f64 {
    match objective {
        Objective::Latency => q.latency_cycles + q.energy_pj * 1e-12,
        Objective::Energy => q.energy_pj + q.latency_cycles * 1e-12,
        Objective::Edp => q.latency_cycles * q.energy_pj,
    }
}

/// An objective closure for `map::mapper::search`.
pub fn objective_fn<'a>(
    p: &'a Problem,
    t: &'a Template,
    objective: Objective,
) -> impl Fn(&Mapping, &Counts) -> f64 + 'a {
    move |_m, c| score(objective, &quick(p, t, c))
}

/// Where a VectorOp's data lives: the innermost shared level that holds its working
/// set (inputs + outputs), else the outermost level.
pub fn vector_home(t: &Template, v: &VectorOp) -> usize {
    let bits = (v.bytes_read + v.bytes_written).saturating_mul(8);
    let fan = t.fanout_level();
    (0..fan)
        .rev()
        .find(|&l| {
            let lv = &t.levels[l];
            lv.size_words
                .map(|s| bits.div_ceil(lv.word_bits as u64) <= s)
                .unwrap_or(true)
        })
        .unwrap_or(0)
}

/// A VectorOp on the template's vector unit: `ops / lanes` cycles, or the home level's
/// bandwidth if slower; energy = ops × vector energy + words × home-level access energy.
/// Element-wise ops fused into their producer (`vector.fuse_elementwise`, the default)
/// move no data of their own.
pub fn vector_quick(t: &Template, v: &VectorOp) -> (Quick, usize) {
    let home = vector_home(t, v);
    let lv = &t.levels[home];
    let wb = lv.word_bits as f64 / 8.0;
    let (read_words, write_words) = if vector_fused(t, v) {
        (0.0, 0.0)
    } else {
        (v.bytes_read as f64 / wb, v.bytes_written as f64 / wb)
    };
    let compute = (v.ops() as f64 / t.vector.lanes as f64).ceil();
    let transfer = lv.transfer_cycles(read_words, write_words);
    let latency = compute.max(transfer);
    let energy = v.ops() as f64 * t.vector.energy_pj_per_op
        + read_words * lv.read_energy_pj
        + write_words * lv.write_energy_pj
        + leakage_pj(t, latency);
    (
        Quick {
            compute_cycles: compute,
            latency_cycles: latency,
            energy_pj: energy,
            bound_level: (transfer > compute).then_some(home),
        },
        home,
    )
}

/// Whether a VectorOp rides in its producer's output stream.
pub fn vector_fused(t: &Template, v: &VectorOp) -> bool {
    t.vector.fuse_elementwise && v.kind == crate::lower::VectorKind::Elementwise
}

/// Per-level, per-operand access rows for reports.
#[derive(Clone, Debug, Serialize)]
pub struct Access {
    pub level: String,
    pub operand: String,
    pub reads: u64,
    pub fills: u64,
    pub updates: u64,
}

pub fn access_rows(t: &Template, c: &Counts) -> Vec<Access> {
    let mut v = Vec::new();
    for l in 0..c.nlevels {
        for (o, name) in OPERANDS.iter().enumerate() {
            if t.levels[l].keeps[o] {
                v.push(Access {
                    level: t.levels[l].name.clone(),
                    operand: name.to_string(),
                    reads: c.reads[l][o],
                    fills: c.fills[l][o],
                    updates: c.updates[l][o],
                });
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalesim_formula_on_a_hand_example() {
        // os, M=12544 N=32 K=27 on 32x32: 392 folds x (32+32+27-2) - 1 (SCALE-Sim: 34887).
        assert_eq!(
            scalesim_compute_cycles(Dataflow::Os, 12544, 32, 27, 32, 32),
            34887
        );
    }
}

/// The roofs of an accelerator for the roofline plot: peak MACs/s at `dtype` and the
/// bandwidth of each memory level that has one, bytes/s.
#[derive(Clone, Debug, Serialize)]
pub struct Roof {
    pub peak_macs_per_s: f64,
    pub bandwidths_bytes_per_s: Vec<(String, f64)>,
}

/// ASIC: PEs × clock, each level's `bandwidth_words_per_cycle × word bytes × clock`;
/// GPU: SMs × MACs/SM/cycle at the dtype × clock, DRAM and L2 datasheet bandwidths;
/// FPGA: DSPs × MACs per DSP × clock, off-chip bandwidth × efficiency.
pub fn roofline(acc: &crate::arch::Accelerator, dtype: crate::workload::DType) -> Roof {
    use crate::arch::Accelerator;
    match acc {
        Accelerator::Asic(t) => {
            let hz = t.clock_mhz * 1e6;
            Roof {
                peak_macs_per_s: t.array.pes() as f64 * hz,
                bandwidths_bytes_per_s: t
                    .levels
                    .iter()
                    .filter_map(|l| {
                        let bw = l.peak_words_per_cycle()?;
                        Some((l.name.clone(), bw * l.word_bits as f64 / 8.0 * hz))
                    })
                    .collect(),
            }
        }
        Accelerator::Gpu(g) => {
            let per_sm = g.peak(dtype).map(|(r, _)| r).unwrap_or(0.0);
            Roof {
                peak_macs_per_s: per_sm * g.device.sms as f64 * g.device.clock_mhz * 1e6,
                bandwidths_bytes_per_s: vec![
                    ("DRAM".into(), g.device.dram_gb_s * 1e9),
                    ("L2".into(), g.device.l2_gb_s * 1e9),
                ],
            }
        }
        Accelerator::Fpga(f) => Roof {
            peak_macs_per_s: f.device.resources.dsp
                * f.precision.macs_per_dsp
                * f.device.clock_mhz
                * 1e6,
            bandwidths_bytes_per_s: vec![(
                "DRAM".into(),
                f.device.offchip_gbps * f.device.offchip_efficiency * 1e9,
            )],
        },
    }
}
