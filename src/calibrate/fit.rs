//! Bounded Levenberg–Marquardt least squares with numerical derivatives.
//!
//! Minimizes C(x) = Σᵢ rᵢ(x)² where rᵢ = ln(predictedᵢ(x) / measuredᵢ), so that a
//! factor-of-two error costs the same on a 10 µs kernel as on a 10 ms one. Each step
//! solves (JᵀJ + λ·diag(JᵀJ)) δ = −Jᵀr (Marquardt's scaling; Moré 1978), projects
//! x + δ onto the bounds, and is kept only if C falls (λ ÷ 3), else λ × 4 and retry.
//! J is a forward difference with step 10⁻³·max(|xⱼ|, scaleⱼ) (backwards at an upper
//! bound). The model is piecewise smooth (max of compute and memory, a choice of
//! tiles), so derivatives are taken on that scale rather than at machine precision.
//!
//! Identifiability, at the starting point: a parameter whose Jacobian column is
//! (numerically) zero does not change any prediction; one whose normalized column is a
//! combination of the others (smallest singular value of the column-normalized J below
//! 10⁻⁶) cannot be told apart from them. Either is reported and left unchanged.

//!
//! Robust fits (`sequential_lp`): L1 (Σ|rᵢ|, a median-like fit that a few rows the
//! model cannot express do not drag) or minimax (maxᵢ|rᵢ|). Each step linearizes r at
//! x and solves a linear program (good_lp, microlp) for the step δ within the bounds
//! and a trust region |δⱼ| ≤ Δⱼ: L1 minimizes Σ tᵢ with tᵢ ≥ ±(rᵢ + Jᵢδ); minimax
//! minimizes z with z ≥ ±(rᵢ + Jᵢδ). The step is kept if the true cost falls (Δ × 2),
//! else Δ ÷ 4 and retry (Fletcher's sequential LP with a trust region).

use good_lp::{microlp, variable, Expression, ProblemVariables, Solution, SolverModel};
use nalgebra::{DMatrix, DVector};

/// The residual function: parameters → one residual per row.
pub type Residuals<'a, E> = dyn Fn(&[f64]) -> Result<Vec<f64>, E> + 'a;

/// Parameters kept free, and those dropped with why.
type Identified = (Vec<usize>, Vec<(usize, String)>);

/// A parameter's allowed range and the scale of its finite-difference step.
#[derive(Clone, Debug)]
pub struct Bounds {
    pub lo: f64,
    pub hi: f64,
    pub scale: f64,
}

/// The outcome of one fit.
#[derive(Clone, Debug)]
pub struct Fit {
    pub x: Vec<f64>,
    /// Indices of parameters the data could not identify, with why.
    pub unidentifiable: Vec<(usize, String)>,
    pub iterations: usize,
    pub cost_before: f64,
    pub cost_after: f64,
}

fn cost(r: &[f64]) -> f64 {
    r.iter().map(|v| v * v).sum()
}

fn step(x: f64, b: &Bounds) -> f64 {
    let h = 1e-3 * x.abs().max(b.scale);
    if x + h > b.hi {
        -h
    } else {
        h
    }
}

fn jacobian<E>(
    x: &[f64],
    r0: &[f64],
    free: &[usize],
    bounds: &[Bounds],
    resid: &Residuals<'_, E>,
) -> Result<DMatrix<f64>, E> {
    let mut j = DMatrix::zeros(r0.len(), free.len());
    for (c, &p) in free.iter().enumerate() {
        let h = step(x[p], &bounds[p]);
        let mut xp = x.to_vec();
        xp[p] += h;
        let r = resid(&xp)?;
        for i in 0..r0.len() {
            j[(i, c)] = (r[i] - r0[i]) / h;
        }
    }
    Ok(j)
}

