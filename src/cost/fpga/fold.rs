//! Choosing every pipeline stage's folding under the device budget.
//!
//! Each stage has candidate foldings, each with its cycles per image and resources.
//! A pipeline's throughput is set by its slowest stage, so the problem is
//!
//! ```text
//!   minimize T
//!   s.t.  Σ_j x_ij = 1                       every stage takes one candidate
//!         Σ_j c_ij · x_ij ≤ T                 no stage slower than T
//!         Σ_ij r_ijk · x_ij ≤ B_k − fixed_k   for every resource k
//!         T ≥ floor                           (the DMA that feeds the pipeline)
//!         x_ij ∈ {0, 1}
//! ```
//!
//! solved by good_lp's pure-Rust `microlp` branch and bound. Many foldings share the
//! optimal T*; a deterministic local pass (`least_fill`) then moves each stage, within
//! c ≤ T* and the budget, toward less pipeline fill (Σ_i fill_i·c_i, the latency a
//! batch pays on top of images·T*) and then a smaller design.
//!
//! Two reductions keep the programs small and lose no optimum: with the greedy
//! folding's T_g as an upper bound, candidates slower than T_g are dropped; with
//! T_lb = max_i min_j c_ij (no design is faster), cycles below T_lb are all alike,
//! and a candidate is dropped when another is no slower (after clipping at T_lb) and
//! no larger in every resource. The greedy folding also seeds the search, so a solve
//! cut short by `engine.ilp_time_limit_s` is never worse than greedy.
//!
//! The greedy (FINN's SetFolding idea): start every stage at its cheapest candidate,
//! then repeatedly move the slowest stage to the slowest candidate that is faster
//! and still fits; stop when it cannot move. It ends with the same `least_fill` pass.

use crate::arch::fpga::Resources;
use good_lp::{
    microlp, variable, variables, Expression, Solution, SolutionStatus, SolverModel, Variable,
    WithInitialSolution, WithTimeLimit,
};

/// One folding of one stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub cycles: f64,
    pub res: Resources,
    /// MAC lanes (PE·SIMD); 0 for a stage without MACs.
    pub lanes: u64,
    /// e.g. "PE8 SIMD16 W@BRAM"
    pub label: String,
}

/// A chosen folding for every stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Fold {
    /// Candidate index per stage.
    pub choice: Vec<usize>,
    /// Cycles per image of the slowest stage (or the floor).
    pub t: f64,
    /// Resources of the stages plus the fixed part.
    pub used: Resources,
    /// "greedy", "ilp optimal" or "ilp time limit".
    pub status: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FoldError {
    /// No folding fits; `needs` is the smallest design's resources (per resource, the
    /// sum of each stage's least), to name what overflows.
    #[error("no folding fits the budget")]
    Infeasible { needs: Resources },
    #[error("{0}")]
    Solver(String),
}

/// The problem: per-stage candidates, resources outside the stages, the budget, and
/// a floor on T.
pub struct Problem<'a> {
    pub stages: &'a [Vec<Candidate>],
    /// Per stage, the share of its cycles that adds to the pipeline's latency.
    pub fill: &'a [f64],
    pub fixed: Resources,
    pub budget: Resources,
    pub floor: f64,
}

impl Problem<'_> {
    /// Σ_k r_k / B_k: one number to rank candidates by size.
    fn weight(&self, r: &Resources) -> f64 {
        let b = self.budget.as_array();
        r.as_array()
            .iter()
            .zip(b)
            .map(|(u, b)| {
                if b > 0.0 {
                    u / b
                } else if *u > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                }
            })
            .sum()
    }

    fn used(&self, choice: &[usize]) -> Resources {
        choice
            .iter()
            .enumerate()
            .fold(self.fixed, |acc, (i, &j)| acc.add(&self.stages[i][j].res))
    }

    fn t_of(&self, choice: &[usize]) -> f64 {
        choice
            .iter()
            .enumerate()
            .map(|(i, &j)| self.stages[i][j].cycles)
            .fold(self.floor, f64::max)
    }

    /// Per resource, the least any folding can use.
    pub fn lower_bound(&self) -> Resources {
        let mut a = self.fixed.as_array();
        for s in self.stages {
            for (k, slot) in a.iter_mut().enumerate() {
                *slot += s
                    .iter()
                    .map(|c| c.res.as_array()[k])
                    .fold(f64::INFINITY, f64::min)
                    .min(1e300);
            }
        }
        Resources::from_array(a)
    }

    fn infeasible(&self) -> FoldError {
        FoldError::Infeasible {
            needs: self.lower_bound(),
        }
    }

    fn fold(&self, choice: Vec<usize>, status: &str) -> Fold {
        Fold {
            t: self.t_of(&choice),
            used: self.used(&choice),
            choice,
            status: status.into(),
        }
    }
}

