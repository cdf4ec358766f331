//! The operator set: what each op means, its output shape and its parameter count.
//!
//! This is the only vocabulary of op kinds in coex besides `lower`, which turns
//! each op into Einsums and VectorOps. Shape inference lives here so that every
//! way of building a graph (families, layer files, ONNX, one-line specs) gets the
//! same checks and the same messages.

use super::tensor::{shape_str, DType, TensorInfo};
use serde::Serialize;

/// Element-wise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Relu6,
    Gelu,
    Silu,
    Hardswish,
    Hardsigmoid,
    Sigmoid,
    Tanh,
    Softplus,
}

impl Activation {
    pub const ALL: [Activation; 9] = [
        Activation::Relu,
        Activation::Relu6,
        Activation::Gelu,
        Activation::Silu,
        Activation::Hardswish,
        Activation::Hardsigmoid,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softplus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
            Activation::Hardswish => "hardswish",
            Activation::Hardsigmoid => "hardsigmoid",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softplus => "softplus",
        }
    }

    pub fn parse(s: &str) -> Option<Activation> {
        let s = s.to_ascii_lowercase();
        let s = if s == "swish" { "silu".to_string() } else { s };
        Activation::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Arithmetic operations per element, counted as a vector unit would issue them
    /// (a compare for relu, a polynomial/exp chain for the transcendental ones).
    pub fn ops_per_element(self) -> u32 {
        match self {
            Activation::Relu => 1,
            Activation::Relu6 | Activation::Hardsigmoid => 2,
            Activation::Hardswish => 4,
            Activation::Sigmoid | Activation::Silu | Activation::Softplus | Activation::Tanh => 4,
            Activation::Gelu => 8,
        }
    }

    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::Hardsigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Softplus => {
                if x > 20.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }
}

/// Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7), enough for the exact-GELU reference.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// Per-channel (axis 1) affine with frozen statistics, as at inference.
    Batch,
    /// Over the last axis, with scale and bias.
    Layer,
    /// Over the last axis, scale only.
    Rms,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryKind {
    Add,
    Mul,
}

/// 2-D convolution on NCHW. Depthwise is `groups == in_channels == out_channels`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conv2d {
    pub out_channels: usize,
    /// (R, S): kernel height, width.
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero padding before (top, left).
    pub pad_begin: [usize; 2],
    /// Zero padding after (bottom, right).
    pub pad_end: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
}

impl Conv2d {
    /// A square-kernel convolution with symmetric padding and no bias.
    pub fn new(out_channels: usize, kernel: usize, stride: usize, pad: usize) -> Self {
        Conv2d {
            out_channels,
            kernel: [kernel, kernel],
            stride: [stride, stride],
            pad_begin: [pad, pad],
            pad_end: [pad, pad],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        }
    }

    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    pub fn is_depthwise(&self, in_channels: usize) -> bool {
        self.groups > 1 && self.groups == in_channels && self.groups == self.out_channels
    }
}

/// 1-D convolution on `[B, C, L]`. `causal` pads `(R-1)*dilation` on the left only, so
/// the output keeps length L and position t sees only inputs ≤ t (Mamba's short conv).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conv1d {
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub dilation: usize,
    pub groups: usize,
    pub causal: bool,
    pub bias: bool,
}

impl Conv1d {
    pub fn pads(&self) -> (usize, usize) {
        if self.causal {
            ((self.kernel - 1) * self.dilation, 0)
        } else {
            (self.pad, self.pad)
        }
    }
}

/// Scaled dot-product attention over already-projected Q, K, V.
///
/// Inputs: `q [B, Sq, heads*head_dim]`, `k, v [B, Skv, kv_heads*head_dim]`. With a KV
/// cache, `kv_cache` earlier positions are read from the cache as well, so the keys
/// attended to number `kv_cache + Skv`; single-token decode is `Sq = Skv = 1`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attention {
    pub heads: usize,
    /// Grouped-query attention: `heads / kv_heads` query heads share one K/V head.
    pub kv_heads: usize,
    pub head_dim: usize,
    pub causal: bool,
    pub kv_cache: usize,
}

