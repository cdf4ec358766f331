//! Accelerator templates: TOML files in `accelerators/` describing the memory
//! hierarchy, the compute array and its dataflow, and the technology costs.
//!
//! A template is data. Every number a model uses is a key in the file (or in the
//! technology table it names), so `--set key=value` can override it, `[space]` can
//! sweep it, and calibration can fit it.

mod file;
pub mod fpga;
pub mod gpu;
mod tech;

pub mod timeloop;
pub use file::{apply_override, dtype_bits, load, load_str};
pub use tech::Tech;

use crate::workload::DType;
use serde::Serialize;
use std::path::PathBuf;

/// Operand roles in the order used by every per-operand array: input, weight, output.
pub const OPERANDS: [&str; 3] = ["I", "W", "O"];

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key '{key}': {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Asic,
    Fpga,
    Gpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelKind {
    Dram,
    Sram,
    Regfile,
}

/// SCALE-Sim's systolic dataflows. A template with one has a systolic array:
/// operands enter skewed, so every fold pays a fill and drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataflow {
    /// Output stationary: rows ← output pixels, cols ← filters, time ← reduction.
    Os,
    /// Weight stationary: rows ← reduction, cols ← filters, time ← output pixels.
    Ws,
    /// Input stationary: rows ← reduction, cols ← output pixels, time ← filters.
    Is,
}

/// One memory level. Sizes are per instance, in words of the level's `word_bits`;
/// energies are per word access.
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    pub name: String,
    pub kind: LevelKind,
    /// Width of one word of this level (defaults to the template's `word_bits`).
    pub word_bits: u32,
    /// Capacity per instance in words; `None` = unbounded (DRAM).
    pub size_words: Option<u64>,
    /// One instance per PE (inside the array) rather than one shared instance.
    pub per_pe: bool,
    /// Which operands (I, W, O) this level stores; the others bypass it.
    pub keeps: [bool; 3],
    /// Which of those the mapper may choose to bypass (`bypassable`; default: every
    /// kept operand on a shared level, none on a per-PE level or DRAM).
    pub bypassable: [bool; 3],
    /// Mapspace constraint `dims`: the Einsum dims that may have temporal loops at
    /// this level (Timeloop's temporal `factors` constraint with the others = 1);
    /// `None` = any.
    pub temporal_dims: Option<Vec<String>>,
    /// Mapspace constraint `order`: these dims' loops, where present, run in this
    /// order (outer to inner) and outside every other loop of the level (Timeloop's
    /// `permutation`, which lists inner to outer).
    pub loop_order: Vec<String>,
    /// Mapspace constraint `inner`: these dims' loops, where present, run in this
    /// order (outer to inner) inside every other loop of the level (Timeloop's
    /// partial `permutation`, which pins the dims it lists innermost).
    pub loop_inner: Vec<String>,
    /// Mapspace constraint `factors`: dims whose temporal loop at this level has
    /// exactly this bound (Timeloop's temporal `factors: R=3`; 1 = no loop here).
    pub temporal_factors: Vec<(String, u32)>,
    pub read_energy_pj: f64,
    pub write_energy_pj: f64,
    pub update_energy_pj: f64,
    /// Words per cycle per instance that the level can read+write through one shared
    /// port (`bandwidth_bytes_per_cycle`); `None` = unlimited, or see the separate
    /// read and write bandwidths below.
    pub bandwidth_words_per_cycle: Option<f64>,
    /// Words per cycle per instance the level can read (`read_bandwidth_bytes_per_cycle`,
    /// Timeloop's `read_bandwidth`); `None` = unlimited. Exclusive with the shared port.
    pub read_bandwidth_words_per_cycle: Option<f64>,
    /// Words per cycle per instance the level can write: fills from above and updates
    /// from below (`write_bandwidth_bytes_per_cycle`, Timeloop's `write_bandwidth`).
    pub write_bandwidth_words_per_cycle: Option<f64>,
    /// Tiles are double-buffered: capacity holds two tiles of each kept operand.
    pub double_buffered: bool,
    pub area_um2: f64,
    pub leakage_pj_per_cycle: f64,
    /// `energy_scale` of the file (default 1): the read, write and update energies
    /// above already include it (a calibration fits it; see `coex calibrate`).
    pub energy_scale: f64,
}

