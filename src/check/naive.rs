//! The naive executor: every op of a graph computed in f64 with the plainest loops
//! that can be right, counting multiply-accumulates as it goes.
//!
//! This is the oracle. It follows `workload::op`'s semantics directly (not the
//! lowering), indexes tensors one element at a time, and counts one MAC per
//! multiply-accumulate of a conv, linear, matmul, attention product, squeeze-excite FC,
//! MoE router or expert projection. Padding taps count (they are part of the dense
//! definition and of the Einsum volume) and so do masked attention scores (non-fused
//! kernels compute the whole rectangle).
//!
//! Besides each node's output it records the *products*: for every MAC nest, the
//! input, weight and (bias-free) output tensors under the name the lowering gives the
//! matching Einsum (`layer`, `layer.scores`, `layer.e3.up`, ...), so the Einsum
//! executor can be checked against the oracle operand by operand.

use super::data::{self, DataGen};
use super::tensor::{next_index, Tensor};
use super::CheckError;
use crate::workload::op::{
    broadcast, linear_axis, Activation, Attention, BinaryKind, Conv1d, Conv2d, Moe, NormKind, Op,
    PoolKind,
};
use crate::workload::{DType, Graph, TensorInfo};
use petgraph::graph::NodeIndex;
use petgraph::Direction;

/// Epsilon of layer and RMS norms (PyTorch's LayerNorm default).
pub const NORM_EPS: f64 = 1e-5;

/// One MAC nest as the oracle computed it: `output = input ⊗ weight`, bias excluded.
#[derive(Clone, Debug)]
pub struct Product {
    /// The name of the Einsum the lowering should emit for this nest.
    pub name: String,
    pub input: Tensor,
    pub weight: Tensor,
    /// Whether `weight` is a stored parameter (vs. another activation).
    pub weight_is_param: bool,
    pub output: Tensor,
}

/// What running one node produced.
#[derive(Clone, Debug)]
pub struct NodeRun {
    pub output: Tensor,
    /// Multiply-accumulates counted in the loops.
    pub macs: u64,
    pub products: Vec<Product>,
    /// Bias adds performed, named `<nest>.bias` like the lowering's VectorOps.
    pub biases: Vec<String>,
}

impl NodeRun {
    fn plain(output: Tensor) -> NodeRun {
        NodeRun {
            output,
            macs: 0,
            products: vec![],
            biases: vec![],
        }
    }
}

/// Every node's run, indexed by `NodeIndex::index()`.
#[derive(Clone, Debug)]
pub struct Execution {
    pub runs: Vec<Option<NodeRun>>,
}

impl Execution {
    pub fn run(&self, idx: NodeIndex) -> Option<&NodeRun> {
        self.runs.get(idx.index()).and_then(Option::as_ref)
    }

    pub fn output(&self, idx: NodeIndex) -> Option<&Tensor> {
        self.run(idx).map(|r| &r.output)
    }

    /// Total counted MACs of the graph.
    pub fn macs(&self) -> u64 {
        self.runs.iter().flatten().map(|r| r.macs).sum()
    }
}

fn node_err(node: &str, message: impl Into<String>) -> CheckError {
    CheckError::Node {
        node: node.to_string(),
        message: message.into(),
    }
}

/// Runs every node of `graph` in execution order on data from `gen`.
pub fn execute(graph: &Graph, gen: &DataGen) -> Result<Execution, CheckError> {
    let mut runs: Vec<Option<NodeRun>> = vec![None; graph.g.node_count()];
    for idx in graph.topo_order()? {
        let node = graph.node(idx);
        let mut inputs = Vec::new();
        for src in graph.inputs_of(idx) {
            let t = runs[src.index()]
                .as_ref()
                .map(|r| &r.output)
                .ok_or_else(|| {
                    node_err(&node.name, "an input was not computed before this node")
                })?;
            inputs.push(t);
        }
        let run = run_node(graph, idx, &inputs, gen)?;
        if run.output.shape != node.output.shape {
            return Err(node_err(
                &node.name,
                format!(
                    "the naive executor computed shape {:?} but shape inference says {:?}",
                    run.output.shape, node.output.shape
                ),
            ));
        }
        runs[idx.index()] = Some(run);
    }
    Ok(Execution { runs })
}

/// Re-checks a node's op against the tensors actually flowing in, so that a graph
/// whose edges were edited by hand errors here instead of indexing out of bounds.
pub fn check_inputs(graph: &Graph, idx: NodeIndex, inputs: &[&Tensor]) -> Result<(), CheckError> {
    let node = graph.node(idx);
    let infos: Vec<TensorInfo> = inputs
        .iter()
        .map(|t| TensorInfo::new(t.shape.clone(), DType::Fp32))
        .collect();
    let refs: Vec<&TensorInfo> = infos.iter().collect();
    node.op.infer(&refs).map_err(|m| node_err(&node.name, m))?;
    Ok(())
}

/// The key a tied linear's weight is drawn under: the embedding table it reuses (the
/// first `Embedding` whose table has the linear's `[out, in]` shape), else its own.
pub fn tied_weight_key(graph: &Graph, node: &str, out: usize, fan_in: usize) -> String {
    graph
        .g
        .node_indices()
        .map(|i| graph.node(i))
        .find(|n| matches!(n.op, Op::Embedding { vocab, dim } if vocab == out && dim == fan_in))
        .map(|n| format!("{}.weight", n.name))
        .unwrap_or_else(|| format!("{node}.weight"))
}

/// Linear weight key of a node (tied → the embedding table's key).
pub fn linear_weight_key(
    graph: &Graph,
    idx: NodeIndex,
    tied: bool,
    out: usize,
    fan_in: usize,
) -> String {
    let name = &graph.node(idx).name;
    if tied {
        tied_weight_key(graph, name, out, fan_in)
    } else {
        format!("{name}.weight")
    }
}

