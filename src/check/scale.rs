//! Scaled-down layers: a full-size Einsum and its mapping shrunk until the mapped
//! executor can run them in well under a second, with the same loop structure.
//!
//! What is kept: every operand's projections (stride, dilation, offsets), every
//! level's loop order and bypass choices, and every loop that ran (a factor above 1
//! stays at least 2 for as long as the budget allows, so slides, refetches and
//! multicasts all still happen). What shrinks: the factors, outermost level first
//! (then the next level, then the spatial unrolling), and the dims' bounds with them.
//! Bounds are recomputed as the product of the new factors minus the same padding the
//! full layer had (imperfect factors stay imperfect), and axes whose coefficients are a
//! mixed radix of dims (`g·Cg + c`, `(g·Hq + h)·D + c`) are re-flattened with the new
//! bounds, so groups and heads keep their structure. Each tensor axis keeps its edge
//! padding: its extent shrinks exactly as its largest index does.
//!
//! How the counts carry over: the access model (`map::analyze`) is one formula for
//! every size, and the executor checks it on the scaled layer. For the outermost
//! level's factors the dependence is also simple enough to state: every count is affine
//! in each of them separately once the factors are large enough that a wrap of a loop
//! above every buffer moves the tiles past their own extent (then each factor either
//! multiplies the carries of the loops inside it or adds carries of its own, each
//! moving the tiles by a fixed amount; below that a wrap can land on an overlapping
//! tile, which exact reuse keeps). Counts executed at factors b and b + 1 past that
//! point extrapolate exactly to the full factors (a factor of 1 would remove the loop);
//! see [`extrapolate`] and `tests/mapped_executor.rs` (b = 4 for a 3-wide window).

use super::CheckError;
use crate::arch::Template;
use crate::lower::{Affine, Einsum, Operand};
use crate::map::{Mapping, Problem};
use serde::Serialize;

/// A scaled-down layer and what was done to it.
#[derive(Clone, Debug)]
pub struct Scaled {
    pub einsum: Einsum,
    pub mapping: Mapping,
    pub change: ScaleNote,
}

/// How a layer was shrunk, for reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScaleNote {
    /// MACs of the full layer (padded iterations included).
    pub full_macs: u64,
    /// MACs of the scaled layer (padded iterations included).
    pub scaled_macs: u64,
    /// `(dim, full bound, scaled bound)` for every dim that shrank.
    pub dims: Vec<(String, u64, u64)>,
}

impl ScaleNote {
    pub fn is_scaled(&self) -> bool {
        !self.dims.is_empty()
    }

    /// `P 56→4, K 64→16 (1/392 of the MACs)`.
    pub fn describe(&self) -> String {
        if !self.is_scaled() {
            return "full size".into();
        }
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|(d, a, b)| format!("{d} {a}→{b}"))
            .collect();
        format!(
            "{} (1/{:.0} of the MACs)",
            dims.join(", "),
            self.full_macs as f64 / self.scaled_macs.max(1) as f64
        )
    }
}

fn padded_macs(m: &Mapping, nd: usize) -> u64 {
    (0..nd).map(|d| m.padded_bound(d)).product()
}

/// Lowers one factor toward `floor` by as much as the budget asks, never below it.
fn shrink(f: u32, floor: u32, macs: u64, budget: u64) -> u32 {
    if f <= floor || macs <= budget {
        return f;
    }
    let want = (f as u128 * budget as u128 / macs as u128) as u32;
    want.clamp(floor, f - 1)
}

/// Shrinks the mapping's factors until its padded MACs fit `budget`: outermost level
/// first, then inward, then the spatial unrolling; first down to 2, then to 1.
fn shrink_factors(m: &Mapping, nd: usize, budget: u64) -> Mapping {
    let mut s = *m;
    let nl = m.nlevels as usize;
    for floor in [2, 1] {
        for l in 0..nl {
            for d in 0..nd {
                let macs = padded_macs(&s, nd);
                s.factors[l][d] = shrink(s.factors[l][d], floor, macs, budget);
            }
        }
        for d in 0..nd {
            let macs = padded_macs(&s, nd);
            s.spatial_rows[d] = shrink(s.spatial_rows[d], floor, macs, budget);
            let macs = padded_macs(&s, nd);
            s.spatial_cols[d] = shrink(s.spatial_cols[d], floor, macs, budget);
        }
    }
    s
}

