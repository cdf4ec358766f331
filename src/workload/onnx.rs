//! ONNX import: reads a `.onnx` model into a [`Graph`], inferring every shape.
//!
//! The file is decoded with hand-written prost messages ([`proto`]), then its nodes,
//! which ONNX stores in topological order, are mapped one by one onto coex ops. The
//! target is opset 13 and later; older opsets load where the op meanings agree
//! (Clip bounds, Softmax axis, (Un)Squeeze axes are read in both forms).
//!
//! Decisions, and why:
//! - **Weights are parameters, not nodes.** Conv/Gemm/MatMul weights and biases, and
//!   BatchNorm/LayerNorm scales, must be initializers (or `Constant` outputs); they
//!   set the op's shape and bias flag. BatchNorm running mean/var are buffers, not
//!   parameters, as in coex's own `Norm { Batch }` (2·C parameters).
//! - **Bias adds are folded.** Exporters write a PyTorch `Linear` as `MatMul` + `Add`;
//!   an `Add` of a per-channel constant to the output of a bias-less Linear or Conv
//!   that feeds nothing else sets that op's `bias` and disappears, so the layer looks
//!   and counts like the original.
//! - **Other constant operands become `Op::Constant` nodes** feeding a `Binary` (layer
//!   scales, position tables, attention scales, a `Concat`'s stored part). They count
//!   as parameters unless they hold a single element (a scale or an epsilon is a
//!   hyperparameter). One node per stored tensor, however many ops read it.
//! - **Sub and Div are costed as Add and Mul**: one vector op per element either way.
//! - **Patterns collapse** into the activation they spell: the erf GELU
//!   (`Div, Erf, Add, Mul, Mul` and its reorderings), `x·Sigmoid(x)` → SiLU and
//!   `x·HardSigmoid(x)` → hardswish.
//! - **Shape arithmetic on constants is folded** (`Shape`, `Gather`, `Unsqueeze`,
//!   `Squeeze`, `Concat`, `Slice`, `Cast`, `Add/Sub/Mul/Div` of constants), because
//!   coex shapes are static: the dynamic-reshape chains exporters emit become a plain
//!   `Reshape`.
//! - **Batch**: axis 0 of every graph input is the batch. `batch` replaces it; without
//!   it a symbolic batch becomes 1. Any other symbolic dimension is an error: coex
//!   models fixed shapes, so the model must be exported with fixed sizes.
//! - **Gather** of a stored 2-D table at activation indices is an embedding lookup;
//!   one stored index into an activation is a slice (plus a reshape for a scalar
//!   index, as in picking a class token). **Cast** of an activation passes it through:
//!   coex costs activations in the graph's element type.
//! - `Erf` alone has no coex op; it is read only as part of the GELU pattern.
//!   When `batch` replaces a batch fixed in the file, a stored `Reshape` target whose
//!   axis 0 spells the old batch, on an input whose axis 0 is the new one, follows the
//!   new batch: exports with a fixed batch hard-code it there (`[1, 2048]`).
//! - Only the first output of each node is modeled (Dropout masks, MaxPool indices and
//!   BatchNorm training statistics are not); reading another output is an error.

mod constant;
mod fuse;
mod ops;
mod proto;