/// Token ids feed embeddings: an `Int32` input draws integers below the smallest
/// vocabulary among the embeddings it feeds (None: it feeds none, so it is data).
fn id_bound(graph: &Graph, idx: NodeIndex) -> Option<usize> {
    if graph.node(idx).output.dtype != DType::Int32 {
        return None;
    }
    graph
        .g
        .neighbors_directed(idx, Direction::Outgoing)
        .filter_map(|c| match graph.node(c).op {
            Op::Embedding { vocab, .. } => Some(vocab),
            _ => None,
        })
        .min()
}

fn arg<'a>(node: &str, inputs: &[&'a Tensor], i: usize) -> Result<&'a Tensor, CheckError> {
    inputs
        .get(i)
        .copied()
        .ok_or_else(|| node_err(node, format!("missing input {i}")))
}

/// Runs one node on its input tensors.
pub fn run_node(
    graph: &Graph,
    idx: NodeIndex,
    inputs: &[&Tensor],
    gen: &DataGen,
) -> Result<NodeRun, CheckError> {
    let node = graph.node(idx);
    let name = node.name.as_str();
    if !matches!(node.op, Op::Input { .. } | Op::Constant { .. }) {
        check_inputs(graph, idx, inputs)?;
    }
    let x = || arg(name, inputs, 0);
    Ok(match &node.op {
        Op::Input { shape } => NodeRun::plain(match id_bound(graph, idx) {
            Some(vocab) => gen.ids(name, shape, vocab),
            None => gen.input(name, shape),
        }),
        // Stored tensors are seeded data like inputs.
        Op::Constant { shape, .. } => NodeRun::plain(gen.input(name, shape)),
        Op::Conv2d(c) => {
            let x = x()?;
            let (w, b) = data::conv2d_params(gen, name, c, x.shape[1]);
            let (y, macs) = conv2d(x, &w, c);
            with_bias(name, x, w, y, macs, b.as_ref(), 1)
        }
        Op::Conv1d(c) => {
            let x = x()?;
            let (w, b) = data::conv1d_params(gen, name, c, x.shape[1]);
            let (y, macs) = conv1d(x, &w, c);
            with_bias(name, x, w, y, macs, b.as_ref(), 1)
        }
        Op::Linear {
            out_features,
            bias,
            axis,
            tied,
        } => {
            let x = x()?;
            let info = TensorInfo::new(x.shape.clone(), DType::Fp32);
            let ax = linear_axis(*axis, &info).map_err(|m| node_err(name, m))?;
            let key = linear_weight_key(graph, idx, *tied, *out_features, x.shape[ax]);
            let (w, b) =
                data::linear_params(gen, name, &key, *tied, *out_features, x.shape[ax], *bias);
            let (y, macs) = linear(x, &w, ax);
            with_bias(name, x, w, y, macs, b.as_ref(), ax)
        }
        Op::MatMul { transpose_b } => {
            let (a, b) = (x()?, arg(name, inputs, 1)?);
            let (y, macs) = matmul(a, b, *transpose_b);
            NodeRun {
                products: vec![Product {
                    name: name.to_string(),
                    input: a.clone(),
                    weight: b.clone(),
                    weight_is_param: false,
                    output: y.clone(),
                }],
                output: y,
                macs,
                biases: vec![],
            }
        }
        Op::Attention(at) => {
            let (q, k, v) = (x()?, arg(name, inputs, 1)?, arg(name, inputs, 2)?);
            let (kc, vc) = data::kv_cache(gen, name, k.shape[0], at.kv_cache, k.shape[2]);
            attention(name, at, q, &concat_rows(&kc, k), &concat_rows(&vc, v))
        }
        Op::Norm { kind } => {
            let x = x()?;
            let ch = match kind {
                NormKind::Batch => x.shape[1],
                _ => x.shape.last().copied().unwrap_or(1),
            };
            let scale = gen.scale(&format!("{name}.weight"), ch);
            let shift = gen.bias(&format!("{name}.bias"), ch);
            NodeRun::plain(norm(x, *kind, &scale, &shift))
        }
        Op::Act { act } => NodeRun::plain(map(x()?, |v| act.apply(v))),
        Op::Binary { op } => {
            let y = binary(x()?, arg(name, inputs, 1)?, *op).map_err(|m| node_err(name, m))?;
            NodeRun::plain(y)
        }
        Op::Softmax { axis } => NodeRun::plain(softmax(x()?, *axis)),
        Op::Pool {
            pool,
            kernel,
            stride,
            pad,
        } => NodeRun::plain(pool2d(x()?, *pool, *kernel, *stride, *pad)),
        Op::GlobalPool { pool } => NodeRun::plain(global_pool(x()?, *pool)),
        Op::SqueezeExcite { reduced, act, gate } => {
            let x = x()?;
            let p = data::se_params(gen, name, x.shape[1], *reduced);
            squeeze_excite(name, x, &p, *act, *gate)
        }
        Op::Embedding { vocab, dim } => {
            let table = gen.table(&format!("{name}.weight"), &[*vocab, *dim]);
            NodeRun::plain(embedding(x()?, &table).map_err(|m| node_err(name, m))?)
        }
        Op::AddEmbedding { rows, cls_token } => {
            let x = x()?;
            let d = x.shape[2];
            let table = gen.table(&format!("{name}.weight"), &[*rows, d]);
            let cls = cls_token.then(|| gen.table(&format!("{name}.cls_token"), &[d]));
            NodeRun::plain(add_embedding(x, &table, cls.as_ref()))
        }
        Op::Slice { axis, start, end } => NodeRun::plain(slice(x()?, *axis, *start, *end)),
        Op::Concat { axis } => NodeRun::plain(concat(inputs, *axis)),
        Op::Reshape { .. } => {
            let y = x()?
                .reshaped(&node.output.shape)
                .ok_or_else(|| node_err(name, "reshape changes the element count"))?;
            NodeRun::plain(y)
        }
        Op::Transpose { perm } => NodeRun::plain(transpose(x()?, perm)),
        Op::Moe(m) => {
            let x = x()?;
            let p = data::moe_params(gen, name, m, x.shape[2]);
            moe(name, m, x, &p)
        }
        Op::SelectiveScan { d_state } => {
            let xs = x()?;
            let (a, d) = data::scan_params(gen, name, xs.shape[2], *d_state);
            let args = [
                xs,
                arg(name, inputs, 1)?,
                arg(name, inputs, 2)?,
                arg(name, inputs, 3)?,
            ];
            NodeRun::plain(selective_scan(args, &a, &d))
        }
    })
}

