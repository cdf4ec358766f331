//! One-line op specs: `gemm m=8192 n=8192 k=8192 dtype=fp16`.
//!
//! The same syntax names a layer inside a workload file (`op = "conv2d k=64 r=3 pad=1"`,
//! where the input comes from the previous layer) and a whole one-op network on the
//! command line, where size keys such as `n c h w` or `m k` create the inputs.

use super::op::*;
use super::params::{accepted, p, ParamDoc, ParamReader};
use super::tensor::DType;
use super::{Graph, WorkloadError};
use petgraph::graph::NodeIndex;
use toml::{Table, Value};

/// A parsed spec: the op kind and its key=value pairs as TOML values.
#[derive(Clone, Debug)]
pub struct Spec {
    pub text: String,
    pub kind: String,
    pub params: Table,
}

/// Splits `kind k1=v1 k2=v2`. Values: integers, floats, true/false, lists written
/// `1,2` or `1x64x56x56`, otherwise strings.
pub fn parse(text: &str) -> Result<Spec, WorkloadError> {
    let mut words = text.split_whitespace();
    let kind = words
        .next()
        .ok_or_else(|| WorkloadError::Spec {
            spec: text.to_string(),
            message: "empty spec; write e.g. 'conv2d k=64 r=3 pad=1'".into(),
        })?
        .to_ascii_lowercase();
    let mut params = Table::new();
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| WorkloadError::Spec {
            spec: text.to_string(),
            message: format!("'{w}' is not key=value"),
        })?;
        if params.insert(k.to_string(), literal(v)).is_some() {
            return Err(WorkloadError::Spec {
                spec: text.to_string(),
                message: format!("key '{k}' given twice"),
            });
        }
    }
    Ok(Spec {
        text: text.to_string(),
        kind,
        params,
    })
}

fn literal(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::Integer(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        return Value::Float(f);
    }
    match v {
        "true" => return Value::Boolean(true),
        "false" => return Value::Boolean(false),
        _ => {}
    }
    let sep = if v.contains(',') {
        Some(',')
    } else if v.contains('x') && v.split('x').all(|p| p.parse::<i64>().is_ok()) {
        Some('x')
    } else {
        None
    };
    if let Some(sep) = sep {
        let items: Option<Vec<Value>> = v
            .split(sep)
            .map(|x| x.trim().parse::<i64>().ok().map(Value::Integer))
            .collect();
        if let Some(items) = items {
            return Value::Array(items);
        }
    }
    Value::String(v.to_string())
}

