//! GPU device files (`accelerators/gpu/*.toml`): datasheet throughput, memory system
//! and the named efficiency factors of the tile/wave model in `cost::gpu`.
//!
//! ```toml
//! [accelerator]
//! name = "a100_sxm4_80gb"
//! kind = "gpu"
//! [device]                      # datasheet values
//! sms = 108
//! clock_mhz = 1410
//! tensor_macs_per_sm_cycle = { fp16 = 1024, bf16 = 1024, int8 = 2048 }
//! cuda_macs_per_sm_cycle = { fp32 = 64, fp16 = 128 }
//! dram_gb_s = 2039
//! ...
//! [model]                       # every efficiency factor of the model, for calibration
//! tensor_efficiency = 0.85
//! ```

use super::{apply_override, ArchError};
use crate::workload::DType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    accelerator: RawAccel,
    device: Device,
    model: Model,
    #[serde(default)]
    space: toml::Table,
}

use super::Header as RawAccel;

/// Datasheet facts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub sms: u32,
    /// Boost clock the throughput figures assume.
    pub clock_mhz: f64,
    /// Dense tensor-core multiply-accumulates per SM per cycle, by dtype.
    #[serde(default)]
    pub tensor_macs_per_sm_cycle: BTreeMap<String, f64>,
    /// CUDA-core (FMA) multiply-accumulates per SM per cycle, by dtype.
    pub cuda_macs_per_sm_cycle: BTreeMap<String, f64>,
    pub dram_gb_s: f64,
    pub l2_mib: f64,
    pub l2_gb_s: f64,
    pub smem_kib_per_sm: f64,
    pub max_ctas_per_sm: u32,
    pub launch_overhead_us: f64,
    #[serde(default)]
    pub die_mm2: f64,
    #[serde(default)]
    pub tdp_w: f64,
}

