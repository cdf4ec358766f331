//! The mapper: spatial candidates ranked by array utilization, then a search over how
//! each dim's prime factors spread across the memory levels and which operand each
//! level keeps stationary: exhaustive when that space fits the budget, else seeded
//! random samples followed by local refinement of the best; then a greedy descent
//! over bypass (which operands each level drops) from each unrolling's best. Every candidate is repaired to fit capacity
//! before it is scored, so a returned mapping never breaks a buffer.
//!
//! The search is deterministic for a given seed and budget: the same problem,
//! template and objective give the same mapping on any machine.

use super::{analyze, Constraints, Counts, MapError, Mapping, Problem, MAX_DIMS, MAX_LEVELS};
use crate::arch::Template;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug)]
pub struct SearchConfig {
    /// Mappings scored per Einsum (random samples plus local refinement).
    pub budget: usize,
    /// Spatial unrollings explored (best by utilization first).
    pub spatial_candidates: usize,
    pub seed: u64,
    /// Also search bypass: from each spatial unrolling's best mapping, drop operands
    /// from the levels that keep them while that lowers the objective.
    pub bypass: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            budget: 3000,
            spatial_candidates: 6,
            seed: 1,
            bypass: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Found {
    pub mapping: Mapping,
    pub counts: Counts,
    pub score: f64,
    pub evaluated: usize,
}

/// Ways to use `cap` lanes for a dim of `bound`: divisors of the bound that fit, and
/// the padded full-width choice.
fn factor_options(bound: u64, cap: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (1..=bound.min(cap))
        .filter(|&f| bound.is_multiple_of(f))
        .collect();
    let full = bound.min(cap);
    if !v.contains(&full) {
        v.push(full);
    }
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.truncate(4);
    v
}

/// Assignments of up to two dims to one array axis with their factors.
fn axis_options(
    p: &Problem,
    allowed: &[String],
    cap: usize,
    reduce_ok: bool,
) -> Vec<Vec<(usize, u64)>> {
    let dims: Vec<usize> = (0..p.ndims)
        .filter(|&d| p.bounds[d] > 1 && allowed.iter().any(|a| a == p.names[d]))
        .filter(|&d| reduce_ok || !p.is_reduction(d))
        .collect();
    let cap = cap as u64;
    let mut out = vec![vec![]];
    for (i, &d1) in dims.iter().enumerate() {
        for f1 in factor_options(p.bounds[d1], cap) {
            out.push(vec![(d1, f1)]);
            for &d2 in &dims[i + 1..] {
                let rest = cap / f1;
                if rest < 2 {
                    continue;
                }
                for f2 in factor_options(p.bounds[d2], rest) {
                    if f2 > 1 {
                        out.push(vec![(d1, f1), (d2, f2)]);
                    }
                }
            }
        }
    }
    out
}

/// Useful work per PE-slot: how many lanes carry real (not padded) iterations.
fn spatial_value(p: &Problem, rows: &[(usize, u64)], cols: &[(usize, u64)]) -> f64 {
    let mut v = 1.0;
    for &(d, f) in rows.iter().chain(cols) {
        let b = p.bounds[d];
        let padded = b.div_ceil(f) * f;
        v *= f as f64 * b as f64 / padded as f64;
    }
    v
}

fn spatial_candidates(
    p: &Problem,
    t: &Template,
    keep: usize,
) -> Vec<([u32; MAX_DIMS], [u32; MAX_DIMS])> {
    let red = t.array.spatial_reduction;
    let rows = axis_options(p, &t.array.spatial_rows, t.array.rows, red);
    let cols = axis_options(p, &t.array.spatial_cols, t.array.cols, red);
    let mut cands: Vec<(f64, [u32; MAX_DIMS], [u32; MAX_DIMS])> = Vec::new();
    for r in &rows {
        for c in &cols {
            if r.iter().any(|(d, _)| c.iter().any(|(e, _)| e == d)) {
                continue;
            }
            let mut sr = [1u32; MAX_DIMS];
            let mut sc = [1u32; MAX_DIMS];
            for &(d, f) in r {
                sr[d] = f as u32;
            }
            for &(d, f) in c {
                sc[d] = f as u32;
            }
            cands.push((spatial_value(p, r, c), sr, sc));
        }
    }
    cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    cands.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
    cands.truncate(keep.max(1));
    cands.into_iter().map(|(_, r, c)| (r, c)).collect()
}

fn prime_factors(mut n: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut f = 2;
    while f * f <= n {
        while n.is_multiple_of(f) {
            v.push(f);
            n /= f;
        }
        f += 1;
    }
    if n > 1 {
        v.push(n);
    }
    v
}

/// A point of the temporal search: which level each prime factor of each dim sits at,
/// and which operand each level keeps stationary.
#[derive(Clone)]
struct Genome {
    /// (dim, prime, level)
    genes: Vec<(usize, u64, usize)>,
    stationary: [u8; MAX_LEVELS],
}

/// The mapping a genome stands for; factors go to the nearest level the template's
/// constraints allow (`Constraints::place`; the search checked that one exists).
fn realize(p: &Problem, nl: usize, base: &Mapping, g: &Genome, c: &Constraints) -> Mapping {
    let mut m = *base;
    for l in 0..nl {
        m.factors[l] = [1; MAX_DIMS];
        for d in 0..p.ndims {
            m.factors[l][d] = c.fixed[l][d].max(1);
        }
    }
    for &(d, f, l) in &g.genes {
        let l = c.place(d, l, nl).unwrap_or(l);
        m.factors[l][d] *= f as u32;
    }
    for l in 0..nl {
        // Loops relevant to the stationary operand outside, the others inside (reuse).
        let o = g.stationary[l] as usize;
        let mut k = 0;
        for pass in 0..2 {
            for d in 0..p.ndims {
                let rel = o < 3 && p.operands[o].is_relevant(d);
                if (pass == 0) == (rel || o >= 3) {
                    m.order[l][k] = d as u8;
                    k += 1;
                }
            }
        }
        c.apply_order(l, &mut m.order[l], p.ndims);
    }
    m
}

/// Moves factors outward until every level's tiles fit; `Err(level)` if a level still
/// overflows (with every loop outside it, its tiles are as small as they get).
fn repair(
    p: &Problem,
    t: &Template,
    base: &Mapping,
    g: &mut Genome,
    c: &Constraints,
    rng: &mut ChaCha8Rng,
) -> Result<(Mapping, Counts), usize> {
    let nl = t.levels.len();
    let mut last = 0;
    for _ in 0..4 * g.genes.len() + 4 {
        let m = realize(p, nl, base, g, c);
        let c = analyze(p, t, &m);
        let Some(l) = c.overflow else {
            return Ok((m, c));
        };
        last = l;
        // Candidates: factors at level l or inside it (they all enlarge l's tile).
        let movable: Vec<usize> = (0..g.genes.len())
            .filter(|&i| g.genes[i].2 >= l && g.genes[i].2 > 0)
            .collect();
        if movable.is_empty() {
            return Err(l);
        }
        let i = movable[rng.random_range(0..movable.len())];
        let target = if l == 0 { 0 } else { l - 1 };
        g.genes[i].2 = target.min(g.genes[i].2 - 1);
    }
    Err(last)
}

/// Searches mappings of `p` on `t`, minimizing `objective` (lower is better).
pub fn search<F>(
    p: &Problem,
    t: &Template,
    cfg: &SearchConfig,
    objective: F,
) -> Result<Found, MapError>
where
    F: Fn(&Mapping, &Counts) -> f64,
{
    let nl = t.levels.len();
    if nl > MAX_LEVELS {
        return Err(MapError::Invalid(format!(
            "template has {nl} levels; at most {MAX_LEVELS}"
        )));
    }
    let cons = Constraints::of(p, t);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ shape_hash(p));
    let spatials = spatial_candidates(p, t, cfg.spatial_candidates);
    let per_spatial = (cfg.budget / spatials.len()).max(8);
    let mut best: Option<Found> = None;
    let mut evaluated = 0;
    let mut last_why = String::from("no candidate fit");
    for (sr, sc) in spatials {
        let mut base = Mapping::trivial(p, t);
        base.spatial_rows = sr;
        base.spatial_cols = sc;
        let mut genes = Vec::new();
        let mut unfit = None;
        for d in 0..p.ndims {
            let s = base.spatial(d);
            let rem = p.bounds[d].div_ceil(s);
            // Factors the template fixes come first; the mapper places the rest.
            let fixed = cons.fixed_product(d, nl);
            if !rem.is_multiple_of(fixed) {
                unfit = Some((d, rem, fixed));
            }
            for f in prime_factors(rem / fixed) {
                genes.push((d, f, 0));
            }
        }
        if let Some((d, rem, fixed)) = unfit {
            last_why = format!(
                "{}: the `factors` constraints fix dim {}'s temporal loops to a product of {fixed}, which does not divide the {rem} iterations left after the array's unrolling; change the factors or the spatial dims",
                t.path.display(),
                p.names[d]
            );
            continue;
        }
        if base.validate_shape(p, t).is_err() {
            continue;
        }
        // A temporal factor left for a dim that no level's `dims` constraint allows.
        if let Some(&(d, _, _)) = genes
            .iter()
            .find(|&&(d, _, _)| (0..nl).all(|l| !cons.allowed[l][d]))
        {
            last_why = format!(
                "{}: no level's `dims` constraint allows dim {} (its loops left after the array's unrolling); add it to some level's dims",
                t.path.display(),
                p.names[d]
            );
            continue;
        }
        let mut local_best: Option<(Genome, f64)> = None;
        let samples = per_spatial / 2;
        // Small spaces are enumerated outright; large ones are sampled, then refined.
        let space = space_size(genes.len(), nl);
        let exhaustive = space.map(|n| n <= per_spatial as u64).unwrap_or(false);
        let rounds = if exhaustive {
            space.unwrap_or(0) as usize
        } else {
            per_spatial
        };
        for i in 0..rounds {
            let mut g = match (&local_best, i >= samples) {
                _ if exhaustive => nth_genome(&genes, nl, i as u64),
                (Some((bg, _)), true) => mutate(bg, nl, &mut rng),
                _ => random_genome(&genes, nl, &mut rng),
            };
            let (m, c) = match repair(p, t, &base, &mut g, &cons, &mut rng) {
                Ok(mc) => mc,
                Err(l) => {
                    let lv = &t.levels[l];
                    last_why = format!(
                        "{}: level '{}' holds {} words, too few for the smallest tiles of the operands it keeps; \
                         raise level.{}.size_words (or size_kib) or let it bypass an operand",
                        t.path.display(),
                        lv.name,
                        lv.size_words.unwrap_or(0),
                        lv.name
                    );
                    continue;
                }
            };
            evaluated += 1;
            let score = objective(&m, &c);
            if local_best.as_ref().map(|(_, s)| score < *s).unwrap_or(true) {
                local_best = Some((g, score));
            }
            keep_better(&mut best, m, c, score);
        }
        // Bypass: from this spatial unrolling's best, drop operands from levels.
        if let Some((g, _)) = local_best.as_ref().filter(|_| cfg.bypass) {
            let m = realize(p, nl, &base, g, &cons);
            let (m, c, score, n) = bypass_descent(p, t, m, &objective);
            evaluated += n;
            keep_better(&mut best, m, c, score);
        }
    }
    match best {
        Some(mut f) => {
            f.evaluated = evaluated;
            Ok(f)
        }
        None => Err(MapError::NoMapping {
            einsum: p.name.clone(),
            template: t.name.clone(),
            why: last_why,
        }),
    }
}

