//! Networks: the op set, the dataflow graph, and every way to build one
//! (family builders, layer-list files, ONNX files, one-line op specs).

pub mod families;
pub mod file;
pub mod graph;
pub mod onnx;
pub mod op;
pub mod params;
pub mod spec;
pub mod tensor;

pub use graph::{Edge, Graph, Node, MAX_ELEMENTS, MAX_NODES};
pub use op::{
    Activation, Attention, BinaryKind, Conv1d, Conv2d, Moe, NormKind, Op, PoolKind, Routing,
};
pub use tensor::{DType, TensorInfo};

use std::path::{Path, PathBuf};

/// Everything that can go wrong reading or building a network. Messages name the
/// file, the key or node, and what to change.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("unknown family '{family}'; known families: {known} (run `coex families`)")]
    UnknownFamily { family: String, known: String },
    #[error("unknown parameter '{key}' for {context}; accepted: {accepted}")]
    UnknownParam {
        key: String,
        context: String,
        accepted: String,
    },
    #[error("bad value for '{key}': {message}")]
    BadParam { key: String, message: String },
    #[error("missing key '{key}': {message}")]
    MissingKey { key: String, message: String },
    #[error("node '{node}': {message}")]
    Shape { node: String, message: String },
    #[error("node '{node}' is defined twice; layer names must be unique")]
    Duplicate { node: String },
    #[error("node '{node}' is too big: {message}")]
    TooBig { node: String, message: String },
    #[error("layers form a cycle through '{node}'; a layer may only take inputs that do not depend on it")]
    Cycle { node: String },
    #[error(
        "layer '{layer}' takes input '{input}', which is not a layer or input of this network"
    )]
    UnknownInput { layer: String, input: String },
    #[error("op spec '{spec}': {message}")]
    Spec { spec: String, message: String },
    #[error("ONNX node '{node}' ({op_type}): {message}")]
    Onnx {
        node: String,
        op_type: String,
        message: String,
    },
    #[error("not a readable ONNX model: {message}")]
    OnnxFile { message: String },
    #[error("layer '{layer}' ([[layer]] #{number}): {source}")]
    InLayer {
        layer: String,
        number: usize,
        #[source]
        source: Box<WorkloadError>,
    },
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<WorkloadError>,
    },
}

impl WorkloadError {
    /// Prefixes the error with the file it came from (once).
    pub fn in_file(self, path: &Path) -> WorkloadError {
        match self {
            e @ (WorkloadError::Io { .. }
            | WorkloadError::Toml { .. }
            | WorkloadError::InFile { .. }) => e,
            e => WorkloadError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

/// Loads a network from a `.toml` workload file or an `.onnx` model, by extension.
pub fn load(path: &Path, batch: Option<usize>) -> Result<Graph, WorkloadError> {
    let is_onnx = path
        .extension()
        .map(|e| e.eq_ignore_ascii_case("onnx"))
        .unwrap_or(false);
    let g = if is_onnx {
        onnx::load(path, batch)?
    } else {
        file::load(path, batch)?
    };
    // Lowering checks the counts every model derives (MACs, bytes) against their limits.
    crate::lower::lower(&g).map_err(|e| e.in_file(path))?;
    Ok(g)
}