/// Records the bias-free product, then adds the bias along `axis` (channels / features).
fn with_bias(
    name: &str,
    x: &Tensor,
    w: Tensor,
    y: Tensor,
    macs: u64,
    bias: Option<&Tensor>,
    axis: usize,
) -> NodeRun {
    let product = Product {
        name: name.to_string(),
        input: x.clone(),
        weight: w,
        weight_is_param: true,
        output: y.clone(),
    };
    let output = match bias {
        Some(b) => add_along(&y, b, axis),
        None => y,
    };
    NodeRun {
        output,
        macs,
        products: vec![product],
        biases: bias.map(|_| format!("{name}.bias")).into_iter().collect(),
    }
}

/// `y[.., i, ..] + b[i]` where i runs along `axis`.
pub fn add_along(y: &Tensor, b: &Tensor, axis: usize) -> Tensor {
    let post: usize = y.shape[axis + 1..].iter().product();
    let len = y.shape[axis];
    let mut out = y.clone();
    for (flat, v) in out.data.iter_mut().enumerate() {
        *v += b.data[(flat / post) % len];
    }
    out
}

fn map(x: &Tensor, f: impl Fn(f64) -> f64) -> Tensor {
    Tensor {
        shape: x.shape.clone(),
        data: x.data.iter().map(|&v| f(v)).collect(),
    }
}

/// `pos` shifted by a (possibly negative) offset, if it lands inside `0..len`.
fn tap(pos: i64, len: usize) -> Option<usize> {
    (pos >= 0 && (pos as usize) < len).then_some(pos as usize)
}

/// Output length of a window: `(len + pads − dilation·(k−1) − 1) / stride + 1`.
fn window_out(
    len: usize,
    k: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dil: usize,
) -> usize {
    (len + pad_begin + pad_end - dil * (k - 1) - 1) / stride + 1
}

/// NCHW conv: `y[n,k,p,q] = Σ_{c,r,s} x[n, g·Cg+c, p·sh + r·dh − pt, q·sw + s·dw − pl] · w[k,c,r,s]`
/// with `g = k / (K/groups)`; taps in the padding read zero but still count as MACs.
pub fn conv2d(x: &Tensor, w: &Tensor, c: &Conv2d) -> (Tensor, u64) {
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (kout, r, s) = (c.out_channels, c.kernel[0], c.kernel[1]);
    let (cg, kg) = (cin / c.groups, kout / c.groups);
    let p = window_out(
        h,
        r,
        c.stride[0],
        c.pad_begin[0],
        c.pad_end[0],
        c.dilation[0],
    );
    let q = window_out(
        wd,
        s,
        c.stride[1],
        c.pad_begin[1],
        c.pad_end[1],
        c.dilation[1],
    );
    let mut y = Tensor::zeros(&[n, kout, p, q]);
    let mut macs = 0u64;
    for ni in 0..n {
        for k in 0..kout {
            let g = k / kg;
            for pi in 0..p {
                for qi in 0..q {
                    let mut acc = 0.0;
                    for ci in 0..cg {
                        for ri in 0..r {
                            for si in 0..s {
                                macs += 1;
                                let hh = (pi * c.stride[0] + ri * c.dilation[0]) as i64
                                    - c.pad_begin[0] as i64;
                                let ww = (qi * c.stride[1] + si * c.dilation[1]) as i64
                                    - c.pad_begin[1] as i64;
                                if let (Some(hh), Some(ww)) = (tap(hh, h), tap(ww, wd)) {
                                    acc +=
                                        x.at(&[ni, g * cg + ci, hh, ww]) * w.at(&[k, ci, ri, si]);
                                }
                            }
                        }
                    }
                    let o = y.offset(&[ni, k, pi, qi]);
                    y.data[o] = acc;
                }
            }
        }
    }
    (y, macs)
}

/// `[B, C, L]` conv: `y[n,k,p] = Σ_{c,r} x[n, g·Cg+c, p·stride + r·dil − pad_left] · w[k,c,r]`;
/// causal pads `(R−1)·dil` on the left only, so position p sees inputs ≤ p.
pub fn conv1d(x: &Tensor, w: &Tensor, c: &Conv1d) -> (Tensor, u64) {
    let (n, cin, l) = (x.shape[0], x.shape[1], x.shape[2]);
    let (kout, r) = (c.out_channels, c.kernel);
    let (cg, kg) = (cin / c.groups, kout / c.groups);
    let (pl, pr) = c.pads();
    let p = window_out(l, r, c.stride, pl, pr, c.dilation);
    let mut y = Tensor::zeros(&[n, kout, p]);
    let mut macs = 0u64;
    for ni in 0..n {
        for k in 0..kout {
            let g = k / kg;
            for pi in 0..p {
                let mut acc = 0.0;
                for ci in 0..cg {
                    for ri in 0..r {
                        macs += 1;
                        let pos = (pi * c.stride + ri * c.dilation) as i64 - pl as i64;
                        if let Some(pos) = tap(pos, l) {
                            acc += x.at(&[ni, g * cg + ci, pos]) * w.at(&[k, ci, ri]);
                        }
                    }
                }
                let o = y.offset(&[ni, k, pi]);
                y.data[o] = acc;
            }
        }
    }
    (y, macs)
}