/// How a router spreads tokens over experts. The routing is a workload parameter
/// (the statistics of a trained router), not something coex infers from weights.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Every expert receives the same share (±1 token).
    Balanced,
    /// Expert e receives a share proportional to 1/(e+1)^alpha (Zipf-like skew).
    Zipf(f64),
}

/// Mixture-of-experts FFN on `[B, S, D]`: router linear, top-k, per-expert FFN, combine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Moe {
    pub experts: usize,
    pub top_k: usize,
    pub ffn_dim: usize,
    /// SwiGLU-style expert (gate, up, down projections) instead of up/down.
    pub gated: bool,
    pub activation: Activation,
    /// Expert capacity = ceil(factor * tokens * top_k / experts); `None` = no token dropping.
    pub capacity_factor: Option<f64>,
    pub routing: Routing,
}

impl Moe {
    /// Tokens processed by each expert for `tokens` input tokens.
    ///
    /// The `tokens * top_k` assignments are split by the routing shares with
    /// largest-remainder rounding (so they sum exactly), then clipped to capacity:
    /// assignments over capacity are dropped, as in Switch/GShard.
    pub fn expert_tokens(&self, tokens: usize) -> Vec<usize> {
        let e = self.experts;
        let assignments = tokens * self.top_k;
        let weights: Vec<f64> = match self.routing {
            Routing::Balanced => vec![1.0; e],
            Routing::Zipf(alpha) => (0..e).map(|i| 1.0 / ((i + 1) as f64).powf(alpha)).collect(),
        };
        let total: f64 = weights.iter().sum();
        let exact: Vec<f64> = weights
            .iter()
            .map(|w| w / total * assignments as f64)
            .collect();
        let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
        let mut left = assignments.saturating_sub(counts.iter().sum::<usize>());
        let mut order: Vec<usize> = (0..e).collect();
        // Stable: ties go to the lower expert index, so the split is deterministic.
        order.sort_by(|&a, &b| {
            let fa = exact[a] - exact[a].floor();
            let fb = exact[b] - exact[b].floor();
            fb.partial_cmp(&fa).unwrap_or(std::cmp::Ordering::Equal)
        });
        for &i in order.iter() {
            if left == 0 {
                break;
            }
            counts[i] += 1;
            left -= 1;
        }
        // No expert can take a token twice.
        let cap_tokens = tokens;
        let capacity = match self.capacity_factor {
            Some(f) => ((f * assignments as f64 / e as f64).ceil() as usize).min(cap_tokens),
            None => cap_tokens,
        };
        counts.iter().map(|&c| c.min(capacity)).collect()
    }

    /// Router plus expert weights; saturates at u64::MAX.
    pub fn params(&self, d_model: usize) -> u64 {
        self.checked_params(d_model).unwrap_or(u64::MAX)
    }

    /// [`Moe::params`], or None when the count overflows a u64.
    pub fn checked_params(&self, d_model: usize) -> Option<u64> {
        let matrices: u64 = if self.gated { 3 } else { 2 };
        let per_expert = matrices
            .checked_mul(d_model as u64)?
            .checked_mul(self.ffn_dim as u64)?;
        (self.experts as u64).checked_mul(per_expert.checked_add(d_model as u64)?)
    }
}