// Parameters shared by all in-graph specs (layer files) and by standalone specs.
const CONV2D: &[ParamDoc] = &[
    p("k", "", "output channels (alias: out)"),
    p("r", "0", "kernel height (0 = take 'kernel')"),
    p("s", "0", "kernel width (0 = same as r)"),
    p("kernel", "1", "square kernel size"),
    p("stride", "1", "stride"),
    p("pad", "0", "zero padding on every side"),
    p("dilation", "1", "dilation"),
    p("groups", "1", "groups (= channels for depthwise)"),
    p("bias", "false", "add a bias"),
];
const DWCONV2D: &[ParamDoc] = &[
    p("r", "0", "kernel height (0 = take 'kernel')"),
    p("s", "0", "kernel width"),
    p("kernel", "3", "square kernel size"),
    p("stride", "1", "stride"),
    p("pad", "", "zero padding on every side"),
    p("dilation", "1", "dilation"),
    p("bias", "false", "add a bias"),
];
const CONV1D: &[ParamDoc] = &[
    p("k", "0", "output channels (0 = same as input)"),
    p("kernel", "", "kernel length"),
    p("stride", "1", "stride"),
    p("pad", "0", "zero padding each side (ignored when causal)"),
    p("dilation", "1", "dilation"),
    p("groups", "1", "groups"),
    p("depthwise", "false", "groups = channels"),
    p(
        "causal",
        "false",
        "pad (kernel-1)*dilation on the left only",
    ),
    p("bias", "false", "add a bias"),
];
const LINEAR: &[ParamDoc] = &[
    p("out", "", "output features"),
    p("bias", "true", "add a bias"),
    p(
        "axis",
        "-1",
        "axis to contract (-1 = last; 1 = token axis of [B, S, C])",
    ),
];
const POOL: &[ParamDoc] = &[
    p("kernel", "2", "window size"),
    p("stride", "0", "stride (0 = kernel)"),
    p("pad", "0", "padding"),
];
const GLOBALPOOL: &[ParamDoc] = &[p("pool", "\"avg\"", "avg | max")];
const SOFTMAX: &[ParamDoc] = &[p("axis", "-1", "axis (-1 = last)")];
const CONCAT: &[ParamDoc] = &[p("axis", "1", "axis")];
const RESHAPE: &[ParamDoc] = &[p(
    "shape",
    "",
    "target shape, 0 copies an axis, -1 infers one",
)];
const TRANSPOSE: &[ParamDoc] = &[p("perm", "", "axis permutation, e.g. 0,2,1")];
const MATMUL: &[ParamDoc] = &[p("transpose_b", "false", "B is [.., N, K]")];
const SE: &[ParamDoc] = &[
    p("reduced", "", "squeezed channels"),
    p("act", "\"relu\"", "activation between the FCs"),
    p("gate", "\"sigmoid\"", "gating activation"),
];
const EMBEDDING: &[ParamDoc] = &[
    p("vocab", "", "vocabulary size"),
    p("dim", "", "embedding width"),
];
const ATTENTION: &[ParamDoc] = &[
    p("heads", "", "query heads"),
    p(
        "kv_heads",
        "0",
        "K/V heads (0 = heads; fewer = grouped-query)",
    ),
    p("head_dim", "", "width of one head"),
    p("causal", "false", "mask future positions"),
    p("kv_cache", "0", "cached positions read besides the new K/V"),
];
const MOE: &[ParamDoc] = &[
    p("experts", "", "number of experts"),
    p("top_k", "2", "experts per token"),
    p("ffn", "", "expert hidden width"),
    p("gated", "true", "SwiGLU experts (3 matrices) instead of 2"),
    p("act", "\"silu\"", "expert activation"),
    p("capacity", "0.0", "capacity factor (0 = no token dropping)"),
    p("skew", "0.0", "routing skew: Zipf exponent (0 = balanced)"),
];
const SCAN: &[ParamDoc] = &[p("d_state", "16", "SSM state size N")];
const NONE: &[ParamDoc] = &[];
/// GEMM inside a layer list: A is the layer's input `[.., M, K]`, B the weights `[N, K]`.
/// `m`, `k` and `b` may be given for clarity; they must then match the input.
const GEMM_IN_GRAPH: &[ParamDoc] = &[
    p("n", "", "columns of B and C (output features)"),
    p(
        "m",
        "0",
        "rows of A (0 = take from the input; else must match it)",
    ),
    p(
        "k",
        "0",
        "reduction length (0 = the input's last axis; else must match it)",
    ),
    p(
        "b",
        "0",
        "batch (0 = take from the input; else must match its leading axes)",
    ),
];

/// Size keys a standalone spec may add to create its inputs.
const DIMS_IMAGE: &[ParamDoc] = &[
    p("n", "1", "batch"),
    p("c", "", "input channels"),
    p("h", "", "input height"),
    p("w", "", "input width"),
];
const DIMS_SHAPE: &[ParamDoc] = &[p("shape", "", "input shape, e.g. 1x64x56x56")];

/// The in-graph parameters of an op kind (None = unknown kind).
fn docs_for(kind: &str) -> Option<&'static [ParamDoc]> {
    Some(match kind {
        "conv2d" | "conv" => CONV2D,
        "dwconv2d" | "dwconv" => DWCONV2D,
        "conv1d" => CONV1D,
        "linear" | "fc" => LINEAR,
        "maxpool" | "avgpool" => POOL,
        "globalpool" | "gap" => GLOBALPOOL,
        "softmax" => SOFTMAX,
        "concat" => CONCAT,
        "reshape" => RESHAPE,
        "transpose" => TRANSPOSE,
        "matmul" | "bmm" => MATMUL,
        "gemm" => GEMM_IN_GRAPH,
        "squeeze_excite" | "se" => SE,
        "embedding" => EMBEDDING,
        "attention" => ATTENTION,
        "moe" => MOE,
        "selective_scan" => SCAN,
        "batchnorm" | "layernorm" | "rmsnorm" | "add" | "mul" | "flatten" => NONE,
        k if Activation::parse(k).is_some() => NONE,
        _ => return None,
    })
}

