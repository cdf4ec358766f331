//! Mamba language model (Gu & Dao 2023): a stack of selective-SSM blocks, following the
//! reference `mamba_ssm` `MambaLMHeadModel` (RMSNorm, tied LM head).
//!
//! Run modes, as for the GPT family:
//! - `prefill`: `seq_len` tokens in one pass; the causal conv and the scan run over them.
//! - `decode`: one new token. Mamba carries a fixed-size state instead of a KV cache (the
//!   last `d_conv - 1` conv inputs and the SSM state `[Di, d_state]` per block), so the
//!   graph is one token's work whatever the context length: the conv's causal padding
//!   stands for the carried conv inputs and the scan's state update is one step.

use super::net::{Net, R};
use super::{Common, Family};
use crate::workload::op::*;
use crate::workload::params::{p, ParamReader};
use crate::workload::{Graph, WorkloadError};
use petgraph::graph::NodeIndex;

pub const FAMILIES: &[Family] = &[Family {
    name: "mamba",
    about: "Mamba language model (Gu & Dao 2023): RMSNorm, selective-SSM blocks, tied LM head; \
            defaults mamba-130m",
    params: &[
        p(
            "vocab",
            "50280",
            "vocabulary (mamba-130m: GPT-NeoX's 50277 padded to a multiple of 8)",
        ),
        p("dim", "768", "model width d_model"),
        p("depth", "24", "Mamba blocks"),
        p("d_state", "16", "SSM state size N"),
        p("expand", "2", "inner width Di = expand * dim"),
        p(
            "dt_rank",
            "\"auto\"",
            "rank of the delta projection: \"auto\" = ceil(dim / 16), or an integer",
        ),
        p("d_conv", "4", "kernel of the causal depthwise conv"),
        p(
            "mode",
            "\"prefill\"",
            "prefill (seq_len tokens) | decode (one token; conv and SSM states carried)",
        ),
        p("seq_len", "1024", "tokens processed in prefill"),
    ],
    build: mamba,
}];

/// The shape of one Mamba block.
struct BlockCfg {
    inner: usize,
    d_state: usize,
    dt_rank: usize,
    d_conv: usize,
}

/// `dt_rank`: "auto" (the reference's `ceil(d_model / 16)`) or a positive integer.
fn dt_rank(r: &ParamReader, dim: usize) -> R<usize> {
    match r.text("dt_rank") {
        Ok(s) if s == "auto" => Ok(dim.div_ceil(16)),
        Ok(s) => Err(WorkloadError::BadParam {
            key: "dt_rank".into(),
            message: format!(
                "'{s}' is neither \"auto\" nor a positive integer ({})",
                r.context()
            ),
        }),
        Err(_) => r.size("dt_rank"),
    }
}

/// Depthwise causal conv over the sequence: `[B, L, Di]` → `[B, Di, L]` → conv → back.
fn causal_conv(n: &mut Net, name: &str, x: NodeIndex, c: &BlockCfg) -> R<NodeIndex> {
    let conv = Conv1d {
        out_channels: c.inner,
        kernel: c.d_conv,
        stride: 1,
        pad: 0,
        dilation: 1,
        groups: c.inner,
        causal: true,
        bias: true,
    };
    let y = n.transpose(&format!("{name}.to_channels"), x, &[0, 2, 1])?;
    let y = n.op(name, Op::Conv1d(conv), &[y])?;
    n.transpose(&format!("{name}.to_tokens"), y, &[0, 2, 1])
}

