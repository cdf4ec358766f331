//! Mappings and what they imply: how an Einsum's loop nest is split over the memory
//! levels and the PE array, and how many words each level reads, fills and updates.
//!
//! The access model follows Timeloop's buffer analysis, with exact reuse: a level's
//! tile is the footprint (the distinct tensor elements) of every loop at or below it;
//! whenever a loop above it steps (and the loops inside that one wrap), the level
//! fetches only the elements of its new tile it does not already hold. Loops that do
//! not index an operand leave its tile in place; the steps of a sliding window bring in
//! only the new part (the convolution halo); a wrap that lands on an overlapping tile
//! keeps the overlap too (`Reuse::Exact`). Timeloop discards that last kind of overlap
//! (`Reuse::Sliding`, used to replay it). Spatial loops multicast read-only operands
//! and reduce partial sums. `check` re-executes mappings step by step and verifies
//! these counts.

pub mod file;
pub mod mapper;
pub mod nest;
pub mod systolic;

pub use nest::{analyze, analyze_with, Counts, Reuse};

use crate::arch::{Template, OPERANDS};
use crate::lower::Einsum;
use serde::Serialize;

pub const MAX_DIMS: usize = 8;
pub const MAX_LEVELS: usize = 8;
const MAX_AXES: usize = 6;
const MAX_TERMS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    File {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("no valid mapping of '{einsum}' onto '{template}': {why}")]
    NoMapping {
        einsum: String,
        template: String,
        why: String,
    },
}

/// One tensor axis's index as `Σ coef·dim`, in fixed arrays (the hot path allocates nothing).
#[derive(Clone, Copy, Debug, Default)]
pub struct Axis {
    pub nterms: u8,
    pub dims: [u8; MAX_TERMS],
    pub coefs: [i32; MAX_TERMS],
}

/// An operand reduced to what the access model needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct OperandShape {
    pub naxes: u8,
    pub axes: [Axis; MAX_AXES],
    /// Bit d set: dimension d indexes this operand.
    pub relevant: u8,
}

impl OperandShape {
    pub fn is_relevant(&self, d: usize) -> bool {
        self.relevant & (1 << d) != 0
    }

    /// Distinct elements touched by the box of dimension extents `ext`.
    pub fn footprint(&self, ext: &[u64; MAX_DIMS]) -> u64 {
        let mut n = 1u64;
        for a in &self.axes[..self.naxes as usize] {
            n *= axis_distinct(a, ext);
        }
        n
    }
}

/// Span (bounding interval length) of one axis over the box `ext`.
#[inline]
fn axis_span(a: &Axis, ext: &[u64; MAX_DIMS]) -> u64 {
    let mut s = 1u64;
    for t in 0..a.nterms as usize {
        s += a.coefs[t].unsigned_abs() as u64 * (ext[a.dims[t] as usize] - 1);
    }
    s
}

/// Whether the values `Σ c_i·x_i` fill their span with no holes: sorting terms by
/// |c|, each coefficient must not exceed the span already covered plus one.
#[inline]
fn axis_contiguous(a: &Axis, ext: &[u64; MAX_DIMS]) -> bool {
    let n = a.nterms as usize;
    // Common cases without sorting: one term always fills its span; two terms do
    // when the larger coefficient steps no further than the smaller one's reach.
    if n <= 1 {
        return a.coefs[0].unsigned_abs() <= 1 || ext[a.dims[0] as usize] <= 1;
    }
    if n == 2 {
        let (c0, e0) = (a.coefs[0].unsigned_abs() as u64, ext[a.dims[0] as usize]);
        let (c1, e1) = (a.coefs[1].unsigned_abs() as u64, ext[a.dims[1] as usize]);
        let ((cs, es), (cl, el)) = if c0 <= c1 {
            ((c0, e0), (c1, e1))
        } else {
            ((c1, e1), (c0, e0))
        };
        let covered = if es > 1 {
            if cs > 1 {
                return false;
            }
            1 + cs * (es - 1)
        } else {
            1
        };
        return el <= 1 || cl <= covered;
    }
    let mut terms: [(u64, u64); MAX_TERMS] = [(0, 0); MAX_TERMS];
    for (t, slot) in terms.iter_mut().enumerate().take(n) {
        *slot = (a.coefs[t].unsigned_abs() as u64, ext[a.dims[t] as usize]);
    }
    terms[..n].sort_unstable();
    let mut covered = 1u64; // values 0..covered are reachable
    for &(c, e) in &terms[..n] {
        if e <= 1 {
            continue;
        }
        if c > covered {
            return false;
        }
        covered += c * (e - 1);
    }
    true
}