pub const KINDS: &str = "conv2d, dwconv2d, conv1d, linear, gemm, matmul, attention, batchnorm, layernorm, rmsnorm, \
relu, relu6, gelu, silu, hardswish, hardsigmoid, sigmoid, tanh, softplus, add, mul, softmax, maxpool, avgpool, \
globalpool, squeeze_excite, embedding, concat, reshape, flatten, transpose, moe, selective_scan";

fn unknown_kind(spec: &Spec) -> WorkloadError {
    WorkloadError::Spec {
        spec: spec.text.clone(),
        message: format!("unknown op '{}'; known ops: {KINDS}", spec.kind),
    }
}

/// A Python-style axis (-1 = last) of a rank-`rank` input, checked.
fn axis_of(key: &str, v: i64, rank: usize) -> Result<usize, WorkloadError> {
    let r = rank as i64;
    if (-r..r).contains(&v) {
        Ok(if v < 0 { (r + v) as usize } else { v as usize })
    } else {
        Err(WorkloadError::BadParam {
            key: key.to_string(),
            message: format!(
                "axis {v} is out of range for a rank-{rank} input; use {} to {}",
                -r,
                r - 1
            ),
        })
    }
}

/// Builds the op for a spec used inside a graph, given its first input's shape
/// (needed for depthwise channel counts and negative axes).
pub fn op_in_graph(spec: &Spec, input: Option<&super::TensorInfo>) -> Result<Op, WorkloadError> {
    let docs = docs_for(&spec.kind).ok_or_else(|| unknown_kind(spec))?;
    let r = ParamReader::new(format!("op '{}'", spec.kind), spec.params.clone(), docs)?;
    let in_ch = input
        .map(|t| if t.rank() > 1 { t.shape[1] } else { 1 })
        .unwrap_or(1);
    let rank = input.map(|t| t.rank()).unwrap_or(1);
    let kernel2 = |r: &ParamReader| -> Result<[usize; 2], WorkloadError> {
        let k = r.size("kernel")?;
        let kh = if r.given("r") { r.size("r")? } else { k };
        let kw = if r.given("s") { r.size("s")? } else { kh };
        Ok([kh, kw])
    };
    let op = match spec.kind.as_str() {
        "conv2d" | "conv" => {
            let kernel = kernel2(&r)?;
            let pad = r.count("pad")?;
            Op::Conv2d(Conv2d {
                out_channels: r.size("k")?,
                kernel,
                stride: [r.size("stride")?; 2],
                pad_begin: [pad; 2],
                pad_end: [pad; 2],
                dilation: [r.size("dilation")?; 2],
                groups: r.size("groups")?,
                bias: r.flag("bias")?,
            })
        }
        "dwconv2d" | "dwconv" => {
            let kernel = kernel2(&r)?;
            let pad = r.count("pad")?;
            Op::Conv2d(Conv2d {
                out_channels: in_ch,
                kernel,
                stride: [r.size("stride")?; 2],
                pad_begin: [pad; 2],
                pad_end: [pad; 2],
                dilation: [r.size("dilation")?; 2],
                groups: in_ch,
                bias: r.flag("bias")?,
            })
        }
        "conv1d" => {
            let depthwise = r.flag("depthwise")?;
            let k = r.count("k")?;
            let out = if k == 0 { in_ch } else { k };
            Op::Conv1d(Conv1d {
                out_channels: out,
                kernel: r.size("kernel")?,
                stride: r.size("stride")?,
                pad: r.count("pad")?,
                dilation: r.size("dilation")?,
                groups: if depthwise { in_ch } else { r.size("groups")? },
                causal: r.flag("causal")?,
                bias: r.flag("bias")?,
            })
        }
        "linear" | "fc" => {
            let axis = r.int("axis")?;
            Op::Linear {
                out_features: r.size("out")?,
                bias: r.flag("bias")?,
                axis: if axis == -1 {
                    None
                } else {
                    Some(axis_of("axis", axis, rank)?)
                },
                tied: false,
            }
        }
        "maxpool" | "avgpool" => {
            let kernel = r.size("kernel")?;
            let stride = match r.count("stride")? {
                0 => kernel,
                s => s,
            };
            let pad = r.count("pad")?;
            Op::Pool {
                pool: if spec.kind == "maxpool" {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                },
                kernel: [kernel; 2],
                stride: [stride; 2],
                pad: [pad; 2],
            }
        }
        "globalpool" | "gap" => Op::GlobalPool {
            pool: if r.choice("pool", &["avg", "max"])? == "max" {
                PoolKind::Max
            } else {
                PoolKind::Avg
            },
        },
        "softmax" => Op::Softmax {
            axis: axis_of("axis", r.int("axis")?, rank)?,
        },
        "concat" => Op::Concat {
            axis: axis_of("axis", r.int("axis")?, rank)?,
        },
        "reshape" => Op::Reshape {
            shape: r.ints("shape")?,
        },
        "flatten" => Op::Reshape { shape: vec![0, -1] },
        "transpose" => Op::Transpose {
            perm: r
                .ints("perm")?
                .into_iter()
                .map(|x| axis_of("perm", x, rank))
                .collect::<Result<_, _>>()?,
        },
        "gemm" => gemm_in_graph(&r, input)?,
        "matmul" | "bmm" => Op::MatMul {
            transpose_b: r.flag("transpose_b")?,
        },
        "squeeze_excite" | "se" => Op::SqueezeExcite {
            reduced: r.size("reduced")?,
            act: r.activation("act")?,
            gate: r.activation("gate")?,
        },
        "embedding" => Op::Embedding {
            vocab: r.size("vocab")?,
            dim: r.size("dim")?,
        },
        "attention" => {
            let heads = r.size("heads")?;
            let kv = r.count("kv_heads")?;
            Op::Attention(Attention {
                heads,
                kv_heads: if kv == 0 { heads } else { kv },
                head_dim: r.size("head_dim")?,
                causal: r.flag("causal")?,
                kv_cache: r.count("kv_cache")?,
            })
        }
        "moe" => {
            let cf = r.float("capacity")?;
            let skew = r.float("skew")?;
            Op::Moe(Moe {
                experts: r.size("experts")?,
                top_k: r.size("top_k")?,
                ffn_dim: r.size("ffn")?,
                gated: r.flag("gated")?,
                activation: r.activation("act")?,
                capacity_factor: if cf > 0.0 { Some(cf) } else { None },
                routing: if skew > 0.0 {
                    Routing::Zipf(skew)
                } else {
                    Routing::Balanced
                },
            })
        }
        "selective_scan" => Op::SelectiveScan {
            d_state: r.size("d_state")?,
        },
        "batchnorm" => Op::Norm {
            kind: NormKind::Batch,
        },
        "layernorm" => Op::Norm {
            kind: NormKind::Layer,
        },
        "rmsnorm" => Op::Norm {
            kind: NormKind::Rms,
        },
        "add" => Op::Binary {
            op: BinaryKind::Add,
        },
        "mul" => Op::Binary {
            op: BinaryKind::Mul,
        },
        k => Op::Act {
            act: Activation::parse(k).ok_or_else(|| unknown_kind(spec))?,
        },
    };
    Ok(op)
}

