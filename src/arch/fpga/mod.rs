//! FPGA accelerator files: a device (its datasheet resources, clock and off-chip
//! bandwidth), an engine built on it (a shared tiled MAC array or a layer-pipelined
//! dataflow), and the per-precision coefficients that turn MACs into DSPs, LUTs, FFs
//! and picojoules. Every coefficient is a key in the file, so `--set` overrides it and
//! `[space]` sweeps it, exactly as for ASIC templates.
//!
//! Memories are counted in physical blocks with the aspect ratios the silicon offers
//! (UG473 for 7-series, UG573 for UltraScale+): a BRAM36 is 36 Kb as 32K×1 … 1K×36 or
//! 512×72, splittable into two BRAM18 (16K×1 … 512×36); an UltraRAM is 288 Kb as 4K×72
//! only. A buffer of `banks` independent ports, each `width` bits by `depth` words,
//! needs `banks × blocks(width, depth)` of them.

mod file;

pub use file::load_str;

use super::SpaceParam;
use serde::Serialize;
use std::path::PathBuf;

/// Resource amounts in the units a utilization report uses (BRAM in BRAM36 tiles;
/// half a tile is one BRAM18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    pub dsp: f64,
    pub bram36: f64,
    pub uram: f64,
    pub lut: f64,
    pub ff: f64,
}

impl Resources {
    /// Names as reports and errors print them, in `as_array` order.
    pub const NAMES: [&'static str; 5] = ["DSP", "BRAM36", "URAM", "LUT", "FF"];

    pub fn as_array(&self) -> [f64; 5] {
        [self.dsp, self.bram36, self.uram, self.lut, self.ff]
    }

    pub fn from_array(a: [f64; 5]) -> Self {
        Resources {
            dsp: a[0],
            bram36: a[1],
            uram: a[2],
            lut: a[3],
            ff: a[4],
        }
    }

    pub fn add(&self, o: &Resources) -> Resources {
        let (a, b) = (self.as_array(), o.as_array());
        Resources::from_array(std::array::from_fn(|i| a[i] + b[i]))
    }

    pub fn scale(&self, k: f64) -> Resources {
        Resources::from_array(self.as_array().map(|v| v * k))
    }

    /// Every amount at most the other's.
    pub fn fits_in(&self, budget: &Resources) -> bool {
        self.as_array()
            .iter()
            .zip(budget.as_array())
            .all(|(u, b)| *u <= b + 1e-9)
    }
}

/// BRAM36 tiles for one `width_bits × depth` port, choosing the cheapest aspect ratio
/// (BRAM18 halves count 0.5). Widths and depths beyond one block tile: ⌈w/W⌉·⌈d/D⌉.
pub fn bram36_blocks(width_bits: u64, depth: u64) -> f64 {
    if width_bits == 0 || depth == 0 {
        return 0.0;
    }
    // (depth, width) per block: BRAM18 (UG473 table 1-7 / UG573 table 1-2) then BRAM36.
    const B18: [(u64, u64); 6] = [
        (16384, 1),
        (8192, 2),
        (4096, 4),
        (2048, 9),
        (1024, 18),
        (512, 36),
    ];
    const B36: [(u64, u64); 7] = [
        (32768, 1),
        (16384, 2),
        (8192, 4),
        (4096, 9),
        (2048, 18),
        (1024, 36),
        (512, 72),
    ];
    let tiles = |d: u64, w: u64| (width_bits.div_ceil(w) * depth.div_ceil(d)) as f64;
    let half = B18.iter().map(|&(d, w)| 0.5 * tiles(d, w));
    let full = B36.iter().map(|&(d, w)| tiles(d, w));
    half.chain(full).fold(f64::INFINITY, f64::min)
}

/// UltraRAM blocks for one `width_bits × depth` port: 4K×72 is the only shape.
pub fn uram_blocks(width_bits: u64, depth: u64) -> f64 {
    if width_bits == 0 || depth == 0 {
        return 0.0;
    }
    (width_bits.div_ceil(72) * depth.div_ceil(4096)) as f64
}

/// The chip and board: datasheet resources, the clock the engine closes timing at,
/// off-chip DRAM, static power.
#[derive(Clone, Debug, Serialize)]
pub struct Device {
    pub part: String,
    pub resources: Resources,
    pub clock_mhz: f64,
    /// Peak DRAM bandwidth, GB/s (10⁹ bytes).
    pub offchip_gbps: f64,
    /// Fraction of the peak an engine's DMA sustains.
    pub offchip_efficiency: f64,
    pub static_power_w: f64,
}

impl Device {
    pub fn cycle_s(&self) -> f64 {
        1e-6 / self.clock_mhz
    }

    /// Sustained DRAM bytes per engine clock cycle.
    pub fn dram_bytes_per_cycle(&self) -> f64 {
        self.offchip_gbps * self.offchip_efficiency * 1e3 / self.clock_mhz
    }

