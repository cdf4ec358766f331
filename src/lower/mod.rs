//! Lowering: every op becomes Einsums (multiply-accumulate loop nests) and VectorOps
//! (everything else). This is the only module besides `workload` that matches on op
//! kinds; mappers and cost models downstream see only these two shapes of work.
//!
//! Dimension names follow one convention so that a template's `spatial` rules apply
//! to every op: `N` batch, `G` groups / KV heads, `H` query heads per KV head, `K`
//! output features (or keys, for attention scores), `C` the reduction, `P`/`Q` output
//! rows/columns (or tokens), `R`/`S` filter taps.

use crate::workload::op::{linear_axis, Attention, Conv1d, Conv2d, Moe, NormKind, Op};
use crate::workload::{DType, Graph, TensorInfo, WorkloadError};
use petgraph::graph::NodeIndex;
use serde::Serialize;

/// A named loop dimension with its bound.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Dim {
    pub name: &'static str,
    pub bound: usize,
}

/// `index = Σ coef·dim + offset`: how one tensor axis is addressed by the loop dims.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Affine {
    /// (dimension position in `Einsum::dims`, coefficient)
    pub terms: Vec<(usize, i64)>,
    pub offset: i64,
}

impl Affine {
    pub fn dim(d: usize) -> Self {
        Affine {
            terms: vec![(d, 1)],
            offset: 0,
        }
    }

    pub fn eval(&self, point: &[usize]) -> i64 {
        self.terms
            .iter()
            .map(|&(d, c)| c * point[d] as i64)
            .sum::<i64>()
            + self.offset
    }
}

/// The role of an operand in the dataflow vocabulary the templates use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OperandRole {
    /// The streamed activation (ifmap, A, Q, P).
    Input,
    /// The second read operand (filter, B, K, V): a parameter or another activation.
    Weight,
    /// The accumulated result (ofmap, C, scores, context).
    Output,
}

impl OperandRole {
    pub fn letter(self) -> &'static str {
        match self {
            OperandRole::Input => "I",
            OperandRole::Weight => "W",
            OperandRole::Output => "O",
        }
    }
}

/// A tensor touched by an Einsum: its logical shape and one affine index per axis.
/// Indices that fall outside `shape` read zero: that is padding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Operand {
    pub role: OperandRole,
    pub shape: Vec<usize>,
    pub proj: Vec<Affine>,
    /// A stored parameter (weights) rather than an activation produced at run time.
    pub is_param: bool,
}

impl Operand {
    pub fn elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// `O[proj] += I[proj] * W[proj]` over the box `dims`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Einsum {
    pub name: String,
    pub dims: Vec<Dim>,
    pub input: Operand,
    pub weight: Operand,
    pub output: Operand,
    pub dtype: DType,
}

impl Einsum {
    /// Multiply-accumulates: the volume of the iteration box (padding taps included,
    /// as every published MAC count does).
    pub fn macs(&self) -> u64 {
        self.dims.iter().map(|d| d.bound as u64).product()
    }