use super::op::Op;
use super::{DType, Graph, WorkloadError};
use constant::{Const, ConstTensor};
use petgraph::graph::NodeIndex;
use prost::Message;
use proto::{
    attr_type, data_type, AttributeProto, DimValue, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

/// ONNX op types the importer maps (collapsed patterns aside), for error messages.
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LayerNormalization",
    "MatMul",
    "MaxPool",
    "Mul",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Softplus",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

/// Largest tensor accepted, in elements (2^40): beyond any real input, activation or
/// weight, and low enough that sizes computed from values in a corrupt file do not
/// overflow.
pub(crate) const MAX_TENSOR_ELEMENTS: i64 = 1 << 40;

/// Oldest default-domain opset accepted; 13+ is the target (see the module notes).
const MIN_OPSET: i64 = 7;

/// Loads an ONNX model; `batch` overrides axis 0 of every graph input.
pub fn load(path: &Path, batch: Option<usize>) -> Result<Graph, WorkloadError> {
    let bytes = std::fs::read(path).map_err(|source| WorkloadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "onnx".to_string());
    parse(&bytes, &name, batch).map_err(|e| e.in_file(path))
}

/// Imports a serialized `ModelProto` as a graph called `name`.
pub fn parse(bytes: &[u8], name: &str, batch: Option<usize>) -> Result<Graph, WorkloadError> {
    if batch == Some(0) {
        return Err(WorkloadError::BadParam {
            key: "batch".into(),
            message: "--batch must be ≥ 1".into(),
        });
    }
    let model = ModelProto::decode(bytes).map_err(|e| {
        file_error(format!(
            "protobuf decoding failed ({e}); the file is truncated or corrupt"
        ))
    })?;
    let graph = model
        .graph
        .as_ref()
        .filter(|g| !g.node.is_empty())
        .ok_or_else(|| {
            file_error("it holds no graph nodes (an empty or truncated file?)".into())
        })?;
    let opset = default_opset(&model)?;
    let mut importer = Importer::new(graph, name, opset)?;
    importer.inputs(graph, batch)?;
    importer.nodes(graph)?;
    Ok(importer.g)
}

fn file_error(message: String) -> WorkloadError {
    WorkloadError::OnnxFile { message }
}

/// Version of the default (`ai.onnx`) operator set the model imports.
fn default_opset(model: &ModelProto) -> Result<i64, WorkloadError> {
    let version = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            file_error("it imports no default-domain opset (a truncated file?)".into())
        })?;
    if version < MIN_OPSET {
        return Err(file_error(format!(
            "opset {version} is older than coex reads ({MIN_OPSET}+, 13+ preferred); upgrade it with onnx.version_converter"
        )));
    }
    Ok(version)
}

/// What an ONNX tensor name stands for while importing.
#[derive(Clone, Debug)]
enum Value {
    /// An activation: the output of a coex node.
    Act(NodeIndex),
    /// A tensor known at import time (weights, shapes, scalars).
    Const(Const),
}

/// Per-node failures are plain messages; the import loop names the node and op type.
type Res<T> = Result<T, String>;

/// Import state: the graph so far and what every ONNX tensor name maps to.
struct Importer<'m> {
    g: Graph,
    opset: i64,
    values: HashMap<&'m str, Value>,
    /// How many node inputs and graph outputs read each tensor (folding needs sole use).
    uses: HashMap<&'m str, usize>,
    /// `Op::Constant` nodes already made for stored tensors, by tensor name.
    materialized: HashMap<&'m str, NodeIndex>,
    /// Secondary node outputs, which coex does not model, with the node that makes them.
    unmodeled: HashMap<&'m str, String>,
    /// (batch fixed in the file, batch asked for) when `--batch` changes a fixed batch:
    /// stored reshape targets that spell the old batch on axis 0 follow the new one.
    batch_rewrite: Option<(usize, usize)>,
}

/// One ONNX node being imported, with the label errors and coex node names use.
struct NodeRef<'m> {
    proto: &'m NodeProto,
    label: String,
}

impl<'m> NodeRef<'m> {
    fn new(index: usize, proto: &'m NodeProto) -> Self {
        let label = if !proto.name.is_empty() {
            proto.name.clone()
        } else if let Some(out) = proto.output.first().filter(|o| !o.is_empty()) {
            out.clone()
        } else {
            format!("{}#{index}", proto.op_type)
        };
        NodeRef { proto, label }
    }

    fn op_type(&self) -> &'m str {
        &self.proto.op_type
    }

    /// Input `i`, or `None` when absent (ONNX marks skipped optional inputs with "").
    fn input(&self, i: usize) -> Option<&'m str> {
        self.proto
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn req(&self, i: usize, what: &str) -> Res<&'m str> {
        self.input(i)
            .ok_or_else(|| format!("missing input {i} ({what})"))
    }

    fn attrs(&self) -> Attrs<'m> {
        Attrs(&self.proto.attribute)
    }

    fn err(&self, message: String) -> WorkloadError {
        WorkloadError::Onnx {
            node: self.label.clone(),
            op_type: self.proto.op_type.clone(),
            message,
        }
    }
}

/// Typed access to a node's attributes; a wrongly typed attribute is an error.
struct Attrs<'m>(&'m [AttributeProto]);

