//! Node patterns that spell one activation, found before import so the nodes of a
//! pattern can be skipped and the activation emitted at the pattern's first node.
//!
//! - erf GELU, as PyTorch exports `F.gelu`: `0.5 · x · (1 + erf(x / √2))`, with the
//!   `/√2` as `Div` or `Mul`, and the `0.5` applied last, first, or to `(1 + erf)`;
//! - SiLU `x · Sigmoid(x)` and hardswish `x · HardSigmoid(x)`.
//!
//! Every intermediate tensor must be read only inside the pattern (otherwise the
//! nodes cannot disappear) and every constant must have the value the formula needs.

use super::constant::ConstTensor;
use super::proto::{GraphProto, NodeProto};
use super::Attrs;
use crate::workload::op::Activation;
use std::collections::{HashMap, HashSet};

/// A collapsed pattern: `act(input)` produces `output`.
#[derive(Clone, Debug)]
pub struct Fused<'m> {
    pub act: Activation,
    pub input: &'m str,
    pub output: &'m str,
}

/// Where patterns are emitted (node index → pattern) and the nodes they absorb.
#[derive(Default)]
pub struct Fusions<'m> {
    pub at: HashMap<usize, Fused<'m>>,
    pub skip: HashSet<usize>,
}

/// Finds every pattern; nodes already claimed by one are not reused by another.
pub fn find<'m>(graph: &'m GraphProto, uses: &HashMap<&'m str, usize>) -> Fusions<'m> {
    let index = Index::new(graph, uses);
    let mut fusions = Fusions::default();
    for (i, node) in graph.node.iter().enumerate() {
        let found = match node.op_type.as_str() {
            "Erf" => index.gelu(i),
            "Sigmoid" => index.gated(i, Activation::Silu),
            "HardSigmoid" => index.gated(i, Activation::Hardswish),
            _ => None,
        };
        let Some((fused, nodes)) = found else {
            continue;
        };
        if nodes
            .iter()
            .any(|n| fusions.skip.contains(n) || fusions.at.contains_key(n))
        {
            continue;
        }
        let first = *nodes.iter().min().expect("a pattern has nodes");
        fusions.skip.extend(nodes.iter().filter(|&&n| n != first));
        fusions.at.insert(first, fused);
    }
    fusions
}

/// Producers, consumers and small stored scalars of a graph, for pattern matching.
struct Index<'a, 'm> {
    nodes: &'m [NodeProto],
    producer: HashMap<&'m str, usize>,
    consumers: HashMap<&'m str, Vec<usize>>,
    uses: &'a HashMap<&'m str, usize>,
    scalars: HashMap<&'m str, f64>,
}

