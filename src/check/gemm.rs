//! The independent path: every MAC op recomputed as matrix products with `nalgebra`
//! (im2col for convolutions, reshapes for linears and matmuls, per-head GEMMs for
//! attention), sharing nothing with the naive executor but the keyed data and the op
//! definitions. Agreement of two differently-built computations is the evidence that
//! each follows the op's semantics.
//!
//! Non-MAC ops return `None`: they have no second implementation here.

use super::data::{self, DataGen};
use super::naive::linear_weight_key;
use super::tensor::Tensor;
use super::CheckError;
use crate::workload::op::{linear_axis, Activation, Attention, Conv1d, Conv2d, Moe, Op};
use crate::workload::{DType, Graph, TensorInfo};
use nalgebra::DMatrix;
use petgraph::graph::NodeIndex;

fn node_err(node: &str, message: impl Into<String>) -> CheckError {
    CheckError::Node {
        node: node.to_string(),
        message: message.into(),
    }
}

fn arg<'a>(node: &str, inputs: &[&'a Tensor], i: usize) -> Result<&'a Tensor, CheckError> {
    inputs
        .get(i)
        .copied()
        .ok_or_else(|| node_err(node, format!("missing input {i}")))
}

/// The output of a MAC node computed by GEMMs (None for ops without MACs).
pub fn layer_output(
    graph: &Graph,
    idx: NodeIndex,
    inputs: &[&Tensor],
    gen: &DataGen,
) -> Result<Option<Tensor>, CheckError> {
    let node = graph.node(idx);
    let name = node.name.as_str();
    super::naive::check_inputs(graph, idx, inputs)?;
    let out_shape = &node.output.shape;
    let x = || arg(name, inputs, 0);
    Ok(Some(match &node.op {
        Op::Conv2d(c) => {
            let x = x()?;
            let (w, b) = data::conv2d_params(gen, name, c, x.shape[1]);
            let y = conv2d_im2col(x, &w, c, out_shape[2], out_shape[3]);
            add_channel_bias(y, b.as_ref(), 1)
        }
        Op::Conv1d(c) => {
            let x = x()?;
            let (w, b) = data::conv1d_params(gen, name, c, x.shape[1]);
            add_channel_bias(conv1d_as_2d(x, &w, c, out_shape[2]), b.as_ref(), 1)
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
            add_channel_bias(linear(x, &w, ax), b.as_ref(), ax)
        }
        Op::MatMul { transpose_b } => matmul(x()?, arg(name, inputs, 1)?, *transpose_b, out_shape),
        Op::Attention(at) => {
            let (q, k, v) = (x()?, arg(name, inputs, 1)?, arg(name, inputs, 2)?);
            let (kc, vc) = data::kv_cache(gen, name, k.shape[0], at.kv_cache, k.shape[2]);
            attention(at, q, &kc, k, &vc, v)
        }
        Op::SqueezeExcite { reduced, act, gate } => {
            let x = x()?;
            let p = data::se_params(gen, name, x.shape[1], *reduced);
            squeeze_excite(x, &p, *act, *gate)
        }
        Op::Moe(m) => {
            let x = x()?;
            let p = data::moe_params(gen, name, m, x.shape[2]);
            moe(m, x, &p)
        }
        _ => return Ok(None),
    }))
}

/// Rows `[start, start+rows)` of a row-major `[_, cols]` buffer as a matrix.
fn rows_of(data: &[f64], start: usize, rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(rows, cols, &data[start * cols..(start + rows) * cols])
}

/// Adds `bias[i]` along `axis` of a row-major tensor (identity without a bias).
fn add_channel_bias(mut y: Tensor, bias: Option<&Tensor>, axis: usize) -> Tensor {
    if let Some(b) = bias {
        let post: usize = y.shape[axis + 1..].iter().product();
        let len = y.shape[axis];
        for (i, v) in y.data.iter_mut().enumerate() {
            *v += b.data[(i / post) % len];
        }
    }
    y
}

/// Grouped conv as, per image and group, `W_g [Kg, Cg·R·S] × cols [Cg·R·S, P·Q]`, where
/// column (p, q) of `cols` holds the receptive field of output pixel (p, q) with zeros
/// wherever it reaches into the padding.
fn conv2d_im2col(x: &Tensor, w: &Tensor, c: &Conv2d, p: usize, q: usize) -> Tensor {
    let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (r, s) = (c.kernel[0], c.kernel[1]);
    let (cg, kg) = (cin / c.groups, c.out_channels / c.groups);
    let patch = cg * r * s;
    let mut y = Tensor::zeros(&[n, c.out_channels, p, q]);
    for ni in 0..n {
        for g in 0..c.groups {
            let cols = DMatrix::from_fn(patch, p * q, |row, col| {
                let (ci, rs) = (row / (r * s), row % (r * s));
                let (ri, si) = (rs / s, rs % s);
                let (pi, qi) = (col / q, col % q);
                let hh = (pi * c.stride[0] + ri * c.dilation[0]) as i64 - c.pad_begin[0] as i64;
                let ww = (qi * c.stride[1] + si * c.dilation[1]) as i64 - c.pad_begin[1] as i64;
                if hh < 0 || ww < 0 || hh as usize >= h || ww as usize >= wd {
                    0.0
                } else {
                    x.data[((ni * cin + g * cg + ci) * h + hh as usize) * wd + ww as usize]
                }
            });
            let out = rows_of(&w.data, g * kg, kg, patch) * cols;
            for k in 0..kg {
                let base = (ni * c.out_channels + g * kg + k) * p * q;
                for col in 0..p * q {
                    y.data[base + col] = out[(k, col)];
                }
            }
        }
    }
    y
}