impl<'m> Attrs<'m> {
    fn get(&self, name: &str, ty: i32) -> Res<Option<&'m AttributeProto>> {
        match self.0.iter().find(|a| a.name == name) {
            None => Ok(None),
            // Type 0: IR version 1 files left the discriminator out.
            Some(a) if a.r#type == 0 || a.r#type == ty => Ok(Some(a)),
            Some(a) => Err(format!(
                "attribute '{name}' has attribute type {} where type {ty} is expected",
                a.r#type
            )),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a.name == name)
    }

    fn int(&self, name: &str, default: i64) -> Res<i64> {
        Ok(self.get(name, attr_type::INT)?.map_or(default, |a| a.i))
    }

    fn ints(&self, name: &str) -> Res<Option<Vec<i64>>> {
        Ok(self.get(name, attr_type::INTS)?.map(|a| a.ints.clone()))
    }

    fn float(&self, name: &str, default: f32) -> Res<f32> {
        Ok(self.get(name, attr_type::FLOAT)?.map_or(default, |a| a.f))
    }

    fn floats(&self, name: &str) -> Res<Option<Vec<f32>>> {
        Ok(self.get(name, attr_type::FLOATS)?.map(|a| a.floats.clone()))
    }

    fn string(&self, name: &str, default: &str) -> Res<String> {
        Ok(self
            .get(name, attr_type::STRING)?
            .map_or(default.to_string(), |a| {
                String::from_utf8_lossy(&a.s).into_owned()
            }))
    }

    fn tensor(&self, name: &str) -> Res<Option<&'m TensorProto>> {
        Ok(self
            .get(name, attr_type::TENSOR)?
            .and_then(|a| a.t.as_ref()))
    }
}

impl<'m> Importer<'m> {
    /// Starts a graph in the element type of the first floating-point input, and
    /// registers every initializer as a constant.
    fn new(graph: &'m GraphProto, name: &str, opset: i64) -> Result<Self, WorkloadError> {
        let mut values = HashMap::new();
        for t in &graph.initializer {
            let c = ConstTensor::from_proto(t).map_err(|message| WorkloadError::Onnx {
                node: t.name.clone(),
                op_type: "initializer".into(),
                message,
            })?;
            values.insert(t.name.as_str(), Value::Const(Rc::new(c)));
        }
        let dtype = graph
            .input
            .iter()
            .filter(|vi| !values.contains_key(vi.name.as_str()))
            .filter_map(|vi| vi.r#type.as_ref()?.tensor_type.as_ref())
            .find_map(|t| float_dtype(t.elem_type))
            .unwrap_or(DType::Fp32);
        Ok(Importer {
            g: Graph::new(name, dtype),
            opset,
            values,
            uses: count_uses(graph),
            materialized: HashMap::new(),
            unmodeled: HashMap::new(),
            batch_rewrite: None,
        })
    }

    /// Adds the graph inputs that are not initializers (those are weights) nor made by
    /// a node (old files list every weight as an input, even when a node computes it).
    fn inputs(&mut self, graph: &'m GraphProto, batch: Option<usize>) -> Result<(), WorkloadError> {
        let produced: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        for vi in &graph.input {
            if self.values.contains_key(vi.name.as_str()) || produced.contains(vi.name.as_str()) {
                continue;
            }
            let (shape, dtype) = input_type(vi, batch).map_err(|message| WorkloadError::Onnx {
                node: vi.name.clone(),
                op_type: "graph input".into(),
                message,
            })?;
            if let (Some(from), Some(to)) = (fixed_batch(vi), batch) {
                if from != to && self.batch_rewrite.is_none() {
                    self.batch_rewrite = Some((from, to));
                }
            }
            let idx = self.g.input_typed(&vi.name, &shape, dtype)?;
            self.values.insert(&vi.name, Value::Act(idx));
        }
        Ok(())
    }

    /// Imports the nodes in file order (ONNX requires it to be topological).
    fn nodes(&mut self, graph: &'m GraphProto) -> Result<(), WorkloadError> {
        let fusions = fuse::find(graph, &self.uses);
        for (i, proto) in graph.node.iter().enumerate() {
            if fusions.skip.contains(&i) {
                continue;
            }
            let n = NodeRef::new(i, proto);
            let result = match fusions.at.get(&i) {
                Some(f) => self.fused(&n, f),
                None => self.node(&n),
            };
            result.map_err(|message| n.err(message))?;
        }
        Ok(())
    }

    /// Emits a collapsed pattern as one activation.
    fn fused(&mut self, n: &NodeRef<'m>, f: &fuse::Fused<'m>) -> Res<()> {
        let x = self.act(f.input)?;
        let idx = self.add(n, "", Op::Act { act: f.act }, &[x])?;
        self.values.insert(f.output, Value::Act(idx));
        Ok(())
    }

    /// Imports one node and binds its outputs.
    fn node(&mut self, n: &NodeRef<'m>) -> Res<()> {
        if !matches!(n.proto.domain.as_str(), "" | "ai.onnx") {
            return Err(format!(
                "operators of domain '{}' are not supported, only the default ONNX domain; supported op types: {}",
                n.proto.domain,
                SUPPORTED_OPS.join(", ")
            ));
        }
        let value = self.dispatch(n)?;
        let mut outputs = n.proto.output.iter().filter(|o| !o.is_empty());
        if let Some(first) = outputs.next() {
            self.values.insert(first, value);
        }
        for extra in outputs {
            self.unmodeled.insert(extra, n.label.clone());
        }
        Ok(())
    }

    /// What a tensor name stands for.
    fn value(&self, name: &str) -> Res<Value> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        Err(match self.unmodeled.get(name) {
            Some(producer) => format!(
                "input '{name}' is a secondary output of node '{producer}', which coex does not model (only each node's first output is imported)"
            ),
            None => format!(
                "input '{name}' is not a graph input, an initializer or the output of an earlier node (ONNX nodes must be in topological order)"
            ),
        })
    }

