//! A small graph-building vocabulary shared by the family builders.

use crate::workload::op::*;
use crate::workload::{Graph, TensorInfo, WorkloadError};
use petgraph::graph::NodeIndex;

use super::Common;

/// A graph under construction with the layer idioms families repeat.
pub struct Net {
    pub g: Graph,
}

pub type R<T> = Result<T, WorkloadError>;

impl Net {
    pub fn new(common: &Common) -> Self {
        Net {
            g: Graph::new(common.name.clone(), common.dtype),
        }
    }

    pub fn finish(self) -> Graph {
        self.g
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> R<NodeIndex> {
        self.g.input(name, shape)
    }

    pub fn tokens(&mut self, name: &str, batch: usize, seq: usize) -> R<NodeIndex> {
        self.g
            .input_typed(name, &[batch, seq], crate::workload::DType::Int32)
    }

    pub fn shape(&self, x: NodeIndex) -> &[usize] {
        &self.g.node(x).output.shape
    }

    pub fn tensor(&self, x: NodeIndex) -> &TensorInfo {
        &self.g.node(x).output
    }

    pub fn op(&mut self, name: &str, op: Op, inputs: &[NodeIndex]) -> R<NodeIndex> {
        self.g.add(name, op, inputs)
    }

    pub fn conv(&mut self, name: &str, x: NodeIndex, c: Conv2d) -> R<NodeIndex> {
        self.op(name, Op::Conv2d(c), &[x])
    }

    /// conv → batchnorm → activation (None: no activation), PyTorch naming `name`, `name.bn`.
    pub fn conv_bn(
        &mut self,
        name: &str,
        x: NodeIndex,
        c: Conv2d,
        act: Option<Activation>,
    ) -> R<NodeIndex> {
        let y = self.conv(name, x, c)?;
        let y = self.bn(&format!("{name}.bn"), y)?;
        match act {
            Some(a) => self.act(&format!("{name}.{}", a.name()), y, a),
            None => Ok(y),
        }
    }

    pub fn bn(&mut self, name: &str, x: NodeIndex) -> R<NodeIndex> {
        self.op(
            name,
            Op::Norm {
                kind: NormKind::Batch,
            },
            &[x],
        )
    }

    pub fn norm(&mut self, name: &str, x: NodeIndex, kind: NormKind) -> R<NodeIndex> {
        self.op(name, Op::Norm { kind }, &[x])
    }

    pub fn act(&mut self, name: &str, x: NodeIndex, act: Activation) -> R<NodeIndex> {
        self.op(name, Op::Act { act }, &[x])
    }

    pub fn add(&mut self, name: &str, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        self.op(
            name,
            Op::Binary {
                op: BinaryKind::Add,
            },
            &[a, b],
        )
    }

    pub fn mul(&mut self, name: &str, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        self.op(
            name,
            Op::Binary {
                op: BinaryKind::Mul,
            },
            &[a, b],
        )
    }

    pub fn linear(&mut self, name: &str, x: NodeIndex, out: usize, bias: bool) -> R<NodeIndex> {
        self.op(
            name,
            Op::Linear {
                out_features: out,
                bias,
                axis: None,
                tied: false,
            },
            &[x],
        )
    }

    pub fn pool(
        &mut self,
        name: &str,
        x: NodeIndex,
        pool: PoolKind,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> R<NodeIndex> {
        self.op(
            name,
            Op::Pool {
                pool,
                kernel: [kernel; 2],
                stride: [stride; 2],
                pad: [pad; 2],
            },
            &[x],
        )
    }

    pub fn global_pool(&mut self, name: &str, x: NodeIndex) -> R<NodeIndex> {
        self.op(
            name,
            Op::GlobalPool {
                pool: PoolKind::Avg,
            },
            &[x],
        )
    }

    pub fn flatten(&mut self, name: &str, x: NodeIndex) -> R<NodeIndex> {
        self.op(name, Op::Reshape { shape: vec![0, -1] }, &[x])
    }

    pub fn transpose(&mut self, name: &str, x: NodeIndex, perm: &[usize]) -> R<NodeIndex> {
        self.op(
            name,
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// Global pool, flatten, linear classifier with bias.
    pub fn classifier(&mut self, x: NodeIndex, classes: usize) -> R<NodeIndex> {
        let y = self.global_pool("avgpool", x)?;
        let y = self.flatten("flatten", y)?;
        self.linear("fc", y, classes, true)
    }
}

/// `round(v * mult)` to a multiple of `divisor`, never dropping more than 10%
/// (the channel rounding of MobileNet/EfficientNet reference code).
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = ((v + d / 2.0) / d).floor() * d;
    new_v = new_v.max(d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}