/// Shrinks `e` and its mapping `m` on `t` to at most about `max_macs` MACs (padded
/// iterations included). A layer already small enough comes back unchanged.
pub fn scale_down(
    e: &Einsum,
    t: &Template,
    m: &Mapping,
    max_macs: u64,
) -> Result<Scaled, CheckError> {
    let nd = e.dims.len();
    let full_macs = padded_macs(m, nd);
    let small = shrink_factors(m, nd, max_macs.max(1));
    let bounds: Vec<u64> = (0..nd)
        .map(|d| {
            let waste = m.padded_bound(d) - (e.dims[d].bound as u64).min(m.padded_bound(d));
            let p = small.padded_bound(d);
            p - waste.min(p - 1)
        })
        .collect();
    let einsum = rebound(e, &bounds)?;
    let p = Problem::from_einsum(&einsum).map_err(|x| CheckError::Einsum {
        einsum: e.name.clone(),
        message: x.to_string(),
    })?;
    small.validate(&p, t).map_err(|x| CheckError::Einsum {
        einsum: e.name.clone(),
        message: format!("the scaled mapping is invalid: {x}"),
    })?;
    let dims = (0..nd)
        .filter(|&d| bounds[d] != e.dims[d].bound as u64)
        .map(|d| {
            (
                e.dims[d].name.to_string(),
                e.dims[d].bound as u64,
                bounds[d],
            )
        })
        .collect();
    Ok(Scaled {
        einsum,
        mapping: small,
        change: ScaleNote {
            full_macs,
            scaled_macs: padded_macs(&small, nd),
            dims,
        },
    })
}

/// The same Einsum with new dim bounds: mixed-radix axes re-flattened, every other
/// coefficient (stride, dilation) and offset kept, each axis's extent shrunk by as
/// much as its largest index.
pub fn rebound(e: &Einsum, bounds: &[u64]) -> Result<Einsum, CheckError> {
    if bounds.len() != e.dims.len() || bounds.contains(&0) {
        return Err(CheckError::Einsum {
            einsum: e.name.clone(),
            message: "new bounds must be positive, one per dim".into(),
        });
    }
    let old: Vec<u64> = e.dims.iter().map(|d| d.bound as u64).collect();
    let operand = |op: &Operand| -> Result<Operand, CheckError> {
        let mut out = op.clone();
        for (a, len) in out.proj.iter_mut().zip(out.shape.iter_mut()) {
            let new = reflatten(a, &old, bounds);
            let (hi_old, hi_new) = (max_index(a, &old), max_index(&new, bounds));
            let extent = *len as i64 - hi_old + hi_new;
            if extent < 1 {
                return Err(CheckError::Einsum {
                    einsum: e.name.clone(),
                    message: format!("scaling leaves an axis of extent {extent}"),
                });
            }
            *len = extent as usize;
            *a = new;
        }
        Ok(out)
    };
    let mut s = e.clone();
    for (d, b) in s.dims.iter_mut().zip(bounds) {
        d.bound = *b as usize;
    }
    s.input = operand(&e.input)?;
    s.weight = operand(&e.weight)?;
    s.output = operand(&e.output)?;
    Ok(s)
}

/// Largest value an axis index takes over the box `bounds`.
fn max_index(a: &Affine, bounds: &[u64]) -> i64 {
    a.offset
        + a.terms
            .iter()
            .map(|&(d, c)| (c * (bounds[d] as i64 - 1)).max(0))
            .sum::<i64>()
}