/// Linear on `axis` with weight `[out, in]`: viewing x as `[pre, C, post]`,
/// `y[a, k, b] = Σ_c x[a, c, b] · w[k, c]` (bias added by the caller).
pub fn linear(x: &Tensor, w: &Tensor, axis: usize) -> (Tensor, u64) {
    let pre: usize = x.shape[..axis].iter().product();
    let cin = x.shape[axis];
    let post: usize = x.shape[axis + 1..].iter().product();
    let kout = w.shape[0];
    let mut shape = x.shape.clone();
    shape[axis] = kout;
    let mut y = Tensor::zeros(&shape);
    let mut macs = 0u64;
    for a in 0..pre {
        for k in 0..kout {
            for b in 0..post {
                let mut acc = 0.0;
                for c in 0..cin {
                    macs += 1;
                    acc += x.data[(a * cin + c) * post + b] * w.data[k * cin + c];
                }
                y.data[(a * kout + k) * post + b] = acc;
            }
        }
    }
    (y, macs)
}

/// `[.., M, K] × [.., K, N]` (or B `[.., N, K]` with `transpose_b`); a 2-D B is shared
/// by every batch entry.
pub fn matmul(a: &Tensor, b: &Tensor, transpose_b: bool) -> (Tensor, u64) {
    let ra = a.rank();
    let batch: usize = a.shape[..ra - 2].iter().product();
    let (m, kk) = (a.shape[ra - 2], a.shape[ra - 1]);
    let rb = b.rank();
    let n = if transpose_b {
        b.shape[rb - 2]
    } else {
        b.shape[rb - 1]
    };
    let b_stride = if rb == 2 { 0 } else { kk * n };
    let mut shape = a.shape[..ra - 2].to_vec();
    shape.extend([m, n]);
    let mut y = Tensor::zeros(&shape);
    let mut macs = 0u64;
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for k in 0..kk {
                    macs += 1;
                    let bv = if transpose_b {
                        b.data[bi * b_stride + j * kk + k]
                    } else {
                        b.data[bi * b_stride + k * n + j]
                    };
                    acc += a.data[(bi * m + i) * kk + k] * bv;
                }
                y.data[(bi * m + i) * n + j] = acc;
            }
        }
    }
    (y, macs)
}

/// `[B, S1, D] ++ [B, S2, D]` along the sequence axis (KV cache rows before new rows).
pub fn concat_rows(first: &Tensor, second: &Tensor) -> Tensor {
    let (b, d) = (second.shape[0], second.shape[2]);
    let (s1, s2) = (first.shape[1], second.shape[1]);
    let mut out = Tensor::zeros(&[b, s1 + s2, d]);
    for bi in 0..b {
        for s in 0..s1 + s2 {
            for di in 0..d {
                out.data[(bi * (s1 + s2) + s) * d + di] = if s < s1 {
                    first.at(&[bi, s, di])
                } else {
                    second.at(&[bi, s - s1, di])
                };
            }
        }
    }
    out
}

/// Whether query `i` may attend to key `j`: causal queries sit at absolute position
/// `kv_cache + i` and see keys `j ≤ kv_cache + i`.
pub fn visible(at: &Attention, i: usize, j: usize) -> bool {
    !at.causal || j <= at.kv_cache + i
}

/// Scaled dot-product attention over `k, v` that already include the cache rows.
///
/// Query head h reads KV head `h / (heads / kv_heads)` (grouped-query). Scores are the
/// raw dot products over every key (dense, as the lowering counts them); the softmax
/// scales by `1/sqrt(head_dim)` and gives masked keys probability 0.
fn attention(name: &str, at: &Attention, q: &Tensor, k: &Tensor, v: &Tensor) -> NodeRun {
    let (b, sq) = (q.shape[0], q.shape[1]);
    let keys = k.shape[1];
    let (heads, hd) = (at.heads, at.head_dim);
    let group = heads / at.kv_heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut scores = Tensor::zeros(&[b, heads, sq, keys]);
    let mut probs = Tensor::zeros(&[b, heads, sq, keys]);
    let mut ctx = Tensor::zeros(&q.shape);
    let mut macs = 0u64;
    for bi in 0..b {
        for h in 0..heads {
            let g = h / group;
            for i in 0..sq {
                for j in 0..keys {
                    let mut acc = 0.0;
                    for c in 0..hd {
                        macs += 1;
                        acc += q.at(&[bi, i, h * hd + c]) * k.at(&[bi, j, g * hd + c]);
                    }
                    let o = scores.offset(&[bi, h, i, j]);
                    scores.data[o] = acc;
                }
                let row = scores.offset(&[bi, h, i, 0]);
                let mut top = f64::NEG_INFINITY;
                for j in 0..keys {
                    if visible(at, i, j) {
                        top = top.max(scores.data[row + j] * scale);
                    }
                }
                let mut sum = 0.0;
                for j in 0..keys {
                    if visible(at, i, j) {
                        let e = (scores.data[row + j] * scale - top).exp();
                        probs.data[row + j] = e;
                        sum += e;
                    }
                }
                for j in 0..keys {
                    probs.data[row + j] /= sum;
                }
                for c in 0..hd {
                    let mut acc = 0.0;
                    for j in 0..keys {
                        macs += 1;
                        acc += probs.data[row + j] * v.at(&[bi, j, g * hd + c]);
                    }
                    let o = ctx.offset(&[bi, i, h * hd + c]);
                    ctx.data[o] = acc;
                }
            }
        }
    }
    NodeRun {
        products: vec![
            Product {
                name: format!("{name}.scores"),
                input: q.clone(),
                weight: k.clone(),
                weight_is_param: false,
                output: scores,
            },
            Product {
                name: format!("{name}.context"),
                input: probs,
                weight: v.clone(),
                weight_is_param: false,
                output: ctx.clone(),
            },
        ],
        output: ctx,
        macs,
        biases: vec![],
    }
}

