//! The reference tensor engine: the judge of every number coex produces.
//!
//! Three computations of the same scaled-down network, on the same seeded data
//! ([`DataGen`]: every tensor drawn from its own keyed stream):
//!
//! 1. [`naive`]: every op executed in f64 by the plainest loops that follow
//!    `workload::op`'s semantics, counting multiply-accumulates as it goes. The oracle.
//! 2. [`gemm`]: every MAC op rebuilt from `nalgebra` matrix products (im2col, reshapes,
//!    per-head GEMMs), sharing no loop with the oracle.
//! 3. [`einsum`]: every Einsum the lowering emits, executed generically from its dims
//!    and affine projections, on the oracle's own operands.
//!
//! [`verify`] runs all three layer by layer and reports, per layer: counted MACs vs the
//! MACs the lowering models, the oracle vs the GEMM path, the oracle vs each Einsum, and
//! whether the parameter/bias bookkeeping of the lowering matches what the oracle did.
//! Layer by layer means every layer's checks start from the oracle's inputs, so an
//! error is reported where it happens rather than smeared downstream.
//!
//! The hardware side has its own judge: [`mapped`] runs an Einsum under a mapping on a
//! template, moving real values through simulated buffers and counting every read,
//! fill and update per level and operand, and [`accel`] (`coex check`) holds those
//! counts equal to the access model's (`map::analyze`) for every layer of a network,
//! mapped as `coex eval` maps it and scaled down by [`scale`] when it is too large to
//! execute; [`vector`] runs the VectorOps on a vector-unit model against the
//! lowering's element and byte counts. Full sweep (every layer of ResNet-18,
//! MobileNetV2, BERT-base, Mixtral 8x7B and Mamba-130m on every shipped ASIC
//! template): `for w in ...; for a in accelerators/asic/*.toml; cargo run --release
//! -- check --workload workloads/$w.toml --accel $a`.
//!
//! Relative error (see [`rel_err`]): `max|a − b| / max(max|a|, 1e-12)` with `a` the
//! oracle. Everything runs in f64, so agreeing computations differ by ~1e-15; the
//! tolerance [`TOLERANCE`] = 1e-4 separates rounding from a wrong index by many orders.

pub mod accel;
pub mod data;
pub mod einsum;
pub mod gemm;
pub mod mapped;
pub mod naive;
pub mod scale;
pub mod systolic;
pub mod tensor;
pub mod vector;

pub use data::{DataGen, Fault};
pub use tensor::{rel_err, Tensor};

use crate::lower::{self, Einsum, Kernel};
use crate::workload::{Graph, WorkloadError};
use naive::{Execution, Product};
use petgraph::graph::NodeIndex;
use std::fmt;

/// Largest relative error accepted between two computations of the same tensor.
pub const TOLERANCE: f64 = 1e-4;

/// Work above which `verify` refuses a graph: the engine is meant for scaled-down
/// networks (its loops are deliberately naive), and a full-size one would run for hours.
pub const MAX_MACS: u64 = 100_000_000;

/// Tensor elements (all node outputs together) above which `verify` refuses a graph:
/// the oracle keeps every tensor in f64, and a huge one should be an error, not an abort.
pub const MAX_ELEMENTS: u64 = 20_000_000;

/// Everything that stops the engine from producing a verdict. A disagreement is not an
/// error: it is a verdict, reported in [`Verification`].
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("node '{node}': {message}")]
    Node { node: String, message: String },
    #[error("einsum '{einsum}': {message}")]
    Einsum { einsum: String, message: String },
    #[error(
        "einsum '{einsum}': level '{level}' must hold {words} words but has room for \
         {capacity}; the mapping's tiles overflow it"
    )]
    Capacity {
        einsum: String,
        level: String,
        words: u64,
        capacity: u64,
    },
    #[error(
        "'{graph}' has {amount} {what}, more than the reference engine's limit of {limit}; \
         scale it down (smaller widths, image_size, seq_len, batch) to check it"
    )]
    TooLarge {
        graph: String,
        /// "MACs" or "tensor elements".
        what: &'static str,
        amount: u64,
        limit: u64,
    },
}

/// Whether an error is acceptable; false for NaN, so a NaN can never pass.
fn within(err: f64, tol: f64) -> bool {
    err <= tol
}

/// One Einsum of a layer executed by the Einsum executor against the oracle's product.
#[derive(Clone, Debug)]
pub struct EinsumCheck {
    pub name: String,
    /// `Einsum::macs()`: the iteration-box volume the cost models use.
    pub modeled_macs: u64,
    /// MACs the Einsum executor performed.
    pub executed_macs: u64,
    /// Oracle product output vs Einsum executor output (∞ when not comparable).
    pub rel_err: f64,
    /// Why the comparison could not be made or the bookkeeping is wrong, if so.
    pub problem: Option<String>,
}

