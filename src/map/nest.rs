//! Access counting for one mapping: the hot path of every search. Fixed-size arrays,
//! no allocation, integer counts (they are compared exactly with Timeloop and with
//! the reference engine's mapped execution).

use super::{Mapping, Problem, MAX_DIMS, MAX_LEVELS};
use crate::arch::Template;

/// Elements moved per level and operand (I, W, O), summed over the level's used
/// instances. Counts are in elements of the Einsum's precision; `cost` turns them into
/// words of each level with the packing rule of `arch::words_per_element`.
///
/// `reads`: words a level hands to the level (or MACs) below; `fills`: words written
/// into it from above; `updates`: partial sums written into it from below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub nlevels: usize,
    pub reads: [[u64; 3]; MAX_LEVELS],
    pub fills: [[u64; 3]; MAX_LEVELS],
    pub updates: [[u64; 3]; MAX_LEVELS],
    /// Elements of each operand one instance of the level holds (its tile).
    pub tile_words: [[u64; 3]; MAX_LEVELS],
    /// Instances of the level in use (1 for shared levels).
    pub instances: [u64; MAX_LEVELS],
    /// Multiply-accumulates including the padding of imperfect factors.
    pub padded_macs: u64,
    /// Product of all temporal factors: cycles if every PE does one MAC per cycle.
    pub temporal_steps: u64,
    pub used_pes: u64,
    /// First level whose tiles overflow its capacity, if any.
    pub overflow: Option<usize>,
}

impl Counts {
    /// Elements one instance of level `l` moves (reads + fills + updates of every operand).
    pub fn words_per_instance(&self, l: usize) -> u64 {
        let total: u64 = (0..3)
            .map(|o| self.reads[l][o] + self.fills[l][o] + self.updates[l][o])
            .sum();
        total / self.instances[l].max(1)
    }

    /// Elements one instance of level `l` reads out (every operand).
    pub fn reads_per_instance(&self, l: usize) -> u64 {
        self.reads[l].iter().sum::<u64>() / self.instances[l].max(1)
    }

    /// Elements one instance of level `l` writes: fills from above, updates from below.
    pub fn writes_per_instance(&self, l: usize) -> u64 {
        let w: u64 = (0..3).map(|o| self.fills[l][o] + self.updates[l][o]).sum();
        w / self.instances[l].max(1)
    }
}

/// `a / b`, skipping the (slow) division when b is 1, the common case.
#[inline]
fn div(a: u64, b: u64) -> u64 {
    if b == 1 {
        a
    } else {
        a / b
    }
}

/// Tile extents per level: `ext[l][d]` spans every loop at level l and below, plus the
/// spatial loops when l sits above the array.
fn extents(p: &Problem, t: &Template, m: &Mapping) -> [[u64; MAX_DIMS]; MAX_LEVELS + 1] {
    let nl = m.nlevels as usize;
    let fan = t.fanout_level();
    let mut ext = [[1u64; MAX_DIMS]; MAX_LEVELS + 1];
    for l in (0..nl).rev() {
        let (outer, inner) = ext.split_at_mut(l + 1);
        for (d, e) in outer[l].iter_mut().enumerate().take(p.ndims) {
            let below = inner[0][d] * if l + 1 == fan { m.spatial(d) } else { 1 };
            *e = below * m.factors[l][d] as u64;
        }
    }
    ext
}

/// Non-unit temporal loops of a mapping, innermost first across all levels:
/// `(level, dim, factor, step)`, where `step` is how far one iteration moves the dim
/// (everything below the loop, the spatial factor included above the array).
/// `start[l]` is the first loop above level l.
struct Loops {
    list: [(u8, u8, u32, u64); MAX_LEVELS * MAX_DIMS],
    /// `outer[i]`: product of the factors of every loop outside loop i.
    outer: [u64; MAX_LEVELS * MAX_DIMS],
    len: usize,
    start: [usize; MAX_LEVELS + 1],
}

