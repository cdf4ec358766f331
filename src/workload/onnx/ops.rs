//! One function per ONNX op type: read the inputs and attributes, reject what coex
//! cannot represent with a message saying why, and add the coex op (or fold the
//! node into a constant).

use super::constant::{self, Const, ConstTensor};
use super::proto::data_type;
use super::{Attrs, Importer, NodeRef, Res, Value, SUPPORTED_OPS};
use crate::workload::op::{Activation, BinaryKind, Conv1d, Conv2d, NormKind, Op, PoolKind};
use crate::workload::{DType, TensorInfo};
use petgraph::graph::NodeIndex;
use std::rc::Rc;

impl<'m> Importer<'m> {
    /// Maps one node by op type.
    pub(super) fn dispatch(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        match n.op_type() {
            "Conv" => self.conv(n),
            "Gemm" => self.gemm(n),
            "MatMul" => self.matmul(n),
            "BatchNormalization" => self.batch_norm(n),
            "LayerNormalization" => self.layer_norm(n),
            "Relu" => self.activation(n, Activation::Relu),
            "Sigmoid" => self.activation(n, Activation::Sigmoid),
            "Tanh" => self.activation(n, Activation::Tanh),
            "Softplus" => self.activation(n, Activation::Softplus),
            // Any α, β: the cost of the clamp is the same.
            "HardSigmoid" => self.activation(n, Activation::Hardsigmoid),
            "HardSwish" => self.activation(n, Activation::Hardswish),
            // Both the exact and the tanh approximation.
            "Gelu" => self.activation(n, Activation::Gelu),
            "Clip" => self.clip(n),
            "Add" | "Sub" => self.binary(n, BinaryKind::Add),
            "Mul" | "Div" => self.binary(n, BinaryKind::Mul),
            "MaxPool" => self.pool(n, PoolKind::Max),
            "AveragePool" => self.pool(n, PoolKind::Avg),
            "GlobalAveragePool" => self.global_pool(n, PoolKind::Avg),
            "GlobalMaxPool" => self.global_pool(n, PoolKind::Max),
            "Flatten" => self.flatten(n),
            "Reshape" => self.reshape(n),
            "Transpose" => self.transpose(n),
            "Softmax" => self.softmax(n),
            "Concat" => self.concat(n),
            "Sum" => self.sum(n),
            "ConstantOfShape" => self.constant_of_shape(n),
            // Inference: dropout is the identity.
            "Identity" | "Dropout" => self.value(n.req(0, "input")?),
            "Cast" => self.cast(n),
            "Constant" => constant_node(&n.attrs()).map(|c| Value::Const(Rc::new(c))),
            "Shape" => self.shape_node(n),
            "Gather" => self.gather(n),
            "Unsqueeze" => self.unsqueeze(n),
            "Squeeze" => self.squeeze(n),
            "Slice" => self.slice(n),
            other => Err(format!(
                "op type '{other}' is not supported by coex{}; supported op types: {}",
                if other == "Erf" {
                    " outside the erf GELU pattern"
                } else {
                    ""
                },
                SUPPORTED_OPS.join(", ")
            )),
        }
    }

    /// Adds the op named after the node and returns its output.
    fn emit(&mut self, n: &NodeRef<'m>, op: Op, inputs: &[NodeIndex]) -> Res<Value> {
        Ok(Value::Act(self.add(n, "", op, inputs)?))
    }

    fn dims_of(&self, v: &Value) -> Vec<usize> {
        match v {
            Value::Act(idx) => self.shape(*idx).to_vec(),
            Value::Const(c) => c.dims.clone(),
        }
    }

