//! The GPU model: GEMM-like Einsums as a library would tile them, in waves of CTAs.
//!
//! For each CTA tile `tm × tn × tk` the model takes: tiles = batch · ⌈M/tm⌉ · ⌈N/tn⌉;
//! CTAs per SM from shared memory; waves = ⌈tiles / (SMs · CTAs per SM)⌉, so a GEMM
//! one tile past a full wave pays a whole extra wave (wave quantization). A wave runs
//! at the SM's peak for the dtype (tensor or CUDA cores) × the pipe's efficiency ×
//! occupancy (resident output elements / `saturating_tile_elems`, at most 1). Memory
//! time is the larger of DRAM and L2 traffic over their bandwidths × efficiency; L2
//! traffic re-reads A once per column of tiles and B once per row; DRAM traffic is the
//! unique bytes when A and B fit in L2, else each wave's band of A rows and B columns
//! (a wave's CTAs share them through L2, as rasterized GEMMs do). Latency =
//! max(compute, memory) + launch overhead, minimized over the tile set. VectorOps are
//! bandwidth bound; with `fuse_elementwise`, element-wise ones ride in their producer.

use super::{Access, CostError, LayerCost, NetworkCost, NetworkOptions};
use crate::arch::gpu::{Gpu, OpClass, Pipe};
use crate::lower::{self, Einsum, Kernel, VectorKind, VectorOp};
use crate::map::Problem;
use crate::workload::op::Attention;
use crate::workload::{DType, Graph, Op};
use serde::Serialize;

/// One GEMM's estimate under one CTA tile.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GemmEstimate {
    pub tile: [u32; 3],
    pub split_k: u64,
    pub tiles: u64,
    pub ctas_per_sm: u32,
    pub waves: u64,
    pub pipe: Pipe,
    pub compute_s: f64,
    pub memory_s: f64,
    pub latency_s: f64,
    pub dram_bytes: f64,
    pub l2_bytes: f64,
    pub padded_macs: u64,
}

/// CTAs of tile `t` one SM can hold, limited by shared memory and the hardware cap.
pub fn ctas_per_sm(g: &Gpu, t: [u32; 3], bytes: f64) -> u32 {
    let smem = g.device.smem_kib_per_sm * 1024.0;
    let per_cta = g.model.pipeline_stages as f64 * (t[0] + t[1]) as f64 * t[2] as f64 * bytes;
    ((smem / per_cta).floor() as u32).clamp(1, g.device.max_ctas_per_sm)
}

/// `batch` independent `m × n × k` GEMMs in `dtype` under CTA tile `t`, no split-K.
pub fn gemm_with_tile(
    g: &Gpu,
    dtype: DType,
    batch: u64,
    m: u64,
    n: u64,
    k: u64,
    t: [u32; 3],
) -> Option<GemmEstimate> {
    gemm_split(g, dtype, batch, m, n, k, t, 1, Layout::dense(dtype, n, k))
}

/// How a GEMM's operands sit in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The unique elements behind A when A is an implicit view of a smaller tensor (a
    /// conv's im2col matrix gathers overlapping windows of its input: DRAM reads the
    /// input once, not the `batch·m·k` im2col volume; L2 still serves every CTA's
    /// gathered band). `None`: A is a stored `batch·m·k` matrix.
    pub a_elems: Option<u64>,
    /// Rows start on 16-byte boundaries, as tensor-core kernels need for their vector
    /// loads (NVIDIA's Matrix Multiplication guide: fp16 dims a multiple of 8). When
    /// not, tensor-core rate × `model.unaligned_tensor_efficiency` (a slower kernel on
    /// TMA devices) instead of `tensor_efficiency`.
    pub aligned: bool,
    /// A convolution (its efficiency × `model.conv_efficiency`).
    pub conv: bool,
}

impl Layout {
    /// A stored row-major `m×k` · `k×n` product: aligned when `k` and `n` (the row
    /// lengths of A, B and C) fill whole 16-byte words.
    pub fn dense(dtype: DType, n: u64, k: u64) -> Layout {
        Layout {
            a_elems: None,
            aligned: aligned16(dtype, n) && aligned16(dtype, k),
            conv: false,
        }
    }
}

/// Whether `elems` elements of `dtype` are a whole number of 16-byte words.
fn aligned16(dtype: DType, elems: u64) -> bool {
    (elems * dtype.bytes()).is_multiple_of(16)
}

