//! coex: co-exploration of neural-network architectures and accelerators.
//!
//! The flow (see DESIGN.md): `workload` builds a dataflow graph, `lower` turns every
//! op into Einsums and VectorOps, `arch` reads accelerator templates, `map` finds
//! mappings and counts their accesses, `cost` turns counts into latency, energy and
//! area; `search` explores joint network × accelerator spaces. `check` re-executes the work as the judge of every number the models
//! produce. `report` writes tidy rows.

pub mod arch;
pub mod calibrate;
pub mod check;
pub mod cost;
pub mod lower;
pub mod map;
pub mod plot;
pub mod report;
pub mod search;
pub mod workload;

pub use lower::{Einsum, Kernel, LayerWork, VectorOp};
pub use workload::{DType, Graph, Op, WorkloadError};