/// Batch norm (inference: statistics folded into a per-channel `scale`, `shift` on
/// axis 1); layer norm (`(x−mean)/sqrt(var+eps)·γ+β` over the last axis, population
/// variance); RMS norm (`x/sqrt(mean(x²)+eps)·γ` over the last axis, no shift).
pub fn norm(x: &Tensor, kind: NormKind, scale: &Tensor, shift: &Tensor) -> Tensor {
    let mut y = x.clone();
    match kind {
        NormKind::Batch => {
            let post: usize = x.shape[2..].iter().product();
            let ch = x.shape[1];
            for (flat, v) in y.data.iter_mut().enumerate() {
                let c = (flat / post) % ch;
                *v = *v * scale.data[c] + shift.data[c];
            }
        }
        NormKind::Layer | NormKind::Rms => {
            let d = x.shape.last().copied().unwrap_or(1);
            for row in y.data.chunks_mut(d) {
                let n = d as f64;
                let (mean, denom) = if kind == NormKind::Layer {
                    let mean = row.iter().sum::<f64>() / n;
                    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                    (mean, (var + NORM_EPS).sqrt())
                } else {
                    (
                        0.0,
                        (row.iter().map(|v| v * v).sum::<f64>() / n + NORM_EPS).sqrt(),
                    )
                };
                for (i, v) in row.iter_mut().enumerate() {
                    *v = (*v - mean) / denom * scale.data[i];
                    if kind == NormKind::Layer {
                        *v += shift.data[i];
                    }
                }
            }
        }
    }
    y
}

/// Element-wise add/mul with NumPy broadcasting (shapes right-aligned, size-1 axes repeat).
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryKind) -> Result<Tensor, String> {
    let shape = broadcast(&a.shape, &b.shape)?;
    let n = shape.len();
    let source = |t: &Tensor, idx: &[usize]| -> f64 {
        let lead = n - t.rank();
        let mut off = 0;
        for (i, &dim) in t.shape.iter().enumerate() {
            let x = if dim == 1 { 0 } else { idx[lead + i] };
            off = off * dim + x;
        }
        t.data[off]
    };
    let mut y = Tensor::zeros(&shape);
    let mut idx = vec![0; n];
    for flat in 0..y.len() {
        let (va, vb) = (source(a, &idx), source(b, &idx));
        y.data[flat] = match op {
            BinaryKind::Add => va + vb,
            BinaryKind::Mul => va * vb,
        };
        next_index(&mut idx, &shape);
    }
    Ok(y)
}

/// Softmax along `axis` (max-subtracted for range).
pub fn softmax(x: &Tensor, axis: usize) -> Tensor {
    let post: usize = x.shape[axis + 1..].iter().product();
    let len = x.shape[axis];
    let pre: usize = x.shape[..axis].iter().product();
    let mut y = x.clone();
    for a in 0..pre {
        for b in 0..post {
            let at = |i: usize| (a * len + i) * post + b;
            let top = (0..len)
                .map(|i| x.data[at(i)])
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = (0..len).map(|i| (x.data[at(i)] - top).exp()).sum();
            for i in 0..len {
                y.data[at(i)] = (x.data[at(i)] - top).exp() / sum;
            }
        }
    }
    y
}

/// 2-D pooling on NCHW with symmetric zero padding `pad`.
///
/// Max ignores padded taps (they are −∞, as in PyTorch); a window entirely in the
/// padding (impossible when pad ≤ kernel/2) gives 0. Avg counts padded taps as zeros and
/// always divides by the kernel area (PyTorch's `count_include_pad=True` default).
pub fn pool2d(
    x: &Tensor,
    pool: PoolKind,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let p = window_out(h, kernel[0], stride[0], pad[0], pad[0], 1);
    let q = window_out(w, kernel[1], stride[1], pad[1], pad[1], 1);
    let mut y = Tensor::zeros(&[n, c, p, q]);
    let mut out = 0;
    for ni in 0..n {
        for ci in 0..c {
            for pi in 0..p {
                for qi in 0..q {
                    let mut acc = match pool {
                        PoolKind::Max => f64::NEG_INFINITY,
                        PoolKind::Avg => 0.0,
                    };
                    for r in 0..kernel[0] {
                        for s in 0..kernel[1] {
                            let hh = tap((pi * stride[0] + r) as i64 - pad[0] as i64, h);
                            let ww = tap((qi * stride[1] + s) as i64 - pad[1] as i64, w);
                            if let (Some(hh), Some(ww)) = (hh, ww) {
                                let v = x.at(&[ni, ci, hh, ww]);
                                acc = match pool {
                                    PoolKind::Max => acc.max(v),
                                    PoolKind::Avg => acc + v,
                                };
                            }
                        }
                    }
                    y.data[out] = match pool {
                        PoolKind::Max if acc == f64::NEG_INFINITY => 0.0,
                        PoolKind::Max => acc,
                        PoolKind::Avg => acc / (kernel[0] * kernel[1]) as f64,
                    };
                    out += 1;
                }
            }
        }
    }
    y
}

/// `[N, C, H, W]` → `[N, C, 1, 1]` over H·W, or `[B, S, D]` → `[B, 1, D]` over S.
pub fn global_pool(x: &Tensor, pool: PoolKind) -> Tensor {
    // View as [outer, window, inner]: rank 4 pools the trailing H·W, rank 3 the middle S.
    let (outer, window, inner, shape) = if x.rank() == 4 {
        let (n, c) = (x.shape[0], x.shape[1]);
        (n * c, x.shape[2] * x.shape[3], 1, vec![n, c, 1, 1])
    } else {
        let (b, s, d) = (x.shape[0], x.shape[1], x.shape[2]);
        (b, s, d, vec![b, 1, d])
    };
    let mut y = Tensor::zeros(&shape);
    for o in 0..outer {
        for i in 0..inner {
            let vals = (0..window).map(|wi| x.data[(o * window + wi) * inner + i]);
            y.data[o * inner + i] = match pool {
                PoolKind::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                PoolKind::Avg => vals.sum::<f64>() / window as f64,
            };
        }
    }
    y
}

