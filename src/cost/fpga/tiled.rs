//! The shared tiled engine of Zhang et al. (FPGA'15, "Optimizing FPGA-based Accelerator
//! Design for Deep Convolutional Neural Networks").
//!
//! One Tm×Tn MAC array: each cycle it multiplies Tn input channels by Tm×Tn weights
//! and accumulates Tm outputs, for one output pixel and one filter tap. A layer is
//! cut into tiles of Tr×Tc output pixels × Tm output channels × Tn input channels;
//! one tile step computes for `Tr·Tc·R·S` cycles (Zhang's inner loops), so a layer
//! needs `⌈M/Tm⌉·⌈N/Tn⌉·⌈rows/Tr⌉·⌈cols/Tc⌉` steps, and with Tr | rows, Tc | cols
//! exactly Zhang's `⌈M/Tm⌉·⌈N/Tn⌉·R·C·K²` compute cycles.
//!
//! Input, weight and output tiles are double-buffered: while step k computes, step
//! k+1's tiles load and step k−1's outputs drain over the one DRAM port, so a step
//! takes `max(compute, transfer)` and the layer
//! `Σ_steps max(compute, bytes/bandwidth) + first load + last store`.
//!
//! What a step moves depends on the loop order (searched per layer with Tr, Tc):
//! * `os` (Zhang's): spatial tile → m → n. Input and weight tiles load every step;
//!   outputs stay on chip across n and store once.
//! * `ir` (input reuse): spatial tile → n → m. An input tile loads once and serves all
//!   m blocks, so the output buffer must hold ⌈M/Tm⌉ output tiles.
//! * `wr` (weight reuse): m → n → spatial tile. A weight tile loads once and serves
//!   all spatial tiles; partial sums spill to DRAM (accumulator width) between n blocks.
//!
//! Non-conv Einsums run as GEMMs (`super::split_dims`): rows = M, N on Tm, K on Tn.
//! VectorOps run on a `vector_lanes` unit reading and writing DRAM:
//! `max(ops/lanes, bytes/bandwidth)` cycles.

use super::{check_fit, resource_rows, split_dims, Dims, FpgaError};
use crate::arch::fpga::{bram36_blocks, Fpga, Precision, Resources, Tiled};
use crate::cost::network::{LayerCost, NetworkCost, Totals};
use crate::cost::{Access, Objective};
use crate::lower::{self, Einsum, Kernel, VectorOp};
use crate::map::{OperandShape, Problem, MAX_DIMS};
use crate::workload::Graph;
use serde::Serialize;
use std::collections::HashMap;

/// Loop order of the tile steps (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Os,
    Ir,
    Wr,
}

impl Order {
    pub const ALL: [Order; 3] = [Order::Os, Order::Ir, Order::Wr];

    pub fn name(self) -> &'static str {
        match self {
            Order::Os => "os",
            Order::Ir => "ir",
            Order::Wr => "wr",
        }
    }
}

/// One layer's tiling: output-tile rows and columns and the loop order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Tiling {
    pub order: Order,
    pub tr: u64,
    pub tc: u64,
}

/// Cycles and DRAM words of one layer under one tiling (all batches).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TileCost {
    pub steps: u64,
    pub compute_cycles: f64,
    pub transfer_cycles: f64,
    pub latency_cycles: f64,
    /// DRAM words read: inputs, weights, spilled partial sums; written: outputs + spills.
    pub input_words: f64,
    pub weight_words: f64,
    pub partial_read_words: f64,
    pub output_write_words: f64,
    pub dram_bytes: f64,
}

/// A layer as the tiled engine sees it.
#[derive(Clone, Debug)]
pub struct Layer {
    pub dims: Dims,
    input: OperandShape,
    /// Extents for an input-footprint query: filter taps at their bounds, others 1.
    ext: [u64; MAX_DIMS],
}

impl Layer {
    pub fn new(p: &Problem) -> Layer {
        let dims = split_dims(p);
        let mut ext = [1u64; MAX_DIMS];
        for (d, e) in ext.iter_mut().enumerate().take(p.ndims) {
            if matches!(p.names[d], "R" | "S") && !p.operands[2].is_relevant(d) {
                *e = p.bounds[d];
            }
        }
        Layer {
            dims,
            input: p.operands[0],
            ext,
        }
    }

