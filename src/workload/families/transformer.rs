//! Transformer families: one block builder, four ways to stack it (ViT, BERT,
//! GPT prefill/decode, MoE decoders such as Mixtral).

use super::net::{Net, R};
use super::{Common, Family};
use crate::workload::op::*;
use crate::workload::params::{p, ParamDoc, ParamReader};
use crate::workload::{Graph, WorkloadError};
use petgraph::graph::NodeIndex;

/// Parameters every decoder family shares (GPT and MoE).
const DECODER_RUN: [ParamDoc; 3] = [
    p(
        "mode",
        "\"prefill\"",
        "prefill (process seq_len tokens) | decode (one new token)",
    ),
    p("seq_len", "1024", "prompt tokens processed in prefill"),
    p(
        "kv_cache",
        "1024",
        "decode: cached positions attended to besides the new token",
    ),
];

pub const FAMILIES: &[Family] = &[
    Family {
        name: "vit",
        about: "Vision Transformer (Dosovitskiy et al. 2021): patch embedding, class token, pre-norm encoder",
        params: &[
            p("patch", "16", "patch size"),
            p("dim", "768", "model width"),
            p("depth", "12", "encoder blocks"),
            p("heads", "12", "attention heads"),
            p("mlp", "3072", "MLP hidden width"),
            p("classes", "1000", "classifier outputs"),
            p("image_size", "224", "input height = width"),
        ],
        build: vit,
    },
    Family {
        name: "bert",
        about: "BERT encoder (Devlin et al. 2019): token/position/type embeddings, post-norm blocks, pooler",
        params: &[
            p("vocab", "30522", "vocabulary"),
            p("dim", "768", "model width"),
            p("depth", "12", "encoder blocks"),
            p("heads", "12", "attention heads"),
            p("ffn", "3072", "FFN hidden width"),
            p("max_positions", "512", "rows of the position table"),
            p("seq_len", "128", "tokens per sequence"),
        ],
        build: bert,
    },
    Family {
        name: "gpt",
        about: "GPT-2 style decoder (Radford et al. 2019): learned positions, pre-norm, tied LM head",
        params: &[
            p("vocab", "50257", "vocabulary"),
            p("dim", "768", "model width"),
            p("depth", "12", "decoder blocks"),
            p("heads", "12", "attention heads"),
            p("ffn", "3072", "FFN hidden width"),
            p("max_positions", "1024", "rows of the position table"),
            DECODER_RUN[0],
            DECODER_RUN[1],
            DECODER_RUN[2],
        ],
        build: gpt,
    },
    Family {
        name: "moe_transformer",
        about: "Mixture-of-experts decoder (Mixtral-style): RMSNorm, grouped-query attention, top-k SwiGLU experts",
        params: &[
            p("vocab", "32000", "vocabulary"),
            p("dim", "4096", "model width"),
            p("depth", "32", "decoder blocks"),
            p("heads", "32", "query heads"),
            p("kv_heads", "8", "key/value heads (grouped-query)"),
            p("experts", "8", "experts per MoE layer (1 = a dense SwiGLU FFN, Llama-style)"),
            p("top_k", "2", "experts per token"),
            p("ffn", "14336", "expert hidden width"),
            p("capacity_factor", "0.0", "expert capacity factor (0 = no dropping)"),
            p("routing_skew", "0.0", "Zipf exponent of expert popularity (0 = balanced)"),
            DECODER_RUN[0],
            DECODER_RUN[1],
            DECODER_RUN[2],
        ],
        build: moe_transformer,
    },
];

/// What follows attention in a block.
#[derive(Clone)]
pub enum Ffn {
    /// fc1 → act → fc2
    Mlp {
        hidden: usize,
        act: Activation,
    },
    /// act(gate) · up → down (SwiGLU when act = silu)
    Gated {
        hidden: usize,
        act: Activation,
    },
    Moe(Moe),
}

#[derive(Clone)]
pub struct BlockCfg {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub norm: NormKind,
    /// Pre-norm (GPT, ViT, Llama) or post-norm (BERT).
    pub pre_norm: bool,
    pub bias: bool,
    pub causal: bool,
    pub kv_cache: usize,
    pub ffn: Ffn,
}

/// Multi-head (or grouped-query) self-attention with separate Q, K, V projections
/// (a fused QKV projection has the same MACs and parameters).
pub fn self_attention(n: &mut Net, name: &str, x: NodeIndex, c: &BlockCfg) -> R<NodeIndex> {
    let d = n.shape(x)[2];
    let q = n.linear(&format!("{name}.q"), x, c.heads * c.head_dim, c.bias)?;
    let k = n.linear(&format!("{name}.k"), x, c.kv_heads * c.head_dim, c.bias)?;
    let v = n.linear(&format!("{name}.v"), x, c.kv_heads * c.head_dim, c.bias)?;
    let a = n.op(
        &format!("{name}.sdpa"),
        Op::Attention(Attention {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            causal: c.causal,
            kv_cache: c.kv_cache,
        }),
        &[q, k, v],
    )?;
    n.linear(&format!("{name}.out"), a, d, c.bias)
}

