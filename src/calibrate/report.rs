//! Error statistics of predictions against measurements.
//!
//! With `p` predicted and `m` measured: APE = |p − m| / m; MAPE its mean, `median_ape`
//! its median, `max_ape` its maximum; `rmse_log` = √(mean (ln(p/m))²) (the quantity the
//! fit minimizes); Kendall τ-b and Spearman ρ (ranks, ties averaged) between p and m.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Agreement of a set of predictions with their measurements.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Stats {
    pub n: usize,
    pub mape: f64,
    pub median_ape: f64,
    pub max_ape: f64,
    pub rmse_log: f64,
    pub kendall_tau: f64,
    pub spearman_rho: f64,
}

/// Stats of `pred` against `meas` (equal lengths, all > 0). Empty input gives n = 0
/// and NaN figures.
pub fn stats(pred: &[f64], meas: &[f64]) -> Stats {
    let n = pred.len();
    if n == 0 {
        return Stats {
            n: 0,
            mape: f64::NAN,
            median_ape: f64::NAN,
            max_ape: f64::NAN,
            rmse_log: f64::NAN,
            kendall_tau: f64::NAN,
            spearman_rho: f64::NAN,
        };
    }
    let ape: Vec<f64> = pred
        .iter()
        .zip(meas)
        .map(|(p, m)| (p - m).abs() / m)
        .collect();
    let rmse_log = (pred
        .iter()
        .zip(meas)
        .map(|(p, m)| (p / m).ln().powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    Stats {
        n,
        mape: ape.iter().sum::<f64>() / n as f64,
        median_ape: median(&ape),
        max_ape: ape.iter().cloned().fold(0.0, f64::max),
        rmse_log,
        kendall_tau: kendall_tau(pred, meas),
        spearman_rho: spearman_rho(pred, meas),
    }
}

pub fn median(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    if v.len() % 2 == 1 {
        v[h]
    } else {
        (v[h - 1] + v[h]) / 2.0
    }
}

/// Kendall's τ-b (ties in either sample corrected for); NaN below 2 points.
pub fn kendall_tau(x: &[f64], y: &[f64]) -> f64 {
    let (mut conc, mut disc, mut tx, mut ty) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let (dx, dy) = (x[i] - x[j], y[i] - y[j]);
            if dx == 0.0 && dy == 0.0 {
                continue;
            } else if dx == 0.0 {
                tx += 1.0;
            } else if dy == 0.0 {
                ty += 1.0;
            } else if dx * dy > 0.0 {
                conc += 1.0;
            } else {
                disc += 1.0;
            }
        }
    }
    (conc - disc) / ((conc + disc + tx) * (conc + disc + ty)).sqrt()
}

fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ: Pearson correlation of the ranks (ties get their average rank).
pub fn spearman_rho(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// A bootstrap percentile interval of the MAPE: `resamples` draws with replacement of
/// the APEs (seeded), the 5th and 95th percentiles of their means (90% interval).
pub fn bootstrap_mape_90(pred: &[f64], meas: &[f64], resamples: usize, seed: u64) -> [f64; 2] {
    let n = pred.len();
    if n == 0 {
        return [f64::NAN, f64::NAN];
    }
    let ape: Vec<f64> = pred
        .iter()
        .zip(meas)
        .map(|(p, m)| (p - m).abs() / m)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB007_5742);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| ape[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    [at(0.05), at(0.95)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_predictions() {
        let x = [1.0, 2.0, 3.0, 5.0];
        let s = stats(&x, &x);
        assert_eq!(s.mape, 0.0);
        assert!((s.kendall_tau - 1.0).abs() < 1e-12);
        assert!((s.spearman_rho - 1.0).abs() < 1e-12);
    }

    #[test]
    fn known_figures() {
        let s = stats(&[2.0, 1.0, 3.0], &[1.0, 2.0, 3.0]);
        assert!((s.mape - (1.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
        assert!((s.median_ape - 0.5).abs() < 1e-12);
        assert!((s.kendall_tau - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.spearman_rho - 0.5).abs() < 1e-12);
    }
}