    /// Static energy over `cycles`, pJ (W × s = J = 10¹² pJ).
    pub fn static_pj(&self, cycles: f64) -> f64 {
        self.static_power_w * cycles * self.cycle_s() * 1e12
    }
}

/// What one multiply-accumulate costs at one precision on this device's DSP slices.
#[derive(Clone, Debug, Serialize)]
pub struct Precision {
    pub name: String,
    /// Operand (activation and weight) width.
    pub bits: u32,
    /// Accumulator width: partial sums kept on chip or spilled.
    pub acc_bits: u32,
    pub macs_per_dsp: f64,
    pub lut_per_mac: f64,
    pub ff_per_mac: f64,
    pub mac_energy_pj: f64,
}

impl Precision {
    /// The precision's name as a static string for reports (`int8`, `fp16`, ...): an
    /// FPGA engine is built for one precision and runs every Einsum at it.
    pub fn static_name(&self) -> &'static str {
        crate::workload::DType::parse(&self.name)
            .map(|d| d.name())
            .unwrap_or("custom")
    }

    pub fn bytes(&self) -> f64 {
        self.bits as f64 / 8.0
    }

    /// Resources of `macs` parallel MAC lanes.
    pub fn mac_lanes(&self, macs: u64) -> Resources {
        Resources {
            dsp: (macs as f64 / self.macs_per_dsp).ceil(),
            lut: macs as f64 * self.lut_per_mac,
            ff: macs as f64 * self.ff_per_mac,
            ..Resources::default()
        }
    }
}

/// Keys both engine styles share.
#[derive(Clone, Debug, Serialize)]
pub struct Common {
    /// Lanes of the unit that runs VectorOps (activations, pooling, adds, norms).
    pub vector_lanes: u64,
    pub lut_per_vector_lane: f64,
    pub ff_per_vector_lane: f64,
    /// Control, DMA and interconnect logic outside the MAC lanes.
    pub lut_base: f64,
    pub ff_base: f64,
    /// Fraction of every device resource a design may use (routing headroom).
    pub max_utilization: f64,
    pub dram_pj_per_byte: f64,
    pub vector_pj_per_op: f64,
}

impl Common {
    /// The device resources a design may use.
    pub fn budget(&self, d: &Device) -> Resources {
        d.resources.scale(self.max_utilization)
    }
}

/// Zhang et al. (FPGA'15): one Tm×Tn MAC array (Tm output channels × Tn input
/// channels), double-buffered input, weight and output tiles; the loop tiling is
/// chosen per layer within the buffer depths.
#[derive(Clone, Debug, Serialize)]
pub struct Tiled {
    pub tm: u64,
    pub tn: u64,
    /// Words per input bank (Tn banks, one operand wide): one channel's input patch.
    pub input_buffer_depth: u64,
    /// Words per weight bank (Tm banks, Tn operands wide): the R·S taps of a tile.
    pub weight_buffer_depth: u64,
    /// Words per output bank (Tm banks, one accumulator wide): the Tr·Tc outputs.
    pub output_buffer_depth: u64,
}

/// How the dataflow engine picks each stage's PE × SIMD folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Folding {
    /// Integer program: minimize the slowest stage under the resource budget.
    Ilp,
    /// Repeatedly speed up the slowest stage while the design fits.
    Greedy,
}

/// Where a dataflow stage keeps its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMemory {
    /// The folding chooses BRAM or URAM per stage.
    Auto,
    Bram,
    Uram,
}

/// FINN-style layer pipeline: one stage per Einsum, each with its own PE × SIMD
/// folding and its weights on chip.
#[derive(Clone, Debug, Serialize)]
pub struct Dataflow {
    pub folding: Folding,
    pub weight_memory: WeightMemory,
    /// Control and stream plumbing of one stage.
    pub lut_per_stage: f64,
    pub ff_per_stage: f64,
    /// Wall-clock cap on the integer program, seconds; the greedy folding is its
    /// starting point, so a capped solve is never worse than greedy.
    pub ilp_time_limit_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub enum Engine {
    Tiled(Tiled),
    Dataflow(Dataflow),
}

impl Engine {
    pub fn style(&self) -> &'static str {
        match self {
            Engine::Tiled(_) => "tiled",
            Engine::Dataflow(_) => "dataflow",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Fpga {
    pub name: String,
    pub about: String,
    pub sources: Vec<String>,
    pub path: PathBuf,
    pub device: Device,
    pub common: Common,
    pub engine: Engine,
    /// The precision the engine computes in (`engine.precision`): the network is run
    /// quantized to it, whatever its own dtype.
    pub precision: Precision,
    pub space: Vec<SpaceParam>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bram_aspect_ratios() {
        // 36 bits × 1024: one BRAM36 as 1K×36 (or two BRAM18 as 1K×18 each).
        assert_eq!(bram36_blocks(36, 1024), 1.0);
        // 16 bits × 1024: one BRAM18 as 1K×18.
        assert_eq!(bram36_blocks(16, 1024), 0.5);
        // 72 bits × 512: one BRAM36 in its 512×72 simple-dual-port shape.
        assert_eq!(bram36_blocks(72, 512), 1.0);
        // 8 bits × 100: still half a tile; a block is never shared by two ports.
        assert_eq!(bram36_blocks(8, 100), 0.5);
        // 8 bits × 4096: 4K×9 BRAM36 (one), not 4 × 1K×18 halves.
        assert_eq!(bram36_blocks(8, 4096), 1.0);
        // 256 bits × 64: 8 × (512×36 halves) = 4 tiles; 4 × 512×72 = 4 tiles.
        assert_eq!(bram36_blocks(256, 64), 4.0);
        assert_eq!(uram_blocks(72, 4096), 1.0);
        assert_eq!(uram_blocks(73, 4097), 4.0);
    }
}
