//! Dominance, non-dominated sorting, crowding distance and hypervolume.
//!
//! Every objective vector here is to be minimized (a maximized metric is negated by
//! [`super::Objective::minimized`]). Constraint dominance follows Deb (2000): a
//! feasible point beats an infeasible one; of two infeasible points the one with the
//! smaller total violation wins; of two feasible points, Pareto dominance decides.

/// An evaluated point as the algorithms see it.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Objectives to minimize (NaN-free: failed evaluations carry +inf violation).
    pub obj: Vec<f64>,
    /// Σ relative spec violations; 0 = feasible, +inf = evaluation failed.
    pub violation: f64,
}

impl Scored {
    pub fn feasible(&self) -> bool {
        self.violation == 0.0
    }
}

/// Pareto dominance for minimization: no worse in every objective, better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        if x < y {
            better = true;
        }
    }
    better
}

/// Deb's constraint dominance.
pub fn constraint_dominates(a: &Scored, b: &Scored) -> bool {
    match (a.feasible(), b.feasible()) {
        (true, false) => true,
        (false, true) => false,
        (false, false) => a.violation < b.violation,
        (true, true) => dominates(&a.obj, &b.obj),
    }
}

/// Fronts of a fast non-dominated sort (Deb et al. 2002) under constraint dominance;
/// indices within a front are ascending.
pub fn nondominated_sort(items: &[Scored]) -> Vec<Vec<usize>> {
    let n = items.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![vec![]; n];
    for i in 0..n {
        for j in i + 1..n {
            if constraint_dominates(&items[i], &items[j]) {
                dominates_list[i].push(j);
                dominated_by[j] += 1;
            } else if constraint_dominates(&items[j], &items[i]) {
                dominates_list[j].push(i);
                dominated_by[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut cur: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    while !cur.is_empty() {
        let mut next = Vec::new();
        for &i in &cur {
            for &j in &dominates_list[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(cur);
        cur = next;
    }
    fronts
}

/// Crowding distance of each member of `front` (same order): the sum over objectives
/// of the normalized gap between its neighbours; boundary points get +inf.
pub fn crowding(items: &[Scored], front: &[usize]) -> Vec<f64> {
    let n = front.len();
    let mut d = vec![0.0; n];
    if n == 0 {
        return d;
    }
    let m = items[front[0]].obj.len();
    for k in 0..m {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            items[front[a]].obj[k]
                .total_cmp(&items[front[b]].obj[k])
                .then(front[a].cmp(&front[b]))
        });
        let lo = items[front[order[0]]].obj[k];
        let hi = items[front[order[n - 1]]].obj[k];
        d[order[0]] = f64::INFINITY;
        d[order[n - 1]] = f64::INFINITY;
        let span = hi - lo;
        if span <= 0.0 || !span.is_finite() {
            continue;
        }
        for w in 1..n.saturating_sub(1) {
            let gap = items[front[order[w + 1]]].obj[k] - items[front[order[w - 1]]].obj[k];
            d[order[w]] += gap / span;
        }
    }
    d
}

/// Indices of the non-dominated vectors (minimization). Equal vectors do not dominate
/// each other: all copies stay.
pub fn pareto_front(objs: &[Vec<f64>]) -> Vec<usize> {
    (0..objs.len())
        .filter(|&i| !(0..objs.len()).any(|j| j != i && dominates(&objs[j], &objs[i])))
        .collect()
}

/// The exact hypervolume dominated by `points` (minimization) and bounded by
/// `reference`: the measure of { x : some p ≤ x ≤ reference }. Points not strictly
/// better than the reference in every objective add nothing. Computed by slicing
/// along the last objective down to a 2-D sweep (exact for any dimension; O(n² log n)
/// in 3-D).
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let pts: Vec<Vec<f64>> = points
        .iter()
        .filter(|p| p.iter().zip(reference).all(|(x, r)| x < r))
        .cloned()
        .collect();
    hv(&pts, reference)
}

fn hv(pts: &[Vec<f64>], r: &[f64]) -> f64 {
    let d = r.len();
    if pts.is_empty() {
        return 0.0;
    }
    match d {
        0 => 0.0,
        1 => r[0] - pts.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min),
        2 => {
            let mut s: Vec<(f64, f64)> = pts.iter().map(|p| (p[0], p[1])).collect();
            s.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let mut area = 0.0;
            let mut prev_y = r[1];
            for (x, y) in s {
                if y < prev_y {
                    area += (r[0] - x) * (prev_y - y);
                    prev_y = y;
                }
            }
            area
        }
        _ => {
            let mut s: Vec<&Vec<f64>> = pts.iter().collect();
            s.sort_by(|a, b| a[d - 1].total_cmp(&b[d - 1]));
            let mut total = 0.0;
            let sub_r = &r[..d - 1];
            for i in 0..s.len() {
                let z = s[i][d - 1];
                let z_next = if i + 1 < s.len() {
                    s[i + 1][d - 1]
                } else {
                    r[d - 1]
                };
                if z_next <= z {
                    continue;
                }
                let slice: Vec<Vec<f64>> = s[..=i].iter().map(|p| p[..d - 1].to_vec()).collect();
                let front: Vec<Vec<f64>> = pareto_front(&slice)
                    .into_iter()
                    .map(|k| slice[k].clone())
                    .collect();
                total += hv(&front, sub_r) * (z_next - z);
            }
            total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervolume_by_hand() {
        // Two boxes in 2-D: [1,3]x[2,3] ∪ [2,3]x[1,3] = 2 + 2 - 1 = 3.
        let p = vec![vec![1.0, 2.0], vec![2.0, 1.0]];
        assert!((hypervolume(&p, &[3.0, 3.0]) - 3.0).abs() < 1e-12);
        // 3-D: unit cube corner at 0 with reference 1: volume 1; adding a dominated point changes nothing.
        let p = vec![vec![0.0, 0.0, 0.0], vec![0.5, 0.5, 0.5]];
        assert!((hypervolume(&p, &[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        // Two 3-D boxes: [0.5,1]x[0,1]x[0,1] (0.5) ∪ [0,1]x[0.5,1]x[0.5,1] (0.25), overlap 0.125.
        let p = vec![vec![0.5, 0.0, 0.0], vec![0.0, 0.5, 0.5]];
        assert!((hypervolume(&p, &[1.0, 1.0, 1.0]) - 0.625).abs() < 1e-12);
        // Points outside the reference add nothing.
        assert_eq!(hypervolume(&[vec![2.0, 0.0]], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn deb_rules() {
        let f = |o: Vec<f64>, v: f64| Scored {
            obj: o,
            violation: v,
        };
        assert!(constraint_dominates(&f(vec![9.0], 0.0), &f(vec![1.0], 0.1)));
        assert!(constraint_dominates(&f(vec![9.0], 0.1), &f(vec![1.0], 0.2)));
        assert!(constraint_dominates(
            &f(vec![1.0, 1.0], 0.0),
            &f(vec![1.0, 2.0], 0.0)
        ));
        assert!(!constraint_dominates(
            &f(vec![1.0, 3.0], 0.0),
            &f(vec![2.0, 1.0], 0.0)
        ));
        let items = vec![
            f(vec![1.0, 3.0], 0.0),
            f(vec![2.0, 2.0], 0.0),
            f(vec![3.0, 3.0], 0.0),
            f(vec![0.0, 0.0], 1.0),
        ];
        assert_eq!(
            nondominated_sort(&items),
            vec![vec![0, 1], vec![2], vec![3]]
        );
    }
}