/// As `gemm_with_tile`, with the reduction split over `split` CTAs per output tile
/// (split-K, what libraries do when the output has too few tiles to fill the GPU):
/// each CTA reduces ⌈K/split⌉, and the fp32 partial outputs make one extra round trip.
/// `layout` says how A is stored and whether tensor cores can load the operands.
#[allow(clippy::too_many_arguments)]
pub fn gemm_split(
    g: &Gpu,
    dtype: DType,
    batch: u64,
    m: u64,
    n: u64,
    k_total: u64,
    t: [u32; 3],
    split: u64,
    layout: Layout,
) -> Option<GemmEstimate> {
    let a_elems = layout.a_elems;
    let (peak, pipe) = g.peak(dtype)?;
    let bytes = dtype.bytes() as f64;
    let (tm, tn, tk) = (t[0] as u64, t[1] as u64, t[2] as u64);
    let k = k_total.div_ceil(split);
    let tiles = batch * m.div_ceil(tm) * n.div_ceil(tn) * split;
    let ctas = ctas_per_sm(g, t, bytes) as u64;
    let slots = g.device.sms as u64 * ctas;
    let waves = tiles.div_ceil(slots);
    // Per SM per wave: `ctas` tiles of tm·tn·⌈k/tk⌉·tk MACs.
    let k_padded = k.div_ceil(tk) * tk;
    let per_sm_macs = (ctas * tm * tn * k_padded) as f64;
    let occupancy = ((ctas * tm * tn) as f64 / g.model.saturating_tile_elems).min(1.0);
    let efficiency = match pipe {
        Pipe::Tensor if !layout.aligned && layout.conv => g.unaligned_conv_efficiency(),
        Pipe::Tensor if !layout.aligned => g.unaligned_efficiency(),
        p => g.efficiency(p),
    } * if layout.conv {
        g.model.conv_efficiency
    } else {
        1.0
    };
    let rate = peak * efficiency * occupancy;
    let compute_s = waves as f64 * per_sm_macs / rate * g.cycle_s();
    let (a, b, c) = (
        (m * k_total) as f64 * bytes,
        (k_total * n) as f64 * bytes,
        (m * n) as f64 * bytes,
    );
    let (a, b) = (a * batch as f64, b * batch as f64);
    // Split-K writes and re-reads fp32 partials of every split but one.
    let c = c * batch as f64 + (split - 1) as f64 * (m * n * batch) as f64 * 4.0 * 2.0;
    // Every CTA streams its band of A (tm × K) and of B (K × tn) from L2, except that
    // the `cluster_multicast` CTAs of a cluster share one operand's loads (Hopper TMA
    // multicast); the library lays the cluster along whichever grid axis saves more.
    let (a_reads, b_reads) = (a * n.div_ceil(tn) as f64, b * m.div_ceil(tm) as f64);
    let cl = g.model.cluster_multicast.max(1) as f64;
    let l2_bytes = (a_reads / cl + b_reads).min(a_reads + b_reads / cl) + c;
    let a = a_elems.map(|e| (e as f64 * bytes).min(a)).unwrap_or(a);
    let unique = a + b + c;
    let l2_capacity = g.device.l2_mib * 1024.0 * 1024.0;
    let dram_bytes = if a + b <= l2_capacity {
        unique
    } else {
        // Concurrent CTAs share A rows and B columns through L2: a wave covers a
        // near-square block of wm × wn tiles and reads its band of A and B once.
        let (grid_m, grid_n) = (m.div_ceil(tm), n.div_ceil(tn));
        let wm = grid_m.min((slots as f64).sqrt().ceil() as u64).max(1);
        let wn = grid_n.min(slots.div_ceil(wm)).max(1);
        let per_wave = ((wm * tm).min(m) + (wn * tn).min(n)) as f64 * k as f64 * bytes;
        let waves = waves.div_ceil(split).max(1);
        (waves as f64 * per_wave + c).clamp(unique, l2_bytes.max(unique))
    };
    let memory_s = (dram_bytes / (g.device.dram_gb_s * 1e9 * g.model.dram_efficiency))
        .max(l2_bytes / (g.device.l2_gb_s * 1e9 * g.model.l2_efficiency));
    let latency_s = compute_s.max(memory_s) + g.device.launch_overhead_us * 1e-6;
    Some(GemmEstimate {
        tile: t,
        split_k: split,
        tiles,
        ctas_per_sm: ctas as u32,
        waves,
        pipe,
        compute_s,
        memory_s,
        latency_s,
        dram_bytes,
        l2_bytes,
        padded_macs: waves * slots * tm * tn * k_padded,
    })
}