/// A GEMM layer: a bias-free linear on the input's last axis, after checking any
/// `m`, `k`, `b` the spec gives against the input `[.., M, K]`.
fn gemm_in_graph(r: &ParamReader, input: Option<&super::TensorInfo>) -> Result<Op, WorkloadError> {
    let shape = input.map(|t| t.shape.as_slice()).unwrap_or(&[]);
    let rank = shape.len();
    let product = |s: &[usize]| s.iter().product::<usize>();
    let (m, k, b) = (r.count("m")?, r.count("k")?, r.count("b")?);
    let (want_m, want_b) = if b > 0 {
        (
            shape.get(rank.wrapping_sub(2)).copied().unwrap_or(0),
            product(&shape[..rank.saturating_sub(2)]),
        )
    } else {
        (product(&shape[..rank.saturating_sub(1)]), 0)
    };
    let given = [
        ("k", k, shape.last().copied().unwrap_or(0)),
        ("b", b, want_b),
        ("m", m, want_m),
    ];
    for (key, v, want) in given {
        if v != 0 && v != want {
            return Err(WorkloadError::BadParam {
                key: key.into(),
                message: format!(
                    "a gemm layer takes A from its input {}, so {key} must be {want} \
                     (or be left out); got {v}",
                    super::tensor::shape_str(shape)
                ),
            });
        }
    }
    Ok(Op::Linear {
        out_features: r.size("n")?,
        bias: false,
        axis: None,
        tied: false,
    })
}

