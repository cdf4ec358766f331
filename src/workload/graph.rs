//! The dataflow graph: a petgraph DAG whose nodes are ops and whose edges carry tensors.

use super::op::Op;
use super::tensor::{DType, TensorInfo};
use super::WorkloadError;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::HashMap;

/// The most nodes (layers and inputs) a network may have; builders hit this limit
/// before they allocate more, so a typo such as `depths = [2, 2, 2, 4294967296]`
/// is an error rather than an out-of-memory abort.
pub const MAX_NODES: usize = 100_000;

/// The most elements one tensor (an activation or a layer's weights) may hold: 2^40,
/// about a trillion. Counts derived from tensors then fit comfortably in a u64.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// One op with its inferred output tensor.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub output: TensorInfo,
}

/// A tensor flowing from a producer into input `port` of a consumer.
#[derive(Clone, Debug)]
pub struct Edge {
    pub port: usize,
    pub tensor: TensorInfo,
}

/// A network. Nodes are added with their inputs already present, so shape inference
/// runs at insertion and the graph stays acyclic by construction; files that name
/// inputs out of order are sorted (and checked for cycles) before insertion.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub dtype: DType,
    pub g: DiGraph<Node, Edge>,
    by_name: HashMap<String, NodeIndex>,
}

impl Graph {
    pub fn new(name: impl Into<String>, dtype: DType) -> Self {
        Graph {
            name: name.into(),
            dtype,
            g: DiGraph::new(),
            by_name: HashMap::new(),
        }
    }

    /// Adds a graph input of the given full shape in the graph's dtype.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<NodeIndex, WorkloadError> {
        let dtype = self.dtype;
        self.input_typed(name, shape, dtype)
    }

    pub fn input_typed(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
    ) -> Result<NodeIndex, WorkloadError> {
        let op = Op::Input {
            shape: shape.to_vec(),
        };
        let output = op.infer(&[]).map_err(|message| WorkloadError::Shape {
            node: name.to_string(),
            message,
        })?;
        self.insert(name, op, TensorInfo::new(output.shape, dtype), &[])
    }

    /// Adds a stored constant (`Op::Constant`) in the graph's dtype; it has no inputs,
    /// so [`Graph::add`] could not tell its element type.
    pub fn constant(
        &mut self,
        name: &str,
        shape: &[usize],
        learned: bool,
    ) -> Result<NodeIndex, WorkloadError> {
        let op = Op::Constant {
            shape: shape.to_vec(),
            learned,
        };
        let output = op.infer(&[]).map_err(|message| WorkloadError::Shape {
            node: name.to_string(),
            message,
        })?;
        let dtype = self.dtype;
        self.insert(name, op, TensorInfo::new(output.shape, dtype), &[])
    }

    /// Adds an op fed by `inputs` (in port order), inferring its output shape.
    pub fn add(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[NodeIndex],
    ) -> Result<NodeIndex, WorkloadError> {
        let tensors: Vec<&TensorInfo> = inputs.iter().map(|&i| &self.g[i].output).collect();
        let mut output = op.infer(&tensors).map_err(|message| WorkloadError::Shape {
            node: name.to_string(),
            message,
        })?;
        // Token ids are integers; the vectors they look up are in the network's dtype.
        if matches!(op, Op::Embedding { .. }) {
            output.dtype = self.dtype;
        }
        match op.checked_params(&tensors) {
            Some(p) if p <= MAX_ELEMENTS => {}
            _ => {
                return Err(WorkloadError::TooBig {
                    node: name.to_string(),
                    message: format!(
                        "its weights would hold more than 2^40 ({MAX_ELEMENTS}) elements; use smaller sizes"
                    ),
                })
            }
        }
        self.insert(name, op, output, inputs)
    }

    fn insert(
        &mut self,
        name: &str,
        op: Op,
        output: TensorInfo,
        inputs: &[NodeIndex],
    ) -> Result<NodeIndex, WorkloadError> {
        if self.by_name.contains_key(name) {
            return Err(WorkloadError::Duplicate {
                node: name.to_string(),
            });
        }
        if self.g.node_count() >= MAX_NODES {
            return Err(WorkloadError::TooBig {
                node: name.to_string(),
                message: format!(
                    "the network would have more than {MAX_NODES} layers; lower its depth parameters"
                ),
            });
        }
        let elements = output
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        if elements.is_none_or(|e| e > MAX_ELEMENTS) {
            return Err(WorkloadError::TooBig {
                node: name.to_string(),
                message: format!(
                    "its output {} would hold more than 2^40 ({MAX_ELEMENTS}) elements; use smaller sizes",
                    super::tensor::shape_str(&output.shape)
                ),
            });
        }
        let idx = self.g.add_node(Node {
            name: name.to_string(),
            op,
            output,
        });
        for (port, &src) in inputs.iter().enumerate() {
            let tensor = self.g[src].output.clone();
            self.g.add_edge(src, idx, Edge { port, tensor });
        }
        self.by_name.insert(name.to_string(), idx);
        Ok(idx)
    }

    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.by_name.get(name).copied()
    }

    pub fn node(&self, idx: NodeIndex) -> &Node {
        &self.g[idx]
    }

    /// Producers of a node's inputs, in port order.
    pub fn inputs_of(&self, idx: NodeIndex) -> Vec<NodeIndex> {
        let mut e: Vec<(usize, NodeIndex)> = self
            .g
            .edges_directed(idx, Direction::Incoming)
            .map(|e| (e.weight().port, e.source()))
            .collect();
        e.sort_unstable();
        e.into_iter().map(|(_, s)| s).collect()
    }

    /// Input tensors of a node, in port order.
    pub fn input_tensors(&self, idx: NodeIndex) -> Vec<&TensorInfo> {
        self.inputs_of(idx)
            .into_iter()
            .map(|i| &self.g[i].output)
            .collect()
    }

    /// Nodes in execution order. Insertion order is already topological (inputs exist
    /// before their consumers), and it is the order users wrote, so it is kept; the
    /// cycle check guards graphs whose edges were edited directly.
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>, WorkloadError> {
        if let Err(c) = petgraph::algo::toposort(&self.g, None) {
            return Err(WorkloadError::Cycle {
                node: self.g[c.node_id()].name.clone(),
            });
        }
        Ok(self.g.node_indices().collect())
    }

    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    pub fn params(&self) -> u64 {
        self.g
            .node_indices()
            .map(|i| self.g[i].op.params(&self.input_tensors(i)))
            .sum()
    }
}
