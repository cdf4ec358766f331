//! NAS-Bench-201 (Dong & Yang 2020): the CIFAR network of the benchmark's cell space,
//! built from an architecture string such as
//! `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.
//!
//! Macro skeleton (xautodl's `TinyNetwork`): 3x3 conv stem + BN; three stages of N cells
//! at C, 2C, 4C channels with a residual reduction block between stages; BN, ReLU, global
//! average pool, linear classifier.
//!
//! The arch string lists, for node j = 1, 2, 3 of the cell, its incoming edges `op~i`
//! (from node i < j); node 0 is the cell input and the last node is the cell output.
//! Node j is the sum of its edges' outputs.
//!
//! What the graph holds: the work that depends on the network's input, as a compiler that
//! folds constants and drops dead code would run the cell.
//! - a `none` edge contributes nothing and is not built;
//! - a node whose every incoming edge is `none` (or comes from such a node) is zero, and
//!   edges leaving it are not built either: whatever they compute is a constant;
//! - ops whose result never reaches the cell output are not built (no dangling nodes).
//!
//! A cell whose output is zero makes the whole network's prediction a constant, so such
//! an arch (341 of the 15,625 in NAS-Bench-201) is rejected with an error naming `arch`.
//!
//! That pruning is the default (`dead_ops = "prune"`) because it is how the network is
//! deployed through a compiler: TFLite on the Pixel 3 and Raspberry Pi 4 (HW-NAS-Bench)
//! measures near-zero latency for cells whose output is disconnected. An eager framework
//! does not prune: PyTorch's `TinyNetwork` (xautodl) runs every edge, a `none` edge as
//! `x.mul(0.)`, and the GTX 1080 Ti latencies of the same tables include that work.
//! `dead_ops = "run"` builds the cell so: every edge of the arch string, `none` as an
//! element-wise multiply by a scalar zero; then no arch is refused, and the MAC count
//! equals the reference table's `macs_cifar_derived` (which counts every conv, dead or
//! not) on every arch.

use super::net::{Net, R};
use super::{Common, Family};
use crate::workload::op::*;
use crate::workload::params::{p, ParamReader};
use crate::workload::{Graph, WorkloadError};
use petgraph::graph::NodeIndex;

pub const FAMILIES: &[Family] = &[Family {
    name: "nasbench201",
    about: "NAS-Bench-201 CIFAR network (Dong & Yang 2020): cell from an arch string, \
            3 stages of cells, residual reduction blocks",
    params: &[
        p(
            "arch",
            "\"|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|\"",
            "cell: per node '|op~input|...', nodes joined by '+'; ops none, skip_connect, \
             nor_conv_1x1, nor_conv_3x3, avg_pool_3x3 (default: best CIFAR-10 cell)",
        ),
        p("channels", "16", "stem and first-stage channels C (stages: C, 2C, 4C)"),
        p("cells_per_stage", "5", "cells N per stage"),
        p("classes", "10", "classifier outputs"),
        p(
            "dead_ops",
            "\"prune\"",
            "\"prune\": drop edges that cannot reach the output (compiled deployment); \
             \"run\": build every edge, `none` as x*0 (eager PyTorch, as measured on GPUs)",
        ),
        p("image_size", "32", "input height = width"),
    ],
    build: nasbench201,
}];

/// The operation on one cell edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeOp {
    None,
    Skip,
    Conv1x1,
    Conv3x3,
    AvgPool3x3,
}