    pub fn dim_index(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|d| d.name == name)
    }

    pub fn operands(&self) -> [&Operand; 3] {
        [&self.input, &self.weight, &self.output]
    }

    /// `O[n,k,p,q] += I[n,c,2p+r-3,2q+s-3] * W[k,c,r,s]`, for humans.
    pub fn formula(&self) -> String {
        let idx = |op: &Operand| -> String {
            op.proj
                .iter()
                .map(|a| {
                    let mut s = String::new();
                    for &(d, c) in &a.terms {
                        let name = self.dims[d].name.to_ascii_lowercase();
                        if !s.is_empty() {
                            s.push('+');
                        }
                        if c == 1 {
                            s.push_str(&name);
                        } else {
                            s.push_str(&format!("{c}{name}"));
                        }
                    }
                    if a.offset != 0 {
                        s.push_str(&format!("{:+}", a.offset));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let bounds = self
            .dims
            .iter()
            .map(|d| format!("{}={}", d.name, d.bound))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "O[{}] += I[{}] * W[{}]  ({bounds})",
            idx(&self.output),
            idx(&self.input),
            idx(&self.weight)
        )
    }
}

/// What a vector unit does; the cost model charges by elements, ops and bytes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorKind {
    Elementwise,
    Reduction,
    Scan,
    Gather,
    Move,
}

/// Non-MAC work: `elements × ops_per_element` operations over `bytes_read + bytes_written`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct VectorOp {
    pub name: String,
    pub kind: VectorKind,
    pub elements: u64,
    pub ops_per_element: u32,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl VectorOp {
    pub fn ops(&self) -> u64 {
        self.elements * self.ops_per_element as u64
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Kernel {
    Einsum(Einsum),
    Vector(VectorOp),
}

impl Kernel {
    pub fn macs(&self) -> u64 {
        match self {
            Kernel::Einsum(e) => e.macs(),
            Kernel::Vector(_) => 0,
        }
    }
}

/// The work of one graph node.
#[derive(Clone, Debug)]
pub struct LayerWork {
    pub node: NodeIndex,
    pub kernels: Vec<Kernel>,
}

impl LayerWork {
    pub fn macs(&self) -> u64 {
        self.kernels.iter().map(Kernel::macs).sum()
    }

    pub fn einsums(&self) -> impl Iterator<Item = &Einsum> {
        self.kernels.iter().filter_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            _ => None,
        })
    }
}

/// The most MACs, vector elements or bytes one kernel may count (2^56, about 7e16),
/// and the most a whole network may (2^60): with these, the cost models' sums and
/// products of counts stay inside a u64.
pub const MAX_KERNEL_COUNT: u64 = 1 << 56;
pub const MAX_NETWORK_COUNT: u64 = 1 << 60;

/// Lowers every node, in execution order; a node whose counts exceed the limits
/// above (or overflow) is an error naming it.
/// The first Einsum of a one-op spec (`conv2d n=1 c=64 ...`, `gemm m=.. n=.. k=..`):
/// what tests and benchmarks map and cost on their own. Errors if the spec does not
/// parse or lowers to no Einsum.
pub fn einsum_of_spec(spec: &str) -> Result<Einsum, WorkloadError> {
    let g = crate::workload::spec::single_op_graph(spec)?;
    lower(&g)?
        .into_iter()
        .flat_map(|w| w.kernels)
        .find_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            _ => None,
        })
        .ok_or_else(|| WorkloadError::BadParam {
            key: "op".into(),
            message: format!("'{spec}' lowers to no Einsum"),
        })
}

pub fn lower(graph: &Graph) -> Result<Vec<LayerWork>, WorkloadError> {
    let mut total: u64 = 0;
    let mut work = Vec::new();
    for node in graph.topo_order()? {
        let kernels = lower_node(graph, node);
        let name = &graph.node(node).name;
        let too_big = |message: String| WorkloadError::TooBig {
            node: name.clone(),
            message,
        };
        for k in &kernels {
            let count = check_kernel(k).map_err(too_big)?;
            total = total
                .checked_add(count)
                .filter(|&t| t <= MAX_NETWORK_COUNT)
                .ok_or_else(|| {
                    too_big(format!(
                        "the network's MACs and bytes add up to more than 2^60 ({MAX_NETWORK_COUNT}); \
                         use a smaller batch, sequence or model"
                    ))
                })?;
        }
        work.push(LayerWork { node, kernels });
    }
    Ok(work)
}

/// Checks one kernel's counts against [`MAX_KERNEL_COUNT`]; returns its MACs plus bytes.
fn check_kernel(k: &Kernel) -> Result<u64, String> {
    let limit = |what: &str, v: Option<u64>| match v {
        Some(v) if v <= MAX_KERNEL_COUNT => Ok(v),
        _ => Err(format!(
            "kernel '{}' would count more than 2^56 ({MAX_KERNEL_COUNT}) {what}; use smaller sizes",
            match k {
                Kernel::Einsum(e) => &e.name,
                Kernel::Vector(v) => &v.name,
            }
        )),
    };
    let product = |v: &mut dyn Iterator<Item = usize>| {
        let mut acc = Some(1u64);
        for d in v {
            acc = acc.and_then(|a| a.checked_mul(d as u64));
        }
        acc
    };
    match k {
        Kernel::Einsum(e) => {
            if let Some(d) = e.dims.iter().find(|d| d.bound as u64 > u32::MAX as u64) {
                return Err(format!(
                    "kernel '{}': dim {} = {} exceeds 2^32-1, the largest loop bound the mapper handles",
                    e.name, d.name, d.bound
                ));
            }
            let macs = limit("MACs", product(&mut e.dims.iter().map(|d| d.bound)))?;
            let mut bytes = 0u64;
            for o in e.operands() {
                let elems = limit("operand elements", product(&mut o.shape.iter().copied()))?;
                bytes += elems * e.dtype.bytes();
            }
            Ok(macs + bytes)
        }
        Kernel::Vector(v) => {
            if v.ops_per_element == u32::MAX {
                return Err(format!("kernel '{}': too many ops per element", v.name));
            }
            limit("elements", Some(v.elements))?;
            limit("ops", v.elements.checked_mul(v.ops_per_element as u64))?;
            let r = limit("bytes", Some(v.bytes_read))?;
            let w = limit("bytes", Some(v.bytes_written))?;
            Ok(r + w)
        }
    }
}