impl Loops {
    fn new(p: &Problem, m: &Mapping, fan: usize, ext: &[[u64; MAX_DIMS]; MAX_LEVELS + 1]) -> Loops {
        let nl = m.nlevels as usize;
        let mut lp = Loops {
            list: [(0, 0, 1, 1); MAX_LEVELS * MAX_DIMS],
            outer: [1; MAX_LEVELS * MAX_DIMS],
            len: 0,
            start: [0; MAX_LEVELS + 1],
        };
        for l in (0..nl).rev() {
            lp.start[l + 1] = lp.len;
            for k in (0..p.ndims).rev() {
                let d = m.order[l][k] as usize;
                let f = m.factors[l][d];
                if f > 1 {
                    let across = if l + 1 == fan { m.spatial(d) } else { 1 };
                    lp.list[lp.len] = (l as u8, d as u8, f, ext[l + 1][d] * across);
                    lp.len += 1;
                }
            }
        }
        lp.start[0] = lp.len;
        let mut outer = 1u64;
        for i in (0..lp.len).rev() {
            lp.outer[i] = outer;
            outer *= lp.list[i].2 as u64;
        }
        lp
    }

    /// Loops above level `l`, innermost first.
    fn above(&self, l: usize) -> &[(u8, u8, u32, u64)] {
        &self.list[self.start[l]..self.len]
    }

    /// For each loop above level `l`, the product of the factors outside it.
    fn outer_above(&self, l: usize) -> &[u64] {
        &self.outer[self.start[l]..self.len]
    }
}

/// An operand's projection by dim: the axes each dim indexes and its coefficient there.
struct Projection {
    /// Bit i set: the dim indexes axis i.
    axes_of: [u8; MAX_DIMS],
    coef: [[i32; MAX_DIMS]; super::MAX_AXES],
}

impl Projection {
    fn new(op: &super::OperandShape) -> Projection {
        let mut pr = Projection {
            axes_of: [0; MAX_DIMS],
            coef: [[0; MAX_DIMS]; super::MAX_AXES],
        };
        for (i, a) in op.axes[..op.naxes as usize].iter().enumerate() {
            for t in 0..a.nterms as usize {
                let d = a.dims[t] as usize;
                pr.axes_of[d] |= 1 << i;
                pr.coef[i][d] += a.coefs[t];
            }
        }
        pr
    }
}

