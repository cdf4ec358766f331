//! The one schedule of a systolic array, as SCALE-Sim runs it: the Einsum's GEMM view
//! (im2col made explicit: M output pixels × N filters, reduced over K = C·R·S) is
//! folded onto the `rows × cols` array, and every figure a systolic template reports
//! (compute cycles, reads/fills/updates per level and operand, the printed mapping)
//! comes from this one object, so they cannot describe two different schedules.
//!
//! Roles per dataflow (Samajdar et al., SCALE-Sim, ISPASS 2020): the stationary matrix
//! spans `Sr × Sc` and is laid on the array in `⌈Sr/rows⌉ × ⌈Sc/cols⌉` folds; each fold
//! streams `T` vectors through the skewed array.
//!
//! | dataflow | rows (Sr) | cols (Sc) | streamed (T) | stationary in the PEs |
//! |---|---|---|---|---|
//! | os | M | N | K | outputs (accumulators) |
//! | ws | K | N | M | weights |
//! | is | K | M | N | inputs |
//!
//! Accesses (per GEMM of the batch; the last fold of a dim uses only its remaining
//! rows or cols, so nothing is padded):
//! * SRAM → array: the streamed edges deliver `M·K·⌈N/cols⌉` inputs (os, ws) or `K·M`
//!   once (is); `N·K·⌈M/rows⌉` weights (os), `K·N` once (ws), `N·K·⌈M/cols⌉` (is).
//! * Stationary per-PE level (if the template has one): filled once per stationary
//!   element, read once per MAC (ws, is); an os accumulator takes one update per MAC.
//! * Output SRAM: ws and is reduce K in `⌈K/rows⌉` row folds, so every output gets one
//!   update per row fold and one read per later fold (read-modify-write); os drains
//!   each finished output once.
//! * DRAM ↔ SRAM: an operand whose distinct elements (the Einsum footprint: the raw
//!   tensor with its padding halo, not the im2col copy) fit its SRAM (half of it when
//!   double-buffered) is fetched once; one that does not streams through: DRAM then
//!   supplies every element the SRAM hands the array (an output spills and re-reads its
//!   partial sums). SCALE-Sim likewise fetches distinct addresses.

use super::{Counts, MapError, Problem, MAX_LEVELS};
use crate::arch::{Dataflow, Template, OPERANDS};

/// A GEMM folded onto a systolic array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Systolic {
    pub dataflow: Dataflow,
    /// Independent GEMMs (groups, heads): dims that index all three operands.
    pub batch: u64,
    /// Output pixels (dims of input and output only, or of the output only).
    pub m: u64,
    /// Filters (dims of weight and output only).
    pub n: u64,
    /// Reduction (dims that index no output).
    pub k: u64,
    pub rows: u64,
    pub cols: u64,
}

/// For each operand (I, W, O): the index of the shared on-chip level that keeps it
/// and of the per-PE level that keeps it, if any.
pub type Chains = [(usize, Option<usize>); 3];

/// SCALE-Sim's GEMM view of an Einsum: (batch, M, N, K).
///
/// Dims indexing all three operands are a batch of independent GEMMs (groups); dims of
/// input and output only are M; of weight and output only are N; the rest reduce (K).
pub fn gemm_view(p: &Problem) -> (u64, u64, u64, u64) {
    let mut v = [1u64; 4];
    for d in 0..p.ndims {
        v[gemm_role(p, d)] *= p.bounds[d];
    }
    (v[0], v[1], v[2], v[3])
}

/// Which GEMM-view dim (0 batch, 1 M, 2 N, 3 K) Einsum dim `d` joins.
fn gemm_role(p: &Problem, d: usize) -> usize {
    let [i, w, o] = [0, 1, 2].map(|x| p.operands[x].is_relevant(d));
    match (i, w, o) {
        (true, true, true) => 0,
        (_, _, false) => 3,
        (false, true, true) => 2,
        _ => 1,
    }
}