/// `a * b`, saturating: counts that would overflow become u64::MAX, which
/// [`lower`]'s limit check then reports.
fn sat(a: usize, b: usize) -> u64 {
    (a as u64).saturating_mul(b as u64)
}

/// A per-element op count as u32, saturating (see [`sat`]).
fn ops_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The kernels of one node (inputs already shape-checked by the graph).
pub fn lower_node(graph: &Graph, idx: NodeIndex) -> Vec<Kernel> {
    let node = graph.node(idx);
    let ins = graph.input_tensors(idx);
    lower_op(&node.name, &node.op, &ins, &node.output)
}

/// Lowers one op given its input and output tensors.
pub fn lower_op(name: &str, op: &Op, ins: &[&TensorInfo], out: &TensorInfo) -> Vec<Kernel> {
    let dt = out.dtype;
    let b = dt.bytes();
    let vec_op = |suffix: &str, kind, elements: u64, ops: u32, read: u64, written: u64| {
        Kernel::Vector(VectorOp {
            name: format!("{name}{suffix}"),
            kind,
            elements,
            ops_per_element: ops,
            bytes_read: read,
            bytes_written: written,
        })
    };
    let in_bytes: u64 = ins.iter().map(|t| t.bytes()).sum();
    let elementwise = |suffix: &str, ops: u32| {
        vec_op(
            suffix,
            VectorKind::Elementwise,
            out.elements(),
            ops,
            in_bytes,
            out.bytes(),
        )
    };
    let bias = |channels_total: u64| {
        vec_op(
            ".bias",
            VectorKind::Elementwise,
            out.elements(),
            1,
            out.bytes() + channels_total * b,
            out.bytes(),
        )
    };
    match op {
        Op::Input { .. } | Op::Constant { .. } => vec![],
        Op::Conv2d(c) => {
            let mut k = vec![Kernel::Einsum(conv2d(name, c, ins[0], out))];
            if c.bias {
                k.push(bias(c.out_channels as u64));
            }
            k
        }
        Op::Conv1d(c) => {
            let mut k = vec![Kernel::Einsum(conv1d(name, c, ins[0], out))];
            if c.bias {
                k.push(bias(c.out_channels as u64));
            }
            k
        }
        Op::Linear {
            out_features,
            bias: has_bias,
            axis,
            ..
        } => {
            let ax = linear_axis(*axis, ins[0]).expect("checked by shape inference");
            let mut k = vec![Kernel::Einsum(linear(name, ins[0], ax, *out_features, dt))];
            if *has_bias {
                k.push(bias(*out_features as u64));
            }
            k
        }
        Op::MatMul { transpose_b } => vec![Kernel::Einsum(matmul(
            name,
            ins[0],
            ins[1],
            *transpose_b,
            dt,
        ))],
        Op::Attention(a) => attention(name, a, ins[0], ins[1], dt),
        Op::Norm { kind } => {
            let ops = match kind {
                NormKind::Batch => 2,
                NormKind::Layer => 8,
                NormKind::Rms => 5,
            };
            // Inference batchnorm is a per-channel affine map: element-wise.
            let vk = if *kind == NormKind::Batch {
                VectorKind::Elementwise
            } else {
                VectorKind::Reduction
            };
            vec![vec_op("", vk, out.elements(), ops, in_bytes, out.bytes())]
        }
        Op::Act { act } => vec![elementwise("", act.ops_per_element())],
        Op::Binary { .. } => vec![elementwise("", 1)],
        Op::Softmax { .. } => vec![vec_op(
            "",
            VectorKind::Reduction,
            out.elements(),
            5,
            in_bytes,
            out.bytes(),
        )],
        Op::Pool { kernel, .. } => vec![vec_op(
            "",
            VectorKind::Reduction,
            out.elements(),
            ops_u32(sat(kernel[0], kernel[1])),
            in_bytes,
            out.bytes(),
        )],
        Op::GlobalPool { .. } => {
            let x = ins[0];
            let window = ops_u32(x.elements() / out.elements());
            vec![vec_op(
                "",
                VectorKind::Reduction,
                out.elements(),
                window,
                in_bytes,
                out.bytes(),
            )]
        }
        Op::AddEmbedding { rows, .. } => {
            let table = sat(*rows, out.last()).saturating_mul(b);
            vec![vec_op(
                "",
                VectorKind::Elementwise,
                out.elements(),
                1,
                in_bytes + table.min(out.bytes()),
                out.bytes(),
            )]
        }
        Op::Slice { .. } => vec![vec_op(
            "",
            VectorKind::Move,
            out.elements(),
            1,
            out.bytes(),
            out.bytes(),
        )],
        Op::SqueezeExcite { reduced, act, gate } => {
            squeeze_excite(name, *reduced, *act, *gate, ins[0])
        }
        Op::Embedding { .. } => vec![vec_op(
            "",
            VectorKind::Gather,
            out.elements(),
            1,
            in_bytes + out.bytes(),
            out.bytes(),
        )],
        Op::Concat { .. } | Op::Transpose { .. } => vec![vec_op(
            "",
            VectorKind::Move,
            out.elements(),
            1,
            in_bytes,
            out.bytes(),
        )],
        // A reshape of a contiguous tensor is a view: no work.
        Op::Reshape { .. } => vec![],
        Op::Moe(m) => moe(name, m, ins[0]),
        Op::SelectiveScan { d_state } => {
            let x = ins[0];
            let (bl, di) = (x.shape[0] * x.shape[1], x.shape[2]);
            let state = sat(bl, di).saturating_mul(*d_state as u64);
            vec![
                // dA = exp(Δ·A); h = dA·h + Δ·B·x; y += C·h: 8 ops per state element.
                vec_op(
                    ".scan",
                    VectorKind::Scan,
                    state,
                    8,
                    in_bytes.saturating_add(sat(di, *d_state).saturating_mul(b)),
                    out.bytes(),
                ),
                // y += D·x
                vec_op(
                    ".skip",
                    VectorKind::Elementwise,
                    (bl * di) as u64,
                    2,
                    out.bytes() + x.bytes(),
                    out.bytes(),
                ),
            ]
        }
    }
}