/// Squeeze-excite: `s = gate(W2·act(W1·mean_hw(x) + b1) + b2)`, `y = x · s[n, c]`.
fn squeeze_excite(
    name: &str,
    x: &Tensor,
    p: &data::SeParams,
    act: Activation,
    gate: Activation,
) -> NodeRun {
    let (n, c) = (x.shape[0], x.shape[1]);
    let area: usize = x.shape[2] * x.shape[3];
    let mut pooled = Tensor::zeros(&[n, c]);
    for ni in 0..n {
        for ci in 0..c {
            let base = (ni * c + ci) * area;
            pooled.data[ni * c + ci] = x.data[base..base + area].iter().sum::<f64>() / area as f64;
        }
    }
    let mut macs = 0u64;
    let mut fc = |input: &Tensor, w: &Tensor| -> Tensor {
        let (kout, cin) = (w.shape[0], w.shape[1]);
        let mut y = Tensor::zeros(&[n, kout]);
        for ni in 0..n {
            for k in 0..kout {
                let mut acc = 0.0;
                for ci in 0..cin {
                    macs += 1;
                    acc += input.data[ni * cin + ci] * w.data[k * cin + ci];
                }
                y.data[ni * kout + k] = acc;
            }
        }
        y
    };
    let z1 = fc(&pooled, &p.w1);
    let h = map(&add_along(&z1, &p.b1, 1), |v| act.apply(v));
    let z2 = fc(&h, &p.w2);
    let s = map(&add_along(&z2, &p.b2, 1), |v| gate.apply(v));
    let mut y = x.clone();
    for (flat, v) in y.data.iter_mut().enumerate() {
        *v *= s.data[flat / area];
    }
    NodeRun {
        output: y,
        macs,
        biases: vec![format!("{name}.fc1.bias"), format!("{name}.fc2.bias")],
        products: vec![
            Product {
                name: format!("{name}.fc1"),
                input: pooled,
                weight: p.w1.clone(),
                weight_is_param: true,
                output: z1,
            },
            Product {
                name: format!("{name}.fc2"),
                input: h,
                weight: p.w2.clone(),
                weight_is_param: true,
                output: z2,
            },
        ],
    }
}

/// Row lookup: `y[.., :] = table[id, :]`; ids must be integers in `0..vocab`.
pub fn embedding(ids: &Tensor, table: &Tensor) -> Result<Tensor, String> {
    let (vocab, dim) = (table.shape[0], table.shape[1]);
    let mut shape = ids.shape.clone();
    shape.push(dim);
    let mut y = Tensor::zeros(&shape);
    for (i, &id) in ids.data.iter().enumerate() {
        if id.fract() != 0.0 || id < 0.0 || id >= vocab as f64 {
            return Err(format!("token id {id} is not an integer in 0..{vocab}"));
        }
        let row = id as usize;
        y.data[i * dim..(i + 1) * dim].copy_from_slice(&table.data[row * dim..(row + 1) * dim]);
    }
    Ok(y)
}

/// Prepends the class token (if any), then adds row i of `table` at position i; a table
/// shorter than the sequence (token types) adds row 0 everywhere.
pub fn add_embedding(x: &Tensor, table: &Tensor, cls: Option<&Tensor>) -> Tensor {
    let (b, s, d) = (x.shape[0], x.shape[1], x.shape[2]);
    let extra = usize::from(cls.is_some());
    let total = s + extra;
    let rows = table.shape[0];
    let mut y = Tensor::zeros(&[b, total, d]);
    for bi in 0..b {
        for pos in 0..total {
            let row = if rows >= total { pos } else { 0 };
            for di in 0..d {
                let base = match cls {
                    Some(c) if pos == 0 => c.data[di],
                    _ => x.at(&[bi, pos - extra, di]),
                };
                y.data[(bi * total + pos) * d + di] = base + table.data[row * d + di];
            }
        }
    }
    y
}

/// Keeps `start..end` of `axis`.
pub fn slice(x: &Tensor, axis: usize, start: usize, end: usize) -> Tensor {
    let pre: usize = x.shape[..axis].iter().product();
    let post: usize = x.shape[axis + 1..].iter().product();
    let len = x.shape[axis];
    let mut shape = x.shape.clone();
    shape[axis] = end - start;
    let mut data = Vec::with_capacity(pre * (end - start) * post);
    for a in 0..pre {
        for i in start..end {
            let base = (a * len + i) * post;
            data.extend_from_slice(&x.data[base..base + post]);
        }
    }
    Tensor { shape, data }
}

/// Joins tensors along `axis`, in input order.
pub fn concat(xs: &[&Tensor], axis: usize) -> Tensor {
    let first = xs[0];
    let pre: usize = first.shape[..axis].iter().product();
    let post: usize = first.shape[axis + 1..].iter().product();
    let mut shape = first.shape.clone();
    shape[axis] = xs.iter().map(|t| t.shape[axis]).sum();
    let mut data = Vec::with_capacity(shape.iter().product());
    for a in 0..pre {
        for t in xs {
            let chunk = t.shape[axis] * post;
            data.extend_from_slice(&t.data[a * chunk..(a + 1) * chunk]);
        }
    }
    Tensor { shape, data }
}

