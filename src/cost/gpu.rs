//! GPU model (placeholder until it lands).

use super::{CostError, NetworkCost, NetworkOptions};
use crate::arch::gpu::Gpu;
use crate::workload::Graph;

pub fn evaluate_network(
    _graph: &Graph,
    f: &Gpu,
    _opts: &NetworkOptions,
) -> Result<NetworkCost, CostError> {
    Err(CostError::Unsupported(format!(
        "{}: GPU model not built yet",
        f.path.display()
    )))
}