/// A `[B, C, L]` conv is a `[B, C, 1, L]` conv with a `1 × R` kernel; causal padding is
/// all on the left.
fn conv1d_as_2d(x: &Tensor, w: &Tensor, c: &Conv1d, p: usize) -> Tensor {
    let (pl, pr) = c.pads();
    let c2 = Conv2d {
        out_channels: c.out_channels,
        kernel: [1, c.kernel],
        stride: [1, c.stride],
        pad_begin: [0, pl],
        pad_end: [0, pr],
        dilation: [1, c.dilation],
        groups: c.groups,
        bias: false,
    };
    let x4 = Tensor {
        shape: vec![x.shape[0], x.shape[1], 1, x.shape[2]],
        data: x.data.clone(),
    };
    let y = conv2d_im2col(&x4, w, &c2, 1, p);
    Tensor {
        shape: vec![x.shape[0], c.out_channels, p],
        data: y.data,
    }
}

/// Linear on `axis`: move the axis last (rows = every other position), `Y = X·Wᵀ`, move back.
fn linear(x: &Tensor, w: &Tensor, axis: usize) -> Tensor {
    let pre: usize = x.shape[..axis].iter().product();
    let cin = x.shape[axis];
    let post: usize = x.shape[axis + 1..].iter().product();
    let kout = w.shape[0];
    let xm = DMatrix::from_fn(pre * post, cin, |row, c| {
        let (a, b) = (row / post, row % post);
        x.data[(a * cin + c) * post + b]
    });
    let wm = DMatrix::from_row_slice(kout, cin, &w.data);
    let ym = xm * wm.transpose();
    let mut shape = x.shape.clone();
    shape[axis] = kout;
    let mut y = Tensor::zeros(&shape);
    for row in 0..pre * post {
        let (a, b) = (row / post, row % post);
        for k in 0..kout {
            y.data[(a * kout + k) * post + b] = ym[(row, k)];
        }
    }
    y
}

/// One GEMM per batch entry; a 2-D B serves every entry.
fn matmul(a: &Tensor, b: &Tensor, transpose_b: bool, out_shape: &[usize]) -> Tensor {
    let ra = a.rank();
    let (m, k) = (a.shape[ra - 2], a.shape[ra - 1]);
    let batch = a.len() / (m * k).max(1);
    let rb = b.rank();
    let (b0, b1) = (b.shape[rb - 2], b.shape[rb - 1]);
    let n = if transpose_b { b0 } else { b1 };
    let mut y = Tensor::zeros(out_shape);
    for bi in 0..batch {
        let am = rows_of(&a.data, bi * m, m, k);
        let start = if rb == 2 { 0 } else { bi * b0 };
        let bm = rows_of(&b.data, start, b0, b1);
        let cm = if transpose_b {
            am * bm.transpose()
        } else {
            am * bm
        };
        for i in 0..m {
            for j in 0..n {
                y.data[(bi * m + i) * n + j] = cm[(i, j)];
            }
        }
    }
    y
}

/// Row-wise softmax of a matrix, entries where `keep` is false set to probability 0.
fn softmax_rows(s: &DMatrix<f64>, keep: impl Fn(usize, usize) -> bool) -> DMatrix<f64> {
    let mut p = DMatrix::zeros(s.nrows(), s.ncols());
    for i in 0..s.nrows() {
        let top = (0..s.ncols())
            .filter(|&j| keep(i, j))
            .map(|j| s[(i, j)])
            .fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for j in (0..s.ncols()).filter(|&j| keep(i, j)) {
            p[(i, j)] = (s[(i, j)] - top).exp();
            sum += p[(i, j)];
        }
        for j in 0..s.ncols() {
            p[(i, j)] /= sum;
        }
    }
    p
}