    /// Input words one channel lane needs for a `tr × tc` output tile: the conv halo
    /// `((tr−1)·stride + (R−1)·dilation + 1) × (…cols…)`, or `tr` rows of a GEMM.
    pub fn patch(&self, tr: u64, tc: u64) -> u64 {
        match (self.dims.row_dim, self.dims.col_dim) {
            (None, None) => tr * tc,
            (r, c) => {
                let mut e = self.ext;
                if let Some(r) = r {
                    e[r] = tr;
                }
                if let Some(c) = c {
                    e[c] = tc;
                }
                self.input.footprint(&e)
            }
        }
    }
}

/// Blocks of a dim of `total` cut by `t`: (count, size, first, last) classes.
#[derive(Clone, Copy, Debug, Default)]
struct Block {
    count: u64,
    size: u64,
    first: bool,
    last: bool,
}

fn blocks(total: u64, t: u64) -> ([Block; 3], usize) {
    let nb = total.div_ceil(t);
    let mut b = [Block::default(); 3];
    if nb <= 1 {
        b[0] = Block {
            count: 1,
            size: total,
            first: true,
            last: true,
        };
        return (b, 1);
    }
    let rem = total - (nb - 1) * t;
    b[0] = Block {
        count: 1,
        size: t,
        first: true,
        last: false,
    };
    let mut n = 1;
    if nb > 2 {
        b[1] = Block {
            count: nb - 2,
            size: t,
            first: false,
            last: false,
        };
        n = 2;
    }
    b[n] = Block {
        count: 1,
        size: rem,
        first: false,
        last: true,
    };
    (b, n + 1)
}

/// Whether the engine's buffers hold the tiles of `tiling`.
pub fn fits_buffers(l: &Layer, e: &Tiled, tiling: &Tiling) -> bool {
    let d = &l.dims;
    let (tr, tc) = (tiling.tr.min(d.rows), tiling.tc.min(d.cols));
    let out_tiles = match tiling.order {
        Order::Ir => d.m.div_ceil(e.tm),
        _ => 1,
    };
    d.taps <= e.weight_buffer_depth
        && l.patch(tr, tc) <= e.input_buffer_depth
        && out_tiles * tr * tc <= e.output_buffer_depth
}