/// Which of `params` the data identifies at `x`: drops zero columns, then (repeatedly)
/// the parameter that dominates the weakest direction of the column-normalized J.
fn identify<E>(
    x: &[f64],
    r0: &[f64],
    bounds: &[Bounds],
    names: &[String],
    resid: &Residuals<'_, E>,
) -> Result<Identified, E> {
    let all: Vec<usize> = (0..x.len()).collect();
    let j = jacobian(x, r0, &all, bounds, resid)?;
    let n = r0.len().max(1) as f64;
    let mut free = Vec::new();
    let mut out = Vec::new();
    for (c, &p) in all.iter().enumerate() {
        // d ln(pred) per unit relative change of the parameter, RMS over rows.
        let norm = j.column(c).norm() * x[p].abs().max(bounds[p].scale) / n.sqrt();
        if norm < 1e-6 {
            out.push((
                p,
                "no measured row depends on it (zero Jacobian column)".to_string(),
            ));
        } else {
            free.push(p);
        }
    }
    loop {
        if free.len() <= 1 {
            break;
        }
        let cols: Vec<usize> = free
            .iter()
            .map(|p| all.iter().position(|a| a == p).unwrap())
            .collect();
        let mut m = DMatrix::zeros(j.nrows(), cols.len());
        for (k, &c) in cols.iter().enumerate() {
            let col = j.column(c);
            let norm = col.norm();
            m.set_column(k, &(col / norm));
        }
        let svd = m.svd(false, true);
        let (imin, smin) =
            svd.singular_values
                .iter()
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |a, (i, &s)| if s < a.1 { (i, s) } else { a },
                );
        if smin >= 1e-6 {
            break;
        }
        let vt = svd.v_t.as_ref().expect("v_t requested");
        let row = vt.row(imin);
        let (k, _) =
            row.iter().enumerate().fold(
                (0, 0.0),
                |a, (i, &v)| if v.abs() > a.1 { (i, v.abs()) } else { a },
            );
        let partners: Vec<String> = row
            .iter()
            .enumerate()
            .filter(|&(i, v)| i != k && v.abs() > 0.1)
            .map(|(i, _)| names[free[i]].clone())
            .collect();
        out.push((
            free[k],
            format!(
                "confounded with {} (singular normal matrix)",
                if partners.is_empty() {
                    "the others".to_string()
                } else {
                    partners.join(", ")
                }
            ),
        ));
        free.remove(k);
    }
    Ok((free, out))
}

/// Where a fit starts: `x0` clamped into the bounds, its residuals, and which
/// parameters the data identifies there.
struct Start {
    x: Vec<f64>,
    r: Vec<f64>,
    free: Vec<usize>,
    unidentifiable: Vec<(usize, String)>,
}

fn start<E>(
    x0: &[f64],
    bounds: &[Bounds],
    names: &[String],
    resid: &Residuals<'_, E>,
) -> Result<Start, E> {
    let x: Vec<f64> = x0
        .iter()
        .zip(bounds)
        .map(|(v, b)| v.clamp(b.lo, b.hi))
        .collect();
    let r = resid(&x)?;
    let (free, unidentifiable) = identify(&x, &r, bounds, names, resid)?;
    Ok(Start {
        x,
        r,
        free,
        unidentifiable,
    })
}

/// Fits `x0` (within `bounds`) to minimize Σ resid(x)²; `names` label parameters in
/// identifiability messages.
pub fn levenberg_marquardt<E>(
    x0: &[f64],
    bounds: &[Bounds],
    names: &[String],
    resid: &Residuals<'_, E>,
) -> Result<Fit, E> {
    let Start {
        mut x,
        mut r,
        free,
        unidentifiable,
    } = start(x0, bounds, names, resid)?;
    let cost_before = cost(&r);
    let mut c = cost_before;
    let mut lambda = 1e-2;
    let mut iterations = 0;
    if !free.is_empty() {
        for _ in 0..100 {
            iterations += 1;
            let j = jacobian(&x, &r, &free, bounds, resid)?;
            let a = j.transpose() * &j;
            let g = j.transpose() * DVector::from_column_slice(&r);
            let mut improved = false;
            for _ in 0..12 {
                let mut m = a.clone();
                for d in 0..free.len() {
                    m[(d, d)] += lambda * a[(d, d)].max(1e-12);
                }
                let Some(delta) = m.lu().solve(&(-&g)) else {
                    lambda *= 4.0;
                    continue;
                };
                let mut xn = x.clone();
                for (k, &p) in free.iter().enumerate() {
                    xn[p] = (x[p] + delta[k]).clamp(bounds[p].lo, bounds[p].hi);
                }
                let rn = resid(&xn)?;
                let cn = cost(&rn);
                if cn < c {
                    let gain = (c - cn) / c.max(1e-300);
                    x = xn;
                    r = rn;
                    c = cn;
                    lambda = (lambda / 3.0).max(1e-9);
                    improved = gain > 1e-9;
                    break;
                }
                lambda *= 4.0;
            }
            if !improved {
                break;
            }
        }
    }
    Ok(Fit {
        x,
        unidentifiable,
        iterations,
        cost_before,
        cost_after: c,
    })
}

/// What a fit minimizes over the residuals rᵢ = ln(predicted/measured).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Σ rᵢ² (Levenberg–Marquardt).
    LeastSquares,
    /// Σ |rᵢ| (sequential LP).
    L1,
    /// maxᵢ |rᵢ| (sequential LP).
    Minimax,
    /// Σ |predictedᵢ/measuredᵢ − 1|: the mean absolute percentage error itself
    /// (sequential LP on relative rather than log residuals; the caller forms them,
    /// see [`Loss::relative`]).
    Mape,
}