/// One operator. Inputs come from graph edges, in port order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// A graph input with its full shape (batch included).
    Input {
        shape: Vec<usize>,
    },
    /// A tensor stored with the model and read as data by another op (an imported ONNX
    /// initializer that is not a conv/linear weight or bias: a layer scale, a position
    /// table, an attention scale). `learned` tensors count as parameters; scalar
    /// hyperparameters (a scale, an epsilon) do not.
    Constant {
        shape: Vec<usize>,
        learned: bool,
    },
    Conv2d(Conv2d),
    Conv1d(Conv1d),
    /// Fully connected layer on one axis (default: the last). Token mixing in MLP-Mixer
    /// is a linear on the token axis of `[B, S, C]`.
    Linear {
        out_features: usize,
        bias: bool,
        axis: Option<usize>,
        /// The weight is an embedding table reused (tied LM heads): it holds no params.
        tied: bool,
    },
    /// Batched matrix product of two tensors `[.., M, K] x [.., K, N]` (B may be rank 2 and
    /// is then shared across the batch). `transpose_b` reads B as `[.., N, K]`.
    MatMul {
        transpose_b: bool,
    },
    Attention(Attention),
    Norm {
        kind: NormKind,
    },
    Act {
        act: Activation,
    },
    Binary {
        op: BinaryKind,
    },
    Softmax {
        axis: usize,
    },
    Pool {
        pool: PoolKind,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    },
    /// NCHW → `[N, C, 1, 1]`, or over the tokens of `[B, S, D]` → `[B, 1, D]`.
    GlobalPool {
        pool: PoolKind,
    },
    /// Adds a learned row per position (positional / token-type tables), optionally
    /// prepending a learned class token: `[B, S, D]` → `[B, S + cls, D]`. Position i uses
    /// row i; a table with fewer rows than positions (token types) uses row 0.
    AddEmbedding {
        rows: usize,
        cls_token: bool,
    },
    /// Keeps `start..end` of one axis (class-token pick, ONNX Slice).
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// Squeeze-excite on NCHW: global pool, FC(C→reduced), act, FC(reduced→C), gate, scale.
    SqueezeExcite {
        reduced: usize,
        act: Activation,
        gate: Activation,
    },
    /// Token-id lookup: `[B, S]` ids → `[B, S, dim]`.
    Embedding {
        vocab: usize,
        dim: usize,
    },
    Concat {
        axis: usize,
    },
    /// Target shape; `0` copies the input's extent at that axis, one `-1` is inferred.
    Reshape {
        shape: Vec<i64>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Moe(Moe),
    /// Mamba's selective scan. Inputs: x `[B, L, Di]`, delta `[B, L, Di]`, B `[B, L, N]`,
    /// C `[B, L, N]`; holds A `[Di, N]` and D `[Di]`.
    SelectiveScan {
        d_state: usize,
    },
}