/// The fastest tile and split-K of the device's set (what a tuned library would pick):
/// `model.cta_tiles`, or `model.tensor_conv_tiles` for a tensor-core conv.
/// Splits are powers of two up to `model.max_split_k`, only while the output alone
/// leaves SMs idle.
pub fn gemm(g: &Gpu, dtype: DType, batch: u64, m: u64, n: u64, k: u64) -> Option<GemmEstimate> {
    gemm_laid_out(g, dtype, batch, m, n, k, Layout::dense(dtype, n, k))
}

/// As `gemm`, with the operands' `layout` given.
pub fn gemm_laid_out(
    g: &Gpu,
    dtype: DType,
    batch: u64,
    m: u64,
    n: u64,
    k: u64,
    layout: Layout,
) -> Option<GemmEstimate> {
    let mut best: Option<GemmEstimate> = None;
    let tiles = match (&g.model.tensor_conv_tiles, g.peak(dtype)) {
        (Some(t), Some((_, Pipe::Tensor))) if layout.conv => t,
        _ => &g.model.cta_tiles,
    };
    for &t in tiles {
        let out_tiles = batch * m.div_ceil(t[0] as u64) * n.div_ceil(t[1] as u64);
        let mut split = 1;
        while split <= g.model.max_split_k as u64
            && (split == 1 || out_tiles * split / 2 < g.device.sms as u64)
            && split <= k.div_ceil(t[2] as u64)
        {
            if let Some(e) = gemm_split(g, dtype, batch, m, n, k, t, split, layout) {
                if best.map(|b| e.latency_s < b.latency_s).unwrap_or(true) {
                    best = Some(e);
                }
            }
            split *= 2;
        }
    }
    best
}

/// A GEMM run as a streaming kernel with no output tiles (cuBLAS's GEMV for skinny
/// products, min(M, N) ≤ 32; cuDNN's direct depthwise conv, N = 1): CUDA cores at
/// the dtype's rate (fp32's when the device lists none for it) with no tile padding,
/// each operand read once from DRAM: latency = max(MACs ÷ (CUDA peak × efficiency),
/// (|A| + |B| + |C|) ÷ (DRAM bandwidth × efficiency)) + one launch. `None` for
/// products that are not skinny.
pub fn streaming(
    g: &Gpu,
    dtype: DType,
    batch: u64,
    m: u64,
    n: u64,
    k: u64,
    layout: Layout,
) -> Option<GemmEstimate> {
    if m.min(n) > 32 {
        return None;
    }
    let rate = g
        .device
        .cuda_macs_per_sm_cycle
        .get(dtype.name())
        .or_else(|| g.device.cuda_macs_per_sm_cycle.get("fp32"))?;
    let macs = batch * m * n * k;
    let bytes = dtype.bytes() as f64;
    let a = layout.a_elems.unwrap_or(batch * m * k) as f64;
    let dram_bytes = (a + (batch * k * n) as f64 + (batch * m * n) as f64) * bytes;
    // Whole cycles: every SM issues `rate` MACs a cycle at best.
    let issue_cycles = (macs as f64 / (rate * g.device.sms as f64)).ceil();
    let compute_s = issue_cycles / g.model.cuda_efficiency * g.cycle_s();
    let memory_s = dram_bytes / (g.device.dram_gb_s * 1e9 * g.model.dram_efficiency);
    Some(GemmEstimate {
        tile: [0, 0, 0],
        split_k: 1,
        tiles: 1,
        ctas_per_sm: 1,
        waves: 1,
        pipe: Pipe::Cuda,
        compute_s,
        memory_s,
        latency_s: compute_s.max(memory_s) + g.device.launch_overhead_us * 1e-6,
        dram_bytes,
        l2_bytes: dram_bytes,
        padded_macs: macs,
    })
}

/// A 2-D convolution read from an Einsum's dims and projections (the lowering of a
/// conv: dims `N G K C P Q R S`, input row = P·stride + R·dilation − pad).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: u64,
    pub groups: u64,
    pub k: u64,
    pub c: u64,
    pub p: u64,
    pub q: u64,
    pub r: u64,
    pub s: u64,
    pub stride: [i64; 2],
    pub dilation: [i64; 2],
}

impl ConvShape {
    /// One input channel per group and several groups (channel multiplier k ≥ 1).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.c == 1
    }
}