/// The verdict on one graph node.
#[derive(Clone, Debug)]
pub struct LayerCheck {
    pub name: String,
    /// `Op::kind_name()`.
    pub kind: &'static str,
    /// MACs the naive executor counted.
    pub counted_macs: u64,
    /// MACs of the node's lowered kernels (`lower::lower_node`).
    pub modeled_macs: u64,
    /// Oracle vs GEMM path, for MAC ops (None for the others).
    pub gemm_rel_err: Option<f64>,
    pub einsums: Vec<EinsumCheck>,
    /// Other disagreements: oracle products no Einsum covers, bias kernels that do not
    /// match the biases the op adds.
    pub notes: Vec<String>,
}

impl LayerCheck {
    /// Every way this layer fails at tolerance `tol` (empty: it passes).
    pub fn problems(&self, tol: f64) -> Vec<String> {
        let mut p = Vec::new();
        if self.counted_macs != self.modeled_macs {
            p.push(format!(
                "counted {} MACs, lowering models {}",
                self.counted_macs, self.modeled_macs
            ));
        }
        match self.gemm_rel_err {
            Some(e) if !within(e, tol) => {
                p.push(format!("naive vs GEMM path: relative error {e:.3e}"))
            }
            _ => {}
        }
        for e in &self.einsums {
            if let Some(why) = &e.problem {
                p.push(format!("einsum {}: {why}", e.name));
            } else if !within(e.rel_err, tol) {
                p.push(format!(
                    "einsum {}: naive vs Einsum executor relative error {:.3e}",
                    e.name, e.rel_err
                ));
            }
            if e.executed_macs != e.modeled_macs {
                p.push(format!(
                    "einsum {}: executed {} MACs, models {}",
                    e.name, e.executed_macs, e.modeled_macs
                ));
            }
        }
        p.extend(self.notes.iter().cloned());
        p
    }
}

/// The verdict on a graph: one [`LayerCheck`] per node, in execution order.
#[derive(Clone, Debug)]
pub struct Verification {
    pub graph: String,
    pub seed: u64,
    pub layers: Vec<LayerCheck>,
}

impl Verification {
    /// `"layer: problem"` for every failure at tolerance `tol`.
    pub fn problems(&self, tol: f64) -> Vec<String> {
        self.layers
            .iter()
            .flat_map(|l| {
                l.problems(tol)
                    .into_iter()
                    .map(move |p| format!("{}: {p}", l.name))
            })
            .collect()
    }

    /// Whether every layer passes at [`TOLERANCE`].
    pub fn passed(&self) -> bool {
        self.problems(TOLERANCE).is_empty()
    }

    pub fn layer(&self, name: &str) -> Option<&LayerCheck> {
        self.layers.iter().find(|l| l.name == name)
    }

    pub fn counted_macs(&self) -> u64 {
        self.layers.iter().map(|l| l.counted_macs).sum()
    }

    pub fn modeled_macs(&self) -> u64 {
        self.layers.iter().map(|l| l.modeled_macs).sum()
    }

    /// Largest error over every comparison made (0 when none).
    pub fn max_rel_err(&self) -> f64 {
        self.layers
            .iter()
            .flat_map(|l| {
                l.gemm_rel_err
                    .into_iter()
                    .chain(l.einsums.iter().map(|e| e.rel_err))
            })
            .fold(0.0, f64::max)
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} (seed {})", self.graph, self.seed)?;
        writeln!(
            f,
            "{:<32} {:<14} {:>12} {:>12} {:>10} {:>10}  verdict",
            "layer", "kind", "counted", "modeled", "gemm_err", "einsum_err"
        )?;
        for l in &self.layers {
            let gemm = l
                .gemm_rel_err
                .map(|e| format!("{e:.1e}"))
                .unwrap_or_else(|| "-".into());
            let ein = l
                .einsums
                .iter()
                .map(|e| e.rel_err)
                .reduce(f64::max)
                .map(|e| format!("{e:.1e}"))
                .unwrap_or_else(|| "-".into());
            let problems = l.problems(TOLERANCE);
            let verdict = if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join("; ")
            };
            writeln!(
                f,
                "{:<32} {:<14} {:>12} {:>12} {:>10} {:>10}  {verdict}",
                l.name, l.kind, l.counted_macs, l.modeled_macs, gemm, ein
            )?;
        }
        Ok(())
    }
}

/// Checks every layer of `graph` on data seeded by `seed`.
pub fn verify(graph: &Graph, seed: u64) -> Result<Verification, CheckError> {
    let gen = DataGen::new(seed);
    verify_with(graph, &gen, &gen)
}