/// Output axis i is input axis `perm[i]`.
pub fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let mut y = Tensor::zeros(&shape);
    let mut out_idx = vec![0; shape.len()];
    let mut in_idx = vec![0; shape.len()];
    for flat in 0..y.len() {
        for (i, &p) in perm.iter().enumerate() {
            in_idx[p] = out_idx[i];
        }
        y.data[flat] = x.at(&in_idx);
        next_index(&mut out_idx, &shape);
    }
    y
}

/// Expert-choice selection: expert e takes the `counts[e]` tokens with the highest
/// probability for e, ties to the lower token index. Returns each expert's tokens in
/// that order.
pub fn expert_choice(probs: &Tensor, counts: &[usize]) -> Vec<Vec<usize>> {
    let (tokens, experts) = (probs.shape[0], probs.shape[1]);
    (0..experts)
        .map(|e| {
            let mut order: Vec<usize> = (0..tokens).collect();
            order.sort_by(|&a, &b| {
                let (pa, pb) = (probs.data[a * experts + e], probs.data[b * experts + e]);
                pb.total_cmp(&pa).then(a.cmp(&b))
            });
            order.truncate(counts.get(e).copied().unwrap_or(0).min(tokens));
            order
        })
        .collect()
}

/// Mixture of experts on `[B, S, D]`.
///
/// The op fixes how many tokens each expert processes (`Moe::expert_tokens`, a routing
/// statistic), not which ones; the oracle realizes the counts by *expert choice*:
/// router logits `x·Wrᵀ` (MACs counted), softmax over experts, then expert e takes the
/// `counts[e]` tokens with the highest probability for e (ties → lower token index).
/// Each chosen token's expert output `down(act(gate·x) ⊙ (up·x))` (or `down(act(up·x))`)
/// is weighted by that probability and summed into the token's output; a token no
/// expert chose outputs 0. `top_k` enters only through the counts.
fn moe(name: &str, m: &Moe, x: &Tensor, p: &data::MoeParams) -> NodeRun {
    let (b, s, d) = (x.shape[0], x.shape[1], x.shape[2]);
    let tokens = b * s;
    let e_count = m.experts;
    let f = m.ffn_dim;
    let x2 = Tensor {
        shape: vec![tokens, d],
        data: x.data.clone(),
    };
    let mut macs = 0u64;
    let mut logits = Tensor::zeros(&[tokens, e_count]);
    for t in 0..tokens {
        for e in 0..e_count {
            let mut acc = 0.0;
            for di in 0..d {
                macs += 1;
                acc += x2.data[t * d + di] * p.router.data[e * d + di];
            }
            logits.data[t * e_count + e] = acc;
        }
    }
    let probs = softmax(&logits, 1);
    let chosen = expert_choice(&probs, &m.expert_tokens(tokens));
    let mut products = vec![Product {
        name: format!("{name}.router"),
        input: x2.clone(),
        weight: p.router.clone(),
        weight_is_param: true,
        output: logits,
    }];
    let mut y = Tensor::zeros(&[b, s, d]);
    for (e, toks) in chosen.iter().enumerate() {
        if toks.is_empty() {
            continue;
        }
        let ex = &p.experts[e];
        let n = toks.len();
        let mut xe = Tensor::zeros(&[n, d]);
        for (slot, &t) in toks.iter().enumerate() {
            xe.data[slot * d..(slot + 1) * d].copy_from_slice(&x2.data[t * d..(t + 1) * d]);
        }
        let mut proj = |w: &Tensor| -> Tensor {
            let (kout, cin) = (w.shape[0], w.shape[1]);
            let mut o = Tensor::zeros(&[n, kout]);
            for slot in 0..n {
                for k in 0..kout {
                    let mut acc = 0.0;
                    for c in 0..cin {
                        macs += 1;
                        acc += xe.data[slot * cin + c] * w.data[k * cin + c];
                    }
                    o.data[slot * kout + k] = acc;
                }
            }
            o
        };
        let gate = ex.gate.as_ref().map(&mut proj);
        let up = proj(&ex.up);
        let mut h = Tensor::zeros(&[n, f]);
        for i in 0..n * f {
            h.data[i] = match &gate {
                Some(g) => m.activation.apply(g.data[i]) * up.data[i],
                None => m.activation.apply(up.data[i]),
            };
        }
        let mut down = Tensor::zeros(&[n, d]);
        for slot in 0..n {
            for di in 0..d {
                let mut acc = 0.0;
                for fi in 0..f {
                    macs += 1;
                    acc += h.data[slot * f + fi] * ex.down.data[di * f + fi];
                }
                down.data[slot * d + di] = acc;
            }
        }
        for (slot, &t) in toks.iter().enumerate() {
            let weight = probs.data[t * e_count + e];
            for di in 0..d {
                y.data[t * d + di] += weight * down.data[slot * d + di];
            }
        }
        if let (Some(g), Some(w)) = (gate, &ex.gate) {
            products.push(Product {
                name: format!("{name}.e{e}.gate"),
                input: xe.clone(),
                weight: w.clone(),
                weight_is_param: true,
                output: g,
            });
        }
        products.push(Product {
            name: format!("{name}.e{e}.up"),
            input: xe,
            weight: ex.up.clone(),
            weight_is_param: true,
            output: up,
        });
        products.push(Product {
            name: format!("{name}.e{e}.down"),
            input: h,
            weight: ex.down.clone(),
            weight_is_param: true,
            output: down,
        });
    }
    NodeRun {
        output: y,
        macs,
        products,
        biases: vec![],
    }
}