/// Largest value set an axis is enumerated into (gapped axes only); beyond it the
/// counts use the closed forms of [`axis_distinct`] or the bounds documented there.
pub const MAX_ENUMERATED: u64 = 1 << 14;

/// Distinct index values of one axis over the box `ext`, without allocating in
/// proportion to a bound:
/// * contiguous (`axis_contiguous`): the span;
/// * layered: with terms sorted by |coefficient|, each term's step clears the span of
///   the smaller ones (`s·p + r` with stride > kernel; a padded head axis
///   `h·D + k` with k < D): the product of the extents;
/// * two terms `a·x + b·y` otherwise: with `g = gcd(a, b)`, `a' = a/g`, `b' = b/g`, each
///   value's representations form a chain stepping `(x − b', y + a')`, so counting the
///   chain heads gives `min(X, b')·Y + max(0, X − b')·min(Y, a')` exactly;
/// * anything else is enumerated up to [`MAX_ENUMERATED`] values, and above that
///   bounded by `min(Π extents, span)` (an upper bound; no shipped lowering produces
///   such an axis).
#[inline]
fn axis_distinct(a: &Axis, ext: &[u64; MAX_DIMS]) -> u64 {
    if axis_contiguous(a, ext) {
        return axis_span(a, ext);
    }
    let mut terms = [(0u64, 0u64); MAX_TERMS];
    let mut n = 0;
    for t in 0..a.nterms as usize {
        let e = ext[a.dims[t] as usize];
        if e > 1 {
            terms[n] = (a.coefs[t].unsigned_abs() as u64, e);
            n += 1;
        }
    }
    let terms = &mut terms[..n];
    terms.sort_unstable();
    let product = terms
        .iter()
        .map(|&(_, e)| e)
        .fold(1u64, u64::saturating_mul);
    let mut span = 1u64;
    if terms.iter().all(|&(c, e)| {
        let layered = c >= span;
        span = span.saturating_add(c.saturating_mul(e - 1));
        layered
    }) {
        return product;
    }
    if let [(b, y), (a, x)] = *terms {
        let g = gcd(a, b).max(1);
        let (a1, b1) = (a / g, b / g);
        return x.min(b1).saturating_mul(y) + x.saturating_sub(b1).saturating_mul(y.min(a1));
    }
    if product <= MAX_ENUMERATED && axis_span(a, ext) <= MAX_ENUMERATED {
        let mut bits = [0u64; BITSET_WORDS];
        value_bits(terms, &mut bits);
        return bits.iter().map(|w| w.count_ones() as u64).sum();
    }
    if product <= MAX_ENUMERATED {
        return axis_values(a, ext).len() as u64;
    }
    product.min(axis_span(a, ext))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The sorted distinct values `Σ c_i·x_i` of one axis over the box `ext` (callers
/// bound the box by [`MAX_ENUMERATED`]).
fn axis_values(a: &Axis, ext: &[u64; MAX_DIMS]) -> Vec<i64> {
    let mut vals = vec![0i64];
    for t in 0..a.nterms as usize {
        let (c, e) = (a.coefs[t] as i64, ext[a.dims[t] as usize] as i64);
        let mut next = Vec::with_capacity(vals.len() * e as usize);
        for v in &vals {
            for x in 0..e {
                next.push(v + c * x);
            }
        }
        next.sort_unstable();
        next.dedup();
        vals = next;
    }
    vals
}

/// Values one axis keeps when its box moves by `shift` index units: `|V ∩ (V + shift)|`
/// for the axis's value set V over the box `ext` (exact for gapped axes too, where a
/// stride and a dilation can make shifted windows interleave). Allocation-free:
/// * contiguous: `span − shift`;
/// * layered (each term's step clears the span of the smaller ones, so every value has
///   one representation): the sum over the difference vectors δ with `Σ c·δ = shift`
///   of `Π (e − |δ|)` ([`layered_overlap`], at most two candidates per term);
/// * otherwise, for a box of at most [`MAX_ENUMERATED`] points spanning at most
///   [`MAX_ENUMERATED`] values, the value set as a bitset on the stack.
///
/// Beyond that the kept share is taken as `distinct × (span − shift) / span` (exact for
/// a uniformly spread set; such boxes are far beyond what the executor checks).
fn axis_overlap(a: &Axis, ext: &[u64; MAX_DIMS], shift: u64) -> u64 {
    if shift == 0 {
        return axis_distinct(a, ext);
    }
    if axis_contiguous(a, ext) {
        return axis_span(a, ext).saturating_sub(shift);
    }
    let mut terms = [(0u64, 0u64); MAX_TERMS];
    let mut n = 0;
    for t in 0..a.nterms as usize {
        let e = ext[a.dims[t] as usize];
        if e > 1 {
            terms[n] = (a.coefs[t].unsigned_abs() as u64, e);
            n += 1;
        }
    }
    let terms = &mut terms[..n];
    terms.sort_unstable();
    let span = axis_span(a, ext);
    if shift >= span {
        return 0;
    }
    let mut reach = 1u64;
    let layered = terms.iter().all(|&(c, e)| {
        let ok = c >= reach;
        reach = reach.saturating_add(c.saturating_mul(e - 1));
        ok
    });
    if layered {
        return layered_overlap(terms, shift as i64);
    }
    let points = terms
        .iter()
        .map(|&(_, e)| e)
        .fold(1u64, u64::saturating_mul);
    if points <= MAX_ENUMERATED && span <= MAX_ENUMERATED {
        let mut bits = [0u64; BITSET_WORDS];
        value_bits(terms, &mut bits);
        // Count v in V with v + shift in V.
        let words = (span as usize).div_ceil(64);
        let (q, r) = ((shift / 64) as usize, (shift % 64) as u32);
        let mut kept = 0u64;
        for (i, &w) in bits[..words].iter().enumerate() {
            let lo = bits.get(i + q).copied().unwrap_or(0);
            let hi = bits.get(i + q + 1).copied().unwrap_or(0);
            let moved = if r == 0 {
                lo
            } else {
                (lo >> r) | (hi << (64 - r))
            };
            kept += (w & moved).count_ones() as u64;
        }
        return kept;
    }
    let kept = (span - shift) as f64 / span as f64;
    (axis_distinct(a, ext) as f64 * kept) as u64
}

const BITSET_WORDS: usize = (MAX_ENUMERATED / 64) as usize + 1;

/// Sets bit v of `bits` for every value `v = Σ c·x` of the terms `(c, e)` (x < e);
/// callers bound the box and the span by [`MAX_ENUMERATED`].
fn value_bits(terms: &[(u64, u64)], bits: &mut [u64; BITSET_WORDS]) {
    let mut idx = [0u64; MAX_TERMS];
    loop {
        let v: u64 = terms.iter().zip(&idx).map(|(&(c, _), &x)| c * x).sum();
        bits[(v / 64) as usize] |= 1 << (v % 64);
        let mut t = 0;
        loop {
            if t == terms.len() {
                return;
            }
            idx[t] += 1;
            if idx[t] < terms[t].1 {
                break;
            }
            idx[t] = 0;
            t += 1;
        }
    }
}

/// `|V ∩ (V + s)|` for `V = {Σ c_i·x_i : x_i < e_i}` whose terms (sorted by c) are
/// layered, so that every value has exactly one representation: each pair (v, v − s)
/// is one difference vector δ with `Σ c·δ = s`, and δ is met by `Π (e − |δ|)` pairs.
/// The largest term's δ leaves a remainder the smaller terms must reach, which they
/// do for at most two values of it.
fn layered_overlap(terms: &[(u64, u64)], s: i64) -> u64 {
    let Some((&(c, e), rest)) = terms.split_last() else {
        return (s == 0) as u64;
    };
    let reach: i64 = rest.iter().map(|&(c, e)| (c * (e - 1)) as i64).sum();
    let (c, e) = (c as i64, e as i64);
    // δ with |s − c·δ| ≤ reach and |δ| < e.
    let lo = (-((reach - s).div_euclid(c))).max(-(e - 1));
    let hi = (s + reach).div_euclid(c).min(e - 1);
    let mut total = 0u64;
    for delta in lo..=hi {
        let inner = layered_overlap(rest, s - c * delta);
        total += (e - delta.abs()) as u64 * inner;
    }
    total
}

/// An Einsum as the mapper sees it: bounds and operand index structure.
#[derive(Clone, Debug)]
pub struct Problem {
    pub name: String,
    pub ndims: usize,
    pub names: [&'static str; MAX_DIMS],
    pub bounds: [u64; MAX_DIMS],
    /// Input, weight, output.
    pub operands: [OperandShape; 3],
    pub macs: u64,
    /// Precision of every operand and of the MACs.
    pub dtype: crate::workload::DType,
    /// Bits of one element at `dtype`: what capacities, traffic and energies scale with.
    pub elem_bits: u32,
}

impl Problem {
    pub fn from_einsum(e: &Einsum) -> Result<Problem, MapError> {
        if e.dims.len() > MAX_DIMS {
            return Err(MapError::Invalid(format!(
                "{} has {} dims; the mapper handles at most {MAX_DIMS}",
                e.name,
                e.dims.len()
            )));
        }
        let mut names = [""; MAX_DIMS];
        let mut bounds = [1u64; MAX_DIMS];
        for (i, d) in e.dims.iter().enumerate() {
            names[i] = d.name;
            bounds[i] = d.bound as u64;
            // Loop factors are 32-bit (Mapping::factors): refuse, never truncate.
            if u32::try_from(d.bound).is_err() || d.bound == 0 {
                return Err(MapError::Invalid(format!(
                    "{}: dim {} has bound {}; the mapper takes bounds 1..={}",
                    e.name,
                    d.name,
                    d.bound,
                    u32::MAX
                )));
            }
        }
        let mut operands = [OperandShape::default(); 3];
        for (o, op) in e.operands().iter().enumerate() {
            let s = &mut operands[o];
            if op.proj.len() > MAX_AXES {
                return Err(MapError::Invalid(format!(
                    "{}: operand with {} axes",
                    e.name,
                    op.proj.len()
                )));
            }
            s.naxes = op.proj.len() as u8;
            for (ai, aff) in op.proj.iter().enumerate() {
                let terms: Vec<_> = aff.terms.iter().filter(|(_, c)| *c != 0).collect();
                if terms.len() > MAX_TERMS {
                    return Err(MapError::Invalid(format!(
                        "{}: axis with {} terms",
                        e.name,
                        terms.len()
                    )));
                }
                let ax = &mut s.axes[ai];
                ax.nterms = terms.len() as u8;
                for (t, &&(d, c)) in terms.iter().enumerate() {
                    ax.dims[t] = d as u8;
                    ax.coefs[t] = c as i32;
                    s.relevant |= 1 << d;
                }
            }
        }
        Ok(Problem {
            name: e.name.clone(),
            ndims: e.dims.len(),
            names,
            bounds,
            operands,
            macs: e.macs(),
            dtype: e.dtype,
            elem_bits: crate::arch::dtype_bits(e.dtype),
        })
    }

    pub fn dim_index(&self, name: &str) -> Option<usize> {
        self.names[..self.ndims].iter().position(|n| *n == name)
    }

    /// Dims that index no output element: the reduction.
    pub fn is_reduction(&self, d: usize) -> bool {
        !self.operands[2].is_relevant(d)
    }
}

/// A template's mapspace constraints (`dims`, `order`, `factors` per level) resolved
/// to the dims of one problem: which dims may loop at each level, the ordered prefix
/// of each level's loops, and the loops whose bound is fixed.
#[derive(Clone, Copy, Debug)]
pub struct Constraints {
    /// `allowed[level][dim]`: the mapper may place factors of the dim there (false
    /// where `fixed` sets the factor).
    pub allowed: [[bool; MAX_DIMS]; MAX_LEVELS],
    /// `fixed[level][dim]`: the dim's temporal factor there is exactly this (0 = free).
    pub fixed: [[u32; MAX_DIMS]; MAX_LEVELS],
    /// `order[level][..order_len[level]]`: dims whose loops come first, outer to inner.
    pub order: [[u8; MAX_DIMS]; MAX_LEVELS],
    pub order_len: [u8; MAX_LEVELS],
    /// `inner[level][..inner_len[level]]`: dims whose loops come last, outer to inner.
    pub inner: [[u8; MAX_DIMS]; MAX_LEVELS],
    pub inner_len: [u8; MAX_LEVELS],
}

impl Constraints {
    pub fn of(p: &Problem, t: &Template) -> Constraints {
        let mut c = Constraints {
            allowed: [[true; MAX_DIMS]; MAX_LEVELS],
            fixed: [[0; MAX_DIMS]; MAX_LEVELS],
            order: [[0; MAX_DIMS]; MAX_LEVELS],
            order_len: [0; MAX_LEVELS],
            inner: [[0; MAX_DIMS]; MAX_LEVELS],
            inner_len: [0; MAX_LEVELS],
        };
        for (l, lv) in t.levels.iter().enumerate().take(MAX_LEVELS) {
            if let Some(dims) = &lv.temporal_dims {
                for d in 0..p.ndims {
                    c.allowed[l][d] = dims.iter().any(|x| x == p.names[d]);
                }
            }
            for name in &lv.loop_order {
                if let Some(d) = p.dim_index(name) {
                    c.order[l][c.order_len[l] as usize] = d as u8;
                    c.order_len[l] += 1;
                }
            }
            for name in &lv.loop_inner {
                if let Some(d) = p.dim_index(name) {
                    c.inner[l][c.inner_len[l] as usize] = d as u8;
                    c.inner_len[l] += 1;
                }
            }
            for (name, f) in &lv.temporal_factors {
                if let Some(d) = p.dim_index(name) {
                    c.fixed[l][d] = *f;
                    c.allowed[l][d] = false;
                }
            }
        }
        c
    }

    /// The product of the fixed factors of `d` over all levels.
    pub fn fixed_product(&self, d: usize, nlevels: usize) -> u64 {
        (0..nlevels)
            .map(|l| self.fixed[l][d].max(1) as u64)
            .product()
    }

    /// The level a factor placed at `l` goes to: `l` if the dim may loop there, else
    /// the nearest level outside that allows it, else the nearest inside; `None` if
    /// no level allows the dim.
    pub fn place(&self, d: usize, l: usize, nlevels: usize) -> Option<usize> {
        if self.allowed[l][d] {
            return Some(l);
        }
        (0..l)
            .rev()
            .chain(l + 1..nlevels)
            .find(|&x| self.allowed[x][d])
    }

    /// Puts level `l`'s constrained dims first, in their order, keeping the rest of
    /// `order` (outer to inner) as it was.
    pub fn apply_order(&self, l: usize, order: &mut [u8; MAX_DIMS], ndims: usize) {
        let (n, m) = (self.order_len[l] as usize, self.inner_len[l] as usize);
        if n + m == 0 {
            return;
        }
        let (first, last) = (&self.order[l][..n], &self.inner[l][..m]);
        let mut out = [0u8; MAX_DIMS];
        out[..n].copy_from_slice(first);
        let mut k = n;
        for &d in order.iter().take(ndims) {
            if !first.contains(&d) && !last.contains(&d) {
                out[k] = d;
                k += 1;
            }
        }
        out[k..k + m].copy_from_slice(last);
        order[..ndims].copy_from_slice(&out[..ndims]);
    }
}

/// Which array axis a spatial loop occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ArrayAxis {
    Rows,
    Cols,
}

/// A mapping: per level, temporal factors and loop order; spatial factors per array axis.
/// Imperfect factorization is allowed: the product of a dim's factors may exceed its
/// bound, and the padded iterations are wasted work that the model counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub nlevels: u8,
    pub ndims: u8,
    /// `factors[level][dim]`: temporal loop bound at that level (1 = no loop).
    pub factors: [[u32; MAX_DIMS]; MAX_LEVELS],
    /// `order[level]`: dims from outermost to innermost loop at that level.
    pub order: [[u8; MAX_DIMS]; MAX_LEVELS],
    pub spatial_rows: [u32; MAX_DIMS],
    pub spatial_cols: [u32; MAX_DIMS],
    /// `keep[level][operand]`: the level stores the operand (else it bypasses it).
    /// Starts as the template's `keeps`; a mapping may bypass more, never keep more.
    pub keep: [[bool; 3]; MAX_LEVELS],
}

impl Mapping {
    /// Everything at the outermost level, natural order, no spatial unrolling.
    pub fn trivial(p: &Problem, t: &Template) -> Mapping {
        let nlevels = t.levels.len();
        let mut keep = [[false; 3]; MAX_LEVELS];
        for (l, lv) in t.levels.iter().enumerate() {
            keep[l] = lv.keeps;
        }
        let mut m = Mapping {
            keep,
            nlevels: nlevels as u8,
            ndims: p.ndims as u8,
            factors: [[1; MAX_DIMS]; MAX_LEVELS],
            order: [[0; MAX_DIMS]; MAX_LEVELS],
            spatial_rows: [1; MAX_DIMS],
            spatial_cols: [1; MAX_DIMS],
        };
        for l in 0..MAX_LEVELS {
            for d in 0..MAX_DIMS {
                m.order[l][d] = d as u8;
            }
        }
        for d in 0..p.ndims {
            // from_einsum refuses bounds above u32::MAX.
            m.factors[0][d] = u32::try_from(p.bounds[d]).unwrap_or(u32::MAX);
        }
        m
    }

    pub fn spatial(&self, d: usize) -> u64 {
        self.spatial_rows[d] as u64 * self.spatial_cols[d] as u64
    }

    pub fn used_rows(&self) -> u64 {
        self.spatial_rows[..self.ndims as usize]
            .iter()
            .map(|&f| f as u64)
            .product()
    }

    pub fn used_cols(&self) -> u64 {
        self.spatial_cols[..self.ndims as usize]
            .iter()
            .map(|&f| f as u64)
            .product()
    }

    /// Product of every factor of dim d (temporal and spatial): its padded bound.
    pub fn padded_bound(&self, d: usize) -> u64 {
        (0..self.nlevels as usize)
            .map(|l| self.factors[l][d] as u64)
            .product::<u64>()
            * self.spatial(d)
    }

    /// Checks a mapping against the problem and template: coverage, array size,
    /// keeps, spatial dims, and the template's mapspace constraints.
    pub fn validate(&self, p: &Problem, t: &Template) -> Result<(), MapError> {
        self.validate_shape(p, t)?;
        self.check_constraints(p, t)
    }

    /// The template's mapspace constraints (`dims`, `order` per level).
    pub fn check_constraints(&self, p: &Problem, t: &Template) -> Result<(), MapError> {
        let c = Constraints::of(p, t);
        for (l, lv) in t.levels.iter().enumerate() {
            let looping = |d: usize| self.factors[l][d] > 1;
            if let Some(d) =
                (0..p.ndims).find(|&d| c.fixed[l][d] > 0 && self.factors[l][d] != c.fixed[l][d])
            {
                return Err(MapError::Invalid(format!(
                    "level '{}' has {}{}; its factors constraint fixes {} = {}",
                    lv.name, p.names[d], self.factors[l][d], p.names[d], c.fixed[l][d]
                )));
            }
            if let Some(d) =
                (0..p.ndims).find(|&d| looping(d) && !c.allowed[l][d] && c.fixed[l][d] == 0)
            {
                return Err(MapError::Invalid(format!(
                    "level '{}' has a {}{} loop; its mapspace constraint allows dims = {:?}",
                    lv.name,
                    p.names[d],
                    self.factors[l][d],
                    lv.temporal_dims.as_deref().unwrap_or_default()
                )));
            }
            // The looping dims, outer to inner, must start with the ordered ones.
            let fixed = &c.order[l][..c.order_len[l] as usize];
            let seq: Vec<u8> = self.order[l][..p.ndims]
                .iter()
                .copied()
                .filter(|&d| looping(d as usize))
                .collect();
            let expect: Vec<u8> = fixed
                .iter()
                .copied()
                .filter(|&d| looping(d as usize))
                .collect();
            if seq[..expect.len()] != expect[..] {
                return Err(MapError::Invalid(format!(
                    "level '{}': loops {} break its order constraint {:?} (those dims first, outer to inner)",
                    lv.name,
                    seq.iter().map(|&d| p.names[d as usize]).collect::<Vec<_>>().join(" "),
                    lv.loop_order
                )));
            }
            let expect: Vec<u8> = c.inner[l][..c.inner_len[l] as usize]
                .iter()
                .copied()
                .filter(|&d| looping(d as usize))
                .collect();
            if seq[seq.len() - expect.len()..] != expect[..] {
                return Err(MapError::Invalid(format!(
                    "level '{}': loops {} break its inner constraint {:?} (those dims last, outer to inner)",
                    lv.name,
                    seq.iter().map(|&d| p.names[d as usize]).collect::<Vec<_>>().join(" "),
                    lv.loop_inner
                )));
            }
        }
        Ok(())
    }

    /// `validate` without the mapspace constraints.
    pub fn validate_shape(&self, p: &Problem, t: &Template) -> Result<(), MapError> {
        if self.nlevels as usize != t.levels.len() {
            return Err(MapError::Invalid(format!(
                "mapping has {} levels, template '{}' has {}",
                self.nlevels,
                t.name,
                t.levels.len()
            )));
        }
        for d in 0..p.ndims {
            if self.padded_bound(d) < p.bounds[d] {
                return Err(MapError::Invalid(format!(
                    "dim {} is covered to {} of its bound {}",
                    p.names[d],
                    self.padded_bound(d),
                    p.bounds[d]
                )));
            }
        }
        if self.used_rows() > t.array.rows as u64 || self.used_cols() > t.array.cols as u64 {
            return Err(MapError::Invalid(format!(
                "spatial unrolling uses {}x{} PEs; the array is {}x{}",
                self.used_rows(),
                self.used_cols(),
                t.array.rows,
                t.array.cols
            )));
        }
        for (l, lv) in t.levels.iter().enumerate() {
            for o in 0..3 {
                if self.keep[l][o] && !lv.keeps[o] {
                    return Err(MapError::Invalid(format!(
                        "level '{}' does not store {} in template '{}'; a mapping can only bypass",
                        lv.name,
                        operand_name(o),
                        t.name
                    )));
                }
                if l == 0 && !self.keep[0][o] {
                    return Err(MapError::Invalid(format!(
                        "the outermost level must keep {}",
                        operand_name(o)
                    )));
                }
            }
        }
        for d in 0..p.ndims {
            let name = p.names[d];
            if self.spatial_rows[d] > 1 && !t.array.spatial_rows.iter().any(|s| s == name) {
                return Err(MapError::Invalid(format!(
                    "array rows may not unroll dim {name}"
                )));
            }
            if self.spatial_cols[d] > 1 && !t.array.spatial_cols.iter().any(|s| s == name) {
                return Err(MapError::Invalid(format!(
                    "array cols may not unroll dim {name}"
                )));
            }
            if self.spatial(d) > 1 && p.is_reduction(d) && !t.array.spatial_reduction {
                return Err(MapError::Invalid(format!(
                    "dim {name} is a reduction; the array cannot reduce partial sums spatially"
                )));
            }
        }
        Ok(())
    }

    /// `DRAM[Q28 P4] GLB[M2 S7 Q4] sp[C3r M4r] RF[...]`: loops outer→inner per level.
    pub fn compact(&self, p: &Problem, t: &Template) -> String {
        let mut parts = Vec::new();
        let fan = t.fanout_level();
        for l in 0..self.nlevels as usize {
            if l == fan {
                let mut sp = Vec::new();
                for d in 0..p.ndims {
                    if self.spatial_rows[d] > 1 {
                        sp.push(format!("{}{}r", p.names[d], self.spatial_rows[d]));
                    }
                    if self.spatial_cols[d] > 1 {
                        sp.push(format!("{}{}c", p.names[d], self.spatial_cols[d]));
                    }
                }
                parts.push(format!("sp[{}]", sp.join(" ")));
            }
            let loops: Vec<String> = self.order[l][..p.ndims]
                .iter()
                .map(|&d| d as usize)
                .filter(|&d| self.factors[l][d] > 1)
                .map(|d| format!("{}{}", p.names[d], self.factors[l][d]))
                .collect();
            parts.push(format!("{}[{}]", t.levels[l].name, loops.join(" ")));
        }
        parts.join(" ")
    }
}

/// Operand letter for messages.
pub fn operand_name(o: usize) -> &'static str {
    OPERANDS[o]
}