impl Level {
    /// Cycles one instance needs to move `read_words` out and `write_words` in (fills
    /// and updates): through a shared port (reads + writes) ÷ bandwidth; through
    /// separate ports max(reads ÷ read bandwidth, writes ÷ write bandwidth), a missing
    /// port being unlimited (Timeloop's per-level bandwidth throttling).
    pub fn transfer_cycles(&self, read_words: f64, write_words: f64) -> f64 {
        if let Some(bw) = self.bandwidth_words_per_cycle {
            return (read_words + write_words) / bw;
        }
        let r = self
            .read_bandwidth_words_per_cycle
            .map_or(0.0, |bw| read_words / bw);
        let w = self
            .write_bandwidth_words_per_cycle
            .map_or(0.0, |bw| write_words / bw);
        r.max(w)
    }

    /// Whether any bandwidth limits this level.
    pub fn bandwidth_limited(&self) -> bool {
        self.bandwidth_words_per_cycle.is_some()
            || self.read_bandwidth_words_per_cycle.is_some()
            || self.write_bandwidth_words_per_cycle.is_some()
    }

    /// Peak words per cycle in and out together (for roofs): the shared port, or the
    /// sum of the separate ports; `None` when unlimited.
    pub fn peak_words_per_cycle(&self) -> Option<f64> {
        self.bandwidth_words_per_cycle.or_else(|| {
            match (
                self.read_bandwidth_words_per_cycle,
                self.write_bandwidth_words_per_cycle,
            ) {
                (Some(r), Some(w)) => Some(r + w),
                (r, w) => r.or(w),
            }
        })
    }

    pub fn keeps(&self, operand: usize) -> bool {
        self.keeps[operand]
    }

    /// Words of this level that one element of `elem_bits` costs on average when
    /// elements stream through it (see [`words_per_element`]).
    pub fn words_per_element(&self, elem_bits: u32) -> f64 {
        words_per_element(elem_bits, self.word_bits)
    }

    /// Words of this level that `elems` stored elements of `elem_bits` occupy.
    pub fn words_for(&self, elems: u64, elem_bits: u32) -> u64 {
        words_for(elems, elem_bits, self.word_bits)
    }
}

/// The packing rule for an element of `elem_bits` in a memory of `word_bits`-bit words:
/// narrower elements pack `⌊word_bits / elem_bits⌋` to a word (int8 on a 16-bit level:
/// two per word, half a word each); wider ones take `⌈elem_bits / word_bits⌉` whole
/// words (fp16 on an 8-bit level: two words). Traffic, bandwidth time and per-access
/// energy are charged in these words; capacity in [`words_for`].
pub fn words_per_element(elem_bits: u32, word_bits: u32) -> f64 {
    if elem_bits <= word_bits {
        1.0 / (word_bits / elem_bits.max(1)) as f64
    } else {
        elem_bits.div_ceil(word_bits) as f64
    }
}

/// Whole words that `elems` elements of `elem_bits` occupy under the packing rule of
/// [`words_per_element`] (a partly filled last word counts).
pub fn words_for(elems: u64, elem_bits: u32, word_bits: u32) -> u64 {
    if elem_bits <= word_bits {
        elems.div_ceil((word_bits / elem_bits.max(1)) as u64)
    } else {
        elems.saturating_mul(elem_bits.div_ceil(word_bits) as u64)
    }
}