/// The conv shape of `e`, or `None` when `e` is not a convolution. A 1-D conv
/// (dims `N G K C P R`) is the 2-D conv with Q = S = 1.
pub fn conv_shape(e: &Einsum) -> Option<ConvShape> {
    let names: Vec<&str> = e.dims.iter().map(|d| d.name).collect();
    let coef = |axis: usize, dim: usize| {
        e.input.proj[axis]
            .terms
            .iter()
            .find(|t| t.0 == dim)
            .map(|t| t.1)
    };
    let b = |i: usize| e.dims[i].bound as u64;
    // The R dim's index, and Q, S, stride and dilation along W (a 1-D conv: Q = S = 1).
    let (r_dim, q, s, w_stride, w_dilation) = match (&names[..], e.input.proj.len()) {
        (["N", "G", "K", "C", "P", "R"], 3) => (5, 1, 1, 1, 1),
        (["N", "G", "K", "C", "P", "Q", "R", "S"], 4) => {
            (6, b(5), b(7), coef(3, 5)?, coef(3, 7).unwrap_or(1))
        }
        _ => return None,
    };
    Some(ConvShape {
        n: b(0),
        groups: b(1),
        k: b(2),
        c: b(3),
        p: b(4),
        q,
        r: b(r_dim),
        s,
        stride: [coef(2, 4)?, w_stride],
        dilation: [coef(2, r_dim).unwrap_or(1), w_dilation],
    })
}

/// Winograd convolution as cuDNN's non-fused algorithm runs it (Lavin & Gray, CVPR
/// 2016): F(m×m, r×r) turns the conv into α² = (m + r − 1)² independent GEMMs of
/// [tiles × C] × [C × K], tiles = N·⌈P/m⌉·⌈Q/m⌉, costed as any batched GEMM
/// (`gemm`); three transform kernels (input, filter, output) stream through DRAM:
/// they read the input, filter and transformed output and write the transformed
/// input, filter and the output. Transform arithmetic is not counted (it is
/// bandwidth bound). Candidates: F(4×4, 3×3), F(2×2, 3×3), F(2×2, 5×5); only for
/// stride 1, dilation 1, one group, and a dtype on CUDA cores (tensor-core convs run
/// as implicit GEMM). Returns the fastest candidate and its m.
pub fn winograd(g: &Gpu, dtype: DType, cs: &ConvShape) -> Option<(GemmEstimate, u64)> {
    let plain = cs.stride == [1, 1] && cs.dilation == [1, 1] && cs.groups == 1;
    let candidates: &[u64] = match (cs.r, cs.s) {
        (3, 3) if plain => &[4, 2],
        (5, 5) if plain => &[2],
        _ => &[],
    };
    let bytes = dtype.bytes() as f64;
    let mut best: Option<(GemmEstimate, u64)> = None;
    for &m in candidates {
        let alpha2 = (m + cs.r - 1).pow(2);
        let tiles = cs.n * cs.p.div_ceil(m) * cs.q.div_ceil(m);
        let layout = Layout {
            conv: true,
            ..Layout::dense(dtype, cs.k, cs.c)
        };
        let mut est = gemm_laid_out(g, dtype, alpha2, tiles, cs.k, cs.c, layout)?;
        if est.pipe != Pipe::Cuda {
            return None;
        }
        let input = cs.n * cs.c * (cs.p + cs.r - 1) * (cs.q + cs.s - 1);
        let moved = input
            + alpha2 * tiles * cs.c
            + cs.k * cs.c * cs.r * cs.s
            + alpha2 * cs.k * cs.c
            + alpha2 * tiles * cs.k
            + cs.n * cs.k * cs.p * cs.q;
        let transform_bytes = moved as f64 * bytes;
        let transform_s = transform_bytes / (g.device.dram_gb_s * 1e9 * g.model.dram_efficiency)
            + 3.0 * g.device.launch_overhead_us * 1e-6;
        est.memory_s += transform_s;
        est.latency_s += transform_s;
        est.dram_bytes += transform_bytes;
        est.l2_bytes += transform_bytes;
        if best.map(|b| est.latency_s < b.0.latency_s).unwrap_or(true) {
            best = Some((est, m));
        }
    }
    best
}

/// A VectorOp: DRAM-bandwidth bound or CUDA-core bound, plus a launch; fused
/// element-wise ops cost only their arithmetic.
pub fn vector(g: &Gpu, v: &VectorOp) -> (f64, f64, bool) {
    let lanes = g
        .device
        .cuda_macs_per_sm_cycle
        .values()
        .cloned()
        .fold(0.0, f64::max)
        * g.device.sms as f64;
    let compute_s = v.ops() as f64 / (lanes * g.model.cuda_efficiency) * g.cycle_s();
    let fused = g.model.fuse_elementwise && v.kind == VectorKind::Elementwise;
    if fused {
        return (compute_s, 0.0, true);
    }
    let bytes = (v.bytes_read + v.bytes_written) as f64;
    let memory_s = bytes / (g.device.dram_gb_s * 1e9 * g.vector_dram_efficiency());
    (
        compute_s.max(memory_s) + g.device.launch_overhead_us * 1e-6,
        bytes,
        false,
    )
}