/// Elements of operand `o` that arrive at one instance of level `l` over the whole run:
/// the first tile, then at every step of a loop above the level the new tile minus the
/// one it holds (`|new \ old|`).
///
/// Loop k (innermost first) carries `(f_k − 1) × Π(factors outside it)` times; each
/// time it moves its dim by its step while every loop inside it (and above the level)
/// wraps back by `(f − 1) × step`. The tile is a product over the operand's axes of
/// each axis's value set, and moving the box translates each axis's set by
/// `s = Σ coef × move`, so the elements kept are `Π_axes |V ∩ (V + s)|`
/// ([`super::axis_overlap`]) and the delta is the tile minus that. A carry of a loop
/// whose dim does not index the operand moves it only by the wrap of the loops inside,
/// the same for every such loop until a relevant loop joins the wrap, so it is computed
/// once per run of them.
///
/// Returns `(tile, arrivals)`: the tile is the footprint `Π_axes |V|`.
fn arrivals(
    p: &Problem,
    proj: &Projection,
    loops: &Loops,
    o: usize,
    l: usize,
    ext: &[u64; MAX_DIMS],
    reuse: Reuse,
) -> (u64, u64) {
    let op = &p.operands[o];
    let axes = &op.axes[..op.naxes as usize];
    // Per axis: its distinct values, and its span when the values fill it.
    let mut distinct = [0u64; super::MAX_AXES];
    let mut span = [0u64; super::MAX_AXES];
    // The span of every axis: a move of at least it leaves nothing of the axis.
    let mut reach = [0u64; super::MAX_AXES];
    let mut tile = 1u64;
    for (i, a) in axes.iter().enumerate() {
        reach[i] = super::axis_span(a, ext);
        if super::axis_contiguous(a, ext) {
            span[i] = reach[i];
            distinct[i] = span[i];
        } else {
            distinct[i] = super::axis_distinct(a, ext);
        }
        tile *= distinct[i];
    }
    let above = loops.above(l);
    if above.is_empty() || tile == 0 {
        return (tile, tile);
    }
    // Elements kept when each axis's values move by `mv[axis]`.
    let kept = |mv: &[i64; super::MAX_AXES]| -> u64 {
        let mut kept = 1u64;
        for (i, a) in axes.iter().enumerate() {
            let s = mv[i].unsigned_abs();
            kept *= if s == 0 {
                distinct[i]
            } else if span[i] > 0 {
                span[i].saturating_sub(s)
            } else {
                super::axis_overlap(a, ext, s)
            };
            if kept == 0 {
                return 0;
            }
        }
        kept
    };
    // How far the axes' values move when dim d moves by `by`.
    let moved = |mv: &mut [i64; super::MAX_AXES], d: usize, by: i64| {
        let mut mask = proj.axes_of[d];
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mv[i] += proj.coef[i][d] as i64 * by;
            mask &= mask - 1;
        }
    };
    if reuse == Reuse::Sliding {
        // Only the innermost relevant loop's steps keep the overlap; from the first
        // wrap of it on, every carry refetches the whole tile.
        let mut count = tile;
        let mut reusing = true;
        for &(_, d, f, step) in above {
            let (d, f) = (d as usize, f as u64);
            if !reusing {
                count *= f;
            } else if op.is_relevant(d) {
                reusing = false;
                let mut mv = [0i64; super::MAX_AXES];
                moved(&mut mv, d, step as i64);
                count = tile + (f - 1) * (tile - kept(&mv).min(tile));
            }
        }
        return (tile, count);
    }
    // The move (of each axis's values) of a carry of the current loop before its own
    // step: every loop inside it (and above the level) wraps back to 0.
    let mut back = [0i64; super::MAX_AXES];
    // Axes that `back` alone moves by their whole span: a carry that does not move
    // them again keeps nothing.
    let mut dead = 0u8;
    // The delta of a carry that only wraps (an irrelevant loop's), while it is valid.
    let mut wrap_delta: Option<u64> = Some(0);
    let mut count = tile;
    for (&(_, d, f, step), &outer) in above.iter().zip(loops.outer_above(l)) {
        let (d, f) = (d as usize, f as u64);
        let carries = (f - 1) * outer;
        let delta = if op.is_relevant(d) {
            let touched = proj.axes_of[d];
            let delta = if dead & !touched != 0 {
                tile
            } else {
                let mut mv = back;
                moved(&mut mv, d, step as i64);
                tile - kept(&mv).min(tile)
            };
            moved(&mut back, d, -((f as i64 - 1) * step as i64));
            let mut mask = touched;
            while mask != 0 {
                let i = mask.trailing_zeros() as usize;
                if back[i].unsigned_abs() >= reach[i] {
                    dead |= 1 << i;
                } else {
                    dead &= !(1 << i);
                }
                mask &= mask - 1;
            }
            wrap_delta = (dead != 0).then_some(tile);
            delta
        } else {
            *wrap_delta.get_or_insert_with(|| tile - kept(&back).min(tile))
        };
        count += carries * delta;
    }
    (tile, count)
}

/// Which overlap between consecutive tiles a level keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reuse {
    /// Every element of the new tile the level already holds stays: whichever loop
    /// steps and however many inner loops wrap, only `new \ old` is fetched. What the
    /// reference engine's mapped executor counts, and what coex reports.
    #[default]
    Exact,
    /// Only the steps of the innermost loop above the level that indexes the operand
    /// keep the overlap (the sliding window); every carry that wraps it refetches the
    /// whole tile. Timeloop's count: its nest analysis discards a tile's residual when
    /// the tile's stride changes (`SaveAndSubtractIfSameStride`), which a wrap does.
    /// Used to replay Timeloop (tests/timeloop_replay.rs).
    Sliding,
}

/// Counts every level's reads, fills and updates for mapping `m` with exact reuse (see
/// the module docs of `map` for the semantics).
pub fn analyze(p: &Problem, t: &Template, m: &Mapping) -> Counts {
    analyze_with(p, t, m, Reuse::Exact)
}