/// The PE array: `rows × cols` PEs, and which Einsum dims each axis may unroll.
#[derive(Clone, Debug, Serialize)]
pub struct Array {
    pub rows: usize,
    pub cols: usize,
    pub spatial_rows: Vec<String>,
    pub spatial_cols: Vec<String>,
    pub dataflow: Option<Dataflow>,
    /// One read can feed many PEs that need the same word.
    pub multicast: bool,
    /// Partial sums from PEs that share an output are reduced in the network.
    pub spatial_reduction: bool,
    /// Fraction of cycles the array issues MACs beyond what the mapping accounts for
    /// (control, pipeline fill, reconfiguration between passes): compute cycles =
    /// mapped cycles ÷ efficiency. `[array] efficiency`, default 1; fitted by
    /// `coex calibrate` against a chip's measured latency.
    pub efficiency: f64,
}

impl Array {
    pub fn pes(&self) -> usize {
        self.rows * self.cols
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Vector {
    pub lanes: usize,
    /// Element-wise ops (bias, batchnorm, activations, residual adds) are applied to a
    /// producer's outputs as they stream out: they cost lane cycles, not memory trips.
    pub fuse_elementwise: bool,
    pub energy_pj_per_op: f64,
    pub area_um2: f64,
}

/// A swept parameter: a key (as `--set` takes it) and its candidate values, kept as
/// the file states them (a list, or a pow2 or range rule) so that a huge space is
/// sized and indexed without being materialized.
#[derive(Clone, Debug, Serialize)]
pub struct SpaceParam {
    pub key: String,
    pub domain: Domain,
}

/// The values of one swept parameter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Domain {
    List(Vec<toml::Value>),
    /// `lo, 2·lo, 4·lo, … ≤ hi` (1 ≤ lo ≤ hi).
    Pow2 {
        lo: i64,
        hi: i64,
    },
    /// `lo, lo + step, … ≤ hi` (lo ≤ hi, step ≥ 1).
    Range {
        lo: i64,
        hi: i64,
        step: i64,
    },
}

impl SpaceParam {
    /// Number of values (at most 2^63 for a range; at most 63 for pow2).
    pub fn len(&self) -> u64 {
        match &self.domain {
            Domain::List(v) => v.len() as u64,
            Domain::Pow2 { lo, hi } => {
                let (mut x, mut n) = (*lo, 0u64);
                while x <= *hi {
                    n += 1;
                    match x.checked_mul(2) {
                        Some(y) => x = y,
                        None => break,
                    }
                }
                n
            }
            Domain::Range { lo, hi, step } => {
                ((*hi as i128 - *lo as i128) / *step as i128 + 1).min(u64::MAX as i128) as u64
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th value, or None past the end.
    pub fn value(&self, i: u64) -> Option<toml::Value> {
        if i >= self.len() {
            return None;
        }
        Some(match &self.domain {
            Domain::List(v) => v[i as usize].clone(),
            Domain::Pow2 { lo, .. } => toml::Value::Integer(lo << i),
            Domain::Range { lo, step, .. } => {
                toml::Value::Integer((*lo as i128 + i as i128 * *step as i128) as i64)
            }
        })
    }

    /// Every value, in order, computed as it is asked for.
    pub fn values(&self) -> impl Iterator<Item = toml::Value> + '_ {
        (0..self.len()).map_while(|i| self.value(i))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Template {
    pub name: String,
    pub kind: Kind,
    pub about: String,
    pub sources: Vec<String>,
    pub path: PathBuf,
    pub clock_mhz: f64,
    pub word_bits: u32,
    pub tech: String,
    /// Outermost (DRAM) first.
    pub levels: Vec<Level>,
    pub array: Array,
    /// Precisions the MAC datapath runs (`[mac] precisions`; default: every one no
    /// wider than `word_bits`).
    pub precisions: Vec<DType>,
    /// Energy of one MAC per precision, pJ (the technology table's entry for the
    /// precision's width, scaled by `[mac] energy_pj` when a file gives it).
    pub mac_energy_pj: Vec<(DType, f64)>,
    /// Area of one MAC unit, sized for the widest precision it runs, µm².
    pub mac_area_um2: f64,
    pub vector: Vector,
    /// Static power not attributed to a level (clock tree, control), in mW.
    pub static_power_mw: f64,
    pub space: Vec<SpaceParam>,
}

impl Template {
    pub fn word_bytes(&self) -> f64 {
        self.word_bits as f64 / 8.0
    }

    /// Energy of one MAC at `dtype`, or an error naming the precisions this template runs.
    pub fn mac_energy_pj(&self, dtype: DType) -> Result<f64, String> {
        self.mac_energy_pj
            .iter()
            .find(|(d, _)| *d == dtype)
            .map(|(_, e)| *e)
            .ok_or_else(|| self.unsupported(dtype))
    }

    /// The error for an op whose precision the MAC datapath does not run.
    pub fn unsupported(&self, dtype: DType) -> String {
        let names: Vec<&str> = self.precisions.iter().map(|d| d.name()).collect();
        format!(
            "{}: template '{}' runs {} MACs, not {}; add \"{}\" to [mac] precisions (its MAC area follows the widest) or run the op at a supported dtype",
            self.path.display(),
            self.name,
            names.join(", "),
            dtype.name(),
            dtype.name()
        )
    }

    /// Index of the first per-PE level: spatial loops sit just above it.
    pub fn fanout_level(&self) -> usize {
        self.levels
            .iter()
            .position(|l| l.per_pe)
            .unwrap_or(self.levels.len())
    }

    pub fn level_index(&self, name: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.name == name)
    }

    pub fn cycle_s(&self) -> f64 {
        1e-6 / self.clock_mhz
    }

    /// Area broken down by component, in µm².
    pub fn area_breakdown_um2(&self) -> Vec<(String, f64)> {
        let pes = self.array.pes() as f64;
        let mut v: Vec<(String, f64)> = self
            .levels
            .iter()
            .map(|l| {
                let n = if l.per_pe { pes } else { 1.0 };
                (l.name.clone(), l.area_um2 * n)
            })
            .collect();
        v.push(("MAC".into(), self.mac_area_um2 * pes));
        v.push(("vector".into(), self.vector.area_um2));
        v
    }

    pub fn area_mm2(&self) -> f64 {
        self.area_breakdown_um2()
            .iter()
            .map(|(_, a)| a)
            .sum::<f64>()
            * 1e-6
    }
}

/// The `[accelerator]` header of FPGA and GPU files (ASIC files add clock, word width
/// and technology to theirs).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub about: String,
    #[serde(default)]
    pub sources: Vec<String>,
}

/// Any accelerator file: the three kinds share the IR they consume (Einsums and
/// VectorOps) and the result schema they produce, not their insides.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one value per run; boxing buys nothing
pub enum Accelerator {
    Asic(Template),
    Fpga(fpga::Fpga),
    Gpu(gpu::Gpu),
}

impl Accelerator {
    pub fn name(&self) -> &str {
        match self {
            Accelerator::Asic(t) => &t.name,
            Accelerator::Fpga(f) => &f.name,
            Accelerator::Gpu(g) => &g.name,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Accelerator::Asic(_) => Kind::Asic,
            Accelerator::Fpga(_) => Kind::Fpga,
            Accelerator::Gpu(_) => Kind::Gpu,
        }
    }
}

/// Loads any accelerator file, dispatching on `[accelerator] kind`.
pub fn load_accelerator(
    path: &std::path::Path,
    overrides: &[(String, String)],
) -> Result<Accelerator, ArchError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ArchError::Parse {
        path: path.to_path_buf(),
        message: format!("malformed TOML: {e}"),
    })?;
    let kind = table
        .get("accelerator")
        .and_then(|a| a.get("kind"))
        .and_then(|k| k.as_str())
        .unwrap_or("asic");
    match kind {
        "fpga" => fpga::load_str(&text, path, overrides).map(Accelerator::Fpga),
        "gpu" => gpu::load_str(&text, path, overrides).map(Accelerator::Gpu),
        _ => load_str(&text, path, overrides).map(Accelerator::Asic),
    }
}