pub fn feed_forward(n: &mut Net, name: &str, x: NodeIndex, ffn: &Ffn, bias: bool) -> R<NodeIndex> {
    let d = n.shape(x)[2];
    match ffn {
        Ffn::Mlp { hidden, act } => {
            let h = n.linear(&format!("{name}.fc1"), x, *hidden, bias)?;
            let h = n.act(&format!("{name}.act"), h, *act)?;
            n.linear(&format!("{name}.fc2"), h, d, bias)
        }
        Ffn::Gated { hidden, act } => {
            let g = n.linear(&format!("{name}.gate"), x, *hidden, bias)?;
            let g = n.act(&format!("{name}.act"), g, *act)?;
            let u = n.linear(&format!("{name}.up"), x, *hidden, bias)?;
            let h = n.mul(&format!("{name}.mul"), g, u)?;
            n.linear(&format!("{name}.down"), h, d, bias)
        }
        Ffn::Moe(m) => n.op(&format!("{name}.moe"), Op::Moe(m.clone()), &[x]),
    }
}

/// One transformer block on `[B, S, D]`.
pub fn block(n: &mut Net, name: &str, x: NodeIndex, c: &BlockCfg) -> R<NodeIndex> {
    if c.pre_norm {
        let h = n.norm(&format!("{name}.norm1"), x, c.norm)?;
        let h = self_attention(n, &format!("{name}.attn"), h, c)?;
        let x = n.add(&format!("{name}.add1"), x, h)?;
        let h = n.norm(&format!("{name}.norm2"), x, c.norm)?;
        let h = feed_forward(n, &format!("{name}.ffn"), h, &c.ffn, c.bias)?;
        n.add(&format!("{name}.add2"), x, h)
    } else {
        let h = self_attention(n, &format!("{name}.attn"), x, c)?;
        let x = n.add(&format!("{name}.add1"), x, h)?;
        let x = n.norm(&format!("{name}.norm1"), x, c.norm)?;
        let h = feed_forward(n, &format!("{name}.ffn"), x, &c.ffn, c.bias)?;
        let x = n.add(&format!("{name}.add2"), x, h)?;
        n.norm(&format!("{name}.norm2"), x, c.norm)
    }
}

fn head_dim(dim: usize, heads: usize) -> R<usize> {
    if !dim.is_multiple_of(heads) {
        return Err(WorkloadError::BadParam {
            key: "heads".into(),
            message: format!("dim={dim} is not divisible by heads={heads}"),
        });
    }
    Ok(dim / heads)
}

fn vit(r: &ParamReader, c: &Common) -> R<Graph> {
    let (patch, dim, depth, heads, mlp) = (
        r.size("patch")?,
        r.size("dim")?,
        r.size("depth")?,
        r.size("heads")?,
        r.size("mlp")?,
    );
    let size = r.size("image_size")?;
    if size % patch != 0 {
        return Err(WorkloadError::BadParam {
            key: "patch".into(),
            message: format!("image_size={size} is not a multiple of patch={patch}"),
        });
    }
    let mut n = Net::new(c);
    let x = n.input("input", &[c.batch, 3, size, size])?;
    let y = n.conv(
        "patch_embed",
        x,
        Conv2d::new(dim, patch, patch, 0).bias(true),
    )?;
    let y = n.op(
        "patch_embed.flatten",
        Op::Reshape {
            shape: vec![0, 0, -1],
        },
        &[y],
    )?;
    let y = n.transpose("patch_embed.transpose", y, &[0, 2, 1])?;
    let tokens = n.shape(y)[1] + 1;
    let mut y = n.op(
        "pos_embed",
        Op::AddEmbedding {
            rows: tokens,
            cls_token: true,
        },
        &[y],
    )?;
    let cfg = BlockCfg {
        heads,
        kv_heads: heads,
        head_dim: head_dim(dim, heads)?,
        norm: NormKind::Layer,
        pre_norm: true,
        bias: true,
        causal: false,
        kv_cache: 0,
        ffn: Ffn::Mlp {
            hidden: mlp,
            act: Activation::Gelu,
        },
    };
    for i in 0..depth {
        y = block(&mut n, &format!("blocks.{i}"), y, &cfg)?;
    }
    let y = n.norm("norm", y, NormKind::Layer)?;
    let y = n.op(
        "cls",
        Op::Slice {
            axis: 1,
            start: 0,
            end: 1,
        },
        &[y],
    )?;
    n.linear("head", y, r.size("classes")?, true)?;
    Ok(n.finish())
}

