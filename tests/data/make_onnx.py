"""Builds the small ONNX models that tests/onnx.rs imports.

Run from the repository root with onnx 1.17 and numpy:

    python3 -m venv /tmp/onnxvenv && /tmp/onnxvenv/bin/pip install onnx==1.17.0 numpy
    /tmp/onnxvenv/bin/python tests/data/make_onnx.py

Every model passes onnx.checker (with full shape inference). The parameter count
coex must report is computed here from the initializers and checked against the
hand-computed figure that tests/onnx.rs asserts: float initializers of more than
one element, excluding BatchNormalization running mean/var (buffers, not weights).
Int64 shape tensors and scalar factors are not weights.
"""

import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(0)


def weight(name, *shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32) * 0.1, name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def scalar(name, value):
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def const_node(output, array):
    return helper.make_node("Constant", [], [output], name=output, value=numpy_helper.from_array(array, output))


def expected_params(model, buffers=()):
    total = 0
    for t in model.graph.initializer:
        size = int(np.prod(t.dims)) if t.dims else 1
        if t.data_type == TensorProto.FLOAT and size > 1 and t.name not in buffers:
            total += size
    return total


def save(model, name, params, buffers=()):
    onnx.checker.check_model(model, full_check=True)
    got = expected_params(model, buffers)
    assert got == params, f"{name}: initializers hold {got} weights, expected {params}"
    path = os.path.join(HERE, name)
    onnx.save(model, path)
    size = os.path.getsize(path)
    assert size < 200_000, f"{name} is {size} bytes"
    print(f"{name}: {size} bytes, {params} params")