/// Energy of one kernel by where it goes: DRAM, L2, compute (MACs or vector ops) and
/// static power over its latency, pJ (the order of `ENERGY_PARTS`).
type Parts = [f64; 4];

const ENERGY_PARTS: [&str; 4] = ["DRAM", "L2", "compute", "static"];

/// The kernel a library would run for an Einsum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Tiled GEMM (implicit GEMM for convs).
    Tiled,
    /// Winograd F(m×m, r×r) (`winograd`).
    Winograd(u64),
    /// GEMV-like streaming kernel (`streaming`).
    Streaming,
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Algorithm::Tiled => Ok(()),
            Algorithm::Winograd(m) => write!(f, "winograd F({m}x{m}) "),
            Algorithm::Streaming => write!(f, "streaming (gemv/direct)"),
        }
    }
}

/// The (N, K) GEMM view of a tensor-core conv whose channels are not whole 16-byte
/// words: conv libraries pad C and K up to the next whole word (8 fp16 channels) and
/// run their tensor-core kernel on the padded tensors (from cuDNN 7.3 on, NCHW fp16
/// tensor-op convs with C or K not a multiple of 8 are padded internally; NVIDIA,
/// "Tensor Core DL Performance Guide", GTC 2019 S9926). So a C = 1 conv does the work
/// of a C = 8 one: N = ⌈K⌉₈, K = ⌈C⌉₈·R·S (fp16). DeepBench's V100 fp16 convs agree:
/// their time per padded MAC is the same at C = 1 and C = 3.
pub fn channel_padded(dtype: DType, cs: &ConvShape) -> (u64, u64) {
    let word = (16 / dtype.bytes()).max(1);
    let pad = |x: u64| x.div_ceil(word) * word;
    (pad(cs.k), pad(cs.c) * cs.r * cs.s)
}

/// The fastest of the kernels a library has for `e` (cuBLAS heuristics, cuDNN with
/// `benchmark` on): tiled GEMM always; Winograd for eligible convs when
/// `model.winograd`; the streaming kernel for skinny products. Returns the estimate,
/// the algorithm and the MACs it executes (Winograd: its transformed GEMMs').
pub fn fastest_algorithm(g: &Gpu, e: &Einsum) -> Result<(GemmEstimate, Algorithm, u64), CostError> {
    let p = Problem::from_einsum(e)?;
    let (b, m, n, k) = super::gemm_view(&p);
    let conv = conv_shape(e);
    let layout = match conv {
        // A conv's A operand is its input read through im2col windows; tensor-core
        // kernels need whole 16-byte words of input and output channels.
        Some(cs) => Layout {
            a_elems: Some(e.input.elements()),
            aligned: aligned16(e.dtype, cs.c) && aligned16(e.dtype, cs.k),
            conv: true,
        },
        None => Layout::dense(e.dtype, n, k),
    };
    let tensor = g.peak(e.dtype).map(|p| p.1) == Some(Pipe::Tensor);
    // The padding and the ban on streaming are the dense-conv rules (cuDNN's
    // tensor-op implicit GEMM); grouped convs keep their per-group shapes.
    let dense = |cs: &ConvShape| cs.groups == 1;
    let (n_tiled, k_tiled) = match conv {
        Some(cs) if !layout.aligned && dense(&cs) && tensor => channel_padded(e.dtype, &cs),
        _ => (n, k),
    };
    let mut best = gemm_laid_out(g, e.dtype, b, m, n_tiled, k_tiled, layout)
        .map(|est| (est, Algorithm::Tiled, e.macs()))
        .ok_or_else(|| {
            CostError::Unsupported(format!(
                "{}: device '{}' has no {} throughput (device.tensor_macs_per_sm_cycle / cuda_macs_per_sm_cycle)",
                g.path.display(),
                g.name,
                e.dtype
            ))
        })?;
    if let Some((w, mm)) = conv
        .filter(|_| g.model.winograd)
        .and_then(|cs| winograd(g, e.dtype, &cs).map(|(w, mm)| (w, mm, cs)))
        .map(|(w, mm, cs)| {
            let a2 = (mm + cs.r - 1).pow(2);
            (
                w,
                (
                    mm,
                    a2 * cs.n * cs.p.div_ceil(mm) * cs.q.div_ceil(mm) * cs.k * cs.c,
                ),
            )
        })
    {
        if w.latency_s < best.0.latency_s {
            best = (w, Algorithm::Winograd(mm.0), mm.1);
        }
    }
    // A dense conv with few filters on tensor cores runs as tiled implicit GEMM,
    // however narrow (DeepBench's V100 fp16 K = 16 and 32 convs:
    // IMPLICIT_PRECOMP_GEMM). On CUDA cores cuDNN has narrow-filter kernels that
    // waste no tile, which the streaming estimate (no tile padding) stands for;
    // depthwise and other grouped convs may stream.
    let streams = conv.is_none_or(|cs| !dense(&cs) || !tensor);
    if let Some(st) = streaming(g, e.dtype, b, m, n, k, layout).filter(|_| streams) {
        if st.latency_s < best.0.latency_s {
            best = (st, Algorithm::Streaming, e.macs());
        }
    }
    Ok(best)
}

