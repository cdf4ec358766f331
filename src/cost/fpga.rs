//! FPGA engines (placeholder until the FPGA model lands).

use super::{CostError, NetworkCost, NetworkOptions};
use crate::arch::fpga::Fpga;
use crate::workload::Graph;

pub fn evaluate_network(
    _graph: &Graph,
    f: &Fpga,
    _opts: &NetworkOptions,
) -> Result<NetworkCost, CostError> {
    Err(CostError::Unsupported(format!(
        "{}: FPGA model not built yet",
        f.path.display()
    )))
}