/// Splits a standalone spec's table into (size keys, op keys) using the op's docs.
fn split(spec: &Spec, op_docs: &[ParamDoc]) -> (Table, Table) {
    let mut dims = Table::new();
    let mut op = Table::new();
    for (k, v) in &spec.params {
        if op_docs.iter().any(|d| d.name == k) {
            op.insert(k.clone(), v.clone());
        } else {
            dims.insert(k.clone(), v.clone());
        }
    }
    (dims, op)
}

fn spec_err(spec: &Spec, e: WorkloadError) -> WorkloadError {
    match e {
        e @ WorkloadError::Spec { .. } => e,
        e => WorkloadError::Spec {
            spec: spec.text.clone(),
            message: e.to_string(),
        },
    }
}

/// A one-op network from a standalone spec, e.g. for `coex inspect --op`.
pub fn single_op_graph(text: &str) -> Result<Graph, WorkloadError> {
    let mut spec = parse(text)?;
    let dtype = match spec.params.remove("dtype") {
        Some(v) => {
            let s = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            DType::parse(&s).ok_or_else(|| WorkloadError::Spec {
                spec: text.to_string(),
                message: format!("unknown dtype '{s}'; use one of {}", DType::USER_CHOICES),
            })?
        }
        None => DType::Fp16,
    };
    let g = build_single(&spec, dtype).map_err(|e| spec_err(&spec, e))?;
    // Lowering checks the counts every model derives (MACs, bytes) against their limits.
    crate::lower::lower(&g).map_err(|e| spec_err(&spec, e))?;
    Ok(g)
}

const GEMM_DIMS: &[ParamDoc] = &[
    p("m", "", "rows of A and C (tokens)"),
    p("n", "", "columns of B and C (output features)"),
    p("k", "", "reduction length"),
    p("b", "0", "batch of independent GEMMs (0 = none)"),
];
const ATTN_DIMS: &[ParamDoc] = &[
    p("b", "1", "batch"),
    p("seq", "", "query length (1 for decode)"),
    p("kv_len", "0", "new K/V length (0 = seq)"),
];
const CONV1D_DIMS: &[ParamDoc] = &[
    p("n", "1", "batch"),
    p("c", "", "channels"),
    p("l", "", "length"),
];
const SEQ_DIMS: &[ParamDoc] = &[
    p("b", "1", "batch"),
    p("seq", "", "sequence length"),
    p("d", "", "model width"),
];
const TOKEN_DIMS: &[ParamDoc] = &[p("b", "1", "batch"), p("seq", "", "sequence length")];
const SCAN_DIMS: &[ParamDoc] = &[
    p("b", "1", "batch"),
    p("l", "", "sequence length"),
    p("d_inner", "", "expanded width Di"),
];
const LINEAR_DIMS: &[ParamDoc] = &[
    p("tokens", "1", "rows (batch × sequence)"),
    p("in", "", "input features"),
];

/// Size keys a standalone spec of this kind takes to create its inputs (image ops take
/// `n c h w` or `shape`).
fn size_docs(kind: &str) -> &'static [&'static [ParamDoc]] {
    match kind {
        "gemm" | "matmul" | "bmm" => &[GEMM_DIMS],
        "attention" => &[ATTN_DIMS],
        "conv2d" | "conv" | "dwconv2d" | "dwconv" | "maxpool" | "avgpool" | "globalpool"
        | "gap" | "squeeze_excite" | "se" | "batchnorm" => &[DIMS_IMAGE, DIMS_SHAPE],
        "conv1d" => &[CONV1D_DIMS],
        "linear" | "fc" => &[LINEAR_DIMS],
        "moe" | "layernorm" | "rmsnorm" => &[SEQ_DIMS],
        "embedding" => &[TOKEN_DIMS],
        "selective_scan" => &[SCAN_DIMS],
        _ => &[DIMS_SHAPE],
    }
}