/// The host-dispatch class of an Einsum (`arch::gpu::OpClass`): convs with more
/// than one channel per group are cuDNN calls; depthwise convs are `Other`; every
/// other Einsum is a GEMM.
pub fn op_class(e: &Einsum) -> OpClass {
    match conv_shape(e) {
        Some(cs) if cs.is_depthwise() => OpClass::Other,
        Some(_) => OpClass::Conv,
        None => OpClass::Gemm,
    }
}

fn einsum_row(g: &Gpu, layer: &str, e: &Einsum) -> Result<(LayerCost, Parts), CostError> {
    let (mut est, algorithm, executed_macs) = fastest_algorithm(g, e)?;
    let floor_s = g.dispatch_floor_s(op_class(e));
    est.latency_s = est.latency_s.max(floor_s);
    let cycles = est.latency_s / g.cycle_s();
    let (peak, _) = g.peak(e.dtype).unwrap_or((1.0, Pipe::Cuda));
    let mac_pj = g
        .model
        .mac_energy_pj
        .get(e.dtype.name())
        .copied()
        .unwrap_or(0.0);
    let parts: Parts = [
        est.dram_bytes * g.model.dram_energy_pj_per_byte,
        est.l2_bytes * g.model.l2_energy_pj_per_byte,
        est.padded_macs as f64 * mac_pj,
        g.model.static_power_w * est.latency_s * 1e12,
    ];
    let energy: f64 = parts.iter().sum();
    let word = e.dtype.bytes() as f64;
    let bound = if est.latency_s <= floor_s {
        "dispatch"
    } else if est.compute_s >= est.memory_s {
        "compute"
    } else if est.dram_bytes / g.device.dram_gb_s >= est.l2_bytes / g.device.l2_gb_s {
        "DRAM"
    } else {
        "L2"
    };
    let row = LayerCost {
        layer: layer.to_string(),
        kernel: e.name.clone(),
        kind: "einsum",
        precision: e.dtype.name(),
        mapping: match algorithm {
            Algorithm::Streaming => format!("{algorithm} {:?}", est.pipe),
            _ => format!(
                "{algorithm}cta {}x{}x{} split-k {} {:?}, {} tiles, {} waves of {}x{}",
                est.tile[0],
                est.tile[1],
                est.tile[2],
                est.split_k,
                est.pipe,
                est.tiles,
                est.waves,
                g.device.sms,
                est.ctas_per_sm
            ),
        },
        macs: e.macs(),
        padded_macs: est.padded_macs,
        compute_cycles: est.compute_s / g.cycle_s(),
        latency_cycles: cycles,
        energy_pj: energy,
        // Arithmetic the kernel executes (Winograd: the transformed GEMMs') over peak.
        utilization: executed_macs as f64 / (cycles * peak * g.device.sms as f64),
        bound: bound.into(),
        accesses: vec![
            Access {
                level: "DRAM".into(),
                operand: "IWO".into(),
                reads: (est.dram_bytes / word) as u64,
                fills: 0,
                updates: 0,
            },
            Access {
                level: "L2".into(),
                operand: "IWO".into(),
                reads: (est.l2_bytes / word) as u64,
                fills: 0,
                updates: 0,
            },
        ],
    };
    Ok((row, parts))
}

fn vector_row(g: &Gpu, layer: &str, v: &VectorOp) -> (LayerCost, Parts) {
    let (latency_s, dram_bytes, fused) = vector(g, v);
    let latency_s = if fused {
        latency_s
    } else {
        latency_s.max(g.dispatch_floor_s(OpClass::Vector))
    };
    let parts: Parts = [
        dram_bytes * g.model.dram_energy_pj_per_byte,
        0.0,
        v.ops() as f64 * g.model.vector_energy_pj_per_op,
        g.model.static_power_w * latency_s * 1e12,
    ];
    let energy: f64 = parts.iter().sum();
    let row = LayerCost {
        layer: layer.to_string(),
        kernel: v.name.clone(),
        kind: "vector",
        precision: "",
        mapping: if fused {
            "fused into producer".into()
        } else {
            "elementwise kernel".into()
        },
        macs: 0,
        padded_macs: 0,
        compute_cycles: latency_s / g.cycle_s(),
        latency_cycles: latency_s / g.cycle_s(),
        energy_pj: energy,
        utilization: 0.0,
        bound: if fused {
            "compute".into()
        } else {
            "DRAM".into()
        },
        accesses: vec![],
    };
    (row, parts)
}

