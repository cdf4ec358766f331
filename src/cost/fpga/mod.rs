//! FPGA engines: the same Einsums and VectorOps, the same result rows as an ASIC,
//! from two engine styles.
//!
//! * `tiled`: one shared Tm×Tn MAC array runs every layer in turn through
//!   double-buffered tiles (Zhang et al., FPGA'15); per layer the tile (Tr, Tc) and
//!   loop order are searched; a tile step takes max(compute, DRAM transfer).
//! * `dataflow`: one pipeline stage per kernel (FINN, Umuroglu et al. FPGA'17;
//!   Blott et al. TRETS 2018), each folded as PE × SIMD; weights live on chip; the
//!   slowest stage sets the throughput. The folding is an integer program (`fold`).
//!
//! Both report the device resources they use; a design that does not fit is an
//! error naming each overflowing resource and by how much.

pub mod dataflow;
pub mod fold;
pub mod tiled;

use super::{CostError, NetworkCost, NetworkOptions};
use crate::arch::fpga::{Engine, Fpga, Resources};
use crate::map::{MapError, Problem};
use crate::workload::{Graph, WorkloadError};
use std::fmt;
use std::path::PathBuf;

/// Errors of the FPGA models.
#[derive(Debug, thiserror::Error)]
pub enum FpgaError {
    #[error("{}: {what} does not fit {part}: {}", path.display(), list(overflows))]
    DoesNotFit {
        path: PathBuf,
        part: String,
        what: String,
        overflows: Vec<Overflow>,
    },
    #[error("{}: key '{key}': {message}", path.display())]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: the folding solver failed: {message}", path.display())]
    Solver { path: PathBuf, message: String },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Map(#[from] MapError),
}

/// One resource a design needs more of than it may use.
#[derive(Clone, Debug, PartialEq)]
pub struct Overflow {
    pub resource: &'static str,
    pub needed: f64,
    /// What the design may use: the device amount × `engine.max_utilization`.
    pub budget: f64,
    pub device: f64,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let over = if self.budget > 0.0 {
            format!("+{:.1}%", (self.needed / self.budget - 1.0) * 100.0)
        } else {
            "none available".into()
        };
        if self.budget < self.device {
            write!(
                f,
                "{}: needs {}, budget {} ({:.0}% of the device's {}) ({over})",
                self.resource,
                thousands(self.needed),
                thousands(self.budget),
                self.budget / self.device * 100.0,
                thousands(self.device)
            )
        } else {
            write!(
                f,
                "{}: needs {}, device has {} ({over})",
                self.resource,
                thousands(self.needed),
                thousands(self.device)
            )
        }
    }
}

fn list(o: &[Overflow]) -> String {
    o.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `3120` → "3,120"; halves (BRAM18) keep one decimal: "912.5".
pub fn thousands(x: f64) -> String {
    let whole = x.trunc() as u64;
    let digits = whole.to_string();
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(c);
    }
    let frac = x - x.trunc();
    if frac > 1e-9 {
        s.push_str(&format!("{:.1}", frac)[1..]);
    }
    s
}

/// Every resource `used` needs beyond the budget of `f`.
pub fn overflows(used: &Resources, f: &Fpga) -> Vec<Overflow> {
    let budget = f.common.budget(&f.device).as_array();
    let device = f.device.resources.as_array();
    used.as_array()
        .iter()
        .enumerate()
        .filter(|(k, &u)| u > budget[*k] + 1e-9)
        .map(|(k, &u)| Overflow {
            resource: Resources::NAMES[k],
            needed: u,
            budget: budget[k],
            device: device[k],
        })
        .collect()
}

/// Ok when `used` fits, else the error naming every overflow.
pub fn check_fit(used: &Resources, f: &Fpga, what: &str) -> Result<(), FpgaError> {
    let o = overflows(used, f);
    if o.is_empty() {
        return Ok(());
    }
    Err(FpgaError::DoesNotFit {
        path: f.path.clone(),
        part: f.device.part.clone(),
        what: what.to_string(),
        overflows: o,
    })
}

