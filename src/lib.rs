//! coex: co-exploration of neural-network architectures and accelerators.
//!
//! The flow (see DESIGN.md): `workload` builds a dataflow graph, `lower` turns every
//! op into Einsums and VectorOps, `arch` reads accelerator templates, `map` finds
//! mappings and counts their accesses, `cost` turns counts into latency, energy and
//! area. `check` re-executes the work as the judge of every number the models
//! produce. `report` writes tidy rows.

pub mod arch;
pub mod calibrate;
pub mod check;
pub mod cost;
pub mod lower;
pub mod map;
pub mod report;
pub mod workload;

pub use lower::{Einsum, Kernel, LayerWork, VectorOp};
pub use workload::{DType, Graph, Op, WorkloadError};