/// The greedy folding (see the module docs).
pub fn greedy(p: &Problem) -> Result<Fold, FoldError> {
    if p.stages.iter().any(|s| s.is_empty()) {
        return Err(p.infeasible());
    }
    // Per stage: candidates by cycles descending, then size ascending.
    let order: Vec<Vec<usize>> = p
        .stages
        .iter()
        .map(|s| {
            let mut v: Vec<usize> = (0..s.len()).collect();
            v.sort_by(|&a, &b| {
                (s[b].cycles, p.weight(&s[a].res))
                    .partial_cmp(&(s[a].cycles, p.weight(&s[b].res)))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            v
        })
        .collect();
    let mut choice: Vec<usize> = p
        .stages
        .iter()
        .map(|s| {
            (0..s.len())
                .min_by(|&a, &b| {
                    (p.weight(&s[a].res), -s[a].cycles)
                        .partial_cmp(&(p.weight(&s[b].res), -s[b].cycles))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .unwrap_or(0)
        })
        .collect();
    let mut used = p.used(&choice);
    if !used.fits_in(&p.budget) {
        return Err(p.infeasible());
    }
    loop {
        let (s, cur) = choice
            .iter()
            .enumerate()
            .map(|(i, &j)| (i, p.stages[i][j].cycles))
            .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        if cur <= p.floor {
            break;
        }
        let old = &p.stages[s][choice[s]].res;
        let next = order[s].iter().copied().find(|&j| {
            let c = &p.stages[s][j];
            c.cycles < cur && used.add(&c.res).add(&old.scale(-1.0)).fits_in(&p.budget)
        });
        match next {
            Some(j) => {
                used = used.add(&p.stages[s][j].res).add(&old.scale(-1.0));
                choice[s] = j;
            }
            None => break,
        }
    }
    let scale = p.t_of(&choice).max(1.0);
    Ok(p.fold(least_fill(p, choice, scale), "greedy"))
}

/// `a` is at least as good as `b`: no slower (clipped at `lb`) and no larger anywhere.
fn dominates(a: &Candidate, b: &Candidate, lb: f64) -> bool {
    a.cycles.max(lb) <= b.cycles.max(lb)
        && a.res
            .as_array()
            .iter()
            .zip(b.res.as_array())
            .all(|(x, y)| *x <= y)
}

/// Indices of the candidates worth offering the solver (see the module docs).
fn prune(p: &Problem, upper: Option<f64>, lb: f64) -> Vec<Vec<usize>> {
    p.stages
        .iter()
        .map(|s| {
            let alive: Vec<usize> = (0..s.len())
                .filter(|&j| upper.is_none_or(|u| s[j].cycles <= u))
                .filter(|&j| p.fixed.add(&s[j].res).fits_in(&p.budget))
                .collect();
            let mut kept: Vec<usize> = Vec::new();
            for &j in &alive {
                // Strictly dominated, or dominated by an equal kept earlier: drop.
                let beaten = alive.iter().any(|&o| {
                    o != j
                        && dominates(&s[o], &s[j], lb)
                        && (!dominates(&s[j], &s[o], lb) || kept.contains(&o))
                });
                if !beaten {
                    kept.push(j);
                }
            }
            kept
        })
        .collect()
}

/// The ILP folding, seeded with `start` (normally the greedy one).
pub fn ilp(p: &Problem, start: Option<&Fold>, time_limit_s: f64) -> Result<Fold, FoldError> {
    if p.stages.iter().any(|s| s.is_empty()) {
        return Err(p.infeasible());
    }
    let lb = p
        .stages
        .iter()
        .map(|s| s.iter().map(|c| c.cycles).fold(f64::INFINITY, f64::min))
        .fold(p.floor, f64::max);
    let keep = prune(p, start.map(|f| f.t), lb);
    if keep.iter().any(|k| k.is_empty()) {
        return Err(p.infeasible());
    }
    // The start, moved onto kept candidates (a pruned one has a kept dominator).
    let seed: Option<Vec<usize>> = start.map(|f| {
        f.choice
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                let s = &p.stages[i];
                keep[i]
                    .iter()
                    .copied()
                    .find(|&o| o == j)
                    .or_else(|| {
                        keep[i]
                            .iter()
                            .copied()
                            .find(|&o| dominates(&s[o], &s[j], lb))
                    })
                    .unwrap_or(keep[i][0])
            })
            .collect()
    });
    let scale = keep
        .iter()
        .enumerate()
        .flat_map(|(i, k)| k.iter().map(move |&j| p.stages[i][j].cycles))
        .fold(p.floor, f64::max)
        .max(1.0);
    let (choice, status) = solve_min_t(p, &keep, seed.as_deref(), scale, time_limit_s)?;
    let choice = least_fill(p, choice, scale);
    Ok(p.fold(choice, status))
}

type Choice = (Vec<usize>, &'static str);

/// Binary variables per kept candidate; `x[i][n]` is stage i's n-th kept candidate.
fn binaries(vars: &mut good_lp::ProblemVariables, keep: &[Vec<usize>]) -> Vec<Vec<Variable>> {
    keep.iter()
        .map(|k| k.iter().map(|_| vars.add(variable().binary())).collect())
        .collect()
}

/// One-per-stage and budget constraints over `x`.
fn common_constraints(
    p: &Problem,
    keep: &[Vec<usize>],
    x: &[Vec<Variable>],
) -> Vec<good_lp::Constraint> {
    let mut out = Vec::new();
    for xs in x {
        let e: Expression = xs.iter().copied().sum();
        out.push(e.eq(1.0));
    }
    let budget = p.budget.as_array();
    let fixed = p.fixed.as_array();
    for k in 0..budget.len() {
        if budget[k] <= 0.0 {
            continue; // candidates using it were pruned as not fitting alone
        }
        let mut e = Expression::default();
        for (i, kk) in keep.iter().enumerate() {
            for (n, &j) in kk.iter().enumerate() {
                let r = p.stages[i][j].res.as_array()[k];
                if r != 0.0 {
                    e.add_mul(r / budget[k], x[i][n]);
                }
            }
        }
        out.push(e.leq((budget[k] - fixed[k]) / budget[k]));
    }
    out
}

fn picked(keep: &[Vec<usize>], x: &[Vec<Variable>], sol: &impl Solution) -> Vec<usize> {
    keep.iter()
        .zip(x)
        .map(|(k, xs)| {
            let n = (0..xs.len())
                .max_by(|&a, &b| {
                    sol.value(xs[a])
                        .partial_cmp(&sol.value(xs[b]))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .unwrap_or(0);
            k[n]
        })
        .collect()
}

fn seed_values(keep: &[Vec<usize>], x: &[Vec<Variable>], seed: &[usize]) -> Vec<(Variable, f64)> {
    let mut v = Vec::new();
    for ((k, xs), &s) in keep.iter().zip(x).zip(seed) {
        for (n, &j) in k.iter().enumerate() {
            v.push((xs[n], if j == s { 1.0 } else { 0.0 }));
        }
    }
    v
}

fn solve_min_t(
    p: &Problem,
    keep: &[Vec<usize>],
    seed: Option<&[usize]>,
    scale: f64,
    time_limit_s: f64,
) -> Result<Choice, FoldError> {
    let mut vars = variables!();
    let t = vars.add(variable().min(p.floor / scale));
    let x = binaries(&mut vars, keep);
    let mut model = vars
        .minimise(t)
        .using(microlp)
        .with_time_limit(time_limit_s);
    if let Some(s) = seed {
        let mut init = seed_values(keep, &x, s);
        init.push((t, p.t_of(s) / scale));
        model = model.with_initial_solution(init);
    }
    for c in common_constraints(p, keep, &x) {
        model = model.with(c);
    }
    for (i, k) in keep.iter().enumerate() {
        let mut e = Expression::default();
        for (n, &j) in k.iter().enumerate() {
            e.add_mul(p.stages[i][j].cycles / scale, x[i][n]);
        }
        model = model.with(e.leq(t));
    }
    let sol = model.solve().map_err(|e| match e {
        good_lp::ResolutionError::Infeasible => p.infeasible(),
        e => FoldError::Solver(e.to_string()),
    })?;
    let status = match sol.status() {
        SolutionStatus::Optimal => "ilp optimal",
        _ => "ilp time limit",
    };
    let choice = picked(keep, &x, &sol);
    // A capped solve returns its best incumbent; never report worse than the seed.
    match seed {
        Some(s) if p.t_of(s) < p.t_of(&choice) => Ok((s.to_vec(), status)),
        _ => Ok((choice, status)),
    }
}

/// Among the foldings at T*, one with less pipeline fill and a smaller design:
/// each stage in turn moves to the candidate with c ≤ T* that minimizes
/// fill·c/scale + 10⁻³·size while the whole still fits, until nothing moves.
/// Deterministic and never slower than its start.
fn least_fill(p: &Problem, mut choice: Vec<usize>, scale: f64) -> Vec<usize> {
    let t_star = p.t_of(&choice);
    let score = |i: usize, j: usize| {
        let c = &p.stages[i][j];
        p.fill.get(i).copied().unwrap_or(0.0) * c.cycles / scale + 1e-3 * p.weight(&c.res)
    };
    let mut used = p.used(&choice);
    for _ in 0..4 {
        let mut moved = false;
        for (i, slot) in choice.iter_mut().enumerate() {
            let cur = *slot;
            let old = p.stages[i][cur].res;
            let mut best = (score(i, cur), cur);
            for (j, c) in p.stages[i].iter().enumerate() {
                let s = score(i, j);
                if c.cycles <= t_star
                    && s < best.0 - 1e-12
                    && used.add(&c.res).add(&old.scale(-1.0)).fits_in(&p.budget)
                {
                    best = (s, j);
                }
            }
            if best.1 != cur {
                used = used.add(&p.stages[i][best.1].res).add(&old.scale(-1.0));
                *slot = best.1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(cycles: f64, dsp: f64) -> Candidate {
        cand2(cycles, dsp, 0.0)
    }

    fn cand2(cycles: f64, dsp: f64, bram36: f64) -> Candidate {
        Candidate {
            cycles,
            res: Resources {
                dsp,
                bram36,
                ..Resources::default()
            },
            lanes: 1,
            label: format!("{dsp}/{bram36}"),
        }
    }

    /// Stage 0 can reach 80 cycles with 5 DSPs or 20 BRAMs; the BRAM way looks
    /// smaller (20/100 < 5/10), so greedy takes it, and then stage 1's only fast
    /// point (90 BRAMs) no longer fits: greedy ends at T = 100. The ILP pairs the DSP
    /// way with stage 1's BRAM way: T = 80.
    #[test]
    fn ilp_beats_a_myopic_greedy() {
        let stages = vec![
            vec![cand(100.0, 1.0), cand(80.0, 5.0), cand2(80.0, 0.0, 20.0)],
            vec![cand(100.0, 1.0), cand2(80.0, 0.0, 90.0)],
        ];
        let p = Problem {
            stages: &stages,
            fill: &[0.0, 0.0],
            fixed: Resources::default(),
            budget: Resources {
                dsp: 10.0,
                bram36: 100.0,
                ..Resources::default()
            },
            floor: 0.0,
        };
        let g = greedy(&p).unwrap();
        assert_eq!(g.t, 100.0);
        let i = ilp(&p, Some(&g), 10.0).unwrap();
        assert_eq!(i.t, 80.0);
        assert_eq!(i.choice, vec![1, 1]);
        assert!(i.used.fits_in(&p.budget));
        assert_eq!(i.status, "ilp optimal");
        // Unseeded, the same optimum.
        assert_eq!(ilp(&p, None, 10.0).unwrap().t, 80.0);
    }

    #[test]
    fn infeasible_names_the_lower_bound() {
        let stages = vec![vec![cand(10.0, 5.0)], vec![cand(10.0, 6.0)]];
        let p = Problem {
            stages: &stages,
            fill: &[0.0, 0.0],
            fixed: Resources::default(),
            budget: Resources {
                dsp: 10.0,
                ..Resources::default()
            },
            floor: 0.0,
        };
        let e = greedy(&p).unwrap_err();
        assert_eq!(
            e,
            FoldError::Infeasible {
                needs: Resources {
                    dsp: 11.0,
                    ..Resources::default()
                }
            }
        );
        assert!(ilp(&p, None, 10.0).is_err());
    }
}
