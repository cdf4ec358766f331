//! coex: co-exploration of neural-network architectures and accelerators.
//!
//! The flow (see DESIGN.md): `workload` builds a dataflow graph, `lower` turns every
//! op into Einsums and VectorOps, and `check` re-executes them as the judge of every
//! number the models produce. `report` writes tidy rows.

pub mod check;
pub mod lower;
pub mod report;
pub mod workload;

pub use lower::{Einsum, Kernel, LayerWork, VectorOp};
pub use workload::{DType, Graph, Op, WorkloadError};