/// Latency and traffic of one layer under `tiling`, or `None` if its tiles do not fit
/// the buffers. `bw` is DRAM bytes per cycle.
pub fn tile_cost(
    l: &Layer,
    e: &Tiled,
    p: &Precision,
    bw: f64,
    tiling: &Tiling,
) -> Option<TileCost> {
    if !fits_buffers(l, e, tiling) {
        return None;
    }
    let d = &l.dims;
    let (wb, ab) = (p.bytes(), p.acc_bits as f64 / 8.0);
    let (rb, nr) = blocks(d.rows, tiling.tr);
    let (cb, nc) = blocks(d.cols, tiling.tc);
    let (mb, nm) = blocks(d.m, e.tm);
    let (nb, nn) = blocks(d.n, e.tn);
    let mut c = TileCost::default();
    let mut latency = 0.0;
    for r in &rb[..nr] {
        for col in &cb[..nc] {
            let patch = l.patch(r.size, col.size) as f64;
            let sp_first = r.first && col.first;
            for m in &mb[..nm] {
                for n in &nb[..nn] {
                    let count = (r.count * col.count * m.count * n.count) as f64;
                    let i = (n.size as f64) * patch;
                    let w = (m.size * n.size * d.taps) as f64;
                    let o = (m.size * r.size * col.size) as f64;
                    let compute = (r.size * col.size * d.taps) as f64;
                    let (iw, ww, pr, ow, bytes) = match tiling.order {
                        Order::Os => {
                            let o_out = if n.last { o } else { 0.0 };
                            (i, w, 0.0, o_out, (i + w + o_out) * wb)
                        }
                        Order::Ir => {
                            let i_in = if m.first { i } else { 0.0 };
                            let o_out = if n.last { o } else { 0.0 };
                            (i_in, w, 0.0, o_out, (i_in + w + o_out) * wb)
                        }
                        Order::Wr => {
                            let w_in = if sp_first { w } else { 0.0 };
                            let p_in = if n.first { 0.0 } else { o };
                            let out_b = if n.last { wb } else { ab };
                            (i, w_in, p_in, o, (i + w_in) * wb + o * out_b + p_in * ab)
                        }
                    };
                    let transfer = bytes / bw;
                    latency += count * compute.max(transfer);
                    c.compute_cycles += count * compute;
                    c.transfer_cycles += count * transfer;
                    c.input_words += count * iw;
                    c.weight_words += count * ww;
                    c.partial_read_words += count * pr;
                    c.output_write_words += count * ow;
                    c.dram_bytes += count * bytes;
                    c.steps += (count as u64) * d.batch;
                }
            }
        }
    }
    let b = d.batch as f64;
    for v in [
        &mut c.compute_cycles,
        &mut c.transfer_cycles,
        &mut c.input_words,
        &mut c.weight_words,
        &mut c.partial_read_words,
        &mut c.output_write_words,
        &mut c.dram_bytes,
    ] {
        *v *= b;
    }
    // Before the first step its tiles must arrive; after the last its outputs leave.
    let (tr, tc) = (tiling.tr.min(d.rows), tiling.tc.min(d.cols));
    let (tm, tn) = (e.tm.min(d.m), e.tn.min(d.n));
    let first_load = (tn * l.patch(tr, tc) + tm * tn * d.taps) as f64 * wb;
    let last_store = (mb[nm - 1].size * rb[nr - 1].size * cb[nc - 1].size) as f64 * wb;
    c.latency_cycles = b * latency + (first_load + last_store) / bw;
    Some(c)
}

/// Candidate tile sizes for a dim of `total`: each distinct block count once
/// (the smallest tile giving it), so ⌈total/t⌉ tiles waste the least.
fn tile_sizes(total: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut b = 1;
    loop {
        let t = total.div_ceil(b).max(1);
        v.push(t);
        if t == 1 {
            return v;
        }
        // The fewest blocks that give a tile smaller than t.
        b = total.div_ceil(t - 1);
    }
}

/// The tiling with the least latency (then the least DRAM traffic), how many were
/// scored, or why none fits.
pub fn best_tiling(
    l: &Layer,
    e: &Tiled,
    p: &Precision,
    bw: f64,
) -> Result<(Tiling, TileCost, usize), (&'static str, String)> {
    let d = &l.dims;
    if d.taps > e.weight_buffer_depth {
        return Err((
            "engine.weight_buffer_depth",
            format!(
                "a filter has {} taps per lane, the weight buffer holds {}",
                d.taps, e.weight_buffer_depth
            ),
        ));
    }
    let mut best: Option<(Tiling, TileCost)> = None;
    let mut scored = 0;
    for order in Order::ALL {
        for &tr in &tile_sizes(d.rows) {
            for &tc in &tile_sizes(d.cols) {
                let t = Tiling { order, tr, tc };
                let Some(c) = tile_cost(l, e, p, bw, &t) else {
                    continue;
                };
                scored += 1;
                let better = match &best {
                    None => true,
                    Some((_, b)) => {
                        (c.latency_cycles, c.dram_bytes) < (b.latency_cycles, b.dram_bytes)
                    }
                };
                if better {
                    best = Some((t, c));
                }
            }
        }
    }
    best.map(|(t, c)| (t, c, scored)).ok_or_else(|| {
        (
            "engine.input_buffer_depth",
            format!(
                "even a 1x1 output tile needs {} input words per lane (the buffer holds {})",
                l.patch(1, 1),
                e.input_buffer_depth
            ),
        )
    })
}