impl Loss {
    pub fn parse(s: &str) -> Option<Loss> {
        Some(match s {
            "ls" | "least-squares" => Loss::LeastSquares,
            "l1" => Loss::L1,
            "minimax" => Loss::Minimax,
            "mape" => Loss::Mape,
            _ => return None,
        })
    }

    /// Whether residuals are relative errors (p/m − 1) rather than ln(p/m).
    pub fn relative(self) -> bool {
        self == Loss::Mape
    }

    fn cost(self, r: &[f64]) -> f64 {
        match self {
            Loss::LeastSquares => cost(r),
            Loss::L1 | Loss::Mape => r.iter().map(|v| v.abs()).sum(),
            Loss::Minimax => r.iter().fold(0.0, |a, v| a.max(v.abs())),
        }
    }
}

/// Fits `x0` within `bounds` minimizing `loss` of the residuals.
pub fn fit<E>(
    loss: Loss,
    x0: &[f64],
    bounds: &[Bounds],
    names: &[String],
    resid: &Residuals<'_, E>,
) -> Result<Fit, E> {
    match loss {
        Loss::LeastSquares => levenberg_marquardt(x0, bounds, names, resid),
        _ => sequential_lp(loss, x0, bounds, names, resid),
    }
}

/// One LP step: the δ (over `free`) minimizing the linearized L1 or minimax cost within
/// `lo ≤ δ ≤ hi`; `None` if the solver fails.
fn lp_step(loss: Loss, r: &[f64], j: &DMatrix<f64>, lo: &[f64], hi: &[f64]) -> Option<Vec<f64>> {
    let mut vars = ProblemVariables::new();
    let delta: Vec<_> = lo
        .iter()
        .zip(hi)
        .map(|(&l, &h)| vars.add(variable().min(l).max(h)))
        .collect();
    let lin = |i: usize| -> Expression {
        let mut e = Expression::from(r[i]);
        for (k, d) in delta.iter().enumerate() {
            e += j[(i, k)] * *d;
        }
        e
    };
    match loss {
        Loss::Minimax => {
            let z = vars.add(variable().min(0.0));
            let mut m = vars.minimise(z).using(microlp);
            for i in 0..r.len() {
                m = m.with(lin(i) << z).with(lin(i) >> (-1.0 * z));
            }
            let sol = m.solve().ok()?;
            Some(delta.iter().map(|d| sol.value(*d)).collect())
        }
        _ => {
            let t: Vec<_> = (0..r.len())
                .map(|_| vars.add(variable().min(0.0)))
                .collect();
            let total: Expression = t.iter().sum();
            let mut m = vars.minimise(total).using(microlp);
            for (i, ti) in t.iter().enumerate() {
                m = m.with(lin(i) << *ti).with(lin(i) >> (-1.0 * *ti));
            }
            let sol = m.solve().ok()?;
            Some(delta.iter().map(|d| sol.value(*d)).collect())
        }
    }
}