    /// Conv with a stored weight `[M, C/group, kH, kW]` (or `[M, C/group, L]` for 1-D).
    fn conv(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let x = self.act(n.req(0, "X")?)?;
        let w = self.konst(n.req(1, "W")?, "weight")?;
        let xs = self.shape(x).to_vec();
        if !(3..=4).contains(&xs.len()) || w.dims.len() != xs.len() {
            return Err(format!(
                "coex models 1-D and 2-D convolutions: X [N, C, L] or [N, C, H, W] with a weight of the same rank; got X {xs:?} and W {:?}",
                w.dims
            ));
        }
        let a = n.attrs();
        let groups = positive(a.int("group", 1)?, "group")?;
        let (out_channels, kernel) = (w.dims[0], &w.dims[2..]);
        if let Some(k) = a.ints("kernel_shape")? {
            if !k.iter().map(|&v| v as usize).eq(kernel.iter().copied()) {
                return Err(format!(
                    "kernel_shape {k:?} disagrees with the weight {:?}",
                    w.dims
                ));
            }
        }
        if w.dims[1] * groups != xs[1] {
            return Err(format!(
                "weight {:?} with group={groups} reads {} input channels, but X {xs:?} has {}",
                w.dims,
                w.dims[1] * groups,
                xs[1]
            ));
        }
        for &k in kernel {
            positive(k as i64, "kernel extent")?;
        }
        let bias = self.bias(n, 2, out_channels)?;
        let spatial = xs.len() - 2;
        let stride = per_axis(&a, "strides", spatial)?;
        let dilation = per_axis(&a, "dilations", spatial)?;
        let (begin, end) = pads(&a, &xs[2..], kernel, &stride, &dilation)?;
        let op = if spatial == 2 {
            Op::Conv2d(Conv2d {
                out_channels,
                kernel: [kernel[0], kernel[1]],
                stride: [stride[0], stride[1]],
                pad_begin: [begin[0], begin[1]],
                pad_end: [end[0], end[1]],
                dilation: [dilation[0], dilation[1]],
                groups,
                bias,
            })
        } else {
            let mut c = Conv1d {
                out_channels,
                kernel: kernel[0],
                stride: stride[0],
                pad: begin[0],
                dilation: dilation[0],
                groups,
                causal: false,
                bias,
            };
            if begin[0] != end[0] {
                c.causal = true;
                c.pad = 0;
                if c.pads() != (begin[0], end[0]) {
                    return Err(format!(
                        "1-D padding {}/{} is neither symmetric nor causal ((kernel-1)·dilation on the left only)",
                        begin[0], end[0]
                    ));
                }
            }
            Op::Conv1d(c)
        };
        self.emit(n, op, &[x])
    }

    /// Whether optional input `i` holds a per-output bias of `outputs` values (shape
    /// `[outputs]`, or with extra axes of 1 as Gemm's `[1, N]`).
    fn bias(&self, n: &NodeRef<'m>, i: usize, outputs: usize) -> Res<bool> {
        let Some(name) = n.input(i) else {
            return Ok(false);
        };
        let b = self.konst(name, "bias")?;
        let per_output = b.elements() == outputs && b.dims.iter().filter(|&&d| d != 1).count() <= 1;
        if !per_output {
            return Err(format!(
                "bias '{name}' of shape {:?} is not one value per output ({outputs}); coex models per-output biases only",
                b.dims
            ));
        }
        Ok(true)
    }

    /// Gemm: a stored B makes a linear layer; a computed B a matmul (plus an add for C).
    fn gemm(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let a = n.attrs();
        if a.int("transA", 0)? != 0 {
            return Err("transA=1 is not supported (coex's linear reads A as [M, K])".into());
        }
        let (alpha, beta) = (a.float("alpha", 1.0)?, a.float("beta", 1.0)?);
        // beta = 0 drops C, so C is then read as absent.
        let c_input = if beta == 0.0 { None } else { n.input(2) };
        if alpha != 1.0 || (beta != 1.0 && c_input.is_some()) {
            return Err(format!(
                "alpha={alpha}, beta={beta}: only alpha = 1 and beta = 1 (or 0) are supported (fold the scales into the weights)"
            ));
        }
        let x = self.act(n.req(0, "A")?)?;
        let trans_b = a.int("transB", 0)? != 0;
        match self.value(n.req(1, "B")?)? {
            Value::Const(w) => {
                let out_features = self.fan_in_out(x, &w, trans_b)?;
                let bias = match c_input {
                    Some(_) => self.bias(n, 2, out_features)?,
                    None => false,
                };
                self.emit(n, linear(out_features, bias), &[x])
            }
            Value::Act(b) => {
                let y = self.add(
                    n,
                    "",
                    Op::MatMul {
                        transpose_b: trans_b,
                    },
                    &[x, b],
                )?;
                let Some(c) = c_input else {
                    return Ok(Value::Act(y));
                };
                let c = self.operand(c)?;
                Ok(Value::Act(self.add(
                    n,
                    ".bias",
                    Op::Binary {
                        op: BinaryKind::Add,
                    },
                    &[y, c],
                )?))
            }
        }
    }

    /// MatMul: activation × stored weight is a linear layer; two activations a matmul.
    fn matmul(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let (a, b) = (self.value(n.req(0, "A")?)?, self.value(n.req(1, "B")?)?);
        match (a, b) {
            (Value::Act(x), Value::Const(w)) => {
                let out_features = self.fan_in_out(x, &w, false)?;
                self.emit(n, linear(out_features, false), &[x])
            }
            (Value::Act(a), Value::Act(b)) => self.emit(n, Op::MatMul { transpose_b: false }, &[a, b]),
            _ => Err(
                "a stored left operand (weight × activation) is not supported; coex's linear layer multiplies an activation by a stored right operand"
                    .into(),
            ),
        }
    }

