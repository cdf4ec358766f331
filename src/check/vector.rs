//! VectorOps checked by running them: the vector unit model streams the op's operands
//! in, computes the op numerically (with the naive executor's own functions, on seeded
//! data) and streams the result out, counting elements and bytes as it goes. The
//! lowering's `elements`, `bytes_read` and `bytes_written` must be what it counted.
//!
//! Kept simple on purpose: the unit runs the standalone vector ops (norms,
//! activations, element-wise binaries, softmax, pooling, slices, concatenation,
//! transposes, embeddings) and the bias adds of convolutions and linears, on the
//! node's real shapes. Vector kernels inside composite ops (attention's softmax, MoE
//! routing, squeeze-excite, the selective scan) are reported as not run, and so is any
//! op whose tensors exceed the element limit.

use super::data::DataGen;
use super::naive;
use super::tensor::Tensor;
use super::CheckError;
use crate::lower::VectorOp;
use crate::workload::op::linear_axis;
use crate::workload::{Graph, Op};
use petgraph::graph::NodeIndex;
use serde::Serialize;

/// Elements processed and bytes moved by one vector kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VectorCounts {
    pub elements: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl VectorCounts {
    pub fn of(v: &VectorOp) -> VectorCounts {
        VectorCounts {
            elements: v.elements,
            bytes_read: v.bytes_read,
            bytes_written: v.bytes_written,
        }
    }
}

/// What running a vector kernel showed.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum VectorVerdict {
    Ran {
        counted: VectorCounts,
        modeled: VectorCounts,
    },
    NotRun {
        why: String,
    },
}

impl VectorVerdict {
    /// `"elements: counted 6 vs modeled 8"` for each disagreeing count.
    pub fn problems(&self) -> Vec<String> {
        let VectorVerdict::Ran { counted, modeled } = self else {
            return vec![];
        };
        [
            ("elements", counted.elements, modeled.elements),
            ("bytes_read", counted.bytes_read, modeled.bytes_read),
            (
                "bytes_written",
                counted.bytes_written,
                modeled.bytes_written,
            ),
        ]
        .into_iter()
        .filter(|(_, c, m)| c != m)
        .map(|(what, c, m)| format!("{what}: counted {c} vs modeled {m}"))
        .collect()
    }
}

fn not_run(why: impl Into<String>) -> VectorVerdict {
    VectorVerdict::NotRun { why: why.into() }
}

/// Seeded data for each of a node's inputs (token ids below the vocabulary for an
/// embedding, activations otherwise).
fn inputs(graph: &Graph, idx: NodeIndex, gen: &DataGen) -> Vec<Tensor> {
    let node = graph.node(idx);
    graph
        .input_tensors(idx)
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let key = format!("{}.in{i}", node.name);
            match node.op {
                Op::Embedding { vocab, .. } => gen.ids(&key, &info.shape, vocab),
                _ => gen.input(&key, &info.shape),
            }
        })
        .collect()
}

/// Runs vector kernel `v` of node `idx` on the vector unit model, if it is one the
/// model runs and its tensors stay under `limit` elements.
pub fn check_vector(
    graph: &Graph,
    idx: NodeIndex,
    v: &VectorOp,
    gen: &DataGen,
    limit: u64,
) -> Result<VectorVerdict, CheckError> {
    let node = graph.node(idx);
    let out_bytes = node.output.dtype.bytes();
    let ins = graph.input_tensors(idx);
    let is_bias = v.name == format!("{}.bias", node.name);
    if !(is_bias || v.name == node.name && standalone(&node.op)) {
        return Ok(not_run("part of a composite op"));
    }
    let mut elements: u64 = node.output.elements() + ins.iter().map(|t| t.elements()).sum::<u64>();
    if let Op::Embedding { vocab, dim } = node.op {
        elements += (vocab * dim) as u64;
    }
    if elements > limit {
        return Ok(not_run(format!(
            "{elements} tensor elements, over the vector check's limit of {limit}"
        )));
    }
    let counted = if is_bias {
        match bias_run(graph, idx, gen, out_bytes)? {
            Some(c) => c,
            None => return Ok(not_run("a bias of an op the vector model does not run")),
        }
    } else {
        let data = inputs(graph, idx, gen);
        let refs: Vec<&Tensor> = data.iter().collect();
        let run = naive::run_node(graph, idx, &refs, gen)?;
        let out = run.output.len() as u64;
        // Bytes the op reads: every input element, except where it reads a part.
        let read: u64 = match &node.op {
            Op::Slice { .. } => out * out_bytes,
            Op::Embedding { .. } => ins[0].bytes() + out * out_bytes,
            Op::AddEmbedding { rows, .. } => {
                let d = node.output.shape.last().copied().unwrap_or(1);
                ins[0].bytes() + ((*rows * d) as u64 * out_bytes).min(out * out_bytes)
            }
            _ => ins.iter().map(|t| t.bytes()).sum(),
        };
        VectorCounts {
            elements: out,
            bytes_read: read,
            bytes_written: out * out_bytes,
        }
    };
    Ok(VectorVerdict::Ran {
        counted,
        modeled: VectorCounts::of(v),
    })
}

/// Ops that are one vector kernel of the same name.
fn standalone(op: &Op) -> bool {
    matches!(
        op,
        Op::Norm { .. }
            | Op::Act { .. }
            | Op::Binary { .. }
            | Op::Softmax { .. }
            | Op::Pool { .. }
            | Op::GlobalPool { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Transpose { .. }
            | Op::Embedding { .. }
            | Op::AddEmbedding { .. }
    )
}

/// A bias add on the vector unit: the bias vector broadcast along the channel axis of
/// the op's (bias-free) output, read together with it.
fn bias_run(
    graph: &Graph,
    idx: NodeIndex,
    gen: &DataGen,
    b: u64,
) -> Result<Option<VectorCounts>, CheckError> {
    let node = graph.node(idx);
    let ins = graph.input_tensors(idx);
    let (axis, channels) = match &node.op {
        Op::Conv2d(c) => (1, c.out_channels),
        Op::Conv1d(c) => (1, c.out_channels),
        Op::Linear {
            out_features, axis, ..
        } => {
            let x = ins.first().ok_or_else(|| CheckError::Node {
                node: node.name.clone(),
                message: "a linear without an input".into(),
            })?;
            let ax = linear_axis(*axis, x).map_err(|m| CheckError::Node {
                node: node.name.clone(),
                message: m,
            })?;
            (ax, *out_features)
        }
        _ => return Ok(None),
    };
    let y = gen.input(&format!("{}.product", node.name), &node.output.shape);
    let bias = gen.bias(&format!("{}.bias", node.name), channels);
    let out = naive::add_along(&y, &bias, axis);
    let n = out.len() as u64;
    Ok(Some(VectorCounts {
        elements: n,
        bytes_read: y.len() as u64 * b + bias.len() as u64 * b,
        bytes_written: n * b,
    }))
}