#[cfg(test)]
mod axis_tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every value `Σ coefs[t]·x[t]` over the box `0 ≤ x[t] < exts[t]`: the plainest
    /// enumeration, into a set.
    fn values(coefs: &[i32], exts: &[u64]) -> std::collections::HashSet<i64> {
        let mut set = std::collections::HashSet::new();
        let mut idx = vec![0u64; exts.len()];
        loop {
            set.insert(
                coefs
                    .iter()
                    .zip(&idx)
                    .map(|(&c, &x)| c as i64 * x as i64)
                    .sum::<i64>(),
            );
            let mut t = 0;
            loop {
                if t == idx.len() {
                    return set;
                }
                idx[t] += 1;
                if idx[t] < exts[t] {
                    break;
                }
                idx[t] = 0;
                t += 1;
            }
        }
    }

    /// The plainest count of distinct values.
    fn brute(coefs: &[i32], exts: &[u64]) -> u64 {
        values(coefs, exts).len() as u64
    }

    /// A random axis of 1–3 terms (coefficients ±1..9, extents 1..12) with its extents,
    /// and the same terms as plain lists for the brute-force side.
    #[allow(clippy::needless_range_loop)] // t indexes the axis's parallel term arrays
    fn random_axis(
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> (Axis, [u64; MAX_DIMS], Vec<i32>, Vec<u64>) {
        let n = rng.random_range(1..=3usize);
        let mut a = Axis {
            nterms: n as u8,
            ..Axis::default()
        };
        let mut ext = [1u64; MAX_DIMS];
        let mut coefs = Vec::new();
        let mut exts = Vec::new();
        for t in 0..n {
            let c = rng.random_range(1..=9i32) * if rng.random_bool(0.2) { -1 } else { 1 };
            let e = rng.random_range(1..=12u64);
            a.dims[t] = t as u8;
            a.coefs[t] = c;
            ext[t] = e;
            coefs.push(c);
            exts.push(e);
        }
        (a, ext, coefs, exts)
    }

    /// The closed forms (contiguous, layered, two-term chain heads) against brute force
    /// on random strides, dilations, flattened radices and extents.
    #[test]
    fn distinct_values_match_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..4000 {
            let (a, ext, coefs, exts) = random_axis(&mut rng);
            assert_eq!(
                axis_distinct(&a, &ext),
                brute(&coefs, &exts),
                "{coefs:?} over {exts:?}"
            );
        }
    }

    /// `|V ∩ (V + s)|` by brute force.
    fn brute_overlap(coefs: &[i32], exts: &[u64], s: i64) -> u64 {
        let set = values(coefs, exts);
        set.iter().filter(|&&v| set.contains(&(v + s))).count() as u64
    }

    /// Overlaps of a shifted value set (contiguous, layered, bitset) against brute force.
    #[test]
    fn shifted_overlap_matches_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..4000 {
            let (a, ext, coefs, exts) = random_axis(&mut rng);
            let s = rng.random_range(0..=40u64);
            assert_eq!(
                axis_overlap(&a, &ext, s),
                brute_overlap(&coefs, &exts, s as i64),
                "{coefs:?} over {exts:?} shifted {s}"
            );
        }
    }

    /// A stride-4, kernel-3 window over a billion output rows: counted, not enumerated.
    #[test]
    fn huge_gapped_axes_are_counted_in_closed_form() {
        let mut a = Axis {
            nterms: 2,
            ..Axis::default()
        };
        a.dims = [0, 1, 0, 0];
        a.coefs = [4, 1, 0, 0];
        let mut ext = [1u64; MAX_DIMS];
        ext[0] = 1_000_000_000;
        ext[1] = 3;
        assert_eq!(axis_distinct(&a, &ext), 3_000_000_000);
        // Dilation 3 with stride 2: chains of (x − 3, y + 2); by the chain-head count.
        a.coefs = [2, 3, 0, 0];
        ext[1] = 5;
        assert_eq!(axis_distinct(&a, &ext), 3 * 5 + (1_000_000_000 - 3) * 2);
    }
}