impl Op {
    /// Short kind name used in tables and specs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Constant { .. } => "constant",
            Op::Conv2d(c) if c.groups > 1 && c.groups == c.out_channels => "dwconv2d",
            Op::Conv2d(_) => "conv2d",
            Op::Conv1d(_) => "conv1d",
            Op::Linear { .. } => "linear",
            Op::MatMul { .. } => "matmul",
            Op::Attention(_) => "attention",
            Op::Norm {
                kind: NormKind::Batch,
            } => "batchnorm",
            Op::Norm {
                kind: NormKind::Layer,
            } => "layernorm",
            Op::Norm {
                kind: NormKind::Rms,
            } => "rmsnorm",
            Op::Act { act } => act.name(),
            Op::Binary {
                op: BinaryKind::Add,
            } => "add",
            Op::Binary {
                op: BinaryKind::Mul,
            } => "mul",
            Op::Softmax { .. } => "softmax",
            Op::Pool {
                pool: PoolKind::Max,
                ..
            } => "maxpool",
            Op::Pool {
                pool: PoolKind::Avg,
                ..
            } => "avgpool",
            Op::GlobalPool { .. } => "globalpool",
            Op::AddEmbedding { .. } => "add_embedding",
            Op::Slice { .. } => "slice",
            Op::SqueezeExcite { .. } => "squeeze_excite",
            Op::Embedding { .. } => "embedding",
            Op::Concat { .. } => "concat",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Moe(_) => "moe",
            Op::SelectiveScan { .. } => "selective_scan",
        }
    }

    /// Number of inputs the op takes (`None` = variadic, at least one).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Input { .. } | Op::Constant { .. } => Some(0),
            Op::MatMul { .. } | Op::Binary { .. } => Some(2),
            Op::Attention(_) => Some(3),
            Op::SelectiveScan { .. } => Some(4),
            Op::Concat { .. } => None,
            _ => Some(1),
        }
    }

    /// Output tensor from input tensors; the message says what does not fit.
    pub fn infer(&self, inputs: &[&TensorInfo]) -> Result<TensorInfo, String> {
        if let Some(n) = self.arity() {
            if inputs.len() != n {
                return Err(format!(
                    "{} takes {n} input(s), got {}",
                    self.kind_name(),
                    inputs.len()
                ));
            }
        } else if inputs.is_empty() {
            return Err(format!("{} needs at least one input", self.kind_name()));
        }
        let dtype = inputs.first().map(|t| t.dtype).unwrap_or(DType::Fp32);
        let x = inputs.first().copied();
        let out = |shape: Vec<usize>| Ok(TensorInfo::new(shape, dtype));
        match self {
            Op::Input { shape } | Op::Constant { shape, .. } => {
                check_positive("shape", shape)?;
                out(shape.clone())
            }
            Op::Conv2d(c) => {
                let x = x.unwrap();
                want_rank(x, 4, "conv2d input [N, C, H, W]")?;
                let (n, ch, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
                check_positive_named(&[
                    ("out_channels", c.out_channels),
                    ("kernel r", c.kernel[0]),
                    ("kernel s", c.kernel[1]),
                    ("stride", c.stride[0].min(c.stride[1])),
                    ("dilation", c.dilation[0].min(c.dilation[1])),
                    ("groups", c.groups),
                ])?;
                if ch % c.groups != 0 || c.out_channels % c.groups != 0 {
                    return Err(format!(
                        "groups={} must divide input channels {ch} and output channels {}",
                        c.groups, c.out_channels
                    ));
                }
                let oh = conv_out(
                    h,
                    c.kernel[0],
                    c.stride[0],
                    c.pad_begin[0],
                    c.pad_end[0],
                    c.dilation[0],
                )?;
                let ow = conv_out(
                    w,
                    c.kernel[1],
                    c.stride[1],
                    c.pad_begin[1],
                    c.pad_end[1],
                    c.dilation[1],
                )?;
                out(vec![n, c.out_channels, oh, ow])
            }
            Op::Conv1d(c) => {
                let x = x.unwrap();
                want_rank(x, 3, "conv1d input [B, C, L]")?;
                check_positive_named(&[
                    ("out_channels", c.out_channels),
                    ("kernel", c.kernel),
                    ("stride", c.stride),
                    ("dilation", c.dilation),
                    ("groups", c.groups),
                ])?;
                if x.shape[1] % c.groups != 0 || c.out_channels % c.groups != 0 {
                    return Err(format!(
                        "groups={} must divide input channels {} and output channels {}",
                        c.groups, x.shape[1], c.out_channels
                    ));
                }
                let (pb, pe) = c.pads();
                let l = conv_out(x.shape[2], c.kernel, c.stride, pb, pe, c.dilation)?;
                out(vec![x.shape[0], c.out_channels, l])
            }
            Op::Linear {
                out_features, axis, ..
            } => {
                let x = x.unwrap();
                check_positive_named(&[("out_features", *out_features)])?;
                let ax = linear_axis(*axis, x)?;
                let mut s = x.shape.clone();
                s[ax] = *out_features;
                out(s)
            }
            Op::MatMul { transpose_b } => {
                let (a, b) = (inputs[0], inputs[1]);
                if a.rank() < 2 || b.rank() < 2 {
                    return Err(format!(
                        "matmul needs rank ≥ 2 operands, got {} and {}",
                        shape_str(&a.shape),
                        shape_str(&b.shape)
                    ));
                }
                let (m, k) = (a.shape[a.rank() - 2], a.shape[a.rank() - 1]);
                let (kb, n) = if *transpose_b {
                    (b.shape[b.rank() - 1], b.shape[b.rank() - 2])
                } else {
                    (b.shape[b.rank() - 2], b.shape[b.rank() - 1])
                };
                if k != kb {
                    return Err(format!(
                        "matmul inner dimensions differ: A is {} (K={k}), B is {} (K={kb})",
                        shape_str(&a.shape),
                        shape_str(&b.shape)
                    ));
                }
                let a_batch = &a.shape[..a.rank() - 2];
                let b_batch = &b.shape[..b.rank() - 2];
                if !b_batch.is_empty() && a_batch != b_batch {
                    return Err(format!(
                        "matmul batch dimensions differ: {} vs {} (B must match A's batch or be 2-D)",
                        shape_str(a_batch),
                        shape_str(b_batch)
                    ));
                }
                let mut s = a_batch.to_vec();
                s.push(m);
                s.push(n);
                out(s)
            }
            Op::Attention(at) => {
                let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
                check_positive_named(&[
                    ("heads", at.heads),
                    ("kv_heads", at.kv_heads),
                    ("head_dim", at.head_dim),
                ])?;
                if at.heads % at.kv_heads != 0 {
                    return Err(format!(
                        "heads={} must be a multiple of kv_heads={}",
                        at.heads, at.kv_heads
                    ));
                }
                for (name, t, width) in [
                    ("q", q, at.heads * at.head_dim),
                    ("k", k, at.kv_heads * at.head_dim),
                    ("v", v, at.kv_heads * at.head_dim),
                ] {
                    if t.rank() != 3 || t.shape[2] != width {
                        return Err(format!(
                            "attention {name} must be [B, S, {width}] (heads x head_dim), got {}",
                            shape_str(&t.shape)
                        ));
                    }
                }
                if k.shape[..2] != v.shape[..2] || q.shape[0] != k.shape[0] {
                    return Err(format!(
                        "attention q/k/v batch or length disagree: q {}, k {}, v {}",
                        shape_str(&q.shape),
                        shape_str(&k.shape),
                        shape_str(&v.shape)
                    ));
                }
                out(q.shape.clone())
            }
            Op::Norm { kind } => {
                let x = x.unwrap();
                if *kind == NormKind::Batch && x.rank() < 2 {
                    return Err("batchnorm needs a channel axis (rank ≥ 2)".into());
                }
                out(x.shape.clone())
            }
            Op::Act { .. } => out(x.unwrap().shape.clone()),
            Op::Binary { .. } => {
                broadcast(&inputs[0].shape, &inputs[1].shape).map(|s| TensorInfo::new(s, dtype))
            }
            Op::Softmax { axis } => {
                let x = x.unwrap();
                if *axis >= x.rank() {
                    return Err(format!(
                        "softmax axis {axis} out of range for {}",
                        shape_str(&x.shape)
                    ));
                }
                out(x.shape.clone())
            }
            Op::Pool {
                kernel,
                stride,
                pad,
                ..
            } => {
                let x = x.unwrap();
                want_rank(x, 4, "pool input [N, C, H, W]")?;
                check_positive_named(&[
                    ("kernel", kernel[0].min(kernel[1])),
                    ("stride", stride[0].min(stride[1])),
                ])?;
                let oh = conv_out(x.shape[2], kernel[0], stride[0], pad[0], pad[0], 1)?;
                let ow = conv_out(x.shape[3], kernel[1], stride[1], pad[1], pad[1], 1)?;
                out(vec![x.shape[0], x.shape[1], oh, ow])
            }
            Op::GlobalPool { .. } => {
                let x = x.unwrap();
                match x.rank() {
                    4 => out(vec![x.shape[0], x.shape[1], 1, 1]),
                    3 => out(vec![x.shape[0], 1, x.shape[2]]),
                    _ => Err(format!(
                        "global pool wants [N, C, H, W] or [B, S, D], got {}",
                        shape_str(&x.shape)
                    )),
                }
            }
            Op::AddEmbedding { rows, cls_token } => {
                let x = x.unwrap();
                want_rank(x, 3, "embedding-add input [B, S, D]")?;
                check_positive_named(&[("rows", *rows)])?;
                let mut s = x.shape.clone();
                s[1] += usize::from(*cls_token);
                out(s)
            }
            Op::Slice { axis, start, end } => {
                let x = x.unwrap();
                if *axis >= x.rank() || start >= end || *end > x.shape[*axis] {
                    return Err(format!(
                        "slice {start}..{end} of axis {axis} does not fit {}",
                        shape_str(&x.shape)
                    ));
                }
                let mut s = x.shape.clone();
                s[*axis] = end - start;
                out(s)
            }
            Op::SqueezeExcite { reduced, .. } => {
                let x = x.unwrap();
                want_rank(x, 4, "squeeze-excite input [N, C, H, W]")?;
                check_positive_named(&[("reduced", *reduced)])?;
                out(x.shape.clone())
            }
            Op::Embedding { vocab, dim } => {
                let x = x.unwrap();
                check_positive_named(&[("vocab", *vocab), ("dim", *dim)])?;
                let mut s = x.shape.clone();
                s.push(*dim);
                out(s)
            }
            Op::Concat { axis } => {
                let first = inputs[0];
                if *axis >= first.rank() {
                    return Err(format!(
                        "concat axis {axis} out of range for {}",
                        shape_str(&first.shape)
                    ));
                }
                let mut s = first.shape.clone();
                for t in &inputs[1..] {
                    let same_rest = t.rank() == first.rank()
                        && (0..t.rank()).all(|i| i == *axis || t.shape[i] == first.shape[i]);
                    if !same_rest {
                        return Err(format!(
                            "concat on axis {axis}: {} does not match {} on the other axes",
                            shape_str(&t.shape),
                            shape_str(&first.shape)
                        ));
                    }
                    s[*axis] += t.shape[*axis];
                }
                out(s)
            }
            Op::Reshape { shape } => {
                reshape(&x.unwrap().shape, shape).map(|s| TensorInfo::new(s, dtype))
            }
            Op::Transpose { perm } => {
                let x = x.unwrap();
                let mut seen = perm.clone();
                seen.sort_unstable();
                if seen != (0..x.rank()).collect::<Vec<_>>() {
                    return Err(format!(
                        "transpose perm {perm:?} is not a permutation of the {} axes of {}",
                        x.rank(),
                        shape_str(&x.shape)
                    ));
                }
                out(perm.iter().map(|&p| x.shape[p]).collect())
            }
            Op::Moe(m) => {
                let x = x.unwrap();
                want_rank(x, 3, "moe input [B, S, D]")?;
                check_positive_named(&[
                    ("experts", m.experts),
                    ("top_k", m.top_k),
                    ("ffn_dim", m.ffn_dim),
                ])?;
                if m.experts > MAX_EXPERTS {
                    return Err(format!(
                        "experts={} is more than {MAX_EXPERTS}; use fewer experts",
                        m.experts
                    ));
                }
                if m.top_k > m.experts {
                    return Err(format!("top_k={} exceeds experts={}", m.top_k, m.experts));
                }
                if let Some(f) = m.capacity_factor {
                    if f.is_nan() || f <= 0.0 {
                        return Err(format!("capacity_factor must be > 0, got {f}"));
                    }
                }
                out(x.shape.clone())
            }
            Op::SelectiveScan { d_state } => {
                check_positive_named(&[("d_state", *d_state)])?;
                let (xs, dt, b, c) = (inputs[0], inputs[1], inputs[2], inputs[3]);
                want_rank(xs, 3, "selective scan x [B, L, Di]")?;
                let bl = &xs.shape[..2];
                let ok = dt.shape == xs.shape
                    && b.rank() == 3
                    && c.rank() == 3
                    && &b.shape[..2] == bl
                    && &c.shape[..2] == bl
                    && b.shape[2] == *d_state
                    && c.shape[2] == *d_state;
                if !ok {
                    return Err(format!(
                        "selective scan wants x, delta [B, L, Di] and B, C [B, L, {d_state}]; got x {}, delta {}, B {}, C {}",
                        shape_str(&xs.shape),
                        shape_str(&dt.shape),
                        shape_str(&b.shape),
                        shape_str(&c.shape)
                    ));
                }
                out(xs.shape.clone())
            }
        }
    }

    /// Trainable parameters held by the op (weights, biases, norm scales), given input
    /// shapes; saturates at u64::MAX (graphs refuse ops whose count overflows).
    pub fn params(&self, inputs: &[&TensorInfo]) -> u64 {
        self.checked_params(inputs).unwrap_or(u64::MAX)
    }

    /// [`Op::params`], or None when the count overflows a u64.
    pub fn checked_params(&self, inputs: &[&TensorInfo]) -> Option<u64> {
        let x = inputs.first().copied();
        let mul = |v: &[usize]| v.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        match self {
            Op::Conv2d(c) => {
                let cin = x.map(|t| t.shape[1]).unwrap_or(0);
                let w = mul(&[
                    c.out_channels,
                    cin / c.groups.max(1),
                    c.kernel[0],
                    c.kernel[1],
                ])?;
                w.checked_add(if c.bias { c.out_channels as u64 } else { 0 })
            }
            Op::Conv1d(c) => {
                let cin = x.map(|t| t.shape[1]).unwrap_or(0);
                let w = mul(&[c.out_channels, cin / c.groups.max(1), c.kernel])?;
                w.checked_add(if c.bias { c.out_channels as u64 } else { 0 })
            }
            Op::Linear { tied: true, .. } => Some(0),
            Op::Linear {
                out_features,
                bias,
                axis,
                ..
            } => {
                let Some(x) = x else { return Some(0) };
                let fan_in = linear_axis(*axis, x).map(|a| x.shape[a]).unwrap_or(0);
                mul(&[*out_features, fan_in])?.checked_add(if *bias {
                    *out_features as u64
                } else {
                    0
                })
            }
            Op::Norm { kind } => {
                let Some(x) = x else { return Some(0) };
                Some(match kind {
                    NormKind::Batch => 2 * x.shape.get(1).copied().unwrap_or(0) as u64,
                    NormKind::Layer => 2 * x.last() as u64,
                    NormKind::Rms => x.last() as u64,
                })
            }
            Op::SqueezeExcite { reduced, .. } => {
                let c = x.and_then(|t| t.shape.get(1).copied()).unwrap_or(0);
                mul(&[2, c, *reduced])?.checked_add((*reduced + c) as u64)
            }
            Op::Embedding { vocab, dim } => mul(&[*vocab, *dim]),
            Op::Constant {
                shape,
                learned: true,
            } => mul(shape),
            Op::AddEmbedding { rows, cls_token } => {
                let d = x.map(|t| t.last()).unwrap_or(0);
                mul(&[rows.checked_add(usize::from(*cls_token))?, d])
            }
            Op::Moe(m) => m.checked_params(x.map(|t| t.last()).unwrap_or(0)),
            Op::SelectiveScan { d_state } => {
                let di = x.map(|t| t.last()).unwrap_or(0);
                mul(&[di, *d_state])?.checked_add(di as u64)
            }
            _ => Some(0),
        }
    }
}