/// [`verify`] with separate data for the oracle and the GEMM path: identical
/// generators in normal use; a [`Fault`] in `independent` shows the checker noticing.
pub fn verify_with(
    graph: &Graph,
    oracle: &DataGen,
    independent: &DataGen,
) -> Result<Verification, CheckError> {
    let work = lower::lower(graph)?;
    let macs: u64 = work.iter().map(lower::LayerWork::macs).sum();
    let elements: u64 = graph.g.node_weights().map(|n| n.output.elements()).sum();
    for (what, amount, limit) in [
        ("MACs", macs, MAX_MACS),
        ("tensor elements", elements, MAX_ELEMENTS),
    ] {
        if amount > limit {
            return Err(CheckError::TooLarge {
                graph: graph.name.clone(),
                what,
                amount,
                limit,
            });
        }
    }
    let exec = naive::execute(graph, oracle)?;
    let mut layers = Vec::with_capacity(work.len());
    for lw in &work {
        layers.push(check_layer(
            graph,
            &exec,
            lw.node,
            &lw.kernels,
            independent,
        )?);
    }
    Ok(Verification {
        graph: graph.name.clone(),
        seed: oracle.seed,
        layers,
    })
}

fn check_layer(
    graph: &Graph,
    exec: &Execution,
    idx: NodeIndex,
    kernels: &[Kernel],
    independent: &DataGen,
) -> Result<LayerCheck, CheckError> {
    let node = graph.node(idx);
    let run = exec.run(idx).ok_or_else(|| CheckError::Node {
        node: node.name.clone(),
        message: "was not executed".into(),
    })?;
    let inputs: Vec<&Tensor> = graph
        .inputs_of(idx)
        .into_iter()
        .filter_map(|i| exec.output(i))
        .collect();
    let gemm_rel_err =
        gemm::layer_output(graph, idx, &inputs, independent)?.map(|y| rel_err(&run.output, &y));
    let einsums: Vec<&Einsum> = kernels
        .iter()
        .filter_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            Kernel::Vector(_) => None,
        })
        .collect();
    let checks = einsums
        .iter()
        .map(|e| check_einsum(e, run.products.iter().find(|p| p.name == e.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut notes: Vec<String> = run
        .products
        .iter()
        .filter(|p| !einsums.iter().any(|e| e.name == p.name))
        .map(|p| {
            format!(
                "the op does a MAC nest '{}' that no lowered Einsum covers",
                p.name
            )
        })
        .collect();
    notes.extend(bias_notes(kernels, &run.biases));
    Ok(LayerCheck {
        name: node.name.clone(),
        kind: node.op.kind_name(),
        counted_macs: run.macs,
        modeled_macs: kernels.iter().map(Kernel::macs).sum(),
        gemm_rel_err,
        einsums: checks,
        notes,
    })
}

/// The lowering models each bias add as a VectorOp named `<nest>.bias`: it must emit
/// exactly the ones the op performs.
fn bias_notes(kernels: &[Kernel], biases: &[String]) -> Vec<String> {
    let modeled: Vec<&str> = kernels
        .iter()
        .filter_map(|k| match k {
            Kernel::Vector(v) if v.name.ends_with(".bias") => Some(v.name.as_str()),
            _ => None,
        })
        .collect();
    let mut notes: Vec<String> = biases
        .iter()
        .filter(|b| !modeled.contains(&b.as_str()))
        .map(|b| format!("the op adds bias '{b}' but the lowering has no such VectorOp"))
        .collect();
    notes.extend(
        modeled
            .iter()
            .filter(|m| !biases.iter().any(|b| b == *m))
            .map(|m| format!("the lowering models bias '{m}' that the op does not add")),
    );
    notes
}

/// Runs one Einsum on the oracle's operands and compares with the oracle's output.
///
/// Operands are matched by element count and read row-major, since an Einsum operand is
/// a view (`[pre, C, post]`, `[tokens, D]`) of the graph tensor; a wrong view shows up as
/// a numeric disagreement.
pub fn check_einsum(e: &Einsum, product: Option<&Product>) -> Result<EinsumCheck, CheckError> {
    let mut check = EinsumCheck {
        name: e.name.clone(),
        modeled_macs: e.macs(),
        executed_macs: 0,
        rel_err: f64::INFINITY,
        problem: None,
    };
    let Some(p) = product else {
        check.problem = Some("the op performs no MAC nest by this name".into());
        return Ok(check);
    };
    let sizes = [
        ("input", &e.input, &p.input),
        ("weight", &e.weight, &p.weight),
        ("output", &e.output, &p.output),
    ];
    for (what, op, t) in sizes {
        if op.elements() != t.len() as u64 {
            check.problem = Some(format!(
                "{what} operand {:?} has {} elements but the op's tensor {:?} has {}",
                op.shape,
                op.elements(),
                t.shape,
                t.len()
            ));
            return Ok(check);
        }
    }
    if e.weight.is_param != p.weight_is_param {
        check.problem = Some(format!(
            "weight operand is_param = {}, but the op's second operand {} a stored parameter",
            e.weight.is_param,
            if p.weight_is_param { "is" } else { "is not" }
        ));
    }
    let (out, macs) = einsum::execute(e, &p.input, &p.weight)?;
    check.executed_macs = macs;
    check.rel_err = match p.output.reshaped(&e.output.shape) {
        Some(reference) => rel_err(&reference, &out),
        None => f64::INFINITY,
    };
    Ok(check)
}

#[cfg(test)]
mod tests;