/// Fraction of the dense score rectangle a causal fused kernel computes: query row `p`
/// (of `sq`, the last `sq` of `keys` positions) attends to `keys − sq + p + 1` keys, so
/// the computed pairs are `sq·keys − sq·(sq−1)/2` of `sq·keys`. 1 when not causal.
pub fn causal_fraction(a: &Attention, sq: u64, keys: u64) -> f64 {
    if !a.causal || sq == 0 || keys == 0 {
        return 1.0;
    }
    let sq = sq.min(keys) as f64;
    let keys = keys as f64;
    (sq * keys - sq * (sq - 1.0) / 2.0) / (sq * keys)
}

/// Attention as one fused kernel (FlashAttention, Dao et al. 2022; FlashAttention-3,
/// Shah et al. 2024): the score and context products run on tensor cores back to back
/// per query tile, the softmax in registers, and only Q, K, V (cache included) and O
/// touch DRAM.
///
/// compute = max((t_scores + t_context) × f_causal, t_softmax), where t_scores and
/// t_context are the tile/wave model's compute times of the two lowered GEMMs and
/// t_softmax their vector ops on CUDA cores; f_causal = `causal_fraction` (masked
/// blocks are skipped). memory = (|Q| + |K| + |V| + |O|) ÷ (DRAM bandwidth ×
/// efficiency); latency = max(compute, memory) + one launch, floored by the dispatch
/// overhead in eager mode. `None` when the kernels are not the lowering's
/// scores/softmax/context triple.
fn fused_attention_row(
    g: &Gpu,
    layer: &str,
    a: &Attention,
    kernels: &[Kernel],
) -> Result<Option<(LayerCost, Parts)>, CostError> {
    let [Kernel::Einsum(s), Kernel::Vector(sm), Kernel::Einsum(c)] = kernels else {
        return Ok(None);
    };
    let mut compute_s = 0.0;
    let mut l2_bytes = 0.0;
    let mut padded_macs = 0u64;
    for e in [s, c] {
        let p = Problem::from_einsum(e)?;
        let (b, m, n, k) = super::gemm_view(&p);
        let est = gemm(g, e.dtype, b, m, n, k).ok_or_else(|| {
            CostError::Unsupported(format!(
                "{}: device '{}' has no {} throughput (device.tensor_macs_per_sm_cycle / cuda_macs_per_sm_cycle)",
                g.path.display(),
                g.name,
                e.dtype
            ))
        })?;
        compute_s += est.compute_s;
        l2_bytes += est.l2_bytes;
        padded_macs += est.padded_macs;
    }
    // Q and K of the score product; V of the context product, and O (= Q's size).
    let word = s.dtype.bytes() as f64;
    let q = s.input.elements() as f64;
    let k = s.weight.elements() as f64;
    let v = c.weight.elements() as f64;
    let dram_bytes = (2.0 * q + k + v) * word;
    let keys = s.dims.iter().find(|d| d.name == "K").map_or(1, |d| d.bound) as u64;
    let sq = s.dims.iter().find(|d| d.name == "P").map_or(1, |d| d.bound) as u64;
    let frac = causal_fraction(a, sq, keys);
    // The softmax arithmetic on CUDA cores, overlapped with the tensor-core products.
    let lanes = g
        .device
        .cuda_macs_per_sm_cycle
        .values()
        .cloned()
        .fold(0.0, f64::max)
        * g.device.sms as f64;
    let softmax_s = sm.ops() as f64 / (lanes * g.model.cuda_efficiency) * g.cycle_s() * frac;
    let tensor_s = compute_s * frac;
    let compute_s = tensor_s.max(softmax_s);
    let memory_s = dram_bytes / (g.device.dram_gb_s * 1e9 * g.model.dram_efficiency);
    let floor_s = g.dispatch_floor_s(OpClass::Attention);
    let latency_s = (compute_s.max(memory_s) + g.device.launch_overhead_us * 1e-6).max(floor_s);
    let macs = s.macs() + c.macs();
    let padded_macs = (padded_macs as f64 * frac) as u64;
    let mac_pj = g
        .model
        .mac_energy_pj
        .get(s.dtype.name())
        .copied()
        .unwrap_or(0.0);
    let parts: Parts = [
        dram_bytes * g.model.dram_energy_pj_per_byte,
        l2_bytes * frac * g.model.l2_energy_pj_per_byte,
        padded_macs as f64 * mac_pj + sm.ops() as f64 * frac * g.model.vector_energy_pj_per_op,
        g.model.static_power_w * latency_s * 1e12,
    ];
    let cycles = latency_s / g.cycle_s();
    let (peak, _) = g.peak(s.dtype).unwrap_or((1.0, Pipe::Cuda));
    let bound = if latency_s <= floor_s {
        "dispatch"
    } else if compute_s >= memory_s {
        "compute"
    } else {
        "DRAM"
    };
    let row = LayerCost {
        layer: layer.to_string(),
        kernel: format!("{layer}.fused"),
        kind: "einsum",
        precision: s.dtype.name(),
        mapping: format!(
            "fused attention (scores + softmax + context in one kernel){}",
            if a.causal {
                format!(", causal: {:.0}% of the score blocks", frac * 100.0)
            } else {
                String::new()
            }
        ),
        macs,
        padded_macs,
        compute_cycles: compute_s / g.cycle_s(),
        latency_cycles: cycles,
        energy_pj: parts.iter().sum(),
        // The MACs the kernel computes (masked blocks skipped) over the peak's.
        utilization: macs as f64 * frac / (cycles * peak * g.device.sms as f64),
        bound: bound.into(),
        accesses: vec![
            Access {
                level: "DRAM".into(),
                operand: "IWO".into(),
                reads: (dram_bytes / word) as u64,
                fills: 0,
                updates: 0,
            },
            Access {
                level: "L2".into(),
                operand: "IWO".into(),
                reads: (l2_bytes * frac / word) as u64,
                fills: 0,
                updates: 0,
            },
        ],
    };
    Ok(Some((row, parts)))
}