/// The engine's resources: Tm·Tn MAC lanes, the three double-buffered tile buffers
/// in BRAM with real aspect ratios, the vector unit, control.
pub fn engine_resources(f: &Fpga, e: &Tiled) -> Resources {
    let p = &f.precision;
    let bits = p.bits as u64;
    let bram = 2.0
        * (e.tn as f64 * bram36_blocks(bits, e.input_buffer_depth)
            + e.tm as f64 * bram36_blocks(e.tn * bits, e.weight_buffer_depth)
            + e.tm as f64 * bram36_blocks(p.acc_bits as u64, e.output_buffer_depth));
    let c = &f.common;
    let mut r = p.mac_lanes(e.tm * e.tn);
    r.bram36 = bram;
    r.lut += c.lut_base + c.vector_lanes as f64 * c.lut_per_vector_lane;
    r.ff += c.ff_base + c.vector_lanes as f64 * c.ff_per_vector_lane;
    r
}

fn shape_key(e: &Einsum) -> Einsum {
    Einsum {
        name: String::new(),
        ..e.clone()
    }
}

/// DRAM access rows for the report (words of the engine's precision; spills count
/// accumulator words).
fn accesses(c: &TileCost) -> Vec<Access> {
    let row = |op: &str, reads: f64, updates: f64| Access {
        level: "DRAM".into(),
        operand: op.into(),
        reads: reads as u64,
        fills: 0,
        updates: updates as u64,
    };
    vec![
        row("I", c.input_words, 0.0),
        row("W", c.weight_words, 0.0),
        row("O", c.partial_read_words, c.output_write_words),
    ]
}

/// A VectorOp on the vector unit: its bytes (rescaled from the network's dtype to the
/// engine's precision) go through DRAM.
fn vector_row(f: &Fpga, v: &VectorOp, scale: f64, layer: &str, bw: f64) -> LayerCost {
    let lanes = f.common.vector_lanes;
    let compute = (v.ops() as f64 / lanes as f64).ceil();
    let bytes = (v.bytes_read + v.bytes_written) as f64 * scale;
    let transfer = bytes / bw;
    let latency = compute.max(transfer);
    LayerCost {
        layer: layer.to_string(),
        kernel: v.name.clone(),
        kind: "vector",
        precision: "",
        mapping: format!("vector[{lanes}] @DRAM"),
        macs: 0,
        padded_macs: 0,
        compute_cycles: compute,
        latency_cycles: latency,
        energy_pj: v.ops() as f64 * f.common.vector_pj_per_op
            + bytes * f.common.dram_pj_per_byte
            + f.device.static_pj(latency),
        utilization: 0.0,
        bound: if transfer > compute {
            "DRAM"
        } else {
            "compute"
        }
        .into(),
        accesses: vec![],
    }
}