    /// An activation input (the output of an earlier op or a graph input).
    fn act(&self, name: &str) -> Res<NodeIndex> {
        match self.value(name)? {
            Value::Act(idx) => Ok(idx),
            Value::Const(_) => Err(format!(
                "input '{name}' is a stored constant where coex expects an activation"
            )),
        }
    }

    /// A stored tensor (initializer, `Constant` output or folded shape arithmetic).
    fn konst(&self, name: &str, what: &str) -> Res<Const> {
        match self.value(name)? {
            Value::Const(c) => Ok(c),
            Value::Act(idx) => Err(format!(
                "{what} '{name}' is {}; coex needs it stored in the model (an initializer or a Constant node)",
                if matches!(self.g.node(idx).op, Op::Input { .. }) {
                    "a graph input"
                } else {
                    "computed at run time"
                }
            )),
        }
    }

    /// A node for any operand: activations as they are, constants as an
    /// `Op::Constant` node made once per tensor.
    fn operand(&mut self, name: &'m str) -> Res<NodeIndex> {
        let c = match self.value(name)? {
            Value::Act(idx) => return Ok(idx),
            Value::Const(c) => c,
        };
        if let Some(&idx) = self.materialized.get(name) {
            return Ok(idx);
        }
        // Scalars are stored as [1] so they broadcast like any tensor.
        let shape = if c.dims.is_empty() {
            vec![1]
        } else {
            c.dims.clone()
        };
        let learned = c.is_float() && c.elements() > 1;
        let node_name = self.unique(name);
        let idx = self
            .g
            .constant(&node_name, &shape, learned)
            .map_err(|e| format!("stored tensor '{name}': {e}"))?;
        self.materialized.insert(name, idx);
        Ok(idx)
    }

    fn shape(&self, idx: NodeIndex) -> &[usize] {
        &self.g.node(idx).output.shape
    }

    /// Adds a coex op named after the ONNX node (plus `suffix`), inferring its shape.
    fn add(
        &mut self,
        n: &NodeRef<'m>,
        suffix: &str,
        op: Op,
        inputs: &[NodeIndex],
    ) -> Res<NodeIndex> {
        let name = self.unique(&format!("{}{suffix}", n.label));
        let idx = self.g.add(&name, op, inputs).map_err(|e| match e {
            WorkloadError::Shape { message, .. } => message,
            e => e.to_string(),
        })?;
        let shape = self.shape(idx);
        let elements = shape
            .iter()
            .try_fold(1i64, |acc, &d| acc.checked_mul(i64::try_from(d).ok()?));
        match elements {
            Some(e) if e <= MAX_TENSOR_ELEMENTS => Ok(idx),
            _ => Err(format!(
                "output {shape:?} has more than {MAX_TENSOR_ELEMENTS} elements"
            )),
        }
    }

    /// `base`, or `base#2`, `base#3`, … when ONNX reused a name coex already holds.
    fn unique(&self, base: &str) -> String {
        if self.g.find(base).is_none() {
            return base.to_string();
        }
        (2..)
            .map(|k| format!("{base}#{k}"))
            .find(|c| self.g.find(c).is_none())
            .expect("an unbounded search finds a free name")
    }