/// The model's coefficients: all named so that calibration can fit them.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Fraction of tensor-core peak a saturated main loop sustains.
    pub tensor_efficiency: f64,
    /// Fraction of tensor-core peak reached when operand rows are not whole 16-byte
    /// words (e.g. fp16 N = 50,257, or a C = 3 conv input). Hopper's tensor-core
    /// GEMMs load tiles through TMA, whose global strides must be multiples of 16
    /// bytes (CUDA programming guide, tensor memory access), so libraries fall back to
    /// older kernels: the H100/H200 templates give 0.1, a prior from the H200's
    /// N = 50,257 fp16 GEMMs (~95 TFLOP/s of ~990); calibrate it per device. Absent:
    /// no penalty (`tensor_efficiency`), as on the V100, where DeepBench's N = 7,133
    /// fp16 GEMMs run at ~78% of peak.
    #[serde(default)]
    pub unaligned_tensor_efficiency: Option<f64>,
    /// As `unaligned_tensor_efficiency`, for convolutions whose channels (C or K per
    /// group) are not whole 16-byte words, where a conv library's rule differs from
    /// its GEMM library's: cuDNN 7 runs tensor-op convs only when C and K are
    /// multiples of 8 in fp16 (cuDNN 7 developer guide, Tensor Core operations) and
    /// otherwise falls back to a CUDA-core kernel, while cuBLAS runs unaligned GEMMs
    /// on tensor cores. The V100 file's prior, 0.2, is the CUDA cores' fp16 rate over
    /// the tensor cores' (128/512) × the CUDA-core efficiency; calibrate it. Absent:
    /// `unaligned_tensor_efficiency`.
    #[serde(default)]
    pub unaligned_conv_efficiency: Option<f64>,
    /// Fraction of CUDA-core peak a saturated main loop sustains.
    pub cuda_efficiency: f64,
    /// Fraction of DRAM / L2 bandwidth streaming kernels attain.
    pub dram_efficiency: f64,
    pub l2_efficiency: f64,
    /// Fraction of DRAM bandwidth VectorOps attain (element-wise, softmax,
    /// layernorm, pooling: one pass, no operand reuse, often short kernels), where it
    /// differs from the GEMM operand streams' `dram_efficiency`. Absent: that value.
    #[serde(default)]
    pub vector_dram_efficiency: Option<f64>,
    /// Output elements (tile_m × tile_n) resident on one SM needed to saturate it;
    /// fewer (small tiles, few CTAs) leave the SM's pipes partly idle.
    pub saturating_tile_elems: f64,
    /// Shared-memory buffers per operand tile (software pipelining depth).
    pub pipeline_stages: u32,
    /// CTA tiles the GEMM library chooses among: `[tile_m, tile_n, tile_k]`.
    pub cta_tiles: Vec<[u32; 3]>,
    /// CTA tiles of the conv library's tensor-core kernels, `[tile_m, tile_n,
    /// tile_k]` with M = output pixels and N = output channels, where they differ
    /// from the GEMM library's. cuDNN 7's Volta tensor-op convs are named by tile
    /// (`volta_fp16_s884cudnn_fp16_256x128_…`, `128x128`, `256x64`, `128x64` in
    /// profiler traces): none is narrower than 64 output channels, so a K = 32 conv
    /// leaves half of each tile idle. Absent: `cta_tiles`.
    #[serde(default)]
    pub tensor_conv_tiles: Option<Vec<[u32; 3]>>,
    /// Largest split of the reduction over CTAs (split-K) the library uses.
    pub max_split_k: u32,
    /// fp32 GEMMs run on tensor cores as TF32 (Ampere and later, when enabled).
    #[serde(default)]
    pub tf32: bool,
    /// Element-wise VectorOps fuse into their producer: no launch, no extra DRAM trip.
    #[serde(default)]
    pub fuse_elementwise: bool,
    /// Attention runs as one fused kernel (FlashAttention-style: scores and
    /// probabilities stay on chip; DRAM traffic = Q, K, V, O once; one launch).
    /// `false` costs the lowered score GEMM, softmax and context GEMM as three kernels.
    #[serde(default = "yes")]
    pub fused_attention: bool,
    /// Convolution algorithm choice as cuDNN makes it (`cudnn.benchmark` or its
    /// heuristics): a 3×3 or 5×5, stride-1, undilated, ungrouped conv on CUDA cores
    /// (fp32 without TF32) runs as Winograd when that is faster than implicit GEMM
    /// (cost::gpu::winograd). `false`: implicit GEMM always.
    #[serde(default = "yes")]
    pub winograd: bool,
    /// Multiplies the pipe's efficiency for convolutions run as tiled kernels
    /// (implicit GEMM, Winograd's GEMMs): their im2col address generation and layout
    /// handling sustain less than a plain GEMM's main loop. Default 1 (no penalty);
    /// `coex calibrate` fits it.
    #[serde(default = "unit")]
    pub conv_efficiency: f64,
    /// CTAs of a thread-block cluster that share one operand's tile loads from L2
    /// (Hopper TMA multicast: 2; 1 = no clusters, every CTA loads its own bands).
    #[serde(default = "one")]
    pub cluster_multicast: u32,
    /// How kernels are issued: `eager` (one host dispatch per op, as eager PyTorch:
    /// each kernel takes at least `dispatch_overhead_us`) or `graph` (CUDA graph /
    /// compiled: kernels back to back, no host floor).
    #[serde(default)]
    pub mode: Mode,
    /// Host time to dispatch one op in eager mode, µs: the floor of a kernel's latency,
    /// latency = max(kernel time, dispatch_overhead_us). Separate from the device's
    /// launch latency (`device.launch_overhead_us`), which every kernel pays.
    #[serde(default)]
    pub dispatch_overhead_us: f64,
    /// Host time per op of one class in eager mode, µs, where it differs from
    /// `dispatch_overhead_us` (absent: that value). A framework's per-op host path
    /// depends on the op: a GEMM goes through cuBLAS/cuBLASLt heuristics; a cuDNN
    /// convolution sets up descriptors and, under `cudnn.benchmark`, looks up its
    /// algorithm cache; fused attention (`scaled_dot_product_attention`) picks a
    /// backend first; an element-wise op launches a native kernel directly. On the
    /// H200 with PyTorch 2.11 the floor-bound rows of `h200_kernels_train.csv` sit at
    /// medians of ~7 µs (element-wise), ~10–12 µs (depthwise convs, fp16 GEMMs),
    /// ~15 µs (convs) and ~18 µs (attention). Classes (`OpClass`): GEMMs,
    /// batched GEMMs and other non-conv Einsums; convs with more than one channel
    /// per group; fused attention; vector ops. Depthwise convs, which PyTorch mostly
    /// runs with its own kernels, keep `dispatch_overhead_us`. `coex calibrate` fits
    /// them (`gemm_dispatch_overhead_us`, ...).
    #[serde(default)]
    pub gemm_dispatch_overhead_us: Option<f64>,
    #[serde(default)]
    pub conv_dispatch_overhead_us: Option<f64>,
    #[serde(default)]
    pub attention_dispatch_overhead_us: Option<f64>,
    #[serde(default)]
    pub vector_dispatch_overhead_us: Option<f64>,
    /// Power drawn regardless of work while a kernel runs, W.
    pub static_power_w: f64,
    /// Dynamic energy per MAC by dtype, pJ.
    pub mac_energy_pj: BTreeMap<String, f64>,
    pub dram_energy_pj_per_byte: f64,
    pub l2_energy_pj_per_byte: f64,
    pub vector_energy_pj_per_op: f64,
}