    /// Output width of a stored 2-D weight (`[K, N]`, or `[N, K]` transposed), checking
    /// K against the activation's last axis.
    fn fan_in_out(&self, x: NodeIndex, w: &ConstTensor, transposed: bool) -> Res<usize> {
        let [k, out] = match (w.dims.as_slice(), transposed) {
            (&[k, n], false) => [k, n],
            (&[n, k], true) => [k, n],
            _ => {
                return Err(format!(
                    "weight of shape {:?} is not 2-D; batched stored weights are not supported",
                    w.dims
                ))
            }
        };
        let xs = self.shape(x);
        if xs.last() != Some(&k) {
            return Err(format!(
                "weight {:?}{} has K={k}, but the activation {xs:?} has {} features",
                w.dims,
                if transposed { " (transposed)" } else { "" },
                xs.last().copied().unwrap_or(0)
            ));
        }
        Ok(out)
    }

    fn batch_norm(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let x = self.act(n.req(0, "X")?)?;
        let xs = self.shape(x).to_vec();
        let channels = *xs.get(1).ok_or("X needs a channel axis (rank ≥ 2)")?;
        for (i, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            self.per_channel(n, i, what, channels)?;
        }
        if n.attrs().int("training_mode", 0)? != 0 {
            return Err("training_mode=1 is not supported (coex models inference)".into());
        }
        self.emit(
            n,
            Op::Norm {
                kind: NormKind::Batch,
            },
            &[x],
        )
    }

    /// Checks that input `i` is stored and holds one value per channel.
    fn per_channel(&self, n: &NodeRef<'m>, i: usize, what: &str, channels: usize) -> Res<()> {
        let t = self.konst(n.req(i, what)?, what)?;
        if t.elements() != channels {
            return Err(format!(
                "{what} has shape {:?}, but the input has {channels} channels",
                t.dims
            ));
        }
        Ok(())
    }

    fn layer_norm(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let x = self.act(n.req(0, "X")?)?;
        let xs = self.shape(x).to_vec();
        let axis = normalize_axis(n.attrs().int("axis", -1)?, xs.len())?;
        if axis + 1 != xs.len() {
            return Err(format!(
                "normalizing axes {axis}.. of {xs:?} is not supported; coex's layernorm normalizes the last axis only"
            ));
        }
        let width = xs[axis];
        self.per_channel(n, 1, "Scale", width)?;
        if n.input(2).is_none() {
            return Err(
                "LayerNormalization without a bias is not supported: coex's layernorm holds a scale and a bias (2·D parameters)"
                    .into(),
            );
        }
        self.per_channel(n, 2, "B", width)?;
        self.emit(
            n,
            Op::Norm {
                kind: NormKind::Layer,
            },
            &[x],
        )
    }

    fn activation(&mut self, n: &NodeRef<'m>, act: Activation) -> Res<Value> {
        let x = self.act(n.req(0, "X")?)?;
        self.emit(n, Op::Act { act }, &[x])
    }

    /// Clip(0, 6) is relu6 and Clip(0, ∞) relu; other bounds have no coex op.
    fn clip(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let (lo, hi) = if self.opset_at_least(11) {
            (
                self.optional_scalar(n, 1, "min")?,
                self.optional_scalar(n, 2, "max")?,
            )
        } else {
            let a = n.attrs();
            let bound = |name, default| -> Res<Option<f64>> {
                let v = f64::from(a.float(name, default)?);
                Ok((v.abs() < 3.0e38).then_some(v))
            };
            (bound("min", f32::MIN)?, bound("max", f32::MAX)?)
        };
        let from_zero = lo == Some(0.0);
        let act = if from_zero && hi == Some(6.0) {
            Activation::Relu6
        } else if from_zero && hi.is_none_or(|h| h == f64::INFINITY) {
            Activation::Relu
        } else {
            let show = |b: Option<f64>| b.map_or("none".to_string(), |v| v.to_string());
            return Err(format!(
                "bounds ({}, {}) are not supported: coex models Clip(0, 6) as relu6 and Clip(0, ∞) as relu",
                show(lo),
                show(hi)
            ));
        };
        self.activation(n, act)
    }

    /// The stored scalar at optional input `i`.
    fn optional_scalar(&self, n: &NodeRef<'m>, i: usize, what: &str) -> Res<Option<f64>> {
        match n.input(i) {
            Some(name) => Ok(Some(self.konst(name, what)?.scalar(what)?)),
            None => Ok(None),
        }
    }