/// One residual block: RMSNorm → Mamba mixer → add. The input projection is two linears
/// (x and z branches) and `x_proj` three (delta, B, C): the same MACs and parameters as
/// the reference's fused `in_proj` (dim → 2Di) and `x_proj` (Di → dt_rank + 2N).
fn block(n: &mut Net, name: &str, x: NodeIndex, c: &BlockCfg) -> R<NodeIndex> {
    let dim = n.tensor(x).last();
    let h = n.norm(&format!("{name}.norm"), x, NormKind::Rms)?;
    let xs = n.linear(&format!("{name}.in_proj.x"), h, c.inner, false)?;
    let z = n.linear(&format!("{name}.in_proj.z"), h, c.inner, false)?;
    let xs = causal_conv(n, &format!("{name}.conv1d"), xs, c)?;
    let xs = n.act(&format!("{name}.conv1d.silu"), xs, Activation::Silu)?;
    let dt = n.linear(&format!("{name}.x_proj.dt"), xs, c.dt_rank, false)?;
    let bm = n.linear(&format!("{name}.x_proj.B"), xs, c.d_state, false)?;
    let cm = n.linear(&format!("{name}.x_proj.C"), xs, c.d_state, false)?;
    let dt = n.linear(&format!("{name}.dt_proj"), dt, c.inner, true)?;
    let dt = n.act(
        &format!("{name}.dt_proj.softplus"),
        dt,
        Activation::Softplus,
    )?;
    let scan = Op::SelectiveScan { d_state: c.d_state };
    let y = n.op(&format!("{name}.scan"), scan, &[xs, dt, bm, cm])?;
    let gate = n.act(&format!("{name}.z.silu"), z, Activation::Silu)?;
    let y = n.mul(&format!("{name}.gate"), y, gate)?;
    let y = n.linear(&format!("{name}.out_proj"), y, dim, false)?;
    n.add(&format!("{name}.add"), x, y)
}

fn mamba(r: &ParamReader, c: &Common) -> R<Graph> {
    let (vocab, dim, depth) = (r.size("vocab")?, r.size("dim")?, r.size("depth")?);
    let cfg = BlockCfg {
        inner: r.size("expand")? * dim,
        d_state: r.size("d_state")?,
        dt_rank: dt_rank(r, dim)?,
        d_conv: r.size("d_conv")?,
    };
    let seq = match r.choice("mode", &["prefill", "decode"])?.as_str() {
        "prefill" => r.size("seq_len")?,
        _ => 1,
    };
    let mut n = Net::new(c);
    let ids = n.tokens("input_ids", c.batch, seq)?;
    let mut y = n.op("embedding", Op::Embedding { vocab, dim }, &[ids])?;
    for i in 0..depth {
        y = block(&mut n, &format!("layers.{i}"), y, &cfg)?;
    }
    let y = n.norm("norm_f", y, NormKind::Rms)?;
    let head = Op::Linear {
        out_features: vocab,
        bias: false,
        axis: None,
        tied: true,
    };
    n.op("lm_head", head, &[y])?;
    Ok(n.finish())
}

#[cfg(test)]
mod tests {
    use super::super::{build, Common};
    use crate::report::inspect;
    use toml::{Table, Value};

    fn counts(params: &[(&str, Value)]) -> (u64, u64) {
        let t: Table = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let g = build("mamba", t, &Common::default()).unwrap();
        let ins = inspect(&g).unwrap();
        (ins.total.macs, ins.total.params)
    }

    /// Per token and block: in_proj 768·3072, conv 1536·4, x_proj 1536·80, dt_proj 48·1536,
    /// out_proj 1536·768; plus the tied head 768·50280 once per token.
    const MACS_PER_TOKEN: u64 =
        24 * (768 * 3072 + 1536 * 4 + 1536 * 80 + 48 * 1536 + 1536 * 768) + 768 * 50280;

    #[test]
    fn mamba_130m_counts_by_hand() {
        let (macs, params) = counts(&[]);
        assert_eq!(macs, 1024 * MACS_PER_TOKEN);
        // Per block: in_proj 2,359,296; conv 7,680; x_proj 122,880; dt_proj 75,264;
        // A_log 24,576; D 1,536; out_proj 1,179,648; norm 768. Embedding 38,615,040; norm_f.
        assert_eq!(params, 24 * 3_771_648 + 38_615_040 + 768);
    }

    #[test]
    fn decode_is_one_token_of_work() {
        let (macs, _) = counts(&[("mode", Value::String("decode".into()))]);
        assert_eq!(macs, MACS_PER_TOKEN);
    }

    #[test]
    fn dt_rank_takes_auto_or_an_integer() {
        let auto = counts(&[]).1;
        let explicit = counts(&[("dt_rank", Value::Integer(48))]).1;
        assert_eq!(auto, explicit);
        let t: Table = [("dt_rank".to_string(), Value::String("big".into()))]
            .into_iter()
            .collect();
        let e = build("mamba", t, &Common::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dt_rank") && e.contains("big"), "{e}");
    }
}