/// Replaces `best` with (m, c, score) when it scores lower (or nothing is held yet).
fn keep_better(best: &mut Option<Found>, m: Mapping, c: Counts, score: f64) {
    if best.as_ref().map(|b| score < b.score).unwrap_or(true) {
        *best = Some(Found {
            mapping: m,
            counts: c,
            score,
            evaluated: 0,
        });
    }
}

/// Greedy descent over bypass: each step tries dropping one operand from one level
/// whose template lets it (`bypassable`: shared levels by default; never DRAM or a
/// per-PE level unless the file says so), or keeping it again, and takes
/// the move that lowers the objective most, until none does. Bypass only shrinks
/// tiles, so every step still fits capacity. Returns the mapping, its counts and
/// score, and how many mappings were scored.
fn bypass_descent<F>(
    p: &Problem,
    t: &Template,
    mut m: Mapping,
    objective: &F,
) -> (Mapping, Counts, f64, usize)
where
    F: Fn(&Mapping, &Counts) -> f64,
{
    let mut c = analyze(p, t, &m);
    let mut score = objective(&m, &c);
    let mut evaluated = 1;
    let toggles: Vec<(usize, usize)> = (1..t.levels.len())
        .flat_map(|l| (0..3).map(move |o| (l, o)))
        .filter(|&(l, o)| t.levels[l].bypassable[o])
        .collect();
    loop {
        let mut step: Option<(Mapping, Counts, f64)> = None;
        for &(l, o) in &toggles {
            let mut n = m;
            n.keep[l][o] = !n.keep[l][o];
            let nc = analyze(p, t, &n);
            evaluated += 1;
            if nc.overflow.is_some() {
                continue;
            }
            let s = objective(&n, &nc);
            if s < step.as_ref().map_or(score, |x| x.2) {
                step = Some((n, nc, s));
            }
        }
        match step {
            Some((n, nc, s)) => (m, c, score) = (n, nc, s),
            None => return (m, c, score, evaluated),
        }
    }
}