    /// Element-wise ops: constants fold, bias adds fold into their producer, and other
    /// stored operands become `Op::Constant` nodes.
    fn binary(&mut self, n: &NodeRef<'m>, op: BinaryKind) -> Res<Value> {
        let (an, bn) = (n.req(0, "A")?, n.req(1, "B")?);
        let (a, b) = (self.value(an)?, self.value(bn)?);
        if let (Value::Const(ca), Value::Const(cb)) = (&a, &b) {
            return Ok(Value::Const(Rc::new(constant::arith(n.op_type(), ca, cb)?)));
        }
        if n.op_type() == "Add" {
            let folded = match (&a, &b) {
                (Value::Act(x), Value::Const(c)) => self.fold_bias(an, *x, c),
                (Value::Const(c), Value::Act(x)) => self.fold_bias(bn, *x, c),
                _ => None,
            };
            if let Some(v) = folded {
                return Ok(v);
            }
        }
        let (a, b) = (self.operand(an)?, self.operand(bn)?);
        self.emit(n, Op::Binary { op }, &[a, b])
    }

    /// Folds `y + c` into y's producer when y is the output of a bias-less linear or
    /// conv that feeds only this add, and `c` holds one value per output channel laid
    /// along the channel axis. Returns the producer, now with a bias.
    fn fold_bias(&mut self, y_name: &str, y: NodeIndex, c: &ConstTensor) -> Option<Value> {
        if self.uses.get(y_name).copied() != Some(1) || !c.is_float() {
            return None;
        }
        let out = &self.g.node(y).output.shape;
        let (channels, axis, with_bias) = match &self.g.node(y).op {
            Op::Linear {
                out_features,
                bias: false,
                axis: None,
                tied: false,
            } => (*out_features, out.len() - 1, linear(*out_features, true)),
            Op::Conv2d(cv) if !cv.bias => (cv.out_channels, 1, Op::Conv2d(cv.clone().bias(true))),
            Op::Conv1d(cv) if !cv.bias => (
                cv.out_channels,
                1,
                Op::Conv1d(Conv1d {
                    bias: true,
                    ..cv.clone()
                }),
            ),
            _ => return None,
        };
        // Right-aligned broadcast: c's axes line up with the output's last axes.
        let offset = out.len().checked_sub(c.dims.len())?;
        let per_channel = c.elements() == channels
            && c.dims
                .iter()
                .enumerate()
                .all(|(i, &d)| d == if offset + i == axis { channels } else { 1 });
        if !per_channel {
            return None;
        }
        self.g.g[y].op = with_bias;
        Some(Value::Act(y))
    }

    /// MaxPool/AveragePool on NCHW with symmetric padding and floor rounding.
    fn pool(&mut self, n: &NodeRef<'m>, pool: PoolKind) -> Res<Value> {
        let x = self.act(n.req(0, "X")?)?;
        let xs = self.shape(x).to_vec();
        if xs.len() != 4 {
            return Err(format!("coex pools 2-D inputs [N, C, H, W], got {xs:?}"));
        }
        let a = n.attrs();
        let kernel = a
            .ints("kernel_shape")?
            .ok_or("attribute kernel_shape is missing")?
            .into_iter()
            .map(|k| positive(k, "kernel_shape"))
            .collect::<Res<Vec<_>>>()?;
        if kernel.len() != 2 {
            return Err(format!("kernel_shape {kernel:?} is not 2-D"));
        }
        let stride = per_axis(&a, "strides", 2)?;
        if pool == PoolKind::Max && per_axis(&a, "dilations", 2)? != [1, 1] {
            return Err("dilated pooling is not supported".into());
        }
        let (begin, end) = pads(&a, &xs[2..], &kernel, &stride, &[1, 1])?;
        if begin != end {
            return Err(format!(
                "asymmetric padding {begin:?} before / {end:?} after is not supported; coex pools pad both sides equally"
            ));
        }
        if a.int("ceil_mode", 0)? != 0 {
            for i in 0..2 {
                let span = (xs[2 + i] + 2 * begin[i]).saturating_sub(kernel[i]);
                if span % stride[i] != 0 {
                    return Err(
                        "ceil_mode=1 adds a partial window here; coex pools with floor rounding (export with ceil_mode=0)".into(),
                    );
                }
            }
        }
        let op = Op::Pool {
            pool,
            kernel: [kernel[0], kernel[1]],
            stride: [stride[0], stride[1]],
            pad: [begin[0], begin[1]],
        };
        self.emit(n, op, &[x])
    }

    fn global_pool(&mut self, n: &NodeRef<'m>, pool: PoolKind) -> Res<Value> {
        let x = self.act(n.req(0, "X")?)?;
        if self.shape(x).len() != 4 {
            return Err(format!(
                "coex pools globally over [N, C, H, W] inputs, got {:?}",
                self.shape(x)
            ));
        }
        self.emit(n, Op::GlobalPool { pool }, &[x])
    }

