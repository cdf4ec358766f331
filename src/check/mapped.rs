//! The mapped executor: runs an Einsum under a [`Mapping`] on a [`Template`], on real
//! numbers, moving tiles through simulated buffers and counting every word that moves.
//!
//! It is a re-execution, not a formula: it walks the whole loop nest in mapping order
//! (levels outer→inner, each level's loops in `order`, the spatial loops enumerated as
//! PE instances that run in lockstep), keeps one buffer per level instance and kept
//! operand, and tracks the actual set of tensor elements each buffer holds (the
//! coordinates the operand's affine projections give at the loop points) and their
//! values. The counts come from those sets; `map::analyze` is never called here, so a
//! test can compare the two.
//!
//! What it shares with the access model, and what it counts itself:
//!
//! * Shared: the mapping (tile factors, loop order, spatial unrolling, bypasses) and
//!   the capacity rule (a level instance must hold its tiles of every kept operand at
//!   once, times two when double-buffered, in the level's packed words). Nothing else:
//!   no reuse or refill formula of `map::nest` is used here.
//! * Counted here: at every step of the loop nest, every level instance's tile of every
//!   operand is the set of actual tensor coordinates the loop points below it reach
//!   (through the operand's affine projections, strides, dilations and padding
//!   included), for the current indices of the loops above it (and, inside the array,
//!   its PE's spatial indices). The level fetches exactly the elements of its new tile
//!   that are not in the tile it holds (`new \ old`, a set difference of coordinate
//!   keys) and drops the others (`old \ new`). Whatever loop stepped and however many
//!   inner loops wrapped, nothing else is assumed.
//!
//! Buffer behaviour:
//!
//! * A level instance holds its current *tile* of an operand, as above. When the loops
//!   above it change, it keeps `old ∩ new`, fills `new \ old` and lets `old \ new` go.
//!   (Its tile depends only on the loops whose dim indexes the operand, so when none of
//!   those changed the set is the same and is not recomputed.)
//! * Inputs and weights: every word filled into a level is read from the next outer
//!   level keeping the operand (its value is copied from there, so a level that does
//!   not hold what its child asks for is an error). MACs read from the innermost level
//!   keeping the operand, one word per MAC.
//! * Outputs: an element a level instance has never held starts at zero and needs no
//!   fill; one it held before is filled (its partial sum comes back down). The innermost
//!   output level is updated by every MAC and read by every MAC except the first one on
//!   each element at that instance. When elements leave a level (`old \ new` at a
//!   step, or the whole tile when the run ends) they are written to the next outer output level as
//!   updates. Partial sums are carried as what each buffer added since the element
//!   arrived, so the arithmetic stays exact however often an element goes up and down.
//! * Spatial: where a shared level serves the array, PEs that need the same read-only
//!   data at the same step get one read (when `array.multicast`), and PEs whose partial
//!   sums go to the same output elements are reduced in the array first: one update per
//!   element per step. Which PEs share is the [`MulticastRule`].
//! * The outermost level (DRAM) is never filled; its reads are its child's fills and its
//!   output updates are what its child writes back.
//! * Padding: iterations past a dim's bound (imperfect factors) still run and still move
//!   words, but multiply nothing; an input index outside its tensor reads zero and still
//!   counts as a word moved.

use super::tensor::Tensor;
use super::CheckError;
use crate::arch::{Template, OPERANDS};
use crate::lower::{Einsum, Operand};
use crate::map::{Counts, Mapping, Problem, MAX_DIMS};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const OUT: usize = 2;

/// A multiplicative hasher for element keys (the std hasher is several times slower,
/// and the keys are not attacker-controlled).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;
type KeySet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// Which PEs one read from a shared level can serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MulticastRule {
    /// The array's broadcast lines: PEs that differ only in the spatial indices of dims
    /// that do not index the operand share one read (and, for outputs, one reduced
    /// update). PEs that need the same data through different relevant indices (the
    /// diagonals of a row-stationary convolution) are served separately. This is the
    /// rule `map::nest` models.
    #[default]
    Broadcast,
    /// Timeloop's multicast analysis: PEs whose requested element sets at a step are
    /// identical share one read, whatever their indices.
    IdenticalData,
}

/// Options of one mapped execution.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecOptions {
    pub multicast: MulticastRule,
}

/// What the mapped executor counted, per level (outermost first) and operand (I, W, O).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub reads: Vec<[u64; 3]>,
    pub fills: Vec<[u64; 3]>,
    pub updates: Vec<[u64; 3]>,
    /// Largest tile of the operand one instance of the level held.
    pub tile_words: Vec<[u64; 3]>,
    /// Largest number of words one instance held at once (all operands, times two
    /// when double-buffered): what its capacity was checked against.
    pub peak_words: Vec<u64>,
    pub instances: Vec<u64>,
    /// MACs executed, padded iterations included.
    pub macs: u64,
    /// MACs whose loop point lies inside every bound (they multiply real data).
    pub real_macs: u64,
    /// Temporal steps (every PE does one MAC per step).
    pub steps: u64,
}