/// Every key a standalone spec of `kind` accepts: the op's own, its size keys, dtype.
fn standalone_keys(kind: &str) -> String {
    let op = if kind == "gemm" {
        &[][..]
    } else {
        docs_for(kind).unwrap_or(&[])
    };
    let mut keys: Vec<&str> = op.iter().map(|d| d.name).collect();
    for docs in size_docs(kind) {
        for d in docs.iter() {
            if !keys.contains(&d.name) {
                keys.push(d.name);
            }
        }
    }
    keys.push("dtype");
    keys.join(", ")
}

/// Reads a standalone spec's size keys; an unknown key lists every key the spec accepts.
fn size_reader<'a>(
    kind: &str,
    table: Table,
    docs: &'a [ParamDoc],
) -> Result<ParamReader<'a>, WorkloadError> {
    ParamReader::new(format!("op '{kind}'"), table, docs).map_err(|e| match e {
        WorkloadError::UnknownParam { key, context, .. } => WorkloadError::UnknownParam {
            key,
            context,
            accepted: standalone_keys(kind),
        },
        e => e,
    })
}

/// One line per op kind with its keys, for `coex families`.
pub fn describe_kinds() -> String {
    let mut s = String::from(
        "Op kinds: `--op '<kind> key=value ...'` and `[[layer]] op = \"<kind> key=value ...\"`.\n\
         In a layer the input comes from the previous layer; on --op the size keys create it.\n",
    );
    for kind in KINDS.split(", ") {
        let op = docs_for(kind).unwrap_or(&[]);
        let keys = |docs: &[ParamDoc]| {
            docs.iter()
                .map(|d| {
                    if d.default.is_empty() {
                        format!("{}*", d.name)
                    } else {
                        d.name.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let sizes: Vec<String> = size_docs(kind).iter().map(|d| keys(d)).collect();
        let op_keys = if op.is_empty() {
            "-".to_string()
        } else {
            keys(op)
        };
        s.push_str(&format!(
            "  {kind:15} {op_keys}; --op sizes: {}\n",
            sizes.join(" | ")
        ));
    }
    s.push_str("  (* = required; every --op also takes dtype=int8|fp16|bf16|fp32)\n");
    s
}

fn build_single(spec: &Spec, dtype: DType) -> Result<Graph, WorkloadError> {
    let kind = spec.kind.as_str();
    let mut g = Graph::new(text_name(spec), dtype);
    // GEMM is a linear layer whose weight is B: same Einsum, and its params are B.
    if kind == "gemm" {
        let r = size_reader(kind, spec.params.clone(), GEMM_DIMS)?;
        let (m, n, k, b) = (r.size("m")?, r.size("n")?, r.size("k")?, r.count("b")?);
        let shape = if b > 0 { vec![b, m, k] } else { vec![m, k] };
        let x = g.input("A", &shape)?;
        g.add(
            "gemm",
            Op::Linear {
                out_features: n,
                bias: false,
                axis: None,
                tied: false,
            },
            &[x],
        )?;
        return Ok(g);
    }
    let op_docs = docs_for(kind).ok_or_else(|| unknown_kind(spec))?;
    let (dims, op_params) = split(spec, op_docs);
    let op_spec = Spec {
        params: op_params,
        ..spec.clone()
    };
    let inputs: Vec<NodeIndex> = match kind {
        "matmul" | "bmm" => {
            let r = size_reader(kind, dims, GEMM_DIMS)?;
            let (m, n, k, b) = (r.size("m")?, r.size("n")?, r.size("k")?, r.count("b")?);
            let tb = op_spec
                .params
                .get("transpose_b")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let pre: Vec<usize> = if b > 0 { vec![b] } else { vec![] };
            let a = g.input("A", &[pre.clone(), vec![m, k]].concat())?;
            let bshape = if tb { vec![n, k] } else { vec![k, n] };
            let bb = g.input("B", &[pre, bshape].concat())?;
            vec![a, bb]
        }
        "attention" => {
            let r = size_reader(kind, dims, ATTN_DIMS)?;
            let rq = ParamReader::new("op 'attention'", op_spec.params.clone(), ATTENTION)?;
            let (heads, hd) = (rq.size("heads")?, rq.size("head_dim")?);
            let kvh = match rq.count("kv_heads")? {
                0 => heads,
                k => k,
            };
            let (b, seq) = (r.size("b")?, r.size("seq")?);
            let kv_len = match r.count("kv_len")? {
                0 => seq,
                l => l,
            };
            let q = g.input("q", &[b, seq, heads * hd])?;
            let k = g.input("k", &[b, kv_len, kvh * hd])?;
            let v = g.input("v", &[b, kv_len, kvh * hd])?;
            vec![q, k, v]
        }
        "conv2d" | "conv" | "dwconv2d" | "dwconv" | "maxpool" | "avgpool" | "globalpool"
        | "gap" | "squeeze_excite" | "se" | "batchnorm" => {
            if dims.contains_key("shape") {
                let r = size_reader(kind, dims, DIMS_SHAPE)?;
                vec![g.input("x", &r.sizes("shape")?)?]
            } else {
                let r = size_reader(kind, dims, DIMS_IMAGE)?;
                vec![g.input(
                    "x",
                    &[r.size("n")?, r.size("c")?, r.size("h")?, r.size("w")?],
                )?]
            }
        }
        "conv1d" => {
            let r = size_reader(kind, dims, CONV1D_DIMS)?;
            vec![g.input("x", &[r.size("n")?, r.size("c")?, r.size("l")?])?]
        }
        "linear" | "fc" => {
            let r = size_reader(kind, dims, LINEAR_DIMS)?;
            vec![g.input("x", &[r.size("tokens")?, r.size("in")?])?]
        }
        "moe" | "layernorm" | "rmsnorm" => {
            let r = size_reader(kind, dims, SEQ_DIMS)?;
            vec![g.input("x", &[r.size("b")?, r.size("seq")?, r.size("d")?])?]
        }
        "embedding" => {
            let r = size_reader(kind, dims, TOKEN_DIMS)?;
            vec![g.input_typed("ids", &[r.size("b")?, r.size("seq")?], DType::Int32)?]
        }
        "selective_scan" => {
            let r = size_reader(kind, dims, SCAN_DIMS)?;
            let rs = ParamReader::new("op 'selective_scan'", op_spec.params.clone(), SCAN)?;
            let (b, l, di, n) = (
                r.size("b")?,
                r.size("l")?,
                r.size("d_inner")?,
                rs.size("d_state")?,
            );
            vec![
                g.input("x", &[b, l, di])?,
                g.input("delta", &[b, l, di])?,
                g.input("B", &[b, l, n])?,
                g.input("C", &[b, l, n])?,
            ]
        }
        "add" | "mul" => {
            let r = size_reader(kind, dims, DIMS_SHAPE)?;
            let s = r.sizes("shape")?;
            vec![g.input("a", &s)?, g.input("b", &s)?]
        }
        _ => {
            let r = size_reader(kind, dims, DIMS_SHAPE)?;
            vec![g.input("x", &r.sizes("shape")?)?]
        }
    };
    let first = g.node(inputs[0]).output.clone();
    let op = op_in_graph(&op_spec, Some(&first))?;
    g.add(kind, op, &inputs)?;
    Ok(g)
}

fn text_name(spec: &Spec) -> String {
    spec.text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keys accepted by a kind, for help text.
pub fn accepted_keys(kind: &str) -> Option<String> {
    docs_for(kind).map(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(literal("8192"), Value::Integer(8192));
        assert_eq!(literal("true"), Value::Boolean(true));
        assert_eq!(
            literal("1x64x56x56"),
            Value::Array(
                vec![1, 64, 56, 56]
                    .into_iter()
                    .map(Value::Integer)
                    .collect()
            )
        );
        assert_eq!(literal("fp16"), Value::String("fp16".into()));
    }

    #[test]
    fn gemm_spec_builds_a_linear() {
        let g = single_op_graph("gemm m=8192 n=8192 k=8192 dtype=fp16").unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.dtype, DType::Fp16);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = single_op_graph("conv2d n=1 c=64 h=56 w=56 k=64 r=3 bogus=2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