const EDGE_OPS: [(&str, EdgeOp); 5] = [
    ("none", EdgeOp::None),
    ("skip_connect", EdgeOp::Skip),
    ("nor_conv_1x1", EdgeOp::Conv1x1),
    ("nor_conv_3x3", EdgeOp::Conv3x3),
    ("avg_pool_3x3", EdgeOp::AvgPool3x3),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CellEdge {
    op: EdgeOp,
    from: usize,
}

/// A cell: `nodes[j - 1]` holds the edges into node j; node 0 is the cell input.
#[derive(Debug, PartialEq, Eq)]
struct Cell {
    nodes: Vec<Vec<CellEdge>>,
}

/// Parses an arch string; the error names the offending token and the fix.
fn parse_arch(s: &str) -> Result<Cell, String> {
    let nodes = s
        .split('+')
        .enumerate()
        .map(|(i, part)| parse_node(part.trim(), i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cell { nodes })
}

/// Parses `|op~i|op~i|` into the edges of node `j`.
fn parse_node(part: &str, j: usize) -> Result<Vec<CellEdge>, String> {
    let inner = part
        .strip_prefix('|')
        .and_then(|t| t.strip_suffix('|'))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("node {j} is '{part}'; write it as '|op~input|op~input|'"))?;
    let mut edges: Vec<CellEdge> = Vec::new();
    for token in inner.split('|') {
        let edge = parse_edge(token, j)?;
        if edges.iter().any(|e| e.from == edge.from) {
            return Err(format!(
                "token '{token}': node {j} already has an edge from node {}",
                edge.from
            ));
        }
        edges.push(edge);
    }
    Ok(edges)
}

/// Parses `op~i`, an edge into node `j`.
fn parse_edge(token: &str, j: usize) -> Result<CellEdge, String> {
    let names: Vec<&str> = EDGE_OPS.iter().map(|(n, _)| *n).collect();
    let bad = |why: String| format!("bad token '{token}' in node {j}: {why}");
    let (name, from) = token
        .split_once('~')
        .ok_or_else(|| bad("expected op~input, e.g. nor_conv_3x3~0".into()))?;
    let op = EDGE_OPS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, op)| op)
        .ok_or_else(|| {
            bad(format!(
                "unknown op '{name}'; use one of {}",
                names.join(", ")
            ))
        })?;
    let from = from
        .parse::<usize>()
        .ok()
        .filter(|&i| i < j)
        .ok_or_else(|| bad(format!("input '{from}' must be a node number below {j}")))?;
    Ok(CellEdge { op, from })
}

/// Which edges are built: `live[j - 1][k]` for edge k into node j.
///
/// An edge is built when it is not `none`, its source carries an input-dependent value
/// (not zero), and its target lies on a path to the cell output. `None` when the cell
/// output itself is zero.
fn live_edges(cell: &Cell) -> Option<Vec<Vec<bool>>> {
    let count = cell.nodes.len() + 1;
    // Forward: which nodes carry a nonzero value.
    let mut nonzero = vec![false; count];
    nonzero[0] = true;
    for (j, edges) in cell.nodes.iter().enumerate() {
        nonzero[j + 1] = edges
            .iter()
            .any(|e| e.op != EdgeOp::None && nonzero[e.from]);
    }
    if !nonzero[count - 1] {
        return None;
    }
    let carries = |e: &CellEdge| e.op != EdgeOp::None && nonzero[e.from];
    // Backward: which nodes feed the output through carrying edges.
    let mut useful = vec![false; count];
    useful[count - 1] = true;
    for j in (1..count).rev() {
        if useful[j] {
            for e in cell.nodes[j - 1].iter().filter(|e| carries(e)) {
                useful[e.from] = true;
            }
        }
    }
    let live = cell
        .nodes
        .iter()
        .enumerate()
        .map(|(j, edges)| edges.iter().map(|e| useful[j + 1] && carries(e)).collect())
        .collect();
    Some(live)
}

/// The parsed cell and the edges to build (all of them under `dead_ops = "run"`, else
/// the live ones), or a `BadParam` naming `arch` or `dead_ops`.
fn read_arch(r: &ParamReader) -> R<(Cell, Vec<Vec<bool>>)> {
    let text = r.text("arch")?;
    let bad = |message: String| WorkloadError::BadParam {
        key: "arch".into(),
        message: format!("{message} ({})", r.context()),
    };
    let cell = parse_arch(&text).map_err(bad)?;
    match r.text("dead_ops")?.as_str() {
        "prune" => {}
        "run" => {
            let all = cell.nodes.iter().map(|e| vec![true; e.len()]).collect();
            return Ok((cell, all));
        }
        other => {
            return Err(WorkloadError::BadParam {
                key: "dead_ops".into(),
                message: format!(
                "'{other}': use \"prune\" (compiled deployment) or \"run\" (eager framework) ({})",
                r.context()
            ),
            })
        }
    }
    let live = live_edges(&cell).ok_or_else(|| {
        bad(format!(
            "in '{text}' every path into the cell output passes a `none` edge, so the cell \
             always outputs zero and the network's prediction does not depend on its input; \
             there is no input-dependent work to model"
        ))
    })?;
    Ok((cell, live))
}

/// ReLU → conv (no bias) → BN, the `ReLUConvBN` of NAS-Bench-201.
fn relu_conv_bn(
    n: &mut Net,
    name: &str,
    x: NodeIndex,
    out: usize,
    kernel: usize,
    stride: usize,
) -> R<NodeIndex> {
    let y = n.act(&format!("{name}.relu"), x, Activation::Relu)?;
    let y = n.conv(
        &format!("{name}.conv"),
        y,
        Conv2d::new(out, kernel, stride, (kernel - 1) / 2),
    )?;
    n.bn(&format!("{name}.bn"), y)
}