/// The result of a mapped execution.
#[derive(Clone, Debug)]
pub struct MappedRun {
    pub output: Tensor,
    pub counted: Counted,
}

fn einsum_err(e: &Einsum, message: impl Into<String>) -> CheckError {
    CheckError::Einsum {
        einsum: e.name.clone(),
        message: message.into(),
    }
}

/// One operand axis as the executor addresses it: its affine index, and the range of
/// values it takes over the padded iteration box (so every element, padding included,
/// has a key).
struct AxisKey {
    terms: Vec<(usize, i64)>,
    offset: i64,
    lo: i64,
    size: u64,
    stride: u64,
    /// The tensor's extent along this axis: values outside `0..len` are padding.
    len: usize,
}

/// Element keys of one operand: a mixed-radix number of the axis values.
struct Keys {
    axes: Vec<AxisKey>,
    /// `relevant[d]`: dim d indexes this operand.
    relevant: Vec<bool>,
}

impl Keys {
    fn new(e: &Einsum, op: &Operand, padded: &[u64]) -> Result<Keys, CheckError> {
        let nd = padded.len();
        let mut owner: Vec<Option<usize>> = vec![None; nd];
        let mut relevant = vec![false; nd];
        let mut axes = Vec::with_capacity(op.proj.len());
        if op.proj.len() != op.shape.len() {
            return Err(einsum_err(e, "an operand has as many projections as axes"));
        }
        for (ai, (a, &len)) in op.proj.iter().zip(&op.shape).enumerate() {
            let terms: Vec<(usize, i64)> =
                a.terms.iter().copied().filter(|&(_, c)| c != 0).collect();
            let (mut lo, mut hi) = (a.offset, a.offset);
            for &(d, c) in &terms {
                if d >= nd {
                    return Err(einsum_err(e, format!("a projection names dim #{d}")));
                }
                if owner[d].is_some_and(|x| x != ai) {
                    return Err(einsum_err(
                        e,
                        format!(
                            "dim {} indexes two axes of one operand; the mapped executor \
                             needs each dim in at most one axis",
                            e.dims[d].name
                        ),
                    ));
                }
                owner[d] = Some(ai);
                relevant[d] = true;
                let span = c * (padded[d] as i64 - 1);
                lo += span.min(0);
                hi += span.max(0);
            }
            axes.push(AxisKey {
                terms,
                offset: a.offset,
                lo,
                size: (hi - lo + 1) as u64,
                stride: 1,
                len,
            });
        }
        let mut stride = 1u64;
        for a in axes.iter_mut().rev() {
            a.stride = stride;
            stride = stride
                .checked_mul(a.size)
                .ok_or_else(|| einsum_err(e, "too many elements to key"))?;
        }
        Ok(Keys { axes, relevant })
    }

    /// The key of the element the loop point `point` touches.
    fn key(&self, point: &[u64]) -> u64 {
        self.axes
            .iter()
            .map(|a| {
                let v = a
                    .terms
                    .iter()
                    .map(|&(d, c)| c * point[d] as i64)
                    .sum::<i64>()
                    + a.offset;
                (v - a.lo) as u64 * a.stride
            })
            .sum()
    }

    /// Row-major offset of the element in its tensor, or None for padding.
    fn tensor_offset(&self, key: u64) -> Option<usize> {
        let mut off = 0usize;
        for a in &self.axes {
            let v = a.lo + ((key / a.stride) % a.size) as i64;
            if v < 0 || v as usize >= a.len {
                return None;
            }
            off = off * a.len + v as usize;
        }
        Some(off)
    }

    /// The elements the box `base + [0, ext)` touches, as sorted keys. Each dim indexes
    /// one axis at most, so the set is the product of every axis's distinct values.
    fn tile(&self, base: &[u64], ext: &[u64]) -> Vec<u64> {
        let mut keys = vec![0u64];
        for a in &self.axes {
            let mut vals = vec![a.offset];
            for &(d, c) in &a.terms {
                let mut next = Vec::with_capacity(vals.len() * ext[d] as usize);
                for &v in &vals {
                    for x in 0..ext[d] {
                        next.push(v + c * (base[d] + x) as i64);
                    }
                }
                next.sort_unstable();
                next.dedup();
                vals = next;
            }
            // Axis values scaled by the axis stride; earlier axes have larger strides,
            // so the product comes out sorted.
            let mut next = Vec::with_capacity(keys.len() * vals.len());
            for &k in &keys {
                next.extend(vals.iter().map(|&v| k + (v - a.lo) as u64 * a.stride));
            }
            keys = next;
        }
        keys
    }
}