fn dims(list: &[(&'static str, usize)]) -> Vec<Dim> {
    list.iter()
        .map(|&(name, bound)| Dim { name, bound })
        .collect()
}

fn aff(terms: &[(usize, i64)], offset: i64) -> Affine {
    Affine {
        terms: terms.to_vec(),
        offset,
    }
}

fn operand(role: OperandRole, shape: Vec<usize>, proj: Vec<Affine>, is_param: bool) -> Operand {
    Operand {
        role,
        shape,
        proj,
        is_param,
    }
}

/// Conv2d: `O[n, g·Kg+k, p, q] += I[n, g·Cg+c, p·sh + r·dh − pt, q·sw + s·dw − pl] · W[g·Kg+k, c, r, s]`.
fn conv2d(name: &str, c: &Conv2d, x: &TensorInfo, out: &TensorInfo) -> Einsum {
    let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (g, kg, cg) = (c.groups, c.out_channels / c.groups, cin / c.groups);
    let (p, q) = (out.shape[2], out.shape[3]);
    // N G K C P Q R S
    let d = dims(&[
        ("N", n),
        ("G", g),
        ("K", kg),
        ("C", cg),
        ("P", p),
        ("Q", q),
        ("R", c.kernel[0]),
        ("S", c.kernel[1]),
    ]);
    let (sh, sw, dh, dw) = (
        c.stride[0] as i64,
        c.stride[1] as i64,
        c.dilation[0] as i64,
        c.dilation[1] as i64,
    );
    let input = operand(
        OperandRole::Input,
        vec![n, cin, h, w],
        vec![
            Affine::dim(0),
            aff(&[(1, cg as i64), (3, 1)], 0),
            aff(&[(4, sh), (6, dh)], -(c.pad_begin[0] as i64)),
            aff(&[(5, sw), (7, dw)], -(c.pad_begin[1] as i64)),
        ],
        false,
    );
    let weight = operand(
        OperandRole::Weight,
        vec![c.out_channels, cg, c.kernel[0], c.kernel[1]],
        vec![
            aff(&[(1, kg as i64), (2, 1)], 0),
            Affine::dim(3),
            Affine::dim(6),
            Affine::dim(7),
        ],
        true,
    );
    let output = operand(
        OperandRole::Output,
        vec![n, c.out_channels, p, q],
        vec![
            Affine::dim(0),
            aff(&[(1, kg as i64), (2, 1)], 0),
            Affine::dim(4),
            Affine::dim(5),
        ],
        false,
    );
    Einsum {
        name: name.to_string(),
        dims: d,
        input,
        weight,
        output,
        dtype: out.dtype,
    }
}

/// Conv1d: `O[n, g·Kg+k, p] += I[n, g·Cg+c, p·stride + r·dil − pad_left] · W[g·Kg+k, c, r]`.
fn conv1d(name: &str, c: &Conv1d, x: &TensorInfo, out: &TensorInfo) -> Einsum {
    let (n, cin, l) = (x.shape[0], x.shape[1], x.shape[2]);
    let (g, kg, cg) = (c.groups, c.out_channels / c.groups, cin / c.groups);
    let p = out.shape[2];
    let (pad_left, _) = c.pads();
    // N G K C P R
    let d = dims(&[
        ("N", n),
        ("G", g),
        ("K", kg),
        ("C", cg),
        ("P", p),
        ("R", c.kernel),
    ]);
    Einsum {
        name: name.to_string(),
        dims: d,
        input: operand(
            OperandRole::Input,
            vec![n, cin, l],
            vec![
                Affine::dim(0),
                aff(&[(1, cg as i64), (3, 1)], 0),
                aff(
                    &[(4, c.stride as i64), (5, c.dilation as i64)],
                    -(pad_left as i64),
                ),
            ],
            false,
        ),
        weight: operand(
            OperandRole::Weight,
            vec![c.out_channels, cg, c.kernel],
            vec![
                aff(&[(1, kg as i64), (2, 1)], 0),
                Affine::dim(3),
                Affine::dim(5),
            ],
            true,
        ),
        output: operand(
            OperandRole::Output,
            vec![n, c.out_channels, p],
            vec![
                Affine::dim(0),
                aff(&[(1, kg as i64), (2, 1)], 0),
                Affine::dim(4),
            ],
            false,
        ),
        dtype: out.dtype,
    }
}

/// Linear on axis `ax` of x viewed as `[pre, C, post]`, weight `[K, C]` (PyTorch layout).
/// On the last axis (post = 1) this is the GEMM `O[p,k] += I[p,c]·W[k,c]` with P = tokens.
pub fn linear(name: &str, x: &TensorInfo, ax: usize, out_features: usize, dtype: DType) -> Einsum {
    let pre: usize = x.shape[..ax].iter().product();
    let cin = x.shape[ax];
    let post: usize = x.shape[ax + 1..].iter().product();
    if post == 1 {
        gemm(name, pre, out_features, cin, dtype)
    } else {
        // N(pre) P(post) K C
        let d = dims(&[("N", pre), ("P", post), ("K", out_features), ("C", cin)]);
        Einsum {
            name: name.to_string(),
            dims: d,
            input: operand(
                OperandRole::Input,
                vec![pre, cin, post],
                vec![Affine::dim(0), Affine::dim(3), Affine::dim(1)],
                false,
            ),
            weight: operand(
                OperandRole::Weight,
                vec![out_features, cin],
                vec![Affine::dim(2), Affine::dim(3)],
                true,
            ),
            output: operand(
                OperandRole::Output,
                vec![pre, out_features, post],
                vec![Affine::dim(0), Affine::dim(2), Affine::dim(1)],
                false,
            ),
            dtype,
        }
    }
}

/// `O[p,k] += I[p,c] · W[k,c]`: M = P rows, N = K columns, K = C reduction.
pub fn gemm(name: &str, m: usize, n: usize, k: usize, dtype: DType) -> Einsum {
    let d = dims(&[("P", m), ("K", n), ("C", k)]);
    Einsum {
        name: name.to_string(),
        dims: d,
        input: operand(
            OperandRole::Input,
            vec![m, k],
            vec![Affine::dim(0), Affine::dim(2)],
            false,
        ),
        weight: operand(
            OperandRole::Weight,
            vec![n, k],
            vec![Affine::dim(1), Affine::dim(2)],
            true,
        ),
        output: operand(
            OperandRole::Output,
            vec![m, n],
            vec![Affine::dim(0), Affine::dim(1)],
            false,
        ),
        dtype,
    }
}

/// Batched `[.., M, K] × [.., K, N]`; a 2-D B is shared across the batch.
fn matmul(name: &str, a: &TensorInfo, bt: &TensorInfo, transpose_b: bool, dtype: DType) -> Einsum {
    let ra = a.rank();
    let batch: usize = a.shape[..ra - 2].iter().product();
    let (m, k) = (a.shape[ra - 2], a.shape[ra - 1]);
    let rb = bt.rank();
    let n = if transpose_b {
        bt.shape[rb - 2]
    } else {
        bt.shape[rb - 1]
    };
    // N P K C
    let d = dims(&[("N", batch), ("P", m), ("K", n), ("C", k)]);
    let b_shared = rb == 2;
    let b_mat = if transpose_b {
        vec![Affine::dim(2), Affine::dim(3)]
    } else {
        vec![Affine::dim(3), Affine::dim(2)]
    };
    let b_mat_shape = if transpose_b { vec![n, k] } else { vec![k, n] };
    let (b_shape, b_proj) = if b_shared {
        (b_mat_shape, b_mat)
    } else {
        (
            [vec![batch], b_mat_shape].concat(),
            [vec![Affine::dim(0)], b_mat].concat(),
        )
    };
    Einsum {
        name: name.to_string(),
        dims: d,
        input: operand(
            OperandRole::Input,
            vec![batch, m, k],
            vec![Affine::dim(0), Affine::dim(1), Affine::dim(3)],
            false,
        ),
        weight: operand(OperandRole::Weight, b_shape, b_proj, false),
        output: operand(
            OperandRole::Output,
            vec![batch, m, n],
            vec![Affine::dim(0), Affine::dim(1), Affine::dim(2)],
            false,
        ),
        dtype,
    }
}

/// Total keys attended to: the cache plus the new K/V rows.
pub fn attention_keys(a: &Attention, k: &TensorInfo) -> usize {
    a.kv_cache + k.shape[1]
}

/// Scores `S[n, g·Hq+h, p, k] += Q[n, p, (g·Hq+h)·D + c] · K[n, k, g·D + c]`, a softmax over
/// keys, then context `O[n, p, (g·Hq+h)·D + k] += P[n, g·Hq+h, p, c] · V[n, c, g·D + k]`.
/// G = KV heads, H = query heads per KV head (grouped-query). A causal mask is applied in
/// the softmax; the products are the dense rectangle, as non-fused kernels compute it.
fn attention(
    name: &str,
    a: &Attention,
    q: &TensorInfo,
    k: &TensorInfo,
    dtype: DType,
) -> Vec<Kernel> {
    let (b, sq) = (q.shape[0], q.shape[1]);
    let keys = attention_keys(a, k);
    let (g, hq, hd) = (a.kv_heads, a.heads / a.kv_heads, a.head_dim);
    let (hq_i, hd_i) = (hq as i64, hd as i64);
    let heads = a.heads;
    // N G H P K C  (K = key position, C = head dim)
    let scores = Einsum {
        name: format!("{name}.scores"),
        dims: dims(&[
            ("N", b),
            ("G", g),
            ("H", hq),
            ("P", sq),
            ("K", keys),
            ("C", hd),
        ]),
        input: operand(
            OperandRole::Input,
            vec![b, sq, heads * hd],
            vec![
                Affine::dim(0),
                Affine::dim(3),
                aff(&[(1, hq_i * hd_i), (2, hd_i), (5, 1)], 0),
            ],
            false,
        ),
        weight: operand(
            OperandRole::Weight,
            vec![b, keys, g * hd],
            vec![Affine::dim(0), Affine::dim(4), aff(&[(1, hd_i), (5, 1)], 0)],
            false,
        ),
        output: operand(
            OperandRole::Output,
            vec![b, heads, sq, keys],
            vec![
                Affine::dim(0),
                aff(&[(1, hq_i), (2, 1)], 0),
                Affine::dim(3),
                Affine::dim(4),
            ],
            false,
        ),
        dtype,
    };
    let score_elems = sat(b, heads)
        .saturating_mul(sq as u64)
        .saturating_mul(keys as u64);
    let softmax = Kernel::Vector(VectorOp {
        name: format!("{name}.softmax"),
        kind: VectorKind::Reduction,
        elements: score_elems,
        ops_per_element: if a.causal { 6 } else { 5 },
        bytes_read: score_elems.saturating_mul(dtype.bytes()),
        bytes_written: score_elems.saturating_mul(dtype.bytes()),
    });
    // N G H P K C  (K = head dim, C = key position)
    let context = Einsum {
        name: format!("{name}.context"),
        dims: dims(&[
            ("N", b),
            ("G", g),
            ("H", hq),
            ("P", sq),
            ("K", hd),
            ("C", keys),
        ]),
        input: operand(
            OperandRole::Input,
            vec![b, heads, sq, keys],
            vec![
                Affine::dim(0),
                aff(&[(1, hq_i), (2, 1)], 0),
                Affine::dim(3),
                Affine::dim(5),
            ],
            false,
        ),
        weight: operand(
            OperandRole::Weight,
            vec![b, keys, g * hd],
            vec![Affine::dim(0), Affine::dim(5), aff(&[(1, hd_i), (4, 1)], 0)],
            false,
        ),
        output: operand(
            OperandRole::Output,
            vec![b, sq, heads * hd],
            vec![
                Affine::dim(0),
                Affine::dim(3),
                aff(&[(1, hq_i * hd_i), (2, hd_i), (4, 1)], 0),
            ],
            false,
        ),
        dtype,
    };
    vec![Kernel::Einsum(scores), softmax, Kernel::Einsum(context)]
}

fn squeeze_excite(
    name: &str,
    reduced: usize,
    act: crate::workload::Activation,
    gate: crate::workload::Activation,
    x: &TensorInfo,
) -> Vec<Kernel> {
    let dt = x.dtype;
    let b = dt.bytes();
    let (n, c, area) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3]);
    let v = |suffix: &str, kind, elements: u64, ops: u32, read: u64, written: u64| {
        Kernel::Vector(VectorOp {
            name: format!("{name}.{suffix}"),
            kind,
            elements,
            ops_per_element: ops,
            bytes_read: read,
            bytes_written: written,
        })
    };
    let nb = |e: u64| e.saturating_mul(b);
    let (nc, nr) = (sat(n, c), sat(n, reduced));
    vec![
        v(
            "pool",
            VectorKind::Reduction,
            nc,
            ops_u32(area as u64),
            x.bytes(),
            nb(nc),
        ),
        Kernel::Einsum(gemm(&format!("{name}.fc1"), n, reduced, c, dt)),
        v(
            "fc1.bias",
            VectorKind::Elementwise,
            nr,
            1,
            nb(nr.saturating_add(reduced as u64)),
            nb(nr),
        ),
        v(
            "act",
            VectorKind::Elementwise,
            nr,
            act.ops_per_element(),
            nb(nr),
            nb(nr),
        ),
        Kernel::Einsum(gemm(&format!("{name}.fc2"), n, c, reduced, dt)),
        v(
            "fc2.bias",
            VectorKind::Elementwise,
            nc,
            1,
            nb(nc.saturating_add(c as u64)),
            nb(nc),
        ),
        v(
            "gate",
            VectorKind::Elementwise,
            nc,
            gate.ops_per_element(),
            nb(nc),
            nb(nc),
        ),
        v(
            "scale",
            VectorKind::Elementwise,
            nc.saturating_mul(area as u64),
            1,
            x.bytes() + nb(nc),
            x.bytes(),
        ),
    ]
}