/// Every layer on the shared engine, one after another; every activation goes
/// through DRAM (the buffers hold tiles, not tensors).
pub fn evaluate(graph: &Graph, f: &Fpga, e: &Tiled) -> Result<NetworkCost, FpgaError> {
    let used = engine_resources(f, e);
    check_fit(&used, f, &format!("the {}x{} tiled engine", e.tm, e.tn))?;
    let work = lower::lower(graph)?;
    let p = &f.precision;
    let bw = f.device.dram_bytes_per_cycle();
    let scale = p.bytes() / graph.dtype.bytes() as f64;
    let mut cache: HashMap<Einsum, (Tiling, TileCost)> = HashMap::new();
    let mut scored = 0;
    let mut layers = Vec::new();
    let (mut mac_pj, mut dram_pj, mut vec_pj, mut static_pj) = (0.0, 0.0, 0.0, 0.0);
    let mut round_trips = 0;
    for w in &work {
        let node = graph.node(w.node);
        if matches!(node.op, crate::workload::Op::Input { .. }) {
            continue;
        }
        if graph.g.neighbors(w.node).next().is_some() {
            round_trips += 1;
        }
        for k in &w.kernels {
            match k {
                Kernel::Einsum(ein) => {
                    let key = shape_key(ein);
                    let (t, c) = match cache.get(&key) {
                        Some(hit) => *hit,
                        None => {
                            let prob = Problem::from_einsum(ein)?;
                            let layer = Layer::new(&prob);
                            let (t, c, n) = best_tiling(&layer, e, p, bw).map_err(|(key, m)| {
                                FpgaError::Key {
                                    path: f.path.clone(),
                                    key: key.to_string(),
                                    message: format!("{}: {m}", ein.name),
                                }
                            })?;
                            scored += n;
                            cache.insert(key, (t, c));
                            (t, c)
                        }
                    };
                    let macs = ein.macs();
                    let (em, ed, es) = (
                        macs as f64 * p.mac_energy_pj,
                        c.dram_bytes * f.common.dram_pj_per_byte,
                        f.device.static_pj(c.latency_cycles),
                    );
                    (mac_pj, dram_pj, static_pj) = (mac_pj + em, dram_pj + ed, static_pj + es);
                    let lanes = (e.tm * e.tn) as f64;
                    layers.push(LayerCost {
                        layer: node.name.clone(),
                        kernel: ein.name.clone(),
                        kind: "einsum",
                        precision: f.precision.static_name(),
                        mapping: format!(
                            "{}x{} tile {}x{} {}",
                            e.tm,
                            e.tn,
                            t.tr,
                            t.tc,
                            t.order.name()
                        ),
                        macs,
                        padded_macs: (c.compute_cycles * lanes) as u64,
                        compute_cycles: c.compute_cycles,
                        latency_cycles: c.latency_cycles,
                        energy_pj: em + ed + es,
                        utilization: macs as f64 / (c.latency_cycles * lanes),
                        bound: if c.transfer_cycles > c.compute_cycles {
                            "DRAM"
                        } else {
                            "compute"
                        }
                        .into(),
                        accesses: accesses(&c),
                    });
                }
                Kernel::Vector(v) => {
                    let row = vector_row(f, v, scale, &node.name, bw);
                    let s = f.device.static_pj(row.latency_cycles);
                    let dram =
                        (v.bytes_read + v.bytes_written) as f64 * scale * f.common.dram_pj_per_byte;
                    vec_pj += row.energy_pj - s - dram;
                    dram_pj += dram;
                    static_pj += s;
                    layers.push(row);
                }
            }
        }
    }
    let latency: f64 = layers.iter().map(|l| l.latency_cycles).sum();
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    Ok(NetworkCost {
        network: graph.name.clone(),
        accelerator: f.name.clone(),
        objective: Objective::Latency,
        total: Totals {
            latency_cycles: latency,
            latency_s: latency * f.device.cycle_s(),
            energy_pj: layers.iter().map(|l| l.energy_pj).sum(),
            area_mm2: 0.0,
            macs,
            utilization: if latency > 0.0 {
                macs as f64 / (latency * (e.tm * e.tn) as f64)
            } else {
                0.0
            },
            dram_round_trips: round_trips,
            mappings_evaluated: scored,
            resources: resource_rows(&used, f),
        },
        energy_by_level_pj: vec![
            ("MAC".into(), mac_pj),
            ("DRAM".into(), dram_pj),
            ("vector".into(), vec_pj),
            ("static".into(), static_pj),
        ],
        area_by_component_um2: vec![],
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_sizes_cover_every_block_count() {
        assert_eq!(tile_sizes(7), vec![7, 4, 3, 2, 1]);
        assert_eq!(tile_sizes(1), vec![1]);
        for total in 1..200u64 {
            let v = tile_sizes(total);
            let counts: std::collections::BTreeSet<u64> =
                v.iter().map(|t| total.div_ceil(*t)).collect();
            let all: std::collections::BTreeSet<u64> =
                (1..=total).map(|t| total.div_ceil(t)).collect();
            assert_eq!(counts, all, "total {total}");
        }
    }

    #[test]
    fn blocks_classes_sum_to_total() {
        for (total, t) in [(10, 3), (9, 3), (2, 5), (7, 1), (8, 4)] {
            let (b, n) = blocks(total, t);
            let sum: u64 = b[..n].iter().map(|x| x.count * x.size).sum();
            let count: u64 = b[..n].iter().map(|x| x.count).sum();
            assert_eq!(sum, total);
            assert_eq!(count, total.div_ceil(t));
            assert!(b[0].first && b[n - 1].last);
        }
    }
}