fn bert(r: &ParamReader, c: &Common) -> R<Graph> {
    let (vocab, dim, depth, heads, ffn) = (
        r.size("vocab")?,
        r.size("dim")?,
        r.size("depth")?,
        r.size("heads")?,
        r.size("ffn")?,
    );
    let (max_pos, seq) = (r.size("max_positions")?, r.size("seq_len")?);
    if seq > max_pos {
        return Err(WorkloadError::BadParam {
            key: "seq_len".into(),
            message: format!("seq_len={seq} exceeds max_positions={max_pos}"),
        });
    }
    let mut n = Net::new(c);
    let ids = n.tokens("input_ids", c.batch, seq)?;
    let y = n.op("embeddings.word", Op::Embedding { vocab, dim }, &[ids])?;
    let y = n.op(
        "embeddings.position",
        Op::AddEmbedding {
            rows: max_pos,
            cls_token: false,
        },
        &[y],
    )?;
    let y = n.op(
        "embeddings.token_type",
        Op::AddEmbedding {
            rows: 2,
            cls_token: false,
        },
        &[y],
    )?;
    let mut y = n.norm("embeddings.norm", y, NormKind::Layer)?;
    let cfg = BlockCfg {
        heads,
        kv_heads: heads,
        head_dim: head_dim(dim, heads)?,
        norm: NormKind::Layer,
        pre_norm: false,
        bias: true,
        causal: false,
        kv_cache: 0,
        ffn: Ffn::Mlp {
            hidden: ffn,
            act: Activation::Gelu,
        },
    };
    for i in 0..depth {
        y = block(&mut n, &format!("encoder.{i}"), y, &cfg)?;
    }
    let y = n.op(
        "pooler.cls",
        Op::Slice {
            axis: 1,
            start: 0,
            end: 1,
        },
        &[y],
    )?;
    let y = n.linear("pooler.dense", y, dim, true)?;
    n.act("pooler.tanh", y, Activation::Tanh)?;
    Ok(n.finish())
}

/// Tokens this run feeds in and the cache it attends to, from `mode`.
fn decoder_run(r: &ParamReader) -> R<(usize, usize)> {
    match r.choice("mode", &["prefill", "decode"])?.as_str() {
        "prefill" => Ok((r.size("seq_len")?, 0)),
        _ => Ok((1, r.count("kv_cache")?)),
    }
}

fn gpt(r: &ParamReader, c: &Common) -> R<Graph> {
    let (vocab, dim, depth, heads, ffn) = (
        r.size("vocab")?,
        r.size("dim")?,
        r.size("depth")?,
        r.size("heads")?,
        r.size("ffn")?,
    );
    let max_pos = r.size("max_positions")?;
    let (seq, cache) = decoder_run(r)?;
    if seq + cache > max_pos {
        return Err(WorkloadError::BadParam {
            key: "seq_len".into(),
            message: format!("{} positions exceed max_positions={max_pos}", seq + cache),
        });
    }
    let mut n = Net::new(c);
    let ids = n.tokens("input_ids", c.batch, seq)?;
    let y = n.op("wte", Op::Embedding { vocab, dim }, &[ids])?;
    let mut y = n.op(
        "wpe",
        Op::AddEmbedding {
            rows: max_pos,
            cls_token: false,
        },
        &[y],
    )?;
    let cfg = BlockCfg {
        heads,
        kv_heads: heads,
        head_dim: head_dim(dim, heads)?,
        norm: NormKind::Layer,
        pre_norm: true,
        bias: true,
        causal: true,
        kv_cache: cache,
        ffn: Ffn::Mlp {
            hidden: ffn,
            act: Activation::Gelu,
        },
    };
    for i in 0..depth {
        y = block(&mut n, &format!("h.{i}"), y, &cfg)?;
    }
    let y = n.norm("ln_f", y, NormKind::Layer)?;
    n.op(
        "lm_head",
        Op::Linear {
            out_features: vocab,
            bias: false,
            axis: None,
            tied: true,
        },
        &[y],
    )?;
    Ok(n.finish())
}

fn moe_transformer(r: &ParamReader, c: &Common) -> R<Graph> {
    let (vocab, dim, depth, heads) = (
        r.size("vocab")?,
        r.size("dim")?,
        r.size("depth")?,
        r.size("heads")?,
    );
    let kv_heads = r.size("kv_heads")?;
    let (seq, cache) = decoder_run(r)?;
    let cf = r.float("capacity_factor")?;
    let skew = r.float("routing_skew")?;
    let moe = Moe {
        experts: r.size("experts")?,
        top_k: r.size("top_k")?,
        ffn_dim: r.size("ffn")?,
        gated: true,
        activation: Activation::Silu,
        capacity_factor: (cf > 0.0).then_some(cf),
        routing: if skew > 0.0 {
            Routing::Zipf(skew)
        } else {
            Routing::Balanced
        },
    };
    let mut n = Net::new(c);
    let ids = n.tokens("input_ids", c.batch, seq)?;
    let mut y = n.op("embed_tokens", Op::Embedding { vocab, dim }, &[ids])?;
    let cfg = BlockCfg {
        heads,
        kv_heads,
        head_dim: head_dim(dim, heads)?,
        norm: NormKind::Rms,
        pre_norm: true,
        bias: false,
        causal: true,
        kv_cache: cache,
        ffn: if moe.experts == 1 {
            Ffn::Gated {
                hidden: moe.ffn_dim,
                act: moe.activation,
            }
        } else {
            Ffn::Moe(moe)
        },
    };
    for i in 0..depth {
        y = block(&mut n, &format!("layers.{i}"), y, &cfg)?;
    }
    let y = n.norm("norm", y, NormKind::Rms)?;
    n.linear("lm_head", y, vocab, false)?;
    Ok(n.finish())
}