fn yes() -> bool {
    true
}

fn unit() -> f64 {
    1.0
}

fn one() -> u32 {
    1
}

/// How a framework issues kernels (`model.mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One host dispatch per op (eager PyTorch): a per-kernel latency floor.
    Eager,
    /// CUDA graphs or a compiled program: no host floor.
    #[default]
    Graph,
}

/// What a framework dispatches, for the per-class host floors of eager mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// GEMMs, batched GEMMs and other non-conv Einsums (cuBLAS / cuBLASLt).
    Gemm,
    /// Convolutions with more than one channel per group (cuDNN).
    Conv,
    /// Fused attention (one `scaled_dot_product_attention` call).
    Attention,
    /// Element-wise, reduction and normalization ops.
    Vector,
    /// Anything else (depthwise convs): `dispatch_overhead_us`.
    Other,
}

#[derive(Clone, Debug, Serialize)]
pub struct Gpu {
    pub name: String,
    pub about: String,
    pub sources: Vec<String>,
    pub path: PathBuf,
    pub device: Device,
    pub model: Model,
    pub space: Vec<super::SpaceParam>,
}

/// Where a GEMM's multiply-accumulates run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Pipe {
    Tensor,
    Cuda,
}

impl Gpu {
    pub fn cycle_s(&self) -> f64 {
        1e-6 / self.device.clock_mhz
    }

    fn dtype_key(dtype: DType, tf32: bool) -> &'static str {
        match dtype {
            DType::Fp32 if tf32 => "tf32",
            d => d.name(),
        }
    }

    /// Peak MACs per SM per cycle for `dtype`, and the pipe that delivers them:
    /// tensor cores when the device has them for that dtype, else CUDA cores.
    pub fn peak(&self, dtype: DType) -> Option<(f64, Pipe)> {
        let key = Self::dtype_key(dtype, self.model.tf32);
        if let Some(&r) = self.device.tensor_macs_per_sm_cycle.get(key) {
            return Some((r, Pipe::Tensor));
        }
        let key = if key == "tf32" { "fp32" } else { key };
        self.device
            .cuda_macs_per_sm_cycle
            .get(key)
            .map(|&r| (r, Pipe::Cuda))
    }

    /// DRAM efficiency of VectorOps: `model.vector_dram_efficiency`, else
    /// `model.dram_efficiency`.
    pub fn vector_dram_efficiency(&self) -> f64 {
        self.model
            .vector_dram_efficiency
            .unwrap_or(self.model.dram_efficiency)
    }

    /// The host floor a kernel of `class` cannot go below, s: its class's dispatch
    /// overhead in eager mode, 0 under CUDA graphs.
    pub fn dispatch_floor_s(&self, class: OpClass) -> f64 {
        match self.model.mode {
            Mode::Eager => self.dispatch_overhead_us(class) * 1e-6,
            Mode::Graph => 0.0,
        }
    }

    /// The eager-mode host time of one op of `class`, µs: its class's key
    /// (`gemm_dispatch_overhead_us`, ...) or else `dispatch_overhead_us`.
    pub fn dispatch_overhead_us(&self, class: OpClass) -> f64 {
        let m = &self.model;
        match class {
            OpClass::Gemm => m.gemm_dispatch_overhead_us,
            OpClass::Conv => m.conv_dispatch_overhead_us,
            OpClass::Attention => m.attention_dispatch_overhead_us,
            OpClass::Vector => m.vector_dispatch_overhead_us,
            OpClass::Other => None,
        }
        .unwrap_or(m.dispatch_overhead_us)
    }

    /// Tensor-core efficiency of a convolution whose channels are not 16-byte
    /// aligned (`unaligned_conv_efficiency`, else `unaligned_efficiency`).
    pub fn unaligned_conv_efficiency(&self) -> f64 {
        self.model
            .unaligned_conv_efficiency
            .unwrap_or_else(|| self.unaligned_efficiency())
    }

    /// Tensor-core efficiency when operand rows are not 16-byte aligned.
    pub fn unaligned_efficiency(&self) -> f64 {
        self.model
            .unaligned_tensor_efficiency
            .unwrap_or(self.model.tensor_efficiency)
    }

    pub fn efficiency(&self, pipe: Pipe) -> f64 {
        match pipe {
            Pipe::Tensor => self.model.tensor_efficiency,
            Pipe::Cuda => self.model.cuda_efficiency,
        }
    }

    /// Datasheet peak throughput in TFLOP/s (2 FLOPs per MAC) for `dtype`.
    pub fn peak_tflops(&self, dtype: DType) -> f64 {
        let per_sm = self.peak(dtype).map(|(r, _)| r).unwrap_or(0.0);
        2.0 * per_sm * self.device.sms as f64 * self.device.clock_mhz * 1e6 / 1e12
    }
}