/// One edge's op on `x`; `skip_connect` adds no node.
fn edge_op(n: &mut Net, name: &str, x: NodeIndex, op: EdgeOp) -> R<NodeIndex> {
    let c = n.shape(x)[1];
    match op {
        EdgeOp::Skip => Ok(x),
        EdgeOp::Conv1x1 => relu_conv_bn(n, name, x, c, 1, 1),
        EdgeOp::Conv3x3 => relu_conv_bn(n, name, x, c, 3, 1),
        // count_include_pad=False changes the border values, not the work.
        EdgeOp::AvgPool3x3 => n.pool(name, x, PoolKind::Avg, 3, 1, 1),
        // Built only under `dead_ops = "run"`: PyTorch's `x.mul(0.)`.
        EdgeOp::None => {
            let zero = n.op(
                &format!("{name}.zero"),
                Op::Constant {
                    shape: vec![1],
                    learned: false,
                },
                &[],
            )?;
            n.mul(name, x, zero)
        }
    }
}

/// One cell on `x`: each node sums its live edges; returns the last node.
fn cell(n: &mut Net, name: &str, x: NodeIndex, cell: &Cell, live: &[Vec<bool>]) -> R<NodeIndex> {
    let mut nodes: Vec<Option<NodeIndex>> = vec![Some(x)];
    for (j, (edges, built)) in cell.nodes.iter().zip(live).enumerate() {
        let j = j + 1;
        let mut sum: Option<NodeIndex> = None;
        for e in edges.iter().zip(built).filter(|(_, &b)| b).map(|(e, _)| e) {
            // A built edge leaves a built node (live edges leave nonzero nodes; under
            // `dead_ops = "run"` every node is built).
            let Some(src) = nodes[e.from] else { continue };
            let y = edge_op(n, &format!("{name}.edges.{j}<-{}", e.from), src, e.op)?;
            sum = Some(match sum {
                None => y,
                Some(s) => n.add(&format!("{name}.node{j}.add<-{}", e.from), s, y)?,
            });
        }
        nodes.push(sum);
    }
    let out = nodes.last().copied().flatten();
    out.ok_or_else(|| WorkloadError::BadParam {
        key: "arch".into(),
        message: format!("{name}: the cell output is zero"),
    })
}

/// Residual reduction between stages (`ResNetBasicblock`, stride 2): two ReLU-conv-BN
/// on the main path, average pool + 1x1 conv on the shortcut.
fn reduction(n: &mut Net, name: &str, x: NodeIndex, out: usize) -> R<NodeIndex> {
    let a = relu_conv_bn(n, &format!("{name}.conv_a"), x, out, 3, 2)?;
    let b = relu_conv_bn(n, &format!("{name}.conv_b"), a, out, 3, 1)?;
    let d = n.pool(
        &format!("{name}.downsample.pool"),
        x,
        PoolKind::Avg,
        2,
        2,
        0,
    )?;
    let d = n.conv(
        &format!("{name}.downsample.conv"),
        d,
        Conv2d::new(out, 1, 1, 0),
    )?;
    n.add(&format!("{name}.add"), d, b)
}

fn nasbench201(r: &ParamReader, c: &Common) -> R<Graph> {
    let (arch, live) = read_arch(r)?;
    let (ch, per_stage, size) = (
        r.size("channels")?,
        r.size("cells_per_stage")?,
        r.size("image_size")?,
    );
    let mut n = Net::new(c);
    let x = n.input("input", &[c.batch, 3, size, size])?;
    let y = n.conv("stem.conv", x, Conv2d::new(ch, 3, 1, 1))?;
    let mut y = n.bn("stem.bn", y)?;
    let mut index = 0;
    for stage in 0..3 {
        if stage > 0 {
            y = reduction(&mut n, &format!("cells.{index}"), y, ch << stage)?;
            index += 1;
        }
        for _ in 0..per_stage {
            y = cell(&mut n, &format!("cells.{index}"), y, &arch, &live)?;
            index += 1;
        }
    }
    let y = n.bn("lastact.bn", y)?;
    let y = n.act("lastact.relu", y, Activation::Relu)?;
    let y = n.global_pool("global_pooling", y)?;
    let y = n.flatten("flatten", y)?;
    n.linear("classifier", y, r.size("classes")?, true)?;
    Ok(n.finish())
}