    /// A value with new dimensions: constants keep their values, activations get a
    /// reshape (a view, no work).
    fn reshaped(&mut self, n: &NodeRef<'m>, v: Value, dims: Vec<usize>) -> Res<Value> {
        match v {
            Value::Const(c) => Ok(Value::Const(Rc::new(c.with_dims(dims)))),
            Value::Act(x) => {
                let shape = dims.iter().map(|&d| d as i64).collect();
                self.emit(n, Op::Reshape { shape }, &[x])
            }
        }
    }

    fn flatten(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let v = self.value(n.req(0, "input")?)?;
        let dims = self.dims_of(&v);
        // Flatten's axis may also be `rank` (everything in the first factor).
        let raw = n.attrs().int("axis", 1)?;
        let rank = dims.len() as i64;
        let axis = if raw < 0 { raw + rank } else { raw };
        if !(0..=rank).contains(&axis) {
            return Err(format!("axis {raw} is out of range for rank {rank}"));
        }
        let axis = axis as usize;
        let target = vec![dims[..axis].iter().product(), dims[axis..].iter().product()];
        self.reshaped(n, v, target)
    }

    /// Reshape to a stored (or folded) shape; coex's reshape reads 0 and -1 as ONNX does.
    fn reshape(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let v = self.value(n.req(0, "data")?)?;
        let mut spec = self
            .konst(n.req(1, "shape")?, "shape")?
            .int_values("Reshape shape")?;
        if n.attrs().int("allowzero", 0)? != 0 && spec.contains(&0) {
            return Err("allowzero=1 with a 0 in the target shape is not supported".into());
        }
        let dims = self.dims_of(&v);
        if let Some((from, to)) = self.batch_rewrite {
            if spec.first() == Some(&(from as i64)) && dims.first() == Some(&to) {
                spec[0] = to as i64;
            }
        }
        check_reshape_size(&spec, &dims)?;
        let op = Op::Reshape { shape: spec };
        match v {
            Value::Act(x) => self.emit(n, op, &[x]),
            Value::Const(c) => {
                let t = op.infer(&[&TensorInfo::new(c.dims.clone(), DType::Fp32)])?;
                Ok(Value::Const(Rc::new(c.with_dims(t.shape))))
            }
        }
    }

    fn transpose(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let v = self.value(n.req(0, "data")?)?;
        let rank = self.dims_of(&v).len();
        let perm = match n.attrs().ints("perm")? {
            Some(p) => p
                .iter()
                .map(|&a| usize::try_from(a).map_err(|_| format!("perm {p:?} has a negative axis")))
                .collect::<Res<Vec<_>>>()?,
            None => (0..rank).rev().collect(),
        };
        match v {
            Value::Act(x) => self.emit(n, Op::Transpose { perm }, &[x]),
            Value::Const(c) => Ok(Value::Const(Rc::new(constant::transpose(&c, &perm)?))),
        }
    }

    /// Sum of one or more tensors: a chain of adds (`name`, `name.2`, …); a sum of
    /// constants folds.
    fn sum(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let names: Vec<&'m str> = (0..n.proto.input.len())
            .filter_map(|i| n.input(i))
            .collect();
        let values = names
            .iter()
            .map(|&name| self.value(name))
            .collect::<Res<Vec<_>>>()?;
        match values.as_slice() {
            [] => return Err("Sum has no inputs".into()),
            [only] => return Ok(only.clone()),
            _ => {}
        }
        let all_const: Option<Vec<&Const>> = values
            .iter()
            .map(|v| match v {
                Value::Const(c) => Some(c),
                Value::Act(_) => None,
            })
            .collect();
        if let Some(consts) = all_const {
            let mut acc = consts[0].as_ref().clone();
            for c in &consts[1..] {
                acc = constant::arith("Add", &acc, c)?;
            }
            return Ok(Value::Const(Rc::new(acc)));
        }
        let mut acc = self.operand(names[0])?;
        for (k, &name) in names.iter().enumerate().skip(1) {
            let b = self.operand(name)?;
            let suffix = if k == 1 {
                String::new()
            } else {
                format!(".{k}")
            };
            acc = self.add(
                n,
                &suffix,
                Op::Binary {
                    op: BinaryKind::Add,
                },
                &[acc, b],
            )?;
        }
        Ok(Value::Act(acc))
    }

