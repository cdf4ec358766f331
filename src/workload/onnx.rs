//! ONNX import (placeholder until the importer lands).

use super::{Graph, WorkloadError};
use std::path::Path;

pub fn load(path: &Path, _batch: Option<usize>) -> Result<Graph, WorkloadError> {
    Err(WorkloadError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("ONNX import is not built yet"),
    })
}