def small_cnn():
    """Conv+BN+Relu, MaxPool, strided Conv with asymmetric pads, depthwise Conv+Clip(0,6),
    GlobalAveragePool, Flatten, Gemm(transB). Input batch is symbolic."""
    inits = [
        weight("conv1.w", 8, 3, 3, 3),
        weight("conv1.b", 8),
        weight("bn1.scale", 8),
        weight("bn1.bias", 8),
        weight("bn1.mean", 8),
        numpy_helper.from_array(np.abs(RNG.standard_normal(8)).astype(np.float32) + 0.5, "bn1.var"),
        weight("conv2.w", 16, 8, 3, 3),
        weight("dw.w", 16, 1, 3, 3),
        weight("dw.b", 16),
        scalar("clip.min", 0.0),
        scalar("clip.max", 6.0),
        weight("fc.w", 10, 16),
        weight("fc.b", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["b1"], name="bn1"
        ),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        # TF-style SAME padding of an even input: one row/column after, none before.
        helper.make_node(
            "Conv", ["p1", "conv2.w"], ["c2"], name="conv2", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]
        ),
        helper.make_node("Conv", ["c2", "dw.w", "dw.b"], ["c3"], name="dwconv", group=16, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c3", "clip.min", "clip.max"], ["r3"], name="relu6"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    # conv1 216+8, bn1 16, conv2 1152, dwconv 144+16, fc 160+10
    save(model, "small_cnn.onnx", 1722, buffers=("bn1.mean", "bn1.var"))


def tiny_block():
    """One transformer block on x [B, 8, 16], 2 heads of 8, FFN 32, as exporters write it:
    MatMul+Add projections, reshapes from an initializer, a Constant node and a
    Shape/Gather/Unsqueeze/Concat chain, scaled attention scores, Softmax, residual,
    LayerNormalization, erf GELU, and a learned per-channel layer scale."""
    S, D, H, Dh, F = 8, 16, 2, 8, 32
    inits = [
        weight("q.w", D, D), weight("q.b", D),
        weight("k.w", D, D), weight("k.b", D),
        weight("v.w", D, D), weight("v.b", D),
        weight("o.w", D, D), weight("o.b", D),
        weight("ln.g", D), weight("ln.b", D),
        weight("fc1.w", D, F), weight("fc1.b", F),
        weight("fc2.w", F, D), weight("fc2.b", D),
        weight("layer_scale", D),
        scalar("attn.scale", 1.0 / np.sqrt(Dh)),
        ints("k.shape", [0, 0, H, Dh]),
        ints("ctx.shape", [0, 0, D]),
        ints("v.tail", [S, H, Dh]),
        ints("zero", 0),
        ints("axes0", [0]),
    ]
    mk = helper.make_node
    nodes = [
        mk("MatMul", ["x", "q.w"], ["q0"], name="q_proj"),
        mk("Add", ["q0", "q.b"], ["q"], name="q_bias"),
        mk("MatMul", ["x", "k.w"], ["k0"], name="k_proj"),
        mk("Add", ["k.b", "k0"], ["k"], name="k_bias"),
        mk("MatMul", ["x", "v.w"], ["v0"], name="v_proj"),
        mk("Add", ["v0", "v.b"], ["v"], name="v_bias"),
        const_node("q.shape", np.array([0, 0, H, Dh], dtype=np.int64)),
        mk("Reshape", ["q", "q.shape"], ["qr"], name="q_split"),
        mk("Transpose", ["qr"], ["qh"], name="q_heads", perm=[0, 2, 1, 3]),
        mk("Reshape", ["k", "k.shape"], ["kr"], name="k_split"),
        mk("Transpose", ["kr"], ["kt"], name="k_heads_t", perm=[0, 2, 3, 1]),
        mk("MatMul", ["qh", "kt"], ["scores"], name="scores"),
        mk("Mul", ["scores", "attn.scale"], ["scaled"], name="scale"),
        mk("Softmax", ["scaled"], ["attn"], name="softmax", axis=-1),
        mk("Shape", ["x"], ["x.shape"], name="x_shape"),
        mk("Gather", ["x.shape", "zero"], ["batch"], name="batch", axis=0),
        mk("Unsqueeze", ["batch", "axes0"], ["batch1"], name="batch1"),
        mk("Concat", ["batch1", "v.tail"], ["v.shape"], name="v_shape", axis=0),
        mk("Reshape", ["v", "v.shape"], ["vr"], name="v_split"),
        mk("Transpose", ["vr"], ["vh"], name="v_heads", perm=[0, 2, 1, 3]),
        mk("MatMul", ["attn", "vh"], ["ctx"], name="context"),
        mk("Transpose", ["ctx"], ["ctxt"], name="merge_heads", perm=[0, 2, 1, 3]),
        mk("Reshape", ["ctxt", "ctx.shape"], ["ctx2"], name="merge"),
        mk("MatMul", ["ctx2", "o.w"], ["o0"], name="o_proj"),
        mk("Add", ["o0", "o.b"], ["o"], name="o_bias"),
        mk("Dropout", ["o"], ["od"], name="dropout"),
        mk("Add", ["x", "od"], ["res"], name="residual"),
        mk("LayerNormalization", ["res", "ln.g", "ln.b"], ["ln"], name="ln", axis=-1, epsilon=1e-5),
        mk("MatMul", ["ln", "fc1.w"], ["h0"], name="fc1"),
        mk("Add", ["h0", "fc1.b"], ["h"], name="fc1_bias"),
        const_node("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32)),
        mk("Div", ["h", "sqrt2"], ["hd"], name="gelu/Div"),
        mk("Erf", ["hd"], ["he"], name="gelu/Erf"),
        const_node("one", np.array(1.0, dtype=np.float32)),
        mk("Add", ["he", "one"], ["ha"], name="gelu/Add"),
        mk("Mul", ["h", "ha"], ["hm"], name="gelu/Mul"),
        const_node("half", np.array(0.5, dtype=np.float32)),
        mk("Mul", ["hm", "half"], ["g"], name="gelu/Mul_1"),
        mk("MatMul", ["g", "fc2.w"], ["f0"], name="fc2"),
        mk("Add", ["f0", "fc2.b"], ["f"], name="fc2_bias"),
        mk("Mul", ["f", "layer_scale"], ["fs"], name="layer_scale_mul"),
        mk("Add", ["ln", "fs"], ["y0"], name="residual2"),
        mk("Identity", ["y0"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", S, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", S, D])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # q/k/v/o 4*(256+16), ln 32, fc1 512+32, fc2 512+16, layer scale 16
    save(model, "tiny_block.onnx", 2208)


def small_conv1d():
    """Conv1d with bias, SiLU as x*Sigmoid(x), causal dilated depthwise Conv1d whose bias
    arrives as a separate Add, Flatten, Gemm without transB. Batch fixed at 2."""
    inits = [
        weight("c1.w", 8, 4, 3), weight("c1.b", 8),
        weight("dw.w", 8, 1, 3), weight("dw.b", 8, 1),
        weight("fc.w", 256, 4), weight("fc.b", 4),
    ]
    mk = helper.make_node
    nodes = [
        mk("Conv", ["seq", "c1.w", "c1.b"], ["c1"], name="conv1", pads=[1, 1]),
        mk("Sigmoid", ["c1"], ["sig"], name="silu/Sigmoid"),
        mk("Mul", ["c1", "sig"], ["s"], name="silu/Mul"),
        mk("Conv", ["s", "dw.w"], ["d0"], name="causal_dw", group=8, dilations=[2], pads=[4, 0]),
        mk("Add", ["d0", "dw.b"], ["d"], name="causal_dw_bias"),
        mk("Flatten", ["d"], ["flat"], name="flatten"),
        mk("Gemm", ["flat", "fc.w", "fc.b"], ["out"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "small_conv1d",
        [helper.make_tensor_value_info("seq", TensorProto.FLOAT, [2, 4, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    # conv1 96+8, causal_dw 24+8, head 1024+4
    save(model, "small_conv1d.onnx", 1164)


def unsupported_op():
    """A Relu, then NonMaxSuppression (no coex op): the import must name nms_0."""
    nodes = [
        helper.make_node("Relu", ["scores"], ["s"], name="relu"),
        helper.make_node("NonMaxSuppression", ["boxes", "s"], ["selected"], name="nms_0"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsupported_op",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 10, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 10]),
        ],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, ["K", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    save(model, "unsupported_op.onnx", 0)


def reference_models():
    """Real architectures from the onnx package's own test data (Apache-2.0): ONNX
    model zoo networks (opset 9) whose weights were replaced by ConstantOfShape nodes,
    so they are small. Their counts are published (torchvision model cards)."""
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    for name in ["light_resnet50.onnx", "light_squeezenet.onnx", "light_vgg19.onnx"]:
        path = os.path.join(HERE, name)
        shutil.copyfile(os.path.join(light, name), path)
        onnx.checker.check_model(onnx.load(path))
        print(f"{name}: {os.path.getsize(path)} bytes, copied from {light}")


if __name__ == "__main__":
    small_cnn()
    tiny_block()
    small_conv1d()
    unsupported_op()
    reference_models()