/// [`analyze`] under a chosen [`Reuse`] rule.
pub fn analyze_with(p: &Problem, t: &Template, m: &Mapping, reuse: Reuse) -> Counts {
    let nl = m.nlevels as usize;
    let fan = t.fanout_level();
    let ext = extents(p, t, m);
    let mut c = Counts {
        nlevels: nl,
        ..Counts::default()
    };
    c.used_pes = m.used_rows() * m.used_cols();
    c.padded_macs = (0..p.ndims).map(|d| m.padded_bound(d)).product();
    c.temporal_steps = (0..nl)
        .map(|l| {
            (0..p.ndims)
                .map(|d| m.factors[l][d] as u64)
                .product::<u64>()
        })
        .product();
    for l in 0..nl {
        c.instances[l] = if l >= fan { c.used_pes } else { 1 };
    }
    let spatial_irrelevant = |o: usize| -> u64 {
        (0..p.ndims)
            .filter(|&d| !p.operands[o].is_relevant(d))
            .map(|d| m.spatial(d))
            .product()
    };
    let multicast = |o: usize| {
        if t.array.multicast || o == 2 {
            spatial_irrelevant(o)
        } else {
            1
        }
    };
    // Padded extents of the whole problem, for the distinct outputs of each level.
    let mut full = [1u64; MAX_DIMS];
    for (d, f) in full.iter_mut().enumerate().take(p.ndims) {
        *f = m.padded_bound(d);
    }
    // Distinct output elements the instances of a level hold over the run, summed over
    // its instances: the whole (padded) output above the array, each PE's share inside.
    let out_total = p.operands[2].footprint(&full);
    let pe_total = if (fan..nl).any(|l| m.keep[l][2]) {
        pe_outputs(p, fan, m, &full, out_total, spatial_irrelevant(2))
    } else {
        0
    };
    let held = |l: usize| if l >= fan { pe_total } else { out_total };

    let loops = Loops::new(p, m, fan, &ext);
    let mut arrivals_of = [[0u64; 3]; MAX_LEVELS];
    #[allow(clippy::needless_range_loop)] // o indexes four parallel per-operand tables
    for o in 0..3 {
        let mut chain_buf = [0usize; MAX_LEVELS];
        let mut n = 0;
        for l in 0..nl {
            if m.keep[l][o] {
                chain_buf[n] = l;
                n += 1;
            }
        }
        let chain = &chain_buf[..n];
        let proj = Projection::new(&p.operands[o]);
        for &l in chain {
            (c.tile_words[l][o], arrivals_of[l][o]) =
                arrivals(p, &proj, &loops, o, l, &ext[l], reuse);
        }
        let mc = multicast(o);
        for (i, &l) in chain.iter().enumerate() {
            let child = chain.get(i + 1).copied();
            let crosses = |ch: Option<usize>| l < fan && ch.map(|x| x >= fan).unwrap_or(true);
            let split = if crosses(child) { mc } else { 1 };
            let has_parent = i > 0;
            if o < 2 {
                if has_parent {
                    c.fills[l][o] = arrivals_of[l][o] * c.instances[l];
                }
                c.reads[l][o] = match child {
                    None => div(c.padded_macs, split),
                    Some(ch) => div(arrivals_of[ch][o] * c.instances[ch], split),
                };
            } else {
                // An element's first arrival at an instance starts at zero: no fill.
                if has_parent {
                    c.fills[l][o] = (arrivals_of[l][o] * c.instances[l]).saturating_sub(held(l));
                }
                match child {
                    None => {
                        c.updates[l][o] = div(c.padded_macs, split);
                        c.reads[l][o] = c.updates[l][o].saturating_sub(held(l));
                    }
                    Some(ch) => {
                        c.updates[l][o] = div(arrivals_of[ch][o] * c.instances[ch], split);
                        let child_fills =
                            (arrivals_of[ch][o] * c.instances[ch]).saturating_sub(held(ch));
                        c.reads[l][o] = div(child_fills, split);
                    }
                }
            }
        }
    }
    for l in 0..nl {
        if let Some(cap) = t.levels[l].size_words {
            let copies = if t.levels[l].double_buffered { 2 } else { 1 };
            let lv = &t.levels[l];
            let used: u64 = (0..3)
                .map(|o| lv.words_for(c.tile_words[l][o], p.elem_bits) * copies)
                .sum();
            if used > cap && c.overflow.is_none() {
                c.overflow = Some(l);
            }
        }
    }
    c
}