/// Robust fit by sequential linear programming (see the module docs).
pub fn sequential_lp<E>(
    loss: Loss,
    x0: &[f64],
    bounds: &[Bounds],
    names: &[String],
    resid: &Residuals<'_, E>,
) -> Result<Fit, E> {
    let Start {
        mut x,
        mut r,
        free,
        unidentifiable,
    } = start(x0, bounds, names, resid)?;
    let cost_before = loss.cost(&r);
    let mut c = cost_before;
    let mut radius: Vec<f64> = free
        .iter()
        .map(|&p| 0.25 * x[p].abs().max(bounds[p].scale))
        .collect();
    let mut iterations = 0;
    while !free.is_empty() && iterations < 200 {
        iterations += 1;
        let j = jacobian(&x, &r, &free, bounds, resid)?;
        let lo: Vec<f64> = free
            .iter()
            .zip(&radius)
            .map(|(&p, d)| (bounds[p].lo - x[p]).max(-d))
            .collect();
        let hi: Vec<f64> = free
            .iter()
            .zip(&radius)
            .map(|(&p, d)| (bounds[p].hi - x[p]).min(*d))
            .collect();
        let step = lp_step(loss, &r, &j, &lo, &hi);
        let mut xn = x.clone();
        if let Some(d) = &step {
            for (k, &p) in free.iter().enumerate() {
                xn[p] = (x[p] + d[k]).clamp(bounds[p].lo, bounds[p].hi);
            }
        }
        let rn = resid(&xn)?;
        let cn = loss.cost(&rn);
        if step.is_some() && cn < c {
            let gain = (c - cn) / c.max(1e-300);
            x = xn;
            r = rn;
            c = cn;
            radius.iter_mut().for_each(|d| *d *= 2.0);
            if gain < 1e-9 {
                break;
            }
        } else {
            radius.iter_mut().for_each(|d| *d /= 4.0);
            let tiny = free
                .iter()
                .zip(&radius)
                .all(|(&p, d)| *d < 1e-7 * x[p].abs().max(bounds[p].scale));
            if tiny {
                break;
            }
        }
    }
    Ok(Fit {
        x,
        unidentifiable,
        iterations,
        cost_before,
        cost_after: c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_rate_and_offset() {
        // t = w / rate + offset, measured exactly with rate 3, offset 2.
        let w: Vec<f64> = (1..30).map(|i| i as f64 * 7.0).collect();
        let meas: Vec<f64> = w.iter().map(|w| w / 3.0 + 2.0).collect();
        let resid = |x: &[f64]| -> Result<Vec<f64>, ()> {
            Ok(w.iter()
                .zip(&meas)
                .map(|(w, m)| ((w / x[0] + x[1]) / m).ln())
                .collect())
        };
        let b = [
            Bounds {
                lo: 0.1,
                hi: 10.0,
                scale: 1.0,
            },
            Bounds {
                lo: 0.0,
                hi: 100.0,
                scale: 1.0,
            },
        ];
        let names = [
            "rate".to_string(),
            "offset".to_string(),
            "unused".to_string(),
        ];
        let f = levenberg_marquardt(&[1.0, 0.0], &b, &names[..2], &resid).unwrap();
        assert!((f.x[0] - 3.0).abs() < 1e-3, "{:?}", f.x);
        assert!((f.x[1] - 2.0).abs() < 1e-2, "{:?}", f.x);
    }

    /// L1 ignores gross outliers that least squares follows: 27 exact rows of
    /// t = w / 3 and 3 rows measured 10× slow.
    #[test]
    fn l1_and_minimax_fits() {
        let w: Vec<f64> = (1..31).map(|i| i as f64).collect();
        let meas: Vec<f64> = w
            .iter()
            .enumerate()
            .map(|(i, w)| w / 3.0 * if i % 10 == 0 { 10.0 } else { 1.0 })
            .collect();
        let resid = |x: &[f64]| -> Result<Vec<f64>, ()> {
            Ok(w.iter()
                .zip(&meas)
                .map(|(w, m)| ((w / x[0]) / m).ln())
                .collect())
        };
        let b = [Bounds {
            lo: 0.01,
            hi: 100.0,
            scale: 1.0,
        }];
        let names = ["rate".to_string()];
        let l1 = fit(Loss::L1, &[1.0], &b, &names, &resid).unwrap();
        assert!((l1.x[0] - 3.0).abs() < 1e-3, "{:?}", l1.x);
        let ls = fit(Loss::LeastSquares, &[1.0], &b, &names, &resid).unwrap();
        // ln-space least squares: the geometric mean, 3 / 10^(3/30).
        assert!((ls.x[0] - 3.0 / 10f64.powf(0.1)).abs() < 1e-3, "{:?}", ls.x);
        // Minimax: halfway (in ln) between the exact rows and the outliers, 3 / √10.
        let mm = fit(Loss::Minimax, &[1.0], &b, &names, &resid).unwrap();
        assert!((mm.x[0] - 3.0 / 10f64.sqrt()).abs() < 1e-3, "{:?}", mm.x);
    }

    #[test]
    fn a_parameter_nothing_depends_on_is_unidentifiable() {
        let resid = |x: &[f64]| -> Result<Vec<f64>, ()> {
            Ok((1..10)
                .map(|i| (x[0] * i as f64 / (2.0 * i as f64)).ln())
                .collect())
        };
        let b = vec![
            Bounds {
                lo: 0.1,
                hi: 10.0,
                scale: 1.0
            };
            2
        ];
        let names = ["a".to_string(), "b".to_string()];
        let f = levenberg_marquardt(&[1.0, 5.0], &b, &names, &resid).unwrap();
        assert_eq!(f.unidentifiable.len(), 1);
        assert_eq!(f.unidentifiable[0].0, 1);
        assert_eq!(f.x[1], 5.0);
        assert!((f.x[0] - 2.0).abs() < 1e-3);
    }

    #[test]
    fn two_parameters_that_only_act_as_a_product_are_confounded() {
        let resid = |x: &[f64]| -> Result<Vec<f64>, ()> {
            Ok((1..10)
                .map(|i| (x[0] * x[1] * i as f64 / (2.0 * i as f64)).ln())
                .collect())
        };
        let b = vec![
            Bounds {
                lo: 0.1,
                hi: 10.0,
                scale: 1.0
            };
            2
        ];
        let names = ["a".to_string(), "b".to_string()];
        let f = levenberg_marquardt(&[1.0, 1.0], &b, &names, &resid).unwrap();
        assert_eq!(f.unidentifiable.len(), 1, "{:?}", f.unidentifiable);
        assert!(f.unidentifiable[0].1.contains("confounded"));
        assert!((f.x[0] * f.x[1] - 2.0).abs() < 1e-3);
    }
}
