//! Access counting for one mapping: the hot path of every search. Fixed-size arrays,
//! no allocation, integer counts (they are compared exactly with Timeloop and with
//! the reference engine's mapped execution).

use super::{Mapping, Problem, MAX_DIMS, MAX_LEVELS};
use crate::arch::Template;

/// Words moved per level and operand (I, W, O), summed over the level's used instances.
///
/// `reads`: words a level hands to the level (or MACs) below; `fills`: words written
/// into it from above; `updates`: partial sums written into it from below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub nlevels: usize,
    pub reads: [[u64; 3]; MAX_LEVELS],
    pub fills: [[u64; 3]; MAX_LEVELS],
    pub updates: [[u64; 3]; MAX_LEVELS],
    /// Words of each operand one instance of the level holds (its tile).
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
    /// Words one instance of level `l` moves (reads + fills + updates of every operand).
    pub fn words_per_instance(&self, l: usize) -> u64 {
        let total: u64 = (0..3)
            .map(|o| self.reads[l][o] + self.fills[l][o] + self.updates[l][o])
            .sum();
        total / self.instances[l].max(1)
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

/// New words brought in when the tile `ext` of operand `o` slides by `shift` along dim `d`.
fn delta(p: &Problem, o: usize, ext: &[u64; MAX_DIMS], d: usize, shift: u64, tile: u64) -> u64 {
    let op = &p.operands[o];
    let mut overlap = 1u64;
    for a in &op.axes[..op.naxes as usize] {
        let coef = (0..a.nterms as usize)
            .find(|&t| a.dims[t] as usize == d)
            .map(|t| a.coefs[t]);
        overlap *= match coef {
            None => super::axis_distinct(a, ext),
            Some(c) if super::axis_contiguous(a, ext) => {
                super::axis_span(a, ext).saturating_sub(c.unsigned_abs() as u64 * shift)
            }
            Some(_) => 0,
        };
    }
    tile - overlap.min(tile)
}

/// Non-unit temporal loops of a mapping, innermost first across all levels:
/// `(level, dim, factor)`. `start[l]` is the first loop above level l.
struct Loops {
    list: [(u8, u8, u32); MAX_LEVELS * MAX_DIMS],
    len: usize,
    start: [usize; MAX_LEVELS + 1],
}

impl Loops {
    fn new(p: &Problem, m: &Mapping) -> Loops {
        let nl = m.nlevels as usize;
        let mut lp = Loops {
            list: [(0, 0, 1); MAX_LEVELS * MAX_DIMS],
            len: 0,
            start: [0; MAX_LEVELS + 1],
        };
        for l in (0..nl).rev() {
            lp.start[l + 1] = lp.len;
            for k in (0..p.ndims).rev() {
                let d = m.order[l][k] as usize;
                let f = m.factors[l][d];
                if f > 1 {
                    lp.list[lp.len] = (l as u8, d as u8, f);
                    lp.len += 1;
                }
            }
        }
        lp.start[0] = lp.len;
        lp
    }

    /// Loops above level `l`, innermost first.
    fn above(&self, l: usize) -> &[(u8, u8, u32)] {
        &self.list[self.start[l]..self.len]
    }
}

/// Tiles of operand `o` that arrive at one instance of level `l` over the whole run.
#[allow(clippy::too_many_arguments)]
fn arrivals(
    p: &Problem,
    fan: usize,
    m: &Mapping,
    loops: &Loops,
    o: usize,
    l: usize,
    ext: &[u64; MAX_DIMS],
    tile: u64,
) -> u64 {
    let op = &p.operands[o];
    let mut count = tile;
    let mut reusing = true;
    for &(j, d, f) in loops.above(l) {
        let (j, d, f) = (j as usize, d as usize, f as u64);
        if reusing {
            if !op.is_relevant(d) {
                continue;
            }
            reusing = false;
            let across = if l >= fan && j < fan { m.spatial(d) } else { 1 };
            let shift = ext[d] * across;
            count = tile + (f - 1) * delta(p, o, ext, d, shift, tile);
        } else {
            count *= f;
        }
    }
    count
}

/// Counts every level's reads, fills and updates for mapping `m` (see the module docs
/// of `map` for the semantics, which follow Timeloop's).
pub fn analyze(p: &Problem, t: &Template, m: &Mapping) -> Counts {
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
    let out_total = p.operands[2].footprint(&full);
    let out_split: u64 = (0..p.ndims)
        .filter(|&d| p.operands[2].is_relevant(d))
        .map(|d| m.spatial(d))
        .product();

    let loops = Loops::new(p, m);
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
        for &l in chain {
            let tile = p.operands[o].footprint(&ext[l]);
            c.tile_words[l][o] = tile;
            arrivals_of[l][o] = arrivals(p, fan, m, &loops, o, l, &ext[l], tile);
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
                let distinct = if l >= fan {
                    div(out_total, out_split)
                } else {
                    out_total
                };
                if has_parent {
                    c.fills[l][o] =
                        (arrivals_of[l][o] - distinct.min(arrivals_of[l][o])) * c.instances[l];
                }
                match child {
                    None => {
                        c.updates[l][o] = div(c.padded_macs, split);
                        c.reads[l][o] =
                            c.updates[l][o] - (distinct * c.instances[l]).min(c.updates[l][o]);
                    }
                    Some(ch) => {
                        c.updates[l][o] = div(arrivals_of[ch][o] * c.instances[ch], split);
                        let child_distinct = if ch >= fan {
                            div(out_total, out_split)
                        } else {
                            out_total
                        };
                        let child_fills = (arrivals_of[ch][o]
                            - child_distinct.min(arrivals_of[ch][o]))
                            * c.instances[ch];
                        c.reads[l][o] = div(child_fills, split);
                    }
                }
            }
        }
    }
    for l in 0..nl {
        if let Some(cap) = t.levels[l].size_words {
            let copies = if t.levels[l].double_buffered { 2 } else { 1 };
            let used: u64 = (0..3).map(|o| c.tile_words[l][o] * copies).sum();
            if used > cap && c.overflow.is_none() {
                c.overflow = Some(l);
            }
        }
    }
    c
}