    /// A stored tensor of the given shape filled with one value (default float 0).
    fn constant_of_shape(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let spec = self
            .konst(n.req(0, "input")?, "shape")?
            .int_values("shape")?;
        let dims = spec
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| format!("shape {spec:?} has a negative extent"))
            })
            .collect::<Res<Vec<_>>>()?;
        let (data_type, value) = match n.attrs().tensor("value")? {
            Some(t) => {
                let c = ConstTensor::from_proto(t)?;
                (c.data_type, c.scalar("value")?)
            }
            None => (data_type::FLOAT, 0.0),
        };
        Ok(Value::Const(Rc::new(ConstTensor::filled(
            dims, data_type, value,
        )?)))
    }

    fn softmax(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let x = self.act(n.req(0, "input")?)?;
        // Opset 13 changed the default from 1 (with flattening) to the last axis.
        let default = if self.opset_at_least(13) { -1 } else { 1 };
        let axis = normalize_axis(n.attrs().int("axis", default)?, self.shape(x).len())?;
        self.emit(n, Op::Softmax { axis }, &[x])
    }

    fn concat(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let names: Vec<&'m str> = (0..n.proto.input.len())
            .filter_map(|i| n.input(i))
            .collect();
        let values = names
            .iter()
            .map(|&name| self.value(name))
            .collect::<Res<Vec<_>>>()?;
        let first = values.first().ok_or("Concat has no inputs")?;
        let consts: Vec<Const> = values
            .iter()
            .filter_map(|v| match v {
                Value::Const(c) => Some(c.clone()),
                Value::Act(_) => None,
            })
            .collect();
        if consts.len() == values.len() {
            return Ok(Value::Const(Rc::new(constant::concat(&consts)?)));
        }
        let axis = normalize_axis(n.attrs().int("axis", 0)?, self.dims_of(first).len())?;
        let inputs = names
            .iter()
            .map(|&name| self.operand(name))
            .collect::<Res<Vec<_>>>()?;
        self.emit(n, Op::Concat { axis }, &inputs)
    }

    /// Casts of constants change their element type; casts of activations pass them
    /// through (coex costs activations in the graph's element type).
    fn cast(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let v = self.value(n.req(0, "input")?)?;
        let Value::Const(c) = v else { return Ok(v) };
        let mut cast = (*c).clone();
        cast.data_type = n.attrs().int("to", 0)? as i32;
        if !cast.is_float() {
            if let Some(values) = cast.values.as_mut() {
                values.iter_mut().for_each(|x| *x = x.trunc());
            }
        }
        Ok(Value::Const(Rc::new(cast)))
    }

    /// Shape of a tensor, as a constant: coex shapes are static.
    fn shape_node(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let dims = self.dims_of(&self.value(n.req(0, "data")?)?);
        let a = n.attrs();
        let (s, e) = constant::clamp_range(a.int("start", 0)?, a.int("end", i64::MAX)?, dims.len());
        let values: Vec<i64> = dims[s..e].iter().map(|&d| d as i64).collect();
        Ok(Value::Const(Rc::new(ConstTensor::ints(&values))))
    }

    /// Gather: of constants folds; a stored 2-D table at activation indices is an
    /// embedding lookup; one stored index into an activation is a slice.
    fn gather(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let (data, indices) = (
            self.value(n.req(0, "data")?)?,
            self.value(n.req(1, "indices")?)?,
        );
        let axis = normalize_axis(n.attrs().int("axis", 0)?, self.dims_of(&data).len())?;
        match (data, indices) {
            (Value::Const(d), Value::Const(i)) => Ok(Value::Const(Rc::new(constant::gather(&d, &i, axis)?))),
            (Value::Const(table), Value::Act(ids)) => match table.dims.as_slice() {
                &[vocab, dim] if axis == 0 => self.emit(n, Op::Embedding { vocab, dim }, &[ids]),
                _ => Err(format!(
                    "gathering from a stored {:?} tensor on axis {axis} is not supported; only embedding lookups (a 2-D table, axis 0) are",
                    table.dims
                )),
            },
            (Value::Act(x), Value::Const(i)) => self.gather_one(n, x, &i, axis),
            (Value::Act(_), Value::Act(_)) => Err("gathering from an activation at run-time indices is not supported".into()),
        }
    }

    /// `x[..., k, ...]` on `axis`: a slice, then a reshape dropping the axis when the
    /// index is a scalar (as in picking a class token).
    fn gather_one(
        &mut self,
        n: &NodeRef<'m>,
        x: NodeIndex,
        i: &ConstTensor,
        axis: usize,
    ) -> Res<Value> {
        let idx = i.int_values("Gather indices")?;
        let &[k] = idx.as_slice() else {
            return Err("gathering several indices from an activation is not supported".into());
        };
        let extent = self.shape(x)[axis] as i64;
        let k = if k < 0 { k + extent } else { k };
        if !(0..extent).contains(&k) {
            return Err(format!(
                "index {k} is out of range for axis {axis} of extent {extent}"
            ));
        }
        let op = Op::Slice {
            axis,
            start: k as usize,
            end: k as usize + 1,
        };
        let y = self.add(n, "", op, &[x])?;
        if !i.dims.is_empty() {
            return Ok(Value::Act(y));
        }
        let mut shape: Vec<i64> = self.shape(y).iter().map(|&d| d as i64).collect();
        shape.remove(axis);
        Ok(Value::Act(self.add(
            n,
            ".squeeze",
            Op::Reshape { shape },
            &[y],
        )?))
    }

    /// Axes from input 1 (opset 13+) or the `axes` attribute (before).
    fn axes(&self, n: &NodeRef<'m>) -> Res<Option<Vec<i64>>> {
        if self.opset_at_least(13) {
            n.input(1)
                .map(|name| self.konst(name, "axes")?.int_values("axes"))
                .transpose()
        } else {
            n.attrs().ints("axes")
        }
    }

    fn unsqueeze(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let v = self.value(n.req(0, "data")?)?;
        let dims = self.dims_of(&v);
        let axes = self.axes(n)?.ok_or("axes are missing")?;
        let rank = dims.len() + axes.len();
        let mut new_axes = axes
            .iter()
            .map(|&a| normalize_axis(a, rank))
            .collect::<Res<Vec<_>>>()?;
        new_axes.sort_unstable();
        new_axes.dedup();
        if new_axes.len() != axes.len() {
            return Err(format!("axes {axes:?} repeat an axis"));
        }
        let mut rest = dims.iter();
        let target = (0..rank)
            .map(|i| {
                if new_axes.contains(&i) {
                    1
                } else {
                    rest.next().copied().unwrap_or(1)
                }
            })
            .collect();
        self.reshaped(n, v, target)
    }

    fn squeeze(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let v = self.value(n.req(0, "data")?)?;
        let dims = self.dims_of(&v);
        let drop: Vec<usize> = match self.axes(n)? {
            None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
            Some(axes) => axes
                .iter()
                .map(|&a| normalize_axis(a, dims.len()))
                .collect::<Res<Vec<_>>>()?,
        };
        if let Some(&bad) = drop.iter().find(|&&i| dims[i] != 1) {
            return Err(format!(
                "cannot squeeze axis {bad} of {dims:?}: its extent is not 1"
            ));
        }
        let target = (0..dims.len())
            .filter(|i| !drop.contains(i))
            .map(|i| dims[i])
            .collect();
        self.reshaped(n, v, target)
    }

    /// Slice with step 1: one coex slice per cut axis of an activation; 1-D constants fold.
    fn slice(&mut self, n: &NodeRef<'m>) -> Res<Value> {
        let v = self.value(n.req(0, "data")?)?;
        let SliceArgs {
            starts,
            ends,
            axes,
            steps,
        } = self.slice_args(n)?;
        if steps.iter().any(|&s| s != 1) {
            return Err(format!("steps {steps:?}: only step 1 is supported"));
        }
        let dims = self.dims_of(&v);
        let axes = match axes {
            Some(a) => a
                .iter()
                .map(|&x| normalize_axis(x, dims.len()))
                .collect::<Res<Vec<_>>>()?,
            None => (0..starts.len()).collect(),
        };
        if starts.len() != ends.len() || axes.len() != starts.len() {
            return Err("starts, ends and axes differ in length".into());
        }
        let x = match v {
            Value::Const(c) => {
                return match (axes.as_slice(), c.dims.len()) {
                    (&[0], 1) => Ok(Value::Const(Rc::new(constant::slice1d(
                        &c, starts[0], ends[0],
                    )?))),
                    _ => Err("only 1-D stored tensors slice at import time".into()),
                }
            }
            Value::Act(x) => x,
        };
        let mut y = x;
        for (j, &axis) in axes.iter().enumerate() {
            let (start, end) = constant::clamp_range(starts[j], ends[j], dims[axis]);
            if start == 0 && end == dims[axis] {
                continue;
            }
            let suffix = if axes.len() > 1 {
                format!(".{axis}")
            } else {
                String::new()
            };
            y = self.add(n, &suffix, Op::Slice { axis, start, end }, &[y])?;
        }
        Ok(Value::Act(y))
    }

    /// Slice bounds from inputs (opset 10+) or attributes (before).
    fn slice_args(&self, n: &NodeRef<'m>) -> Res<SliceArgs> {
        if !self.opset_at_least(10) {
            let a = n.attrs();
            let starts = a.ints("starts")?.ok_or("starts are missing")?;
            let steps = vec![1; starts.len()];
            return Ok(SliceArgs {
                ends: a.ints("ends")?.ok_or("ends are missing")?,
                axes: a.ints("axes")?,
                starts,
                steps,
            });
        }
        let ints = |i: usize, what: &str| -> Res<Option<Vec<i64>>> {
            n.input(i)
                .map(|name| self.konst(name, what)?.int_values(what))
                .transpose()
        };
        let starts = ints(1, "starts")?.ok_or("starts are missing")?;
        Ok(SliceArgs {
            ends: ints(2, "ends")?.ok_or("ends are missing")?,
            axes: ints(3, "axes")?,
            steps: ints(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]),
            starts,
        })
    }
}