/// Which levels a systolic template uses for each operand; an error names what the
/// structure lacks. DRAM (level 0) keeps everything; each operand needs exactly one
/// shared on-chip level; a per-PE level may hold only the dataflow's stationary operand.
pub fn chains(t: &Template, df: Dataflow) -> Result<Chains, String> {
    let fan = t.fanout_level();
    let stationary = match df {
        Dataflow::Os => 2,
        Dataflow::Ws => 1,
        Dataflow::Is => 0,
    };
    let mut out = [(0usize, None); 3];
    for (o, slot) in out.iter_mut().enumerate() {
        let shared: Vec<usize> = (1..fan).filter(|&l| t.levels[l].keeps[o]).collect();
        let [sram] = shared[..] else {
            return Err(format!(
                "a systolic array reads operand {} from exactly one on-chip buffer; {} shared levels keep it",
                OPERANDS[o],
                shared.len()
            ));
        };
        let pe: Vec<usize> = (fan..t.levels.len())
            .filter(|&l| t.levels[l].keeps[o])
            .collect();
        if pe.len() > 1 || (!pe.is_empty() && o != stationary) {
            return Err(format!(
                "in a {df:?} systolic array only the stationary operand ({}) sits in the PEs; level '{}' keeps {}",
                OPERANDS[stationary],
                t.levels[pe[0]].name,
                OPERANDS[o]
            ));
        }
        *slot = (sram, pe.first().copied());
    }
    Ok(out)
}

impl Systolic {
    /// The schedule of `p` on the systolic template `t`.
    pub fn new(p: &Problem, t: &Template) -> Result<Systolic, MapError> {
        let Some(dataflow) = t.array.dataflow else {
            return Err(MapError::Invalid(format!(
                "template '{}' has no systolic dataflow",
                t.name
            )));
        };
        let (batch, m, n, k) = gemm_view(p);
        Ok(Systolic {
            dataflow,
            batch,
            m,
            n,
            k,
            rows: t.array.rows as u64,
            cols: t.array.cols as u64,
        })
    }

    /// `(Sr, Sc, T)`: the stationary matrix's extent on rows and cols, and the stream.
    pub fn roles(&self) -> (u64, u64, u64) {
        match self.dataflow {
            Dataflow::Os => (self.m, self.n, self.k),
            Dataflow::Ws => (self.k, self.n, self.m),
            Dataflow::Is => (self.k, self.m, self.n),
        }
    }

    pub fn row_folds(&self) -> u64 {
        self.roles().0.div_ceil(self.rows)
    }

    pub fn col_folds(&self) -> u64 {
        self.roles().1.div_ceil(self.cols)
    }

    /// Cycles to preload a stationary tile: `rows` for ws and is, none for os.
    pub fn preload_cycles(&self) -> u64 {
        match self.dataflow {
            Dataflow::Os => 0,
            _ => self.rows,
        }
    }

    /// Cycles one fold takes: preload, then `T` vectors through the skewed array, the
    /// last result leaving `rows + cols − 2` cycles after the last input enters.
    pub fn cycles_per_fold(&self) -> u64 {
        let (_, _, t) = self.roles();
        self.preload_cycles() + self.rows + self.cols + t - 2
    }

    /// Compute cycles of the whole Einsum: `batch · folds · cycles_per_fold`. SCALE-Sim
    /// reports one less (the index of the last busy cycle, counted from 0).
    pub fn compute_cycles(&self) -> u64 {
        self.batch
            .saturating_mul(self.row_folds() * self.col_folds())
            .saturating_mul(self.cycles_per_fold())
    }

    pub fn macs(&self) -> u64 {
        self.batch * self.m * self.n * self.k
    }

    /// PEs that hold a stationary element in the largest fold.
    pub fn used_pes(&self) -> u64 {
        let (sr, sc, _) = self.roles();
        sr.min(self.rows) * sc.min(self.cols)
    }