/// `a \ b` for sorted key lists.
fn minus(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

/// One temporal loop: its level, dim, trip count, and how far one step moves the dim.
#[derive(Clone, Copy, Debug)]
struct Loop {
    level: usize,
    dim: usize,
    factor: u32,
    stride: u64,
}

/// One level instance's copy of one operand.
#[derive(Default)]
struct Buf {
    /// Sorted keys of the current tile.
    tile: Vec<u64>,
    /// Inputs/weights: the values of the tile. Outputs: what this buffer added to each
    /// tile element since it arrived.
    vals: KeyMap<f64>,
    /// Outputs: elements this instance has ever held (a new one starts at zero).
    ever: KeySet,
    /// Outputs at the innermost output level: elements a MAC has already touched.
    touched: KeySet,
}

/// A level that keeps an operand: its tile extents and its instances' buffers.
struct Slot {
    parent: Option<usize>,
    ext: Vec<u64>,
    /// Loops above the level: `loops[..above]` (loops are ordered by level).
    above: usize,
    /// Loop indices when the tile was last placed.
    prev: Vec<u32>,
    bufs: Vec<Buf>,
}

/// The state of one mapped execution.
struct Exec<'a> {
    e: &'a Einsum,
    t: &'a Template,
    opts: ExecOptions,
    nl: usize,
    fan: usize,
    bounds: Vec<u64>,
    loops: Vec<Loop>,
    idx: Vec<u32>,
    /// Per PE, its spatial offset along every dim.
    pe_offset: Vec<Vec<u64>>,
    /// Per operand and PE, its broadcast group (PEs equal in the operand's relevant
    /// spatial indices).
    group: [Vec<u32>; 3],
    keys: [Keys; 3],
    slots: Vec<[Option<Slot>; 3]>,
    /// Innermost level keeping each operand (the one MACs use).
    innermost: [usize; 3],
    tensors: [&'a Tensor; 2],
    counted: Counted,
}

/// Runs `e` under mapping `m` on template `t`, on `input` and `weight` (row-major, as
/// many elements as their operands), counting every access.
pub fn execute_mapped(
    e: &Einsum,
    t: &Template,
    m: &Mapping,
    input: &Tensor,
    weight: &Tensor,
    opts: ExecOptions,
) -> Result<MappedRun, CheckError> {
    validate(e, t, m, input, weight)?;
    let mut x = Exec::new(e, t, m, [input, weight], opts)?;
    x.run()?;
    let output = x.output()?;
    Ok(MappedRun {
        output,
        counted: x.counted,
    })
}

/// Refuses what the executor cannot run: a mapping that does not fit the Einsum or the
/// template, or tensors of the wrong size.
fn validate(
    e: &Einsum,
    t: &Template,
    m: &Mapping,
    input: &Tensor,
    weight: &Tensor,
) -> Result<(), CheckError> {
    let p = Problem::from_einsum(e).map_err(|x| einsum_err(e, x.to_string()))?;
    if m.ndims as usize != p.ndims {
        return Err(einsum_err(
            e,
            format!("the mapping has {} dims, the Einsum {}", m.ndims, p.ndims),
        ));
    }
    m.validate(&p, t)
        .map_err(|x| einsum_err(e, format!("invalid mapping: {x}")))?;
    for l in 0..t.levels.len() {
        let mut seen = [false; MAX_DIMS];
        for &d in &m.order[l][..p.ndims] {
            let d = d as usize;
            if d >= p.ndims || std::mem::replace(&mut seen[d], true) {
                return Err(einsum_err(
                    e,
                    format!(
                        "loop order of level '{}' is not a permutation of the dims",
                        t.levels[l].name
                    ),
                ));
            }
        }
    }
    if t.fanout_level() == 0 {
        return Err(einsum_err(e, "the outermost level is per-PE"));
    }
    for (what, op, x) in [("input", &e.input, input), ("weight", &e.weight, weight)] {
        if x.len() as u64 != op.elements() {
            return Err(einsum_err(
                e,
                format!(
                    "{what} tensor has {} elements, the operand {:?} {}",
                    x.len(),
                    op.shape,
                    op.elements()
                ),
            ));
        }
    }
    Ok(())
}

impl<'a> Exec<'a> {
    fn new(
        e: &'a Einsum,
        t: &'a Template,
        m: &Mapping,
        tensors: [&'a Tensor; 2],
        opts: ExecOptions,
    ) -> Result<Exec<'a>, CheckError> {
        let nl = t.levels.len();
        let nd = e.dims.len();
        let fan = t.fanout_level();
        let spatial: Vec<u64> = (0..nd).map(|d| m.spatial(d)).collect();
        // Strides: the innermost level's loops step a dim by 1; each level outward steps
        // it by everything inside, the spatial loops included once above the array.
        let mut loops_by_level: Vec<Vec<Loop>> = vec![Vec::new(); nl];
        let mut run = vec![1u64; nd];
        let mut sp_stride = vec![1u64; nd];
        for l in (0..nl).rev() {
            if l + 1 == fan {
                sp_stride.clone_from(&run);
                for (r, s) in run.iter_mut().zip(&spatial) {
                    *r *= s;
                }
            }
            for &d in &m.order[l][..nd] {
                let d = d as usize;
                let f = m.factors[l][d];
                if f > 1 {
                    loops_by_level[l].push(Loop {
                        level: l,
                        dim: d,
                        factor: f,
                        stride: run[d],
                    });
                }
            }
            for (r, &f) in run.iter_mut().zip(&m.factors[l]) {
                *r *= f as u64;
            }
        }
        let padded: Vec<u64> = (0..nd).map(|d| m.padded_bound(d)).collect();
        let loops: Vec<Loop> = loops_by_level.into_iter().flatten().collect();
        let keys = [
            Keys::new(e, &e.input, &padded)?,
            Keys::new(e, &e.weight, &padded)?,
            Keys::new(e, &e.output, &padded)?,
        ];
        let pe_offset = pe_offsets(&spatial, &sp_stride);
        let group = [0, 1, 2].map(|o| broadcast_groups(&spatial, &keys[o].relevant));
        let mut x = Exec {
            e,
            t,
            opts,
            nl,
            fan,
            bounds: e.dims.iter().map(|d| d.bound as u64).collect(),
            idx: vec![0; loops.len()],
            loops,
            pe_offset,
            group,
            keys,
            slots: (0..nl).map(|_| [None, None, None]).collect(),
            innermost: [0; 3],
            tensors,
            counted: Counted {
                reads: vec![[0; 3]; nl],
                fills: vec![[0; 3]; nl],
                updates: vec![[0; 3]; nl],
                tile_words: vec![[0; 3]; nl],
                peak_words: vec![0; nl],
                instances: vec![0; nl],
                ..Counted::default()
            },
        };
        let npes = x.pe_offset.len() as u64;
        for l in 0..nl {
            x.counted.instances[l] = if l >= fan { npes } else { 1 };
        }
        for o in 0..3 {
            let mut parent = None;
            for l in 0..nl {
                if !m.keep[l][o] {
                    continue;
                }
                let ext: Vec<u64> = (0..nd)
                    .map(|d| {
                        (l..nl).map(|j| m.factors[j][d] as u64).product::<u64>()
                            * if l < fan { spatial[d] } else { 1 }
                    })
                    .collect();
                let above = x.loops.iter().take_while(|lp| lp.level < l).count();
                let n = x.counted.instances[l] as usize;
                x.slots[l][o] = Some(Slot {
                    parent,
                    ext,
                    above,
                    prev: vec![0; x.loops.len()],
                    bufs: (0..n).map(|_| Buf::default()).collect(),
                });
                parent = Some(l);
                x.innermost[o] = l;
            }
        }
        Ok(x)
    }

    fn level_name(&self, l: usize) -> &str {
        &self.t.levels[l].name
    }

    /// The dims' values at the current loop indices, before adding a PE's offset.
    fn temporal_point(&self, upto: usize) -> Vec<u64> {
        let mut p = vec![0u64; self.bounds.len()];
        for (lp, &i) in self.loops[..upto].iter().zip(&self.idx) {
            p[lp.dim] += i as u64 * lp.stride;
        }
        p
    }

    fn run(&mut self) -> Result<(), CheckError> {
        self.place_outermost();
        let all: Vec<usize> = (1..self.nl).collect();
        self.transition(&all, true)?;
        loop {
            self.step_macs()?;
            let Some(k) = self.advance() else { break };
            let lk = self.loops[k].level;
            let affected: Vec<usize> = (lk + 1..self.nl).collect();
            self.transition(&affected, false)?;
        }
        for l in (1..self.nl).rev() {
            if self.slots[l][OUT].is_some() {
                let n = self.counted.instances[l] as usize;
                let departing: Vec<Vec<u64>> = (0..n)
                    .map(|s| self.slot(l, OUT).bufs[s].tile.clone())
                    .collect();
                self.depart(l, &departing)?;
            }
        }
        Ok(())
    }

    fn slot(&self, l: usize, o: usize) -> &Slot {
        self.slots[l][o].as_ref().expect("slot of a kept operand")
    }

    fn slot_mut(&mut self, l: usize, o: usize) -> &mut Slot {
        self.slots[l][o].as_mut().expect("slot of a kept operand")
    }

    /// The outermost level holds every operand whole from the start.
    fn place_outermost(&mut self) {
        let zero = vec![0u64; self.bounds.len()];
        for o in 0..3 {
            let tile = {
                let s = self.slot(0, o);
                self.keys[o].tile(&zero, &s.ext)
            };
            self.counted.tile_words[0][o] = tile.len() as u64;
            self.slot_mut(0, o).bufs[0].tile = tile;
        }
    }

    /// Advances the loop odometer; the loop that stepped (the inner ones wrapped), or
    /// None when the nest is done.
    fn advance(&mut self) -> Option<usize> {
        for k in (0..self.loops.len()).rev() {
            self.idx[k] += 1;
            if self.idx[k] < self.loops[k].factor {
                return Some(k);
            }
            self.idx[k] = 0;
        }
        None
    }

    /// Whether the tile of operand `o` at level `l` may have changed since it was
    /// placed: some loop above the level whose dim indexes the operand has a new index
    /// (the tile is a function of those indices alone).
    fn moved(&self, l: usize, o: usize, first: bool) -> bool {
        let s = self.slot(l, o);
        first
            || (0..s.above)
                .any(|j| self.idx[j] != s.prev[j] && self.keys[o].relevant[self.loops[j].dim])
    }

    /// Moves every affected level's tiles: outputs leave inner→outer (a child writes
    /// back into its parent's old tile before the parent moves), then everything
    /// arrives outer→inner (a parent holds its new tile before its child fills from it).
    fn transition(&mut self, levels: &[usize], first: bool) -> Result<(), CheckError> {
        // (level, operand) → new tiles per instance
        let mut plans: Vec<(usize, usize, Vec<Vec<u64>>)> = Vec::new();
        let idx = self.idx.clone();
        for &l in levels.iter().rev() {
            for o in (0..3).rev() {
                if self.slots[l][o].is_none() {
                    continue;
                }
                let moved = self.moved(l, o, first);
                self.slot_mut(l, o).prev.clone_from(&idx);
                if !moved {
                    continue;
                }
                let tiles = self.new_tiles(l, o);
                if o == OUT && !first {
                    let departing: Vec<Vec<u64>> = tiles
                        .iter()
                        .zip(&self.slot(l, o).bufs)
                        .map(|(new, b)| minus(&b.tile, new))
                        .collect();
                    self.depart(l, &departing)?;
                }
                plans.push((l, o, tiles));
            }
        }
        for (l, o, tiles) in plans.into_iter().rev() {
            self.arrive(l, o, tiles)?;
        }
        for &l in levels {
            self.check_capacity(l)?;
        }
        Ok(())
    }

    /// Every instance's tile of operand `o` at level `l` at the current loop indices.
    fn new_tiles(&self, l: usize, o: usize) -> Vec<Vec<u64>> {
        let s = self.slot(l, o);
        let base = self.temporal_point(s.above);
        let n = self.counted.instances[l] as usize;
        (0..n)
            .map(|inst| {
                let b: Vec<u64> = if l >= self.fan {
                    base.iter()
                        .zip(&self.pe_offset[inst])
                        .map(|(a, b)| a + b)
                        .collect()
                } else {
                    base.clone()
                };
                self.keys[o].tile(&b, &s.ext)
            })
            .collect()
    }

    /// Whether words moving between a shared parent and a per-PE level (or the MACs)
    /// cross into the array, where the multicast rule applies.
    fn crosses(&self, parent: usize, child: Option<usize>) -> bool {
        parent < self.fan && child.is_none_or(|c| c >= self.fan)
    }

    /// Words a shared level sends into the array for per-PE requests `sets`: one read
    /// per word for each group of PEs the rule lets share.
    fn served(&self, o: usize, sets: &[Vec<u64>]) -> Result<u64, CheckError> {
        let share = o == OUT || self.t.array.multicast;
        if !share {
            return Ok(sets.iter().map(|s| s.len() as u64).sum());
        }
        match self.opts.multicast {
            MulticastRule::Broadcast => {
                let mut first: HashMap<u32, usize> = HashMap::new();
                let mut total = 0;
                for (pe, set) in sets.iter().enumerate() {
                    match first.get(&self.group[o][pe]) {
                        None => {
                            first.insert(self.group[o][pe], pe);
                            total += set.len() as u64;
                        }
                        Some(&leader) if sets[leader] != *set => {
                            return Err(einsum_err(
                                self.e,
                                format!(
                                    "PEs {leader} and {pe} share {}'s broadcast line but need \
                                     different elements",
                                    OPERANDS[o]
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                Ok(total)
            }
            MulticastRule::IdenticalData => {
                let distinct: HashSet<&Vec<u64>> = sets.iter().collect();
                Ok(distinct.iter().map(|s| s.len() as u64).sum())
            }
        }
    }

    /// Output elements `departing[instance]` leave level `l` for its parent as updates.
    fn depart(&mut self, l: usize, departing: &[Vec<u64>]) -> Result<(), CheckError> {
        let p = self
            .slot(l, OUT)
            .parent
            .expect("an inner level has a parent");
        let updates = if self.crosses(p, Some(l)) {
            self.served(OUT, departing)?
        } else {
            departing.iter().map(|d| d.len() as u64).sum()
        };
        self.counted.updates[p][OUT] += updates;
        let e = self.e;
        for (inst, keys) in departing.iter().enumerate() {
            let pinst = if p >= self.fan { inst } else { 0 };
            for &k in keys {
                let v = self.slot_mut(l, OUT).bufs[inst]
                    .vals
                    .remove(&k)
                    .ok_or_else(|| {
                        einsum_err(e, "an output element left a level that did not hold it")
                    })?;
                self.add_partial(p, pinst, k, v)?;
            }
        }
        Ok(())
    }

    /// Adds a partial sum to level `l`'s copy of output element `k`.
    fn add_partial(&mut self, l: usize, inst: usize, k: u64, v: f64) -> Result<(), CheckError> {
        let (e, name) = (self.e, &self.t.levels[l].name);
        let b = &mut self.slots[l][OUT]
            .as_mut()
            .expect("slot of a kept operand")
            .bufs[inst];
        match b.vals.get_mut(&k) {
            Some(x) => *x += v,
            // The outermost level holds every output element.
            None if l == 0 => {
                b.vals.insert(k, v);
            }
            None => {
                return Err(einsum_err(
                    e,
                    format!("a partial sum went up to level '{name}', which does not hold it"),
                ))
            }
        }
        Ok(())
    }

    /// The new tiles arrive at level `l`: fills (and the parent's reads) for the
    /// elements the level does not already hold, `new \ old`.
    fn arrive(&mut self, l: usize, o: usize, tiles: Vec<Vec<u64>>) -> Result<(), CheckError> {
        let p = self.slot(l, o).parent.expect("an inner level has a parent");
        let arriving: Vec<Vec<u64>> = tiles
            .iter()
            .zip(&self.slot(l, o).bufs)
            .map(|(new, b)| minus(new, &b.tile))
            .collect();
        // Outputs seen for the first time start at zero: only the others are filled.
        let filled: Vec<Vec<u64>> = if o == OUT {
            arriving
                .iter()
                .zip(&self.slot(l, o).bufs)
                .map(|(a, b)| a.iter().copied().filter(|k| b.ever.contains(k)).collect())
                .collect()
        } else {
            arriving.clone()
        };
        let fills: u64 = filled.iter().map(|f| f.len() as u64).sum();
        self.counted.fills[l][o] += fills;
        self.counted.reads[p][o] += if self.crosses(p, Some(l)) {
            self.served(o, &filled)?
        } else {
            fills
        };
        for (inst, (keys, tile)) in filled.iter().zip(tiles).enumerate() {
            let pinst = if p >= self.fan { inst } else { 0 };
            let mut vals: Vec<(u64, f64)> = Vec::with_capacity(keys.len());
            for &k in keys {
                vals.push((k, self.parent_value(p, pinst, o, k)?));
            }
            let b = &mut self.slot_mut(l, o).bufs[inst];
            if o == OUT {
                for &k in &arriving[inst] {
                    b.ever.insert(k);
                    b.vals.insert(k, 0.0);
                }
            } else {
                for k in minus(&b.tile, &tile) {
                    b.vals.remove(&k);
                }
                b.vals.extend(vals);
            }
            b.tile = tile;
        }
        let words = self.slot(l, o).bufs.iter().map(|b| b.tile.len() as u64);
        let max = words.max().unwrap_or(0);
        let tw = &mut self.counted.tile_words[l][o];
        *tw = (*tw).max(max);
        Ok(())
    }

    /// The value level `p` (instance `inst`) sends down for element `k` of operand `o`:
    /// an input or weight value, or (outputs) a check that the partial sum is there.
    fn parent_value(&self, p: usize, inst: usize, o: usize, k: u64) -> Result<f64, CheckError> {
        if p == 0 {
            return Ok(self.dram_value(o, k));
        }
        let b = &self.slot(p, o).bufs[inst];
        match b.vals.get(&k) {
            Some(&v) => Ok(if o == OUT { 0.0 } else { v }),
            None => Err(einsum_err(
                self.e,
                format!(
                    "level '{}' was asked for a {} element it does not hold",
                    self.level_name(p),
                    OPERANDS[o]
                ),
            )),
        }
    }

    /// An element as the outermost level stores it: the tensor's value, zero for padding.
    fn dram_value(&self, o: usize, k: u64) -> f64 {
        if o == OUT {
            return 0.0;
        }
        self.keys[o]
            .tensor_offset(k)
            .map(|off| self.tensors[o].data[off])
            .unwrap_or(0.0)
    }

    fn check_capacity(&mut self, l: usize) -> Result<(), CheckError> {
        let lv = &self.t.levels[l];
        let copies = if lv.double_buffered { 2 } else { 1 };
        let n = self.counted.instances[l] as usize;
        let bits = crate::arch::dtype_bits(self.e.dtype);
        for inst in 0..n {
            // Elements packed into the level's words (arch::words_for), per operand.
            let words: u64 = (0..3)
                .filter_map(|o| self.slots[l][o].as_ref())
                .map(|s| lv.words_for(s.bufs[inst].tile.len() as u64, bits) * copies)
                .sum();
            self.counted.peak_words[l] = self.counted.peak_words[l].max(words);
            if let Some(cap) = lv.size_words {
                if words > cap {
                    return Err(CheckError::Capacity {
                        einsum: self.e.name.clone(),
                        level: lv.name.clone(),
                        words,
                        capacity: cap,
                    });
                }
            }
        }
        Ok(())
    }

    /// One temporal step: every PE does one MAC, reading its operands from the innermost
    /// levels that keep them and updating its output there.
    fn step_macs(&mut self) -> Result<(), CheckError> {
        self.counted.steps += 1;
        let base = self.temporal_point(self.loops.len());
        let npes = self.pe_offset.len();
        let mut keys = vec![[0u64; 3]; npes];
        let mut prods = vec![0.0f64; npes];
        for (pe, slot) in keys.iter_mut().enumerate() {
            let point: Vec<u64> = base
                .iter()
                .zip(&self.pe_offset[pe])
                .map(|(a, b)| a + b)
                .collect();
            let real = point.iter().zip(&self.bounds).all(|(x, b)| x < b);
            for (o, k) in slot.iter_mut().enumerate() {
                *k = self.keys[o].key(&point);
            }
            let i = self.mac_operand(0, pe, slot[0])?;
            let w = self.mac_operand(1, pe, slot[1])?;
            self.counted.macs += 1;
            if real {
                self.counted.real_macs += 1;
                prods[pe] = i * w;
            }
        }
        for o in 0..2 {
            let l = self.innermost[o];
            self.counted.reads[l][o] += if self.crosses(l, None) {
                let sets: Vec<Vec<u64>> = keys.iter().map(|k| vec![k[o]]).collect();
                self.served(o, &sets)?
            } else {
                npes as u64
            };
        }
        self.accumulate(&keys, &prods)
    }

    /// The value a MAC reads for operand `o` (element `k`) from its innermost level.
    fn mac_operand(&self, o: usize, pe: usize, k: u64) -> Result<f64, CheckError> {
        let l = self.innermost[o];
        if l == 0 {
            return Ok(self.dram_value(o, k));
        }
        let inst = if l >= self.fan { pe } else { 0 };
        self.slot(l, o).bufs[inst]
            .vals
            .get(&k)
            .copied()
            .ok_or_else(|| {
                einsum_err(
                    self.e,
                    format!(
                        "a MAC needs a {} element that level '{}' does not hold",
                        OPERANDS[o],
                        self.level_name(l)
                    ),
                )
            })
    }

    /// Products go to the innermost output level: per PE there, or reduced across the
    /// PEs that share an element when that level is shared.
    fn accumulate(&mut self, keys: &[[u64; 3]], prods: &[f64]) -> Result<(), CheckError> {
        let (e, t) = (self.e, self.t);
        let l = self.innermost[OUT];
        let writes: Vec<(usize, u64, f64)> = if self.crosses(l, None) {
            self.reduce(keys, prods)?
        } else {
            keys.iter()
                .zip(prods)
                .enumerate()
                .map(|(pe, (k, &v))| (pe, k[OUT], v))
                .collect()
        };
        for (inst, k, v) in writes {
            self.counted.updates[l][OUT] += 1;
            let b = &mut self.slots[l][OUT]
                .as_mut()
                .expect("slot of a kept operand")
                .bufs[inst];
            if !b.touched.insert(k) {
                self.counted.reads[l][OUT] += 1;
            }
            match b.vals.get_mut(&k) {
                Some(x) => *x += v,
                // The outermost level holds every output element.
                None if l == 0 => {
                    b.vals.insert(k, v);
                }
                None => {
                    return Err(einsum_err(
                        e,
                        format!(
                            "a MAC updates an output element level '{}' does not hold",
                            t.levels[l].name
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Products of the PEs that share an output element at this step, summed in the
    /// array before the one update: `(instance 0, element, sum)` per group.
    fn reduce(
        &self,
        keys: &[[u64; 3]],
        prods: &[f64],
    ) -> Result<Vec<(usize, u64, f64)>, CheckError> {
        let mut at: KeyMap<usize> = KeyMap::default();
        let mut out: Vec<(usize, u64, f64)> = Vec::new();
        for (pe, (k, &v)) in keys.iter().zip(prods).enumerate() {
            let group = match self.opts.multicast {
                MulticastRule::Broadcast => u64::from(self.group[OUT][pe]),
                MulticastRule::IdenticalData => k[OUT],
            };
            match at.get(&group) {
                Some(&i) if out[i].1 != k[OUT] => {
                    return Err(einsum_err(
                        self.e,
                        "PEs on one reduction line write different output elements",
                    ))
                }
                Some(&i) => out[i].2 += v,
                None => {
                    at.insert(group, out.len());
                    out.push((0, k[OUT], v));
                }
            }
        }
        Ok(out)
    }

    /// The outermost level's outputs as a tensor; padded elements must have stayed zero.
    fn output(&self) -> Result<Tensor, CheckError> {
        let mut out = Tensor::zeros(&self.e.output.shape);
        for (&k, &v) in &self.slot(0, OUT).bufs[0].vals {
            match self.keys[OUT].tensor_offset(k) {
                Some(off) => out.data[off] += v,
                None if v == 0.0 => {}
                None => {
                    return Err(einsum_err(
                        self.e,
                        "a padded iteration left a nonzero partial sum outside the output",
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// Every PE's offset along every dim: PEs enumerate the spatial factors as a mixed
/// radix, each dim's spatial index scaled by the stride of the spatial loop.
fn pe_offsets(spatial: &[u64], sp_stride: &[u64]) -> Vec<Vec<u64>> {
    let mut pes = vec![vec![0u64; spatial.len()]];
    for (d, &s) in spatial.iter().enumerate() {
        if s <= 1 {
            continue;
        }
        let mut next = Vec::with_capacity(pes.len() * s as usize);
        for pe in &pes {
            for i in 0..s {
                let mut q = pe.clone();
                q[d] = i * sp_stride[d];
                next.push(q);
            }
        }
        pes = next;
    }
    pes
}

/// Per PE, the index of its broadcast group for an operand: the PE's spatial indices
/// along the dims the operand depends on (PEs in a group differ only in the others).
fn broadcast_groups(spatial: &[u64], relevant: &[bool]) -> Vec<u32> {
    let mut groups = vec![0u32];
    for (d, &s) in spatial.iter().enumerate() {
        if s <= 1 {
            continue;
        }
        let radix = if relevant[d] { s as u32 } else { 1 };
        let mut next = Vec::with_capacity(groups.len() * s as usize);
        for &g in &groups {
            for i in 0..s as u32 {
                next.push(g * radix + if relevant[d] { i } else { 0 });
            }
        }
        groups = next;
    }
    groups
}

/// One count on which the executor and the access model disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// A level name, or "MAC" for the MAC count.
    pub level: String,
    /// I, W, O, or "-" for the MAC count.
    pub operand: &'static str,
    /// reads, fills, updates, tile_words, or macs.
    pub what: &'static str,
    pub counted: u64,
    pub modeled: u64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}: counted {} vs modeled {}",
            self.level, self.operand, self.what, self.counted, self.modeled
        )
    }
}

/// Every count where `counted` (the executor) and `modeled` (`map::analyze` on the
/// same problem and mapping) differ: reads, fills, updates and tile sizes per level and
/// operand, and the padded MAC count.
pub fn compare(t: &Template, counted: &Counted, modeled: &Counts) -> Vec<Mismatch> {
    let mut v = Vec::new();
    if counted.macs != modeled.padded_macs {
        v.push(Mismatch {
            level: "MAC".into(),
            operand: "-",
            what: "macs",
            counted: counted.macs,
            modeled: modeled.padded_macs,
        });
    }
    for (l, lv) in t.levels.iter().enumerate().take(counted.reads.len()) {
        for (o, name) in OPERANDS.iter().enumerate() {
            let pairs = [
                ("reads", counted.reads[l][o], modeled.reads[l][o]),
                ("fills", counted.fills[l][o], modeled.fills[l][o]),
                ("updates", counted.updates[l][o], modeled.updates[l][o]),
                (
                    "tile_words",
                    counted.tile_words[l][o],
                    modeled.tile_words[l][o],
                ),
            ];
            for (what, c, m) in pairs {
                if c != m {
                    v.push(Mismatch {
                        level: lv.name.clone(),
                        operand: name,
                        what,
                        counted: c,
                        modeled: m,
                    });
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_difference_of_sorted_keys() {
        assert_eq!(minus(&[1, 3, 5, 7], &[3, 4, 7]), vec![1, 5]);
        assert_eq!(minus(&[], &[1]), Vec::<u64>::new());
    }

    #[test]
    fn pes_enumerate_spatial_factors_with_their_strides() {
        // Dim 0 unrolled 2 ways (stride 3), dim 1 not, dim 2 unrolled 3 ways (stride 1).
        let pes = pe_offsets(&[2, 1, 3], &[3, 1, 1]);
        assert_eq!(pes.len(), 6);
        assert_eq!(pes[1], vec![0, 0, 1]);
        assert_eq!(pes[3], vec![3, 0, 0]);
        // An operand indexed by dim 0 only: PEs differing in dim 2 share a group.
        assert_eq!(
            broadcast_groups(&[2, 1, 3], &[true, false, false]),
            vec![0, 0, 0, 1, 1, 1]
        );
    }

    #[test]
    fn tiles_are_sorted_element_sets() {
        // I[h] with h = 2p + r − 1 over p ∈ {1, 2}, r < 3: h ∈ {1..5} (the padding row −1 is not in it).
        let e = crate::lower::gemm("g", 1, 1, 1, crate::workload::DType::Fp32);
        let op = Operand {
            role: crate::lower::OperandRole::Input,
            shape: vec![6],
            proj: vec![crate::lower::Affine {
                terms: vec![(0, 2), (1, 1)],
                offset: -1,
            }],
            is_param: false,
        };
        let keys = Keys::new(&e, &op, &[4, 3, 1]).unwrap();
        let tile = keys.tile(&[1, 0, 0], &[2, 3, 1]);
        assert_eq!(tile.len(), 5);
        assert!(tile.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(keys.tensor_offset(tile[0]), Some(1));
        assert_eq!(keys.tensor_offset(keys.key(&[0, 0, 0])), None);
    }
}