/// The bounds of a `Slice`; `axes: None` means the first `starts.len()` axes.
struct SliceArgs {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Vec<i64>,
}

/// A linear layer on the last axis.
fn linear(out_features: usize, bias: bool) -> Op {
    Op::Linear {
        out_features,
        bias,
        axis: None,
        tied: false,
    }
}

/// The value of a `Constant` node.
fn constant_node(a: &Attrs) -> Res<ConstTensor> {
    if let Some(t) = a.tensor("value")? {
        return ConstTensor::from_proto(t);
    }
    if a.has("value_float") {
        let v = f64::from(a.float("value_float", 0.0)?);
        return Ok(ConstTensor::new(vec![], data_type::FLOAT, vec![v]));
    }
    if let Some(vs) = a.floats("value_floats")? {
        let values = vs.iter().map(|&v| f64::from(v)).collect();
        return Ok(ConstTensor::new(vec![vs.len()], data_type::FLOAT, values));
    }
    if a.has("value_int") {
        let v = a.int("value_int", 0)? as f64;
        return Ok(ConstTensor::new(vec![], data_type::INT64, vec![v]));
    }
    if let Some(vs) = a.ints("value_ints")? {
        return Ok(ConstTensor::ints(&vs));
    }
    Err("only tensor, float(s) and int(s) values are supported (sparse and string constants are not)".into())
}