    /// Reads, fills and updates of every level (see the module docs for each rule).
    pub fn counts(&self, p: &Problem, t: &Template, ch: &Chains) -> Counts {
        let (b, m, n, k) = (self.batch, self.m, self.n, self.k);
        let (fr, fc) = (self.row_folds(), self.col_folds());
        let macs = self.macs();
        let mut c = Counts {
            nlevels: t.levels.len().min(MAX_LEVELS),
            padded_macs: macs,
            temporal_steps: b * fr * fc * self.roles().2,
            used_pes: self.used_pes(),
            ..Counts::default()
        };
        let fan = t.fanout_level();
        for l in 0..c.nlevels {
            c.instances[l] = if l >= fan { c.used_pes } else { 1 };
        }
        let (to_array, stationary_fill) = match self.dataflow {
            Dataflow::Os => ([m * k * fc, n * k * fr], None),
            Dataflow::Ws => ([m * k * fc, k * n], Some((1, k * n))),
            Dataflow::Is => ([k * m, n * k * fc], Some((0, k * m))),
        };
        let mut bounds = [1u64; super::MAX_DIMS];
        bounds[..p.ndims].copy_from_slice(&p.bounds[..p.ndims]);
        for o in 0..2 {
            let (sram, pe) = ch[o];
            let distinct = p.operands[o].footprint(&bounds);
            let sram_reads = b * to_array[o];
            let fits = fits(t, sram, distinct, p.elem_bits);
            let dram = if fits { distinct } else { sram_reads };
            c.reads[0][o] = dram;
            c.fills[sram][o] = dram;
            c.reads[sram][o] = sram_reads;
            c.tile_words[0][o] = distinct;
            c.tile_words[sram][o] = if fits { distinct } else { 0 };
            if let (Some(l), Some((so, n_fill))) = (pe, stationary_fill) {
                if so == o {
                    c.fills[l][o] = b * n_fill;
                    c.reads[l][o] = macs;
                    c.tile_words[l][o] = 1;
                }
            }
        }
        let outputs = b * m * n;
        let (sram, pe) = ch[2];
        // Updates each output takes at the output SRAM: one per row fold (ws, is), one
        // drain (os).
        let passes = match self.dataflow {
            Dataflow::Os => 1,
            _ => fr,
        };
        if let Some(l) = pe {
            c.updates[l][2] = macs;
            c.reads[l][2] = macs - outputs;
            c.tile_words[l][2] = 1;
        }
        c.updates[sram][2] = outputs * passes;
        c.reads[sram][2] = outputs * (passes - 1);
        let fits_o = fits(t, sram, outputs, p.elem_bits);
        c.tile_words[0][2] = outputs;
        c.tile_words[sram][2] = if fits_o { outputs } else { 0 };
        if fits_o {
            c.updates[0][2] = outputs;
        } else {
            c.updates[0][2] = outputs * passes;
            c.reads[0][2] = outputs * (passes - 1);
            c.fills[sram][2] = outputs * (passes - 1);
        }
        c
    }

    /// `ws rows[C3·R7·S7=147: 2 folds] cols[K64: 1 fold] stream[P112·Q112=12544]`.
    pub fn describe(&self, p: &Problem) -> String {
        let group = |role: usize| -> String {
            let parts: Vec<String> = (0..p.ndims)
                .filter(|&d| gemm_role(p, d) == role && p.bounds[d] > 1)
                .map(|d| format!("{}{}", p.names[d], p.bounds[d]))
                .collect();
            let total: u64 = (0..p.ndims)
                .filter(|&d| gemm_role(p, d) == role)
                .map(|d| p.bounds[d])
                .product();
            match parts.len() {
                0 => "1".into(),
                1 => parts[0].clone(),
                _ => format!("{}={total}", parts.join("·")),
            }
        };
        let (r, c, s) = match self.dataflow {
            Dataflow::Os => (1, 2, 3),
            Dataflow::Ws => (3, 2, 1),
            Dataflow::Is => (3, 1, 2),
        };
        let folds = |f: u64| {
            if f == 1 {
                "1 fold".into()
            } else {
                format!("{f} folds")
            }
        };
        let batch = if self.batch > 1 {
            format!(" batch[{}]", group(0))
        } else {
            String::new()
        };
        format!(
            "{} rows[{}: {}] cols[{}: {}] stream[{}]{batch}",
            match self.dataflow {
                Dataflow::Os => "os",
                Dataflow::Ws => "ws",
                Dataflow::Is => "is",
            },
            group(r),
            folds(self.row_folds()),
            group(c),
            folds(self.col_folds()),
            group(s),
        )
    }
}

/// Whether `elems` elements of `elem_bits` fit level `l` (half of it when double-buffered).
pub fn fits(t: &Template, l: usize, elems: u64, elem_bits: u32) -> bool {
    let lv = &t.levels[l];
    let copies = if lv.double_buffered { 2 } else { 1 };
    match lv.size_words {
        None => true,
        Some(cap) => lv.words_for(elems, elem_bits).saturating_mul(copies) <= cap,
    }
}