impl<'a, 'm> Index<'a, 'm> {
    fn new(graph: &'m GraphProto, uses: &'a HashMap<&'m str, usize>) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut scalars = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for out in &n.output {
                producer.insert(out.as_str(), i);
            }
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                consumers.entry(inp.as_str()).or_default().push(i);
            }
            if let (Some(out), Some(v)) = (n.output.first(), constant_scalar(n)) {
                scalars.insert(out.as_str(), v);
            }
        }
        for t in &graph.initializer {
            if let Ok(c) = ConstTensor::from_proto(t) {
                if let Ok(v) = c.scalar("") {
                    scalars.insert(t.name.as_str(), v);
                }
            }
        }
        Index {
            nodes: &graph.node,
            producer,
            consumers,
            uses,
            scalars,
        }
    }

    /// The only reader of `tensor`, if it has exactly one and nothing else (no graph
    /// output) reads it.
    fn sole_consumer(&self, tensor: &str) -> Option<usize> {
        if self.uses.get(tensor).copied() != Some(1) {
            return None;
        }
        match self.consumers.get(tensor)?.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    fn out(&self, i: usize) -> Option<&'m str> {
        self.nodes[i].output.first().map(String::as_str)
    }

    fn is(&self, i: usize, op_type: &str) -> bool {
        self.nodes[i].op_type == op_type && self.nodes[i].domain.is_empty()
    }

    /// For a two-input node reading `known`, its other input.
    fn other(&self, i: usize, known: &str) -> Option<&'m str> {
        match self.nodes[i].input.as_slice() {
            [a, b] if a == known => Some(b.as_str()),
            [a, b] if b == known => Some(a.as_str()),
            _ => None,
        }
    }

    /// Whether `tensor` is a stored scalar within 0.1% of `want`.
    fn scalar_is(&self, tensor: &str, want: f64) -> bool {
        self.scalars
            .get(tensor)
            .is_some_and(|v| (v - want).abs() <= 1e-3 * want.abs())
    }

    /// Whether node `i` is a `Mul` of `tensor` by the scalar `want`.
    fn mul_by(&self, i: usize, tensor: &str, want: f64) -> bool {
        self.is(i, "Mul")
            && self
                .other(i, tensor)
                .is_some_and(|c| self.scalar_is(c, want))
    }

    /// erf GELU anchored at its `Erf` node: returns the pattern and its nodes.
    fn gelu(&self, erf: usize) -> Option<(Fused<'m>, Vec<usize>)> {
        let scaled = self.nodes[erf].input.first()?.as_str();
        let div = *self.producer.get(scaled)?;
        self.sole_consumer(scaled)?;
        let x = match self.nodes[div].input.as_slice() {
            [x, c] if self.is(div, "Div") && self.scalar_is(c, std::f64::consts::SQRT_2) => x,
            [a, b] if self.is(div, "Mul") => {
                let inv = std::f64::consts::FRAC_1_SQRT_2;
                if self.scalar_is(b, inv) {
                    a
                } else if self.scalar_is(a, inv) {
                    b
                } else {
                    return None;
                }
            }
            _ => return None,
        }
        .as_str();
        let erf_out = self.out(erf)?;
        let add = self.sole_consumer(erf_out)?;
        if !(self.is(add, "Add")
            && self
                .other(add, erf_out)
                .is_some_and(|c| self.scalar_is(c, 1.0)))
        {
            return None;
        }
        let add_out = self.out(add)?;
        let m1 = self.sole_consumer(add_out)?;
        if !self.is(m1, "Mul") {
            return None;
        }
        let m1_out = self.out(m1)?;
        let partner = self.other(m1, add_out)?;
        let mut nodes = vec![div, erf, add, m1];
        let output = if partner == x {
            // x·(1+erf) then ·0.5
            let m2 = self.sole_consumer(m1_out)?;
            if !self.mul_by(m2, m1_out, 0.5) {
                return None;
            }
            nodes.push(m2);
            self.out(m2)?
        } else if self.scalar_is(partner, 0.5) {
            // (1+erf)·0.5 then ·x
            let m2 = self.sole_consumer(m1_out)?;
            if !(self.is(m2, "Mul") && self.other(m2, m1_out) == Some(x)) {
                return None;
            }
            nodes.push(m2);
            self.out(m2)?
        } else {
            // (x·0.5)·(1+erf)
            let half = *self.producer.get(partner)?;
            self.sole_consumer(partner)?;
            if !self.mul_by(half, x, 0.5) {
                return None;
            }
            nodes.push(half);
            m1_out
        };
        let fused = Fused {
            act: Activation::Gelu,
            input: x,
            output,
        };
        Some((fused, nodes))
    }

    /// `x · gate(x)` anchored at the gate node (Sigmoid → SiLU, HardSigmoid → hardswish).
    fn gated(&self, gate: usize, act: Activation) -> Option<(Fused<'m>, Vec<usize>)> {
        let x = self.nodes[gate].input.first()?.as_str();
        if act == Activation::Hardswish && !is_standard_hardsigmoid(&self.nodes[gate]) {
            return None;
        }
        let gate_out = self.out(gate)?;
        let mul = self.sole_consumer(gate_out)?;
        if !(self.is(mul, "Mul") && self.other(mul, gate_out) == Some(x)) {
            return None;
        }
        let fused = Fused {
            act,
            input: x,
            output: self.out(mul)?,
        };
        Some((fused, vec![gate, mul]))
    }
}

/// HardSigmoid with α = 1/6, β = 0.5, the gate of hardswish (ONNX defaults are 0.2, 0.5).
fn is_standard_hardsigmoid(n: &NodeProto) -> bool {
    let a = Attrs(&n.attribute);
    let alpha = a.float("alpha", 0.2).unwrap_or(0.0);
    let beta = a.float("beta", 0.5).unwrap_or(0.0);
    (alpha - 1.0 / 6.0).abs() < 1e-3 && (beta - 0.5).abs() < 1e-6
}

/// The value of a `Constant` node holding one number.
fn constant_scalar(n: &NodeProto) -> Option<f64> {
    if n.op_type != "Constant" {
        return None;
    }
    let a = Attrs(&n.attribute);
    if let Ok(Some(t)) = a.tensor("value") {
        return ConstTensor::from_proto(t).ok()?.scalar("").ok();
    }
    a.get("value_float", super::attr_type::FLOAT)
        .ok()
        .flatten()
        .map(|attr| f64::from(attr.f))
}