/// Largest extent, stride, dilation, pad or group the importer accepts. Real models
/// stay far below it; the cap keeps arithmetic on values read from a corrupt file
/// from overflowing.
const MAX_EXTENT: i64 = 1 << 24;

fn positive(v: i64, what: &str) -> Res<usize> {
    if !(1..=MAX_EXTENT).contains(&v) {
        return Err(format!(
            "{what} must be between 1 and {MAX_EXTENT}, got {v}"
        ));
    }
    Ok(v as usize)
}

/// Rejects a target shape holding more elements than the input before coex's reshape
/// multiplies its extents (a corrupt shape tensor could overflow that product).
fn check_reshape_size(spec: &[i64], input: &[usize]) -> Res<()> {
    let extent = |(i, &d): (usize, &i64)| match d {
        0 => input.get(i).map_or(1, |&e| e as u128),
        d if d > 0 => d as u128,
        _ => 1,
    };
    let target = spec
        .iter()
        .enumerate()
        .map(extent)
        .fold(1u128, u128::saturating_mul);
    let total = input
        .iter()
        .fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
    if target > total {
        return Err(format!(
            "target shape {spec:?} holds more elements than the input {input:?}"
        ));
    }
    Ok(())
}

/// ONNX axis in `-rank..rank` to `0..rank`.
fn normalize_axis(axis: i64, rank: usize) -> Res<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// A per-spatial-axis attribute (strides, dilations), default 1.
fn per_axis(a: &Attrs, name: &str, axes: usize) -> Res<Vec<usize>> {
    let Some(v) = a.ints(name)? else {
        return Ok(vec![1; axes]);
    };
    if v.len() != axes {
        return Err(format!("{name} {v:?} should have {axes} entries"));
    }
    v.into_iter().map(|x| positive(x, name)).collect()
}

/// Padding before and after each spatial axis, from `pads` or `auto_pad`.
fn pads(
    a: &Attrs,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> Res<(Vec<usize>, Vec<usize>)> {
    let n = input.len();
    match a.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => {
            let p = a.ints("pads")?.unwrap_or_else(|| vec![0; 2 * n]);
            if p.len() != 2 * n || p.iter().any(|&x| !(0..=MAX_EXTENT).contains(&x)) {
                return Err(format!(
                    "pads {p:?} should be {} entries between 0 and {MAX_EXTENT}",
                    2 * n
                ));
            }
            let p: Vec<usize> = p.iter().map(|&x| x as usize).collect();
            Ok((p[..n].to_vec(), p[n..].to_vec()))
        }
        "VALID" => Ok((vec![0; n], vec![0; n])),
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            let (mut begin, mut end) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for i in 0..n {
                if kernel[i] == 0 || input[i] == 0 {
                    return Err(format!(
                        "kernel {kernel:?} and input {input:?} need every extent ≥ 1"
                    ));
                }
                let out = input[i].div_ceil(stride[i]);
                let span = (kernel[i] - 1) * dilation[i] + 1;
                let total = ((out - 1) * stride[i] + span).saturating_sub(input[i]);
                let (small, big) = (total / 2, total - total / 2);
                let (b, e) = if mode == "SAME_UPPER" {
                    (small, big)
                } else {
                    (big, small)
                };
                begin.push(b);
                end.push(e);
            }
            Ok((begin, end))
        }
        other => Err(format!(
            "auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
        )),
    }
}