/// Router GEMM, top-k routing, per-expert FFN GEMMs sized by `Moe::expert_tokens`
/// (experts that receive no tokens do no work), then the weighted combine.
fn moe(name: &str, m: &Moe, x: &TensorInfo) -> Vec<Kernel> {
    let dt = x.dtype;
    let b = dt.bytes();
    let d = x.last();
    let tokens = x.shape[0].saturating_mul(x.shape[1]);
    let f = m.ffn_dim;
    let v = |suffix: String, kind, elements: u64, ops: u32, read: u64, written: u64| {
        Kernel::Vector(VectorOp {
            name: format!("{name}.{suffix}"),
            kind,
            elements,
            ops_per_element: ops,
            bytes_read: read.saturating_mul(b),
            bytes_written: written.saturating_mul(b),
        })
    };
    let mut k = vec![
        Kernel::Einsum(gemm(&format!("{name}.router"), tokens, m.experts, d, dt)),
        // softmax over experts then top-k selection: ~5 + k ops per logit.
        v(
            "topk".into(),
            VectorKind::Reduction,
            sat(tokens, m.experts),
            ops_u32(5 + m.top_k as u64),
            sat(tokens, m.experts),
            sat(tokens, m.top_k),
        ),
    ];
    let counts = m.expert_tokens(tokens);
    let routed = counts.iter().fold(0usize, |a, &c| a.saturating_add(c));
    k.push(v(
        "dispatch".into(),
        VectorKind::Gather,
        sat(routed, d),
        1,
        sat(routed, d),
        sat(routed, d),
    ));
    for (e, &t) in counts.iter().enumerate() {
        if t == 0 {
            continue;
        }
        if m.gated {
            k.push(Kernel::Einsum(gemm(
                &format!("{name}.e{e}.gate"),
                t,
                f,
                d,
                dt,
            )));
        }
        k.push(Kernel::Einsum(gemm(
            &format!("{name}.e{e}.up"),
            t,
            f,
            d,
            dt,
        )));
        let act_ops = m.activation.ops_per_element() + u32::from(m.gated);
        let act_read = sat(t, f).saturating_mul(if m.gated { 2 } else { 1 });
        k.push(v(
            format!("e{e}.act"),
            VectorKind::Elementwise,
            sat(t, f),
            act_ops,
            act_read,
            sat(t, f),
        ));
        k.push(Kernel::Einsum(gemm(
            &format!("{name}.e{e}.down"),
            t,
            d,
            f,
            dt,
        )));
    }
    // out[token] = Σ gate_weight · expert_out: one multiply-add per routed element.
    k.push(v(
        "combine".into(),
        VectorKind::Elementwise,
        sat(routed, d),
        2,
        sat(routed, d).saturating_add(routed as u64),
        sat(tokens, d),
    ));
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::single_op_graph;

    fn macs(spec: &str) -> u64 {
        let g = single_op_graph(spec).unwrap();
        lower(&g).unwrap().iter().map(LayerWork::macs).sum()
    }

    #[test]
    fn conv_macs_are_the_textbook_product() {
        // ResNet-18 conv2_x 3x3: 56*56*64*64*9 = 115,605,504 (also Timeloop's resnet18_01 MAC count).
        assert_eq!(
            macs("conv2d n=1 c=64 h=56 w=56 k=64 r=3 s=3 stride=1 pad=1"),
            115_605_504
        );
        // Depthwise: one channel per group.
        assert_eq!(
            macs("dwconv2d n=1 c=32 h=112 w=112 kernel=3 pad=1"),
            112 * 112 * 32 * 9
        );
    }

    #[test]
    fn attention_gqa_and_decode() {
        // Scores + context: 2 * b * heads * sq * keys * head_dim.
        assert_eq!(
            macs("attention b=1 heads=12 seq=128 head_dim=64"),
            2 * 12 * 128 * 128 * 64
        );
        // Decode with a 1023-long cache: one query, 1024 keys, GQA with 8 KV heads.
        assert_eq!(
            macs("attention b=1 heads=32 kv_heads=8 seq=1 head_dim=128 kv_cache=1023"),
            2 * 32 * 1024 * 128
        );
    }

    #[test]
    fn formula_shows_stride_and_padding() {
        let g = single_op_graph("conv2d n=1 c=3 h=224 w=224 k=64 r=7 s=7 stride=2 pad=3").unwrap();
        let w = lower(&g).unwrap();
        let e = w[1].einsums().next().unwrap();
        assert!(e.formula().contains("2p+r-3"), "{}", e.formula());
    }
}
