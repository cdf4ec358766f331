//! MLP-Mixer (Tolstikhin et al. 2021): an all-MLP vision network. Token mixing is a
//! linear over the token axis of `[B, S, C]` (`Op::Linear { axis: Some(1) }`), so it lowers
//! to the same Einsum as any other linear and needs no transposes in the graph.

use super::net::{Net, R};
use super::{Common, Family};
use crate::workload::op::*;
use crate::workload::params::{p, ParamReader};
use crate::workload::{Graph, WorkloadError};
use petgraph::graph::NodeIndex;

pub const FAMILIES: &[Family] = &[Family {
    name: "mlp_mixer",
    about: "MLP-Mixer (Tolstikhin et al. 2021): patch embedding, token-mixing and channel-mixing MLPs; \
            defaults Mixer-B/16",
    params: &[
        p("patch", "16", "patch size (the stem conv's kernel and stride)"),
        p("dim", "768", "hidden width C"),
        p("depth", "12", "mixer blocks"),
        p("token_mlp", "384", "token-mixing MLP width D_S"),
        p("channel_mlp", "3072", "channel-mixing MLP width D_C"),
        p("classes", "1000", "classifier outputs"),
        p("image_size", "224", "input height = width"),
    ],
    build: mlp_mixer,
}];

/// Token axis of `[B, S, C]`.
const TOKENS: usize = 1;

/// A linear with bias over `axis` (None = the last).
fn linear_on(
    n: &mut Net,
    name: &str,
    x: NodeIndex,
    axis: Option<usize>,
    out: usize,
) -> R<NodeIndex> {
    let op = Op::Linear {
        out_features: out,
        bias: true,
        axis,
        tied: false,
    };
    n.op(name, op, &[x])
}

/// fc1 → GELU → fc2 over one axis, back to that axis's width.
fn mlp(n: &mut Net, name: &str, x: NodeIndex, axis: Option<usize>, hidden: usize) -> R<NodeIndex> {
    let width = match axis {
        Some(a) => n.shape(x)[a],
        None => n.tensor(x).last(),
    };
    let h = linear_on(n, &format!("{name}.fc1"), x, axis, hidden)?;
    let h = n.act(&format!("{name}.act"), h, Activation::Gelu)?;
    linear_on(n, &format!("{name}.fc2"), h, axis, width)
}

/// One mixer block: pre-norm token mixing and pre-norm channel mixing, each residual.
fn mixer_block(
    n: &mut Net,
    name: &str,
    x: NodeIndex,
    token_mlp: usize,
    channel_mlp: usize,
) -> R<NodeIndex> {
    let h = n.norm(&format!("{name}.norm1"), x, NormKind::Layer)?;
    let h = mlp(
        n,
        &format!("{name}.token_mixing"),
        h,
        Some(TOKENS),
        token_mlp,
    )?;
    let x = n.add(&format!("{name}.add1"), x, h)?;
    let h = n.norm(&format!("{name}.norm2"), x, NormKind::Layer)?;
    let h = mlp(n, &format!("{name}.channel_mixing"), h, None, channel_mlp)?;
    n.add(&format!("{name}.add2"), x, h)
}

fn mlp_mixer(r: &ParamReader, c: &Common) -> R<Graph> {
    let (patch, dim, depth) = (r.size("patch")?, r.size("dim")?, r.size("depth")?);
    let (token_mlp, channel_mlp) = (r.size("token_mlp")?, r.size("channel_mlp")?);
    let size = r.size("image_size")?;
    if size % patch != 0 {
        return Err(WorkloadError::BadParam {
            key: "patch".into(),
            message: format!(
                "image_size={size} is not a multiple of patch={patch} ({})",
                r.context()
            ),
        });
    }
    let mut n = Net::new(c);
    let x = n.input("input", &[c.batch, 3, size, size])?;
    let y = n.conv("stem", x, Conv2d::new(dim, patch, patch, 0).bias(true))?;
    let y = n.op(
        "stem.flatten",
        Op::Reshape {
            shape: vec![0, 0, -1],
        },
        &[y],
    )?;
    let mut y = n.transpose("stem.transpose", y, &[0, 2, 1])?;
    for i in 0..depth {
        y = mixer_block(&mut n, &format!("blocks.{i}"), y, token_mlp, channel_mlp)?;
    }
    let y = n.norm("pre_head_norm", y, NormKind::Layer)?;
    let y = n.global_pool("global_pool", y)?;
    let y = n.flatten("flatten", y)?;
    n.linear("head", y, r.size("classes")?, true)?;
    Ok(n.finish())
}

#[cfg(test)]
mod tests {
    use super::super::{build, Common};
    use crate::report::inspect;
    use toml::Table;

    #[test]
    fn mixer_b16_counts_by_hand() {
        let g = build("mlp_mixer", Table::new(), &Common::default()).unwrap();
        let ins = inspect(&g).unwrap();
        // Stem 196·768·768; per block token MLP 768·(196·384·2), channel MLP 196·(768·3072·2).
        let block = 768 * 196 * 384 * 2 + 196 * 768 * 3072 * 2;
        assert_eq!(ins.total.macs, 196 * 768 * 768 + 12 * block + 768 * 1000);
        // Stem 590,592; block 2·1536 + 75,648 + 75,460 + 2,362,368 + 2,360,064; final LN; head.
        assert_eq!(ins.total.params, 590_592 + 12 * 4_876_612 + 1_536 + 769_000);
    }

    #[test]
    fn token_mixing_contracts_the_token_axis() {
        let g = build("mlp_mixer", Table::new(), &Common::default()).unwrap();
        let fc1 = g.find("blocks.0.token_mixing.fc1").unwrap();
        assert_eq!(g.node(fc1).output.shape, vec![1, 384, 768]);
    }
}