/// Every kernel of `graph`, launched in order on one GPU.
pub fn evaluate_network(
    graph: &Graph,
    g: &Gpu,
    opts: &NetworkOptions,
) -> Result<NetworkCost, CostError> {
    let work = lower::lower(graph)?;
    evaluate_lowered(graph, &work, g, opts)
}

/// As `evaluate_network`, on work already lowered from `graph` (calibration lowers
/// each measured op once and re-costs it under many parameter sets).
pub fn evaluate_lowered(
    graph: &Graph,
    work: &[lower::LayerWork],
    g: &Gpu,
    opts: &NetworkOptions,
) -> Result<NetworkCost, CostError> {
    let mut layers = Vec::new();
    let mut by_part: Parts = [0.0; 4];
    for w in work {
        let node = graph.node(w.node);
        let name = &node.name;
        if let (true, Op::Attention(a)) = (g.model.fused_attention, &node.op) {
            if let Some((row, parts)) = fused_attention_row(g, name, a, &w.kernels)? {
                for (sum, p) in by_part.iter_mut().zip(parts) {
                    *sum += p;
                }
                layers.push(row);
                continue;
            }
        }
        for k in &w.kernels {
            let (row, parts) = match k {
                Kernel::Einsum(e) => einsum_row(g, name, e)?,
                Kernel::Vector(v) => vector_row(g, name, v),
            };
            for (sum, p) in by_part.iter_mut().zip(parts) {
                *sum += p;
            }
            layers.push(row);
        }
    }
    let latency: f64 = layers.iter().map(|l| l.latency_cycles).sum();
    let macs: u64 = layers.iter().map(|l| l.macs).sum();
    let peak = g.peak(graph.dtype).map(|(r, _)| r).unwrap_or(1.0) * g.device.sms as f64;
    Ok(NetworkCost {
        network: graph.name.clone(),
        accelerator: g.name.clone(),
        objective: opts.objective,
        total: super::network::Totals {
            latency_cycles: latency,
            latency_s: latency * g.cycle_s(),
            energy_pj: layers.iter().map(|l| l.energy_pj).sum(),
            area_mm2: g.device.die_mm2,
            macs,
            utilization: if latency > 0.0 {
                macs as f64 / (latency * peak)
            } else {
                0.0
            },
            dram_round_trips: 0,
            mappings_evaluated: 0,
            resources: vec![],
        },
        energy_by_level_pj: ENERGY_PARTS
            .iter()
            .map(|p| p.to_string())
            .zip(by_part)
            .collect(),
        area_by_component_um2: vec![("die".into(), g.device.die_mm2 * 1e6)],
        layers,
    })
}