/// Distinct output elements summed over the PEs, each PE counting what it holds over
/// the whole run. PEs split the output by their spatial indices along the dims that
/// index it and replicate it along the others (`replicas`), so when every output axis
/// maps the padded box one-to-one this is `out_total × replicas`. A flattened axis
/// (`g·Kg + k`, `(g·Hq + h)·D + k`) whose inner dim is padded aliases an element into
/// two PEs' shares (k = Kg of group g is k = 0 of group g + 1); it is counted exactly.
fn pe_outputs(
    p: &Problem,
    fan: usize,
    m: &Mapping,
    full: &[u64; MAX_DIMS],
    out_total: u64,
    replicas: u64,
) -> u64 {
    let op = &p.operands[2];
    let axes = &op.axes[..op.naxes as usize];
    // Enumerating each PE's index set costs Σ full[d] per axis: above
    // `MAX_ENUMERATED` the aliasing is ignored (an upper bound by at most the aliased
    // elements; far beyond what the executor checks).
    let enumerated: u64 = axes
        .iter()
        .flat_map(|a| (0..a.nterms as usize).map(|t| full[a.dims[t] as usize]))
        .fold(0u64, u64::saturating_add);
    if axes.iter().all(|a| injective(a, full)) || enumerated > super::MAX_ENUMERATED {
        return out_total.saturating_mul(replicas);
    }
    axes.iter()
        .map(|a| axis_pe_sum(a, fan, m, full))
        .product::<u64>()
        * replicas
}

/// Whether `Σ c_i·x_i` takes a different value at every point of the box `ext`: sorted
/// by |c|, every coefficient steps past everything the smaller terms reach (a
/// sufficient test; an axis that fails it is counted exactly instead).
fn injective(a: &super::Axis, ext: &[u64; MAX_DIMS]) -> bool {
    let n = a.nterms as usize;
    let mut terms = [(0u64, 0u64); super::MAX_TERMS];
    for (t, slot) in terms.iter_mut().enumerate().take(n) {
        *slot = (a.coefs[t].unsigned_abs() as u64, ext[a.dims[t] as usize]);
    }
    terms[..n].sort_unstable();
    let mut span = 1u64;
    for &(c, e) in &terms[..n] {
        if e <= 1 {
            continue;
        }
        if c < span {
            return false;
        }
        span += c * (e - 1);
    }
    true
}

/// Σ over PEs (the spatial indices of the axis's dims) of the distinct values one
/// output axis takes on the indices that PE runs over the whole nest.
fn axis_pe_sum(a: &super::Axis, fan: usize, m: &Mapping, full: &[u64; MAX_DIMS]) -> u64 {
    let nl = m.nlevels as usize;
    let n = a.nterms as usize;
    // Per term, per spatial index: the values c·i of the indices i that PE covers
    // (the spatial loop steps a dim by everything below the array).
    let choices: Vec<Vec<Vec<i64>>> = (0..n)
        .map(|t| {
            let (d, c) = (a.dims[t] as usize, a.coefs[t] as i64);
            let s = m.spatial(d);
            let below: u64 = (fan..nl).map(|l| m.factors[l][d] as u64).product();
            (0..s)
                .map(|j| {
                    (0..full[d])
                        .filter(|&i| (i / below) % s == j)
                        .map(|i| c * i as i64)
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut total = 0u64;
    let mut pick = vec![0usize; n];
    loop {
        let mut vals = vec![0i64];
        for (t, &j) in pick.iter().enumerate() {
            let mut next = Vec::with_capacity(vals.len() * choices[t][j].len());
            for v in &vals {
                next.extend(choices[t][j].iter().map(|x| v + x));
            }
            next.sort_unstable();
            next.dedup();
            vals = next;
        }
        total += vals.len() as u64;
        let mut t = 0;
        loop {
            if t == n {
                return total;
            }
            pick[t] += 1;
            if pick[t] < choices[t].len() {
                break;
            }
            pick[t] = 0;
            t += 1;
        }
    }
}