#[cfg(test)]
mod tests {
    use super::super::{build, Common};
    use super::*;
    use crate::report::inspect;
    use toml::{Table, Value};

    const BEST: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";

    fn net(arch: &str) -> Result<Graph, WorkloadError> {
        let mut t = Table::new();
        t.insert("arch".into(), Value::String(arch.into()));
        build("nasbench201", t, &Common::default())
    }

    /// Conv nodes whose name is inside a normal cell (not stem or reduction).
    fn cell_convs(g: &Graph) -> usize {
        g.g.node_weights()
            .filter(|w| matches!(w.op, Op::Conv2d(_)) && w.name.contains(".edges."))
            .count()
    }

    #[test]
    fn parses_the_best_cifar10_cell() {
        let cell = parse_arch(BEST).unwrap();
        let e = |op, from| CellEdge { op, from };
        assert_eq!(
            cell.nodes,
            vec![
                vec![e(EdgeOp::Conv3x3, 0)],
                vec![e(EdgeOp::Conv3x3, 0), e(EdgeOp::AvgPool3x3, 1)],
                vec![
                    e(EdgeOp::Skip, 0),
                    e(EdgeOp::Conv3x3, 1),
                    e(EdgeOp::Skip, 2)
                ],
            ]
        );
    }

    #[test]
    fn best_cell_macs_and_params_by_hand() {
        // Stem 32·32·16·27 = 442,368; each 3x3 cell conv is 2,359,296 at every stage
        // (C·C·9·HW with C doubling as HW quarters), 3 per cell, 15 cells: 106,168,320;
        // each reduction 1,179,648 + 2,359,296 + 131,072; classifier 640.
        let ins = inspect(&net(BEST).unwrap()).unwrap();
        assert_eq!(ins.total.macs, 442_368 + 106_168_320 + 2 * 3_670_016 + 640);
        // Stem 432 + 32; cells 5·3·(9C² + 2C) at C = 16, 32, 64; reductions 14,464 and
        // 57,600; last BN 128; classifier 650.
        assert_eq!(
            ins.total.params,
            464 + 35_040 + 139_200 + 554_880 + 14_464 + 57_600 + 128 + 650
        );
    }

    #[test]
    fn all_conv3x3_cell_has_six_convs_per_cell() {
        let all = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
        assert_eq!(cell_convs(&net(all).unwrap()), 6 * 15);
    }

    #[test]
    fn convless_cells_and_dead_edges_build_no_convs() {
        let pools = "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|";
        assert_eq!(cell_convs(&net(pools).unwrap()), 0);
        // Node 1's conv only feeds node 2 through `none`, and node 3 ignores node 1:
        // the conv is dead and must not dangle in the graph.
        let dead = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_1x1~2|";
        let g = net(dead).unwrap();
        assert_eq!(cell_convs(&g), 15, "only the 1x1 on edge 2->3 remains");
        let consumed: std::collections::HashSet<_> =
            g.g.edge_indices()
                .filter_map(|e| g.g.edge_endpoints(e))
                .map(|(s, _)| s)
                .collect();
        let sinks = g.g.node_indices().filter(|i| !consumed.contains(i)).count();
        assert_eq!(sinks, 1, "only the classifier is unconsumed");
    }

    #[test]
    fn zero_output_cell_is_rejected() {
        let e = net("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("arch") && e.contains("always outputs zero"),
            "{e}"
        );
        // Node 3 only hears from node 2, which only hears `none`.
        let e = net("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|").unwrap_err();
        assert!(e.to_string().contains("always outputs zero"), "{e}");
    }

    #[test]
    fn malformed_arch_names_the_token() {
        for (arch, token) in [
            ("|nor_conv_5x5~0|+|none~0|none~1|", "nor_conv_5x5~0"),
            ("|nor_conv_3x3~1|", "nor_conv_3x3~1"),
            ("|nor_conv_3x3-0|", "nor_conv_3x3-0"),
            ("|skip_connect~x|", "skip_connect~x"),
            ("nor_conv_3x3~0", "nor_conv_3x3~0"),
            (
                "|skip_connect~0|+|skip_connect~0|skip_connect~0|",
                "skip_connect~0",
            ),
        ] {
            let e = net(arch).unwrap_err();
            assert!(
                matches!(e, WorkloadError::BadParam { ref key, .. } if key == "arch"),
                "{e}"
            );
            assert!(e.to_string().contains(token), "{arch}: {e}");
        }
    }
}