/// Mamba's selective scan, per batch b and channel d with state `h[0..N] = 0`:
/// `h[n] = exp(Δ·A[d,n])·h[n] + Δ·B[b,t,n]·x[b,t,d]`, `y[b,t,d] = Σ_n C[b,t,n]·h[n] + D[d]·x[b,t,d]`
/// where `Δ = delta[b,t,d]`. The scan is a VectorOp (no MACs counted).
pub fn selective_scan([x, delta, bm, cm]: [&Tensor; 4], a: &Tensor, dskip: &Tensor) -> Tensor {
    let (b, l, di) = (x.shape[0], x.shape[1], x.shape[2]);
    let n = bm.shape[2];
    let mut y = Tensor::zeros(&x.shape);
    let mut h = vec![0.0; n];
    for bi in 0..b {
        for d in 0..di {
            h.iter_mut().for_each(|v| *v = 0.0);
            for t in 0..l {
                let dt = delta.at(&[bi, t, d]);
                let xv = x.at(&[bi, t, d]);
                let mut acc = 0.0;
                for (ni, hn) in h.iter_mut().enumerate() {
                    *hn = (dt * a.at(&[d, ni])).exp() * *hn + dt * bm.at(&[bi, t, ni]) * xv;
                    acc += cm.at(&[bi, t, ni]) * *hn;
                }
                let o = y.offset(&[bi, t, d]);
                y.data[o] = acc + dskip.data[d] * xv;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: &[f64]) -> Tensor {
        Tensor::from_vec(shape, data.to_vec()).unwrap()
    }

    #[test]
    fn conv2d_by_hand() {
        // 1 channel 3x3 input, 2x2 all-ones kernel, pad 1 on top/left only, stride 2:
        // checked against hand-computed window sums.
        let x = t(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let w = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
        let c = Conv2d {
            out_channels: 1,
            kernel: [2, 2],
            stride: [2, 2],
            pad_begin: [1, 1],
            pad_end: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        };
        let (y, macs) = conv2d(&x, &w, &c);
        assert_eq!(y.shape, vec![1, 1, 2, 2]);
        assert_eq!(y.data, vec![1., 2. + 3., 4. + 7., 5. + 6. + 8. + 9.]);
        assert_eq!(macs, 4 * 4, "padding taps count");
    }

    #[test]
    fn causal_conv1d_sees_only_the_past() {
        // Kernel [1, 10] causal: y[t] = x[t-1] + 10 x[t], by hand.
        let x = t(&[1, 1, 3], &[1., 2., 3.]);
        let w = t(&[1, 1, 2], &[1., 10.]);
        let c = Conv1d {
            out_channels: 1,
            kernel: 2,
            stride: 1,
            pad: 0,
            dilation: 1,
            groups: 1,
            causal: true,
            bias: false,
        };
        let (y, _) = conv1d(&x, &w, &c);
        assert_eq!(y.data, vec![10., 21., 32.]);
    }

    #[test]
    fn binary_broadcasts_like_numpy() {
        let a = t(&[2, 1], &[1., 2.]);
        let b = t(&[3], &[10., 20., 30.]);
        let y = binary(&a, &b, BinaryKind::Add).unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(y.data, vec![11., 21., 31., 12., 22., 32.]);
    }

    #[test]
    fn avg_pool_counts_padding_as_zero() {
        // 2x2 input of ones, kernel 2, stride 2, pad 1: each window holds one real tap.
        let x = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
        let y = pool2d(&x, PoolKind::Avg, [2, 2], [2, 2], [1, 1]);
        assert_eq!(y.data, vec![0.25; 4]);
        let y = pool2d(&x, PoolKind::Max, [2, 2], [2, 2], [1, 1]);
        assert_eq!(y.data, vec![1.0; 4]);
    }

    #[test]
    fn transpose_and_slice_by_hand() {
        let x = t(&[2, 3], &[0., 1., 2., 3., 4., 5.]);
        assert_eq!(transpose(&x, &[1, 0]).data, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(slice(&x, 1, 1, 3).data, vec![1., 2., 4., 5.]);
        assert_eq!(
            concat(&[&x, &x], 1).data,
            vec![0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.]
        );
    }

    #[test]
    fn layer_and_rms_norm_by_hand() {
        let x = t(&[1, 2], &[1., 3.]);
        let ones = t(&[2], &[1., 1.]);
        let zeros = t(&[2], &[0., 0.]);
        let y = norm(&x, NormKind::Layer, &ones, &zeros);
        let s = (1.0 + NORM_EPS).sqrt();
        assert!((y.data[0] + 1.0 / s).abs() < 1e-12 && (y.data[1] - 1.0 / s).abs() < 1e-12);
        let y = norm(&x, NormKind::Rms, &ones, &zeros);
        let r = (5.0 + NORM_EPS).sqrt();
        assert!((y.data[1] - 3.0 / r).abs() < 1e-12);
    }

    #[test]
    fn expert_choice_takes_the_most_probable_tokens_ties_to_lower_index() {
        let probs = t(&[3, 2], &[0.5, 0.5, 0.9, 0.1, 0.5, 0.5]);
        let c = expert_choice(&probs, &[2, 1]);
        assert_eq!(c[0], vec![1, 0]);
        assert_eq!(c[1], vec![0]);
    }

    #[test]
    fn selective_scan_one_step_by_hand() {
        // L=2, Di=1, N=1: h1 = Δ1 B1 x1; h2 = e^{Δ2 A} h1 + Δ2 B2 x2.
        let x = t(&[1, 2, 1], &[1., 2.]);
        let dt = t(&[1, 2, 1], &[0.5, 0.25]);
        let bm = t(&[1, 2, 1], &[2., 4.]);
        let cm = t(&[1, 2, 1], &[3., 5.]);
        let a = t(&[1, 1], &[-1.]);
        let dd = t(&[1], &[0.1]);
        let y = selective_scan([&x, &dt, &bm, &cm], &a, &dd);
        let h1 = 0.5 * 2.0 * 1.0;
        let h2 = (-0.25f64).exp() * h1 + 0.25 * 4.0 * 2.0;
        assert!((y.data[0] - (3.0 * h1 + 0.1)).abs() < 1e-12);
        assert!((y.data[1] - (5.0 * h2 + 0.2)).abs() < 1e-12);
    }
}