/// Per batch and query head h: `softmax(Q_h·K_gᵀ/√d, mask)·V_g` with `g = h·kv_heads/heads`
/// and K_g, V_g the cache rows stacked above the new rows.
fn attention(
    at: &Attention,
    q: &Tensor,
    kc: &Tensor,
    k: &Tensor,
    vc: &Tensor,
    v: &Tensor,
) -> Tensor {
    let (b, sq) = (q.shape[0], q.shape[1]);
    let (cache, skv) = (at.kv_cache, k.shape[1]);
    let keys = cache + skv;
    let (hd, kvw) = (at.head_dim, k.shape[2]);
    let qw = at.heads * hd;
    let mut y = Tensor::zeros(&q.shape);
    for bi in 0..b {
        for h in 0..at.heads {
            let g = h * at.kv_heads / at.heads;
            let qm = DMatrix::from_fn(sq, hd, |i, c| q.data[(bi * sq + i) * qw + h * hd + c]);
            let stacked = |cached: &Tensor, new: &Tensor| {
                DMatrix::from_fn(keys, hd, |j, c| {
                    if j < cache {
                        cached.data[(bi * cache + j) * kvw + g * hd + c]
                    } else {
                        new.data[(bi * skv + j - cache) * kvw + g * hd + c]
                    }
                })
            };
            let (km, vm) = (stacked(kc, k), stacked(vc, v));
            let scores = (qm * km.transpose()) / (hd as f64).sqrt();
            let probs = softmax_rows(&scores, |i, j| !at.causal || j <= cache + i);
            let ctx = probs * vm;
            for i in 0..sq {
                for c in 0..hd {
                    y.data[(bi * sq + i) * qw + h * hd + c] = ctx[(i, c)];
                }
            }
        }
    }
    y
}

/// Squeeze-excite as two small GEMMs on the `[N, C]` matrix of channel means.
fn squeeze_excite(x: &Tensor, p: &data::SeParams, act: Activation, gate: Activation) -> Tensor {
    let (n, c) = (x.shape[0], x.shape[1]);
    let area = x.shape[2] * x.shape[3];
    let xm = DMatrix::from_row_slice(n * c, area, &x.data);
    let pooled = DMatrix::from_fn(n, c, |ni, ci| xm.row(ni * c + ci).mean());
    let reduced = p.w1.shape[0];
    let w1 = DMatrix::from_row_slice(reduced, c, &p.w1.data);
    let w2 = DMatrix::from_row_slice(c, reduced, &p.w2.data);
    let mut hidden = pooled * w1.transpose();
    for (j, mut col) in hidden.column_iter_mut().enumerate() {
        col.apply(|v| *v = act.apply(*v + p.b1.data[j]));
    }
    let mut s = hidden * w2.transpose();
    for (j, mut col) in s.column_iter_mut().enumerate() {
        col.apply(|v| *v = gate.apply(*v + p.b2.data[j]));
    }
    let mut y = x.clone();
    for (i, v) in y.data.iter_mut().enumerate() {
        let row = i / area;
        *v *= s[(row / c, row % c)];
    }
    y
}

/// Whether token t is among the `count` most probable for expert e (ties → lower
/// index), stated as a rank: fewer than `count` tokens beat it. The same rule as the
/// naive sort, formulated independently.
fn chosen(probs: &DMatrix<f64>, e: usize, t: usize, count: usize) -> bool {
    let pt = probs[(t, e)];
    let beaten_by = (0..probs.nrows())
        .filter(|&u| probs[(u, e)] > pt || (probs[(u, e)] == pt && u < t))
        .count();
    beaten_by < count
}

/// MoE by expert choice (see `naive::moe`): router GEMM, softmax, each expert's FFN as
/// GEMMs on the gathered tokens, probability-weighted combine.
fn moe(m: &Moe, x: &Tensor, p: &data::MoeParams) -> Tensor {
    let d = x.shape[2];
    let tokens = x.shape[0] * x.shape[1];
    let xm = DMatrix::from_row_slice(tokens, d, &x.data);
    let router = DMatrix::from_row_slice(m.experts, d, &p.router.data);
    let logits = &xm * router.transpose();
    let probs = softmax_rows(&logits, |_, _| true);
    let counts = m.expert_tokens(tokens);
    let mut y = DMatrix::<f64>::zeros(tokens, d);
    for (e, ex) in p.experts.iter().enumerate() {
        let count = counts.get(e).copied().unwrap_or(0);
        let toks: Vec<usize> = (0..tokens)
            .filter(|&t| chosen(&probs, e, t, count))
            .collect();
        if toks.is_empty() {
            continue;
        }
        let xe = DMatrix::from_fn(toks.len(), d, |i, c| xm[(toks[i], c)]);
        let f = m.ffn_dim;
        let up = &xe * DMatrix::from_row_slice(f, d, &ex.up.data).transpose();
        let h = match &ex.gate {
            Some(g) => {
                let gm = &xe * DMatrix::from_row_slice(f, d, &g.data).transpose();
                gm.map(|v| m.activation.apply(v)).component_mul(&up)
            }
            None => up.map(|v| m.activation.apply(v)),
        };
        let out = h * DMatrix::from_row_slice(d, f, &ex.down.data).transpose();
        for (i, &t) in toks.iter().enumerate() {
            let weight = probs[(t, e)];
            for c in 0..d {
                y[(t, c)] += weight * out[(i, c)];
            }
        }
    }
    let mut data = Vec::with_capacity(tokens * d);
    for t in 0..tokens {
        data.extend(y.row(t).iter());
    }
    Tensor {
        shape: x.shape.clone(),
        data,
    }
}