/// The most experts a mixture-of-experts layer may have (each is lowered to its own GEMMs).
pub const MAX_EXPERTS: usize = 1 << 16;

/// Resolves a linear's axis (None = last) and checks it exists.
pub fn linear_axis(axis: Option<usize>, x: &TensorInfo) -> Result<usize, String> {
    if x.rank() == 0 {
        return Err("linear needs an input of rank ≥ 1".into());
    }
    let ax = axis.unwrap_or(x.rank() - 1);
    if ax >= x.rank() {
        return Err(format!(
            "linear axis {ax} out of range for {}",
            shape_str(&x.shape)
        ));
    }
    Ok(ax)
}

/// Output extent of a convolution or pooling window along one axis.
pub fn conv_out(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
) -> Result<usize, String> {
    let too_big = || {
        format!("window or padding too large (kernel {kernel}, dilation {dilation}, pad {pad_begin}+{pad_end})")
    };
    let span = dilation
        .checked_mul(kernel.saturating_sub(1))
        .and_then(|x| x.checked_add(1))
        .ok_or_else(too_big)?;
    let padded = input
        .checked_add(pad_begin)
        .and_then(|x| x.checked_add(pad_end))
        .ok_or_else(too_big)?;
    if padded < span {
        return Err(format!(
            "window {span} (kernel {kernel}, dilation {dilation}) is larger than the padded input {padded}"
        ));
    }
    Ok((padded - span) / stride + 1)
}