/// `Totals::resources`: `<R>.used` and `<R>.available` for every resource, in order.
pub fn resource_rows(used: &Resources, f: &Fpga) -> Vec<(String, f64)> {
    let avail = f.device.resources.as_array();
    Resources::NAMES
        .iter()
        .zip(used.as_array())
        .zip(avail)
        .flat_map(|((n, u), a)| [(format!("{n}.used"), u), (format!("{n}.available"), a)])
        .collect()
}

/// Evaluates a network on an FPGA file, by engine style.
pub fn evaluate_network(
    graph: &Graph,
    f: &Fpga,
    _opts: &NetworkOptions,
) -> Result<NetworkCost, CostError> {
    let r = match &f.engine {
        Engine::Tiled(t) => tiled::evaluate(graph, f, t),
        Engine::Dataflow(d) => dataflow::evaluate(graph, f, d).map(|(n, _)| n),
    };
    Ok(r?)
}

/// How an Einsum's dims meet the engines' loops.
///
/// A convolution (an output row/column dim P/Q next to a filter-tap dim R/S) keeps its
/// geometry: rows = P, cols = Q, m = the dims of weight and output only (K), n = the
/// other reduction dims (C), taps = R·S, batch = the rest (N, G, H). Any other Einsum
/// is a GEMM through `gemm_view`: rows = M, cols = 1, m = N, n = K, taps = 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Dims {
    pub conv: bool,
    pub batch: u64,
    pub rows: u64,
    pub cols: u64,
    pub m: u64,
    pub n: u64,
    pub taps: u64,
    /// Dim indices of rows and cols (conv only), for input-footprint queries.
    pub row_dim: Option<usize>,
    pub col_dim: Option<usize>,
}

pub fn split_dims(p: &Problem) -> Dims {
    let names = &p.names[..p.ndims];
    let out = |d: usize| p.operands[2].is_relevant(d);
    let has = |n: &str, want_out: bool| {
        names
            .iter()
            .enumerate()
            .any(|(d, x)| *x == n && out(d) == want_out)
    };
    let conv = (has("P", true) || has("Q", true)) && (has("R", false) || has("S", false));
    if !conv {
        let (b, m, n, k) = super::gemm_view(p);
        return Dims {
            conv,
            batch: b,
            rows: m,
            cols: 1,
            m: n,
            n: k,
            taps: 1,
            row_dim: None,
            col_dim: None,
        };
    }
    let mut d = Dims {
        conv,
        batch: 1,
        rows: 1,
        cols: 1,
        m: 1,
        n: 1,
        taps: 1,
        row_dim: None,
        col_dim: None,
    };
    for (i, name) in names.iter().enumerate() {
        let b = p.bounds[i];
        let [ri, rw, ro] = [0, 1, 2].map(|o| p.operands[o].is_relevant(i));
        match (*name, ri, rw, ro) {
            ("P", true, false, true) => (d.rows, d.row_dim) = (b, Some(i)),
            ("Q", true, false, true) => (d.cols, d.col_dim) = (b, Some(i)),
            ("R" | "S", _, _, false) => d.taps *= b,
            (_, _, _, false) => d.n *= b,
            (_, false, true, true) => d.m *= b,
            _ => d.batch *= b,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(3120.0), "3,120");
        assert_eq!(thousands(1728000.0), "1,728,000");
        assert_eq!(thousands(912.5), "912.5");
        assert_eq!(thousands(7.0), "7");
    }

    #[test]
    fn overflow_message_names_resource_and_margin() {
        let o = Overflow {
            resource: "DSP",
            needed: 3120.0,
            budget: 2520.0,
            device: 2520.0,
        };
        assert_eq!(o.to_string(), "DSP: needs 3,120, device has 2,520 (+23.8%)");
    }
}