/// Number of distinct genomes: levels^factors × 3^levels (stationarity per level),
/// `None` if it overflows.
fn space_size(factors: usize, nl: usize) -> Option<u64> {
    let l = nl as u64;
    l.checked_pow(factors as u32)?
        .checked_mul(3u64.checked_pow(nl as u32)?)
}

/// The `i`-th genome in mixed-radix order (factor levels, then stationarity).
fn nth_genome(genes: &[(usize, u64, usize)], nl: usize, mut i: u64) -> Genome {
    let mut g = Genome {
        genes: genes.to_vec(),
        stationary: [0; MAX_LEVELS],
    };
    for gene in g.genes.iter_mut() {
        gene.2 = (i % nl as u64) as usize;
        i /= nl as u64;
    }
    for s in g.stationary.iter_mut().take(nl) {
        *s = (i % 3) as u8;
        i /= 3;
    }
    g
}

fn random_genome(genes: &[(usize, u64, usize)], nl: usize, rng: &mut ChaCha8Rng) -> Genome {
    let mut g = Genome {
        genes: genes.to_vec(),
        stationary: [0; MAX_LEVELS],
    };
    for gene in g.genes.iter_mut() {
        gene.2 = rng.random_range(0..nl);
    }
    for s in g.stationary.iter_mut().take(nl) {
        *s = rng.random_range(0..3);
    }
    g
}

fn mutate(g: &Genome, nl: usize, rng: &mut ChaCha8Rng) -> Genome {
    let mut n = g.clone();
    let moves = rng.random_range(1..=2);
    for _ in 0..moves {
        if !n.genes.is_empty() && rng.random_bool(0.8) {
            let i = rng.random_range(0..n.genes.len());
            n.genes[i].2 = rng.random_range(0..nl);
        } else {
            let l = rng.random_range(0..nl);
            n.stationary[l] = rng.random_range(0..3);
        }
    }
    n
}

/// Stable per-shape seed offset, so different layers explore different samples.
fn shape_hash(p: &Problem) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for d in 0..p.ndims {
        h ^= p.bounds[d];
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