fn want_rank(t: &TensorInfo, rank: usize, what: &str) -> Result<(), String> {
    if t.rank() != rank {
        return Err(format!(
            "expected {what}, got shape {}",
            shape_str(&t.shape)
        ));
    }
    Ok(())
}

fn check_positive(what: &str, shape: &[usize]) -> Result<(), String> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(format!(
            "{what} {} has a zero or missing dimension; every dimension must be ≥ 1",
            shape_str(shape)
        ));
    }
    Ok(())
}

fn check_positive_named(values: &[(&str, usize)]) -> Result<(), String> {
    for (name, v) in values {
        if *v == 0 {
            return Err(format!("{name} must be ≥ 1, got 0"));
        }
    }
    Ok(())
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let mut s = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        s[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(format!(
                    "shapes {} and {} do not broadcast (axis {i}: {da} vs {db})",
                    shape_str(a),
                    shape_str(b)
                ))
            }
        };
    }
    Ok(s)
}

fn reshape(input: &[usize], target: &[i64]) -> Result<Vec<usize>, String> {
    let product = |v: &[usize]| v.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let total = product(input).ok_or("reshape: input too large")?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            0 => out.push(*input.get(i).ok_or_else(|| {
                format!(
                    "reshape: 0 at axis {i} copies an input axis that {} lacks",
                    shape_str(input)
                )
            })?),
            t if t > 0 => out.push(t as usize),
            _ => {
                return Err(format!(
                    "reshape target {target:?}: only one -1 and no negative sizes allowed"
                ))
            }
        }
    }
    let known = product(&out).ok_or_else(|| format!("reshape target {target:?} is too large"))?;
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!(
                "reshape: cannot infer -1 in {target:?} from {}",
                shape_str(input)
            ));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "reshape: {} has {total} elements, target {target:?} has {known}",
            shape_str(input)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> TensorInfo {
        TensorInfo::new(shape.to_vec(), DType::Fp16)
    }

    #[test]
    fn conv_output_matches_pytorch_formula() {
        // PyTorch: floor((H + 2p - d(k-1) - 1)/s) + 1; ResNet stem 224 -> 112.
        let c = Conv2d::new(64, 7, 2, 3);
        let o = Op::Conv2d(c).infer(&[&t(&[1, 3, 224, 224])]).unwrap();
        assert_eq!(o.shape, vec![1, 64, 112, 112]);
    }

    #[test]
    fn moe_counts_sum_and_respect_capacity() {
        let m = Moe {
            experts: 8,
            top_k: 2,
            ffn_dim: 16,
            gated: true,
            activation: Activation::Silu,
            capacity_factor: Some(1.25),
            routing: Routing::Zipf(1.2),
        };
        let c = m.expert_tokens(100);
        let cap = (1.25f64 * 200.0 / 8.0).ceil() as usize;
        assert!(c.iter().all(|&x| x <= cap));
        assert!(c[0] == cap, "most popular expert is clipped: {c:?}");
        let unclipped = Moe {
            capacity_factor: None,
            ..m.clone()
        };
        assert_eq!(unclipped.expert_tokens(100).iter().sum::<usize>(), 200);
        let balanced = Moe {
            routing: Routing::Balanced,
            ..m
        };
        assert_eq!(balanced.expert_tokens(100), vec![25; 8]);
    }

    #[test]
    fn shape_mismatches_are_reported() {
        let e = Op::MatMul { transpose_b: false }
            .infer(&[&t(&[4, 8]), &t(&[7, 3])])
            .unwrap_err();
        assert!(e.contains("K=8") && e.contains("K=7"), "{e}");
        let e = Op::Binary {
            op: BinaryKind::Add,
        }
        .infer(&[&t(&[1, 3, 4]), &t(&[1, 5, 4])])
        .unwrap_err();
        assert!(e.contains("do not broadcast"), "{e}");
    }
}