/// An axis whose terms, sorted by coefficient, each step by exactly the previous
/// term's coefficient times its dim's bound is a flattening (`g·Cg + c`); its
/// coefficients are recomputed from the new bounds. Other coefficients are kept.
fn reflatten(a: &Affine, old: &[u64], new: &[u64]) -> Affine {
    let mut order: Vec<usize> = (0..a.terms.len()).collect();
    order.sort_by_key(|&i| a.terms[i].1.abs());
    let mut out = a.clone();
    for w in 1..order.len() {
        let (prev, cur) = (order[w - 1], order[w]);
        let (pd, pc) = a.terms[prev];
        let (_, cc) = a.terms[cur];
        if pc != 0 && cc.abs() == pc.abs() * old[pd] as i64 {
            let new_prev = out.terms[prev].1.abs();
            out.terms[cur].1 = cc.signum() * new_prev * new[pd] as i64;
        }
    }
    out
}

/// Extrapolates a count measured on the corners of a box of factors to other factors.
///
/// `corner(mask)` is the count with factor `base + 1` on the loops in `mask` (bit i for
/// the i-th entry of `full`) and `base` on the others; `full` are the factors to
/// extrapolate to. A count that is affine in each factor separately is determined by
/// its values on the corners of {base, base+1}^k, and this is that multilinear
/// interpolation, evaluated at `full`. (Take `base` ≥ 2 for loops that must keep
/// running: a factor of 1 removes its loop, and a count is affine only while it runs.)
pub fn extrapolate(full: &[u64], base: u64, corner: impl Fn(usize) -> u64) -> i128 {
    let k = full.len();
    let b = base as i128;
    let mut total: i128 = 0;
    for mask in 0..(1usize << k) {
        let mut w: i128 = 1;
        for (i, &f) in full.iter().enumerate() {
            w *= if mask & (1 << i) != 0 {
                f as i128 - b
            } else {
                b + 1 - f as i128
            };
        }
        total += w * corner(mask) as i128;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::Kernel;
    use crate::workload::spec::single_op_graph;

    fn einsum(spec: &str) -> Einsum {
        let g = single_op_graph(spec).unwrap();
        crate::lower::lower(&g)
            .unwrap()
            .into_iter()
            .flat_map(|w| w.kernels)
            .find_map(|k| match k {
                Kernel::Einsum(e) => Some(e),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn rebound_keeps_stride_dilation_and_group_structure() {
        // N G K C P Q R S
        let e = einsum("conv2d n=1 c=8 h=16 w=16 k=12 r=3 s=3 stride=2 dilation=2 pad=2 groups=4");
        let s = rebound(&e, &[1, 4, 3, 1, 3, 5, 3, 3]).unwrap();
        // Input channel g·Cg + c with Cg now 1; weight/output channel g·Kg + k with Kg 3.
        assert_eq!(s.input.proj[1].terms, vec![(1, 1), (3, 1)]);
        assert_eq!(s.output.proj[1].terms, vec![(1, 3), (2, 1)]);
        // Stride and dilation and the pad offset stay.
        assert_eq!(s.input.proj[2], e.input.proj[2]);
        // H shrinks by stride × (P lost): 16 − 2·(P − 3) keeps both edge paddings.
        let p = e.dims[4].bound;
        assert_eq!(s.input.shape[2], 16 - 2 * (p - 3));
        assert_eq!(s.output.shape, vec![1, 12, 3, 5]);
        assert_eq!(s.weight.shape, vec![12, 1, 3, 3]);
    }

    #[test]
    fn multilinear_extrapolation_is_exact_for_affine_counts() {
        // c(f1, f2) = 3 + 5·f1 + 7·f1·f2 − f2, measured at the corners of {1,2}².
        let c = |f1: u64, f2: u64| 3 + 5 * f1 + 7 * f1 * f2 - f2;
        let corner = |mask: usize| c(1 + (mask & 1) as u64, 1 + (mask >> 1 & 1) as u64);
        assert_eq!(extrapolate(&[9, 4], 1, corner), c(9, 4) as i128);
    }
}