    /// Whether the model's default opset is at least `version`: attributes moved to
    /// inputs at 10 (Slice), 11 (Clip) and 13 (Squeeze/Unsqueeze), and Softmax's
    /// default axis changed at 13.
    fn opset_at_least(&self, version: i64) -> bool {
        self.opset >= version
    }
}

/// How many node inputs and graph outputs read each tensor name.
fn count_uses(graph: &GraphProto) -> HashMap<&str, usize> {
    let mut uses = HashMap::new();
    let node_inputs = graph.node.iter().flat_map(|n| n.input.iter());
    let graph_outputs = graph.output.iter().map(|o| &o.name);
    for name in node_inputs.chain(graph_outputs).filter(|s| !s.is_empty()) {
        *uses.entry(name.as_str()).or_insert(0) += 1;
    }
    uses
}

/// The batch (axis 0) a graph input has in the file, when fixed.
fn fixed_batch(vi: &ValueInfoProto) -> Option<usize> {
    let shape = vi.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?;
    match shape.dim.first()?.value {
        Some(DimValue::DimValue(v)) if v > 0 => usize::try_from(v).ok(),
        _ => None,
    }
}

/// Shape and element type of a graph input, with the batch rule applied to axis 0.
fn input_type(vi: &ValueInfoProto, batch: Option<usize>) -> Res<(Vec<usize>, DType)> {
    let t = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or("is not a tensor (sequence, map and optional inputs are not supported)")?;
    let dtype = input_dtype(t.elem_type)?;
    let dims = &t
        .shape
        .as_ref()
        .ok_or("has no shape; coex needs static shapes: export the model with fixed input sizes")?
        .dim;
    if dims.is_empty() {
        return Err("is a scalar; coex inputs need at least a batch axis".into());
    }
    let mut shape = Vec::with_capacity(dims.len());
    for (axis, d) in dims.iter().enumerate() {
        let fixed = match &d.value {
            Some(DimValue::DimValue(v)) if *v > MAX_TENSOR_ELEMENTS => {
                return Err(format!("axis {axis} has an implausible size {v}"))
            }
            Some(DimValue::DimValue(v)) if *v > 0 => Some(*v as usize),
            _ => None,
        };
        let size = if axis == 0 {
            batch.or(fixed).unwrap_or(1)
        } else {
            fixed.ok_or_else(|| {
                let what = match &d.value {
                    Some(DimValue::DimParam(p)) => format!("symbolic ('{p}')"),
                    Some(DimValue::DimValue(v)) => format!("{v}"),
                    None => "unknown".into(),
                };
                format!(
                    "axis {axis} is {what}; only the batch axis (0) may be symbolic: export the model with a fixed size for it"
                )
            })?
        };
        shape.push(size);
    }
    let elements = shape
        .iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(i64::try_from(d).ok()?))
        .filter(|&e| e <= MAX_TENSOR_ELEMENTS);
    if elements.is_none() {
        return Err(format!(
            "shape {shape:?} has more than {MAX_TENSOR_ELEMENTS} elements"
        ));
    }
    Ok((shape, dtype))
}

/// coex element type for a floating-point ONNX element type.
fn float_dtype(elem_type: i32) -> Option<DType> {
    match elem_type {
        // coex has no fp64; a double model is costed as fp32.
        data_type::FLOAT | data_type::DOUBLE => Some(DType::Fp32),
        data_type::FLOAT16 => Some(DType::Fp16),
        data_type::BFLOAT16 => Some(DType::Bf16),
        _ => None,
    }
}

/// coex element type for a graph input: floats as they are, integer ids as int32,
/// 8-bit and boolean tensors (quantized data, masks) as int8.
fn input_dtype(elem_type: i32) -> Res<DType> {
    if let Some(d) = float_dtype(elem_type) {
        return Ok(d);
    }
    match elem_type {
        data_type::INT8 | data_type::UINT8 | data_type::BOOL => Ok(DType::Int8),
        data_type::INT16
        | data_type::UINT16
        | data_type::INT32
        | data_type::UINT32
        | data_type::INT64
        | data_type::UINT64 => Ok(DType::Int32),
        other => Err(format!("has element type {other}, which coex cannot model")),
    }
}

#[cfg(test)]
mod tests;