/// The largest CTA tile dimension a GPU file may give.
pub const MAX_TILE_DIM: u32 = 4096;

pub fn load_str(text: &str, path: &Path, overrides: &[(String, String)]) -> Result<Gpu, ArchError> {
    let parse_err = |message: String| ArchError::Parse {
        path: path.to_path_buf(),
        message,
    };
    toml::from_str::<RawFile>(text).map_err(|e| parse_err(e.to_string()))?;
    let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    for (key, value) in overrides {
        let v = crate::workload::params::parse_literal(value)
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        apply_override(&mut table, key, v).map_err(|message| ArchError::Key {
            path: path.to_path_buf(),
            key: key.clone(),
            message,
        })?;
    }
    let raw: RawFile = table
        .try_into()
        .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
    let key_err = |key: &str, message: String| ArchError::Key {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let d = &raw.device;
    for (key, v) in [
        ("device.clock_mhz", d.clock_mhz),
        ("device.dram_gb_s", d.dram_gb_s),
        ("device.l2_gb_s", d.l2_gb_s),
        ("device.smem_kib_per_sm", d.smem_kib_per_sm),
        ("device.sms", d.sms as f64),
        ("device.max_ctas_per_sm", d.max_ctas_per_sm as f64),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(key_err(key, format!("must be > 0, got {v}")));
        }
    }
    let m = &raw.model;
    for (key, v) in [
        ("model.tensor_efficiency", m.tensor_efficiency),
        ("model.cuda_efficiency", m.cuda_efficiency),
        ("model.dram_efficiency", m.dram_efficiency),
        (
            "model.vector_dram_efficiency",
            m.vector_dram_efficiency.unwrap_or(m.dram_efficiency),
        ),
        ("model.l2_efficiency", m.l2_efficiency),
        ("model.conv_efficiency", m.conv_efficiency),
        (
            "model.unaligned_tensor_efficiency",
            m.unaligned_tensor_efficiency.unwrap_or(m.tensor_efficiency),
        ),
        (
            "model.unaligned_conv_efficiency",
            m.unaligned_conv_efficiency
                .or(m.unaligned_tensor_efficiency)
                .unwrap_or(m.tensor_efficiency),
        ),
    ] {
        if !(v > 0.0 && v <= 1.0) {
            return Err(key_err(key, format!("an efficiency is in (0, 1], got {v}")));
        }
    }
    // Non-negative quantities: energies, powers, overheads, sizes, throughputs by dtype.
    let mut nonneg: Vec<(String, f64)> = vec![
        ("device.l2_mib".into(), d.l2_mib),
        ("device.launch_overhead_us".into(), d.launch_overhead_us),
        ("model.dispatch_overhead_us".into(), m.dispatch_overhead_us),
        (
            "model.gemm_dispatch_overhead_us".into(),
            m.gemm_dispatch_overhead_us.unwrap_or(0.0),
        ),
        (
            "model.conv_dispatch_overhead_us".into(),
            m.conv_dispatch_overhead_us.unwrap_or(0.0),
        ),
        (
            "model.attention_dispatch_overhead_us".into(),
            m.attention_dispatch_overhead_us.unwrap_or(0.0),
        ),
        (
            "model.vector_dispatch_overhead_us".into(),
            m.vector_dispatch_overhead_us.unwrap_or(0.0),
        ),
        ("device.die_mm2".into(), d.die_mm2),
        ("device.tdp_w".into(), d.tdp_w),
        (
            "model.saturating_tile_elems".into(),
            m.saturating_tile_elems,
        ),
        ("model.static_power_w".into(), m.static_power_w),
        (
            "model.dram_energy_pj_per_byte".into(),
            m.dram_energy_pj_per_byte,
        ),
        (
            "model.l2_energy_pj_per_byte".into(),
            m.l2_energy_pj_per_byte,
        ),
        (
            "model.vector_energy_pj_per_op".into(),
            m.vector_energy_pj_per_op,
        ),
    ];
    for (table, map) in [
        ("model.mac_energy_pj", &m.mac_energy_pj),
        (
            "device.tensor_macs_per_sm_cycle",
            &d.tensor_macs_per_sm_cycle,
        ),
        ("device.cuda_macs_per_sm_cycle", &d.cuda_macs_per_sm_cycle),
    ] {
        nonneg.extend(map.iter().map(|(k, v)| (format!("{table}.{k}"), *v)));
    }
    for (key, v) in nonneg {
        if !(v.is_finite() && v >= 0.0) {
            return Err(key_err(&key, format!("must be ≥ 0 and finite, got {v}")));
        }
    }
    for (table, map) in [
        (
            "device.tensor_macs_per_sm_cycle",
            &d.tensor_macs_per_sm_cycle,
        ),
        ("device.cuda_macs_per_sm_cycle", &d.cuda_macs_per_sm_cycle),
    ] {
        if let Some((k, _)) = map.iter().find(|(_, v)| **v == 0.0) {
            return Err(key_err(
                &format!("{table}.{k}"),
                "a throughput must be > 0; drop the entry if the unit lacks the dtype".into(),
            ));
        }
    }
    if m.cluster_multicast == 0 {
        return Err(key_err(
            "model.cluster_multicast",
            "CTAs per cluster must be ≥ 1 (1 = no clusters)".into(),
        ));
    }
    if m.pipeline_stages == 0 || m.max_split_k == 0 {
        return Err(key_err(
            "model.pipeline_stages",
            format!(
                "pipeline_stages and max_split_k must be ≥ 1, got {} and {}",
                m.pipeline_stages, m.max_split_k
            ),
        ));
    }
    let tile_sets = [
        ("model.cta_tiles", Some(&m.cta_tiles)),
        ("model.tensor_conv_tiles", m.tensor_conv_tiles.as_ref()),
    ];
    for (key, tiles) in tile_sets {
        // Library tiles are at most a few hundred wide (CUTLASS, cuBLAS: ≤ 256); the
        // cap keeps tile products far from u64 overflow.
        let bad = |t: &[u32; 3]| t.iter().any(|&d| d == 0 || d > MAX_TILE_DIM);
        if tiles.is_some_and(|t| t.is_empty() || t.iter().any(bad)) {
            return Err(key_err(
                key,
                format!("give at least one [tile_m, tile_n, tile_k], each 1 to {MAX_TILE_DIM}"),
            ));
        }
    }
    let space = raw
        .space
        .iter()
        .map(|(k, v)| super::SpaceParam {
            key: k.clone(),
            domain: super::Domain::List(v.as_array().cloned().unwrap_or_default()),
        })
        .collect();
    Ok(Gpu {
        name: raw.accelerator.name,
        about: raw.accelerator.about,
        sources: raw.accelerator.sources,
        path: path.to_path_buf(),
        device: raw.device,
        model: raw.model,
        space,
    })
}
