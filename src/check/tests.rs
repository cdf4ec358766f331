//! Per-op checks of the reference engine: for every op kind, a one-op graph whose
//! counted MACs must equal the lowering's modeled MACs exactly, whose naive output must
//! agree with the independent GEMM path (MAC ops), and whose lowered Einsums, run by the
//! generic Einsum executor on the naive operands, must reproduce the naive products.
//! Where a test states a MAC count or a value by hand, that is the independent thing
//! it is checked against as well.

use super::*;
use crate::workload::op::{Conv2d, Op};
use crate::workload::spec::single_op_graph;
use crate::workload::{Activation, BinaryKind, DType, PoolKind};

const SEED: u64 = 42;

/// Verifies a graph and fails with the full table when anything disagrees.
fn passes(g: &Graph) -> Verification {
    let v = verify(g, SEED).unwrap_or_else(|e| panic!("{}: {e}", g.name));
    assert!(v.passed(), "{v}\n{:#?}", v.problems(TOLERANCE));
    v
}

fn spec(text: &str) -> Verification {
    passes(&single_op_graph(text).unwrap_or_else(|e| panic!("{text}: {e}")))
}

/// The checks a MAC op must have gone through: MACs counted, a GEMM-path comparison and
/// one Einsum comparison per lowered Einsum.
fn assert_mac_layer(v: &Verification, layer: &str, einsums: usize) -> u64 {
    let l = v
        .layer(layer)
        .unwrap_or_else(|| panic!("no layer {layer} in\n{v}"));
    assert!(l.counted_macs > 0, "{layer} counted no MACs");
    assert_eq!(l.counted_macs, l.modeled_macs);
    assert!(l.gemm_rel_err.is_some(), "{layer} skipped the GEMM path");
    assert_eq!(l.einsums.len(), einsums, "{layer} einsums compared");
    l.counted_macs
}

// ---- convolutions: checked against a hand MAC count N·K·P·Q·(C/G)·R·S (with P, Q from
// ---- the PyTorch output formula), the im2col GEMM path and the lowered Einsum ----

#[test]
fn conv2d_stride_pad_groups() {
    let v = spec("conv2d n=1 c=4 h=9 w=9 k=6 r=3 s=3 stride=2 pad=1 groups=2");
    // P = Q = (9 + 2 - 3)/2 + 1 = 5.
    assert_eq!(assert_mac_layer(&v, "conv2d", 1), 6 * 5 * 5 * 2 * 9);
}

#[test]
fn conv2d_dilation_rectangular_kernel_bias() {
    let v = spec("conv2d n=2 c=3 h=8 w=7 k=4 r=3 s=2 dilation=2 pad=2 bias=true");
    // P = (8+4-4-1)/1+1 = 8, Q = (7+4-2-1)/1+1 = 9.
    assert_eq!(assert_mac_layer(&v, "conv2d", 1), 2 * 4 * 8 * 9 * 3 * 3 * 2);
}

#[test]
fn depthwise_conv2d() {
    let v = spec("dwconv2d n=1 c=4 h=7 w=7 kernel=3 stride=2 pad=1 bias=true");
    assert_eq!(assert_mac_layer(&v, "dwconv2d", 1), 4 * 4 * 4 * 9);
}

#[test]
fn conv2d_asymmetric_padding_and_per_axis_stride_dilation() {
    // pad (top 0, left 1) / (bottom 2, right 0), stride (2, 1), dilation (1, 2):
    // P = (6+0+2-3)/2+1 = 3, Q = (7+1+0-3)/1+1 = 6 (span 2·(2−1)+1 = 3).
    let mut g = Graph::new("asym", DType::Fp32);
    let x = g.input("x", &[1, 2, 6, 7]).unwrap();
    let c = Conv2d {
        out_channels: 3,
        kernel: [3, 2],
        stride: [2, 1],
        pad_begin: [0, 1],
        pad_end: [2, 0],
        dilation: [1, 2],
        groups: 1,
        bias: false,
    };
    g.add("conv", Op::Conv2d(c), &[x]).unwrap();
    let v = passes(&g);
    assert_eq!(assert_mac_layer(&v, "conv", 1), 3 * 3 * 6 * 2 * 3 * 2);
}

#[test]
fn conv1d_stride_pad_groups_bias() {
    let v = spec("conv1d n=2 c=4 l=10 k=6 kernel=3 stride=2 pad=1 groups=2 bias=true");
    // P = (10 + 2 - 3)/2 + 1 = 5.
    assert_eq!(assert_mac_layer(&v, "conv1d", 1), 2 * 6 * 5 * 2 * 3);
}

#[test]
fn causal_depthwise_conv1d_keeps_length() {
    let v = spec("conv1d n=1 c=4 l=9 kernel=4 causal=true depthwise=true dilation=2");
    assert_eq!(assert_mac_layer(&v, "conv1d", 1), 4 * 9 * 4);
}

// ---- linear and matmul: checked against a hand MAC count, the nalgebra GEMM path (rows
// ---- gathered along the contracted axis) and the lowered Einsum ----

#[test]
fn linear_last_axis_with_bias() {
    let v = spec("linear tokens=5 in=7 out=3");
    assert_eq!(assert_mac_layer(&v, "linear", 1), 5 * 7 * 3);
}

#[test]
fn gemm_spec_on_a_batched_input() {
    let v = spec("gemm m=4 n=5 k=6 b=2");
    assert_eq!(assert_mac_layer(&v, "gemm", 1), 2 * 4 * 5 * 6);
}

#[test]
fn linear_on_axis_1_token_mixing() {
    let mut g = Graph::new("mix", DType::Fp32);
    let x = g.input("x", &[2, 5, 3]).unwrap();
    let op = Op::Linear {
        out_features: 4,
        bias: true,
        axis: Some(1),
        tied: false,
    };
    g.add("tokens", op, &[x]).unwrap();
    let v = passes(&g);
    assert_eq!(assert_mac_layer(&v, "tokens", 1), 2 * 3 * 5 * 4);
}

#[test]
fn batched_matmul_transpose_b() {
    let v = spec("matmul b=3 m=4 n=5 k=6 transpose_b=true");
    assert_eq!(assert_mac_layer(&v, "matmul", 1), 3 * 4 * 5 * 6);
}

#[test]
fn plain_matmul() {
    spec("matmul m=4 n=5 k=6");
}

#[test]
fn rank4_batched_matmul_transpose_b() {
    let mut g = Graph::new("bmm4", DType::Fp32);
    let a = g.input("a", &[2, 3, 4, 5]).unwrap();
    let b = g.input("b", &[2, 3, 6, 5]).unwrap();
    g.add("mm", Op::MatMul { transpose_b: true }, &[a, b])
        .unwrap();
    let v = passes(&g);
    assert_eq!(assert_mac_layer(&v, "mm", 1), 2 * 3 * 4 * 6 * 5);
}

#[test]
fn matmul_with_a_shared_2d_b() {
    let mut g = Graph::new("shared", DType::Fp32);
    let a = g.input("a", &[2, 3, 4, 5]).unwrap();
    let b = g.input("b", &[5, 6]).unwrap();
    g.add("mm", Op::MatMul { transpose_b: false }, &[a, b])
        .unwrap();
    let v = passes(&g);
    assert_eq!(assert_mac_layer(&v, "mm", 1), 2 * 3 * 4 * 5 * 6);
}

// ---- attention: checked against the hand count 2·B·heads·Sq·keys·head_dim, per-head
// ---- nalgebra GEMMs with their own mask and softmax, and the scores/context Einsums ----

#[test]
fn gqa_attention() {
    let v = spec("attention b=2 heads=4 kv_heads=2 seq=5 head_dim=3");
    assert_eq!(assert_mac_layer(&v, "attention", 2), 2 * 2 * 4 * 5 * 5 * 3);
}

#[test]
fn causal_multi_query_attention() {
    let v = spec("attention b=1 heads=4 kv_heads=1 seq=6 head_dim=4 causal=true");
    assert_eq!(assert_mac_layer(&v, "attention", 2), 2 * 4 * 6 * 6 * 4);
}

#[test]
fn causal_decode_with_kv_cache() {
    let v = spec("attention b=2 heads=4 kv_heads=2 seq=1 head_dim=4 causal=true kv_cache=7");
    assert_eq!(assert_mac_layer(&v, "attention", 2), 2 * 2 * 4 * 8 * 4);
}

#[test]
fn causal_prefill_after_a_cache_and_unequal_kv_length() {
    spec("attention b=1 heads=2 seq=3 head_dim=4 causal=true kv_cache=4");
    spec("attention b=1 heads=2 seq=2 kv_len=5 head_dim=3");
    spec("attention b=2 heads=4 kv_heads=2 seq=2 kv_len=4 head_dim=3 causal=true kv_cache=1");
}

#[test]
fn causal_mask_hides_the_future() {
    // Independent of both paths' softmax: with a causal mask and no cache, query 0 sees
    // only key 0, so its context is exactly V's first row for its head.
    let g = single_op_graph("attention b=1 heads=2 seq=4 head_dim=3 causal=true").unwrap();
    let exec = naive::execute(&g, &DataGen::new(SEED)).unwrap();
    let out = exec.output(g.find("attention").unwrap()).unwrap();
    let v = exec.output(g.find("v").unwrap()).unwrap();
    for c in 0..6 {
        assert!((out.data[c] - v.data[c]).abs() < 1e-12);
    }
}

// ---- ops without MACs: counted == modeled == 0, shape == shape inference, and each
// ---- output checked against an independent formulation written here ----

/// Runs a graph through `verify` (MACs, shapes) and returns the oracle's execution.
fn run(g: &Graph) -> naive::Execution {
    passes(g);
    naive::execute(g, &DataGen::new(SEED)).unwrap()
}

fn output<'a>(exec: &'a naive::Execution, g: &Graph, name: &str) -> &'a Tensor {
    exec.output(g.find(name).unwrap()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

#[test]
fn batchnorm_is_a_per_channel_affine() {
    // Against y = x·scale[c] + shift[c] with the keyed parameters, indexed by hand.
    let g = single_op_graph("batchnorm n=2 c=3 h=4 w=5").unwrap();
    let exec = run(&g);
    let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, "batchnorm"));
    let gen = DataGen::new(SEED);
    let (scale, shift) = (
        gen.scale("batchnorm.weight", 3),
        gen.bias("batchnorm.bias", 3),
    );
    for (n, c, h, w) in (0..2).flat_map(|n| {
        (0..3).flat_map(move |c| (0..4).flat_map(move |h| (0..5).map(move |w| (n, c, h, w))))
    }) {
        let want = x.at(&[n, c, h, w]) * scale.data[c] + shift.data[c];
        assert!(close(y.at(&[n, c, h, w]), want));
    }
}

#[test]
fn layer_and_rms_norm_statistics() {
    // Against the defining statistics: undoing γ/β, layer-norm rows have mean 0 and
    // variance var/(var+eps); RMS-norm rows have mean square ms/(ms+eps).
    for (kind, text) in [
        ("layernorm", "layernorm b=2 seq=3 d=8"),
        ("rmsnorm", "rmsnorm b=2 seq=3 d=8"),
    ] {
        let g = single_op_graph(text).unwrap();
        let exec = run(&g);
        let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, kind));
        let gen = DataGen::new(SEED);
        let gamma = gen.scale(&format!("{kind}.weight"), 8);
        let beta = gen.bias(&format!("{kind}.bias"), 8);
        for (xr, yr) in x.data.chunks(8).zip(y.data.chunks(8)) {
            let mean_x = xr.iter().sum::<f64>() / 8.0;
            let u: Vec<f64> = (0..8)
                .map(|i| match kind {
                    "layernorm" => (yr[i] - beta.data[i]) / gamma.data[i],
                    _ => yr[i] / gamma.data[i],
                })
                .collect();
            let sq = |v: &[f64], m: f64| v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / 8.0;
            if kind == "layernorm" {
                let var = sq(xr, mean_x);
                assert!(u.iter().sum::<f64>().abs() < 1e-12);
                assert!(close(sq(&u, 0.0), var / (var + naive::NORM_EPS)));
            } else {
                let ms = sq(xr, 0.0);
                assert!(close(sq(&u, 0.0), ms / (ms + naive::NORM_EPS)));
            }
        }
    }
}

#[test]
fn every_activation() {
    // Against published values of each function at x = 1 and x = −2.
    let known = [
        (Activation::Relu, 1.0, 0.0),
        (Activation::Relu6, 1.0, 0.0),
        (Activation::Gelu, 0.841_344_746, -0.045_500_264),
        (Activation::Silu, 0.731_058_579, -0.238_405_844),
        (Activation::Hardswish, 2.0 / 3.0, -1.0 / 3.0),
        (Activation::Hardsigmoid, 2.0 / 3.0, 1.0 / 6.0),
        (Activation::Sigmoid, 0.731_058_579, 0.119_202_922),
        (Activation::Tanh, 0.761_594_156, -0.964_027_580),
        (Activation::Softplus, 1.313_261_687, 0.126_928_011),
    ];
    for (a, at1, at_minus2) in known {
        assert!((a.apply(1.0) - at1).abs() < 1e-6, "{}", a.name());
        assert!((a.apply(-2.0) - at_minus2).abs() < 1e-6, "{}", a.name());
        let g = single_op_graph(&format!("{} shape=2x3x4", a.name())).unwrap();
        let exec = run(&g);
        let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, a.name()));
        assert!(x.data.iter().zip(&y.data).all(|(&u, &v)| v == a.apply(u)));
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    // Against explicit loops for [2,3,4] ⊙ [3,1]: b repeats along the first and last axes.
    spec("add shape=2x3x4");
    let mut g = Graph::new("bcast", DType::Fp32);
    let a = g.input("a", &[2, 3, 4]).unwrap();
    let b = g.input("b", &[3, 1]).unwrap();
    let mul = Op::Binary {
        op: BinaryKind::Mul,
    };
    g.add("mul", mul, &[a, b]).unwrap();
    let exec = run(&g);
    let (a, b, y) = (
        output(&exec, &g, "a"),
        output(&exec, &g, "b"),
        output(&exec, &g, "mul"),
    );
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                assert_eq!(y.at(&[i, j, k]), a.at(&[i, j, k]) * b.at(&[j, 0]));
            }
        }
    }
}

#[test]
fn softmax_is_normalized_exp() {
    // Against the definition: entries sum to 1 along the axis, ratios are exp(xᵢ − xⱼ).
    let g = single_op_graph("softmax shape=2x3x5 axis=1").unwrap();
    let exec = run(&g);
    let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, "softmax"));
    for a in 0..2 {
        for b in 0..5 {
            let s: f64 = (0..3).map(|i| y.at(&[a, i, b])).sum();
            assert!(close(s, 1.0));
            let ratio = y.at(&[a, 0, b]) / y.at(&[a, 2, b]);
            assert!(close(ratio, (x.at(&[a, 0, b]) - x.at(&[a, 2, b])).exp()));
        }
    }
}

#[test]
fn avg_pool_equals_a_depthwise_conv_with_constant_weights() {
    // Counting padding as zeros and dividing by the kernel area is exactly a depthwise
    // conv whose weights are all 1/area: the conv loop is the independent path.
    let g = single_op_graph("avgpool n=2 c=3 h=7 w=6 kernel=3 stride=2 pad=1").unwrap();
    let exec = run(&g);
    let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, "avgpool"));
    let conv = Conv2d::new(3, 3, 2, 1).groups(3);
    let w = Tensor::from_vec(&[3, 1, 3, 3], vec![1.0 / 9.0; 27]).unwrap();
    assert!(rel_err(y, &naive::conv2d(x, &w, &conv).0) < 1e-12);
}

#[test]
fn max_pool_is_the_max_of_shifted_copies() {
    // Kernel 3, stride 1, pad 1: y = elementwise max of the 9 shifts of x (out-of-range
    // shifts skipped), computed here on whole planes instead of windows.
    let g = single_op_graph("maxpool n=1 c=2 h=5 w=6 kernel=3 stride=1 pad=1").unwrap();
    let exec = run(&g);
    let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, "maxpool"));
    let mut want = Tensor::zeros(&x.shape);
    want.data.iter_mut().for_each(|v| *v = f64::NEG_INFINITY);
    for dh in -1i64..=1 {
        for dw in -1i64..=1 {
            for c in 0..2 {
                for h in 0..5i64 {
                    for w in 0..6i64 {
                        let (sh, sw) = (h + dh, w + dw);
                        if (0..5).contains(&sh) && (0..6).contains(&sw) {
                            let o = want.offset(&[0, c, h as usize, w as usize]);
                            want.data[o] =
                                want.data[o].max(x.at(&[0, c, sh as usize, sw as usize]));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(y, &want);
    spec("maxpool n=1 c=2 h=7 w=7 kernel=3 stride=2 pad=1");
}

#[test]
fn global_pools_are_means_and_maxima() {
    // Against direct means/maxima: rank 4 over H·W (= avgpool with a full-size window),
    // rank 3 over the tokens.
    let g = single_op_graph("globalpool n=2 c=3 h=4 w=4").unwrap();
    let exec = run(&g);
    let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, "globalpool"));
    let full = naive::pool2d(x, PoolKind::Avg, [4, 4], [1, 1], [0, 0]);
    assert!(rel_err(&full, y) < 1e-12);
    spec("globalpool n=2 c=3 h=4 w=4 pool=max");
    let mut g = Graph::new("seqpool", DType::Fp32);
    let x = g.input("x", &[2, 5, 3]).unwrap();
    g.add(
        "gap",
        Op::GlobalPool {
            pool: PoolKind::Avg,
        },
        &[x],
    )
    .unwrap();
    let exec = run(&g);
    let (x, y) = (output(&exec, &g, "x"), output(&exec, &g, "gap"));
    for b in 0..2 {
        for d in 0..3 {
            let mean = (0..5).map(|s| x.at(&[b, s, d])).sum::<f64>() / 5.0;
            assert!(close(y.at(&[b, 0, d]), mean));
        }
    }
}

#[test]
fn squeeze_excite() {
    let v = spec("se n=2 c=8 h=5 w=5 reduced=2 act=relu gate=hardsigmoid");
    // Against a hand count: two FCs of N·C·reduced MACs each.
    assert_eq!(assert_mac_layer(&v, "se", 2), 2 * (2 * 8 * 2));
}

#[test]
fn embedding_rows_are_table_rows() {
    // Against the table drawn under the layer's key: row b,s is table[ids[b,s]].
    let g = single_op_graph("embedding b=2 seq=5 vocab=11 dim=4").unwrap();
    let exec = run(&g);
    let (ids, y) = (output(&exec, &g, "ids"), output(&exec, &g, "embedding"));
    let table = DataGen::new(SEED).table("embedding.weight", &[11, 4]);
    for (i, &id) in ids.data.iter().enumerate() {
        assert!((0.0..11.0).contains(&id));
        let row = id as usize;
        assert_eq!(&y.data[i * 4..i * 4 + 4], &table.data[row * 4..row * 4 + 4]);
    }
}

#[test]
fn add_embedding_positions_class_token_and_token_types() {
    // Against the doc: the class token goes first and gets row 0; position i gets row i;
    // a 2-row token-type table adds row 0 everywhere.
    let mut g = Graph::new("embed", DType::Fp32);
    let x = g.input("x", &[2, 3, 4]).unwrap();
    let pos = Op::AddEmbedding {
        rows: 8,
        cls_token: true,
    };
    let pos = g.add("pos", pos, &[x]).unwrap();
    let types = Op::AddEmbedding {
        rows: 2,
        cls_token: false,
    };
    g.add("types", types, &[pos]).unwrap();
    let exec = run(&g);
    let (x, p, t) = (
        output(&exec, &g, "x"),
        output(&exec, &g, "pos"),
        output(&exec, &g, "types"),
    );
    let gen = DataGen::new(SEED);
    let (table, cls) = (
        gen.table("pos.weight", &[8, 4]),
        gen.table("pos.cls_token", &[4]),
    );
    let types_table = gen.table("types.weight", &[2, 4]);
    for b in 0..2 {
        for d in 0..4 {
            assert!(close(p.at(&[b, 0, d]), cls.data[d] + table.at(&[0, d])));
            for i in 1..4 {
                assert!(close(
                    p.at(&[b, i, d]),
                    x.at(&[b, i - 1, d]) + table.at(&[i, d])
                ));
                assert!(close(
                    t.at(&[b, i, d]),
                    p.at(&[b, i, d]) + types_table.at(&[0, d])
                ));
            }
        }
    }
}

#[test]
fn data_movement_ops_round_trip() {
    // Against identities: a transpose undone is the input, a slice of a concat is the
    // piece concatenated, a reshape keeps the data.
    spec("flatten shape=2x3x4");
    let mut g = Graph::new("moves", DType::Fp32);
    let a = g.input("a", &[2, 3, 4]).unwrap();
    let b = g.input("b", &[2, 2, 4]).unwrap();
    let c = g.add("cat", Op::Concat { axis: 1 }, &[a, b]).unwrap();
    let s = Op::Slice {
        axis: 1,
        start: 3,
        end: 5,
    };
    let s = g.add("slice", s, &[c]).unwrap();
    let t = g
        .add(
            "t",
            Op::Transpose {
                perm: vec![2, 0, 1],
            },
            &[s],
        )
        .unwrap();
    let t = g
        .add(
            "back",
            Op::Transpose {
                perm: vec![1, 2, 0],
            },
            &[t],
        )
        .unwrap();
    g.add(
        "reshape",
        Op::Reshape {
            shape: vec![0, -1, 2],
        },
        &[t],
    )
    .unwrap();
    let exec = run(&g);
    let (b, s) = (output(&exec, &g, "b"), output(&exec, &g, "slice"));
    assert_eq!(s, b);
    assert_eq!(output(&exec, &g, "back"), b);
    assert_eq!(output(&exec, &g, "reshape").data, b.data);
    assert_eq!(output(&exec, &g, "t").at(&[3, 1, 0]), b.at(&[1, 0, 3]));
}

// ---- MoE (checked against hand counts of router + per-expert GEMMs, the nalgebra path
// ---- with its own rank-based expert choice, and every expert Einsum) and the SSM ----

#[test]
fn moe_with_skewed_routing_and_capacity_clipping() {
    // Zipf(3) over 4 experts for 4 tokens × top-1 gives shares [3.4, .42, .16, .07] →
    // [3, 1, 0, 0]; capacity ceil(1.0·4/4) = 1 clips expert 0: [1, 1, 0, 0].
    let text = "moe b=1 seq=4 d=6 experts=4 top_k=1 ffn=5 skew=3 capacity=1.0";
    let g = single_op_graph(text).unwrap();
    let Op::Moe(m) = &g.node(g.find("moe").unwrap()).op else {
        panic!("not a moe")
    };
    assert_eq!(m.expert_tokens(4), vec![1, 1, 0, 0]);
    let v = passes(&g);
    // router 4·4·6 + 2 tokens × 3 matrices × 6·5; einsums: router + 2 experts × 3.
    assert_eq!(assert_mac_layer(&v, "moe", 7), 4 * 4 * 6 + 2 * 3 * 6 * 5);
}

#[test]
fn moe_balanced_ungated_top2() {
    let v = spec("moe b=2 seq=6 d=4 experts=3 top_k=2 ffn=5 gated=false act=gelu");
    // 24 assignments split 8/8/8; two matrices per expert.
    assert_eq!(assert_mac_layer(&v, "moe", 7), 12 * 3 * 4 + 24 * 2 * 4 * 5);
}

#[test]
fn moe_expert_choice_realizes_the_counts() {
    // The tokens that reach expert e are exactly counts[e] (read off the Einsum sizes).
    let text = "moe b=2 seq=8 d=6 experts=4 top_k=2 ffn=5 skew=1.2 capacity=1.0";
    let g = single_op_graph(text).unwrap();
    let idx = g.find("moe").unwrap();
    let Op::Moe(m) = &g.node(idx).op else {
        panic!("not a moe")
    };
    let counts = m.expert_tokens(16);
    let exec = naive::execute(&g, &DataGen::new(SEED)).unwrap();
    let run = exec.run(idx).unwrap();
    for (e, &n) in counts.iter().enumerate() {
        let rows = run
            .products
            .iter()
            .find(|p| p.name == format!("moe.e{e}.up"))
            .map(|p| p.input.shape[0])
            .unwrap_or(0);
        assert_eq!(rows, n, "expert {e}");
    }
    passes(&g);
}

#[test]
fn selective_scan_equals_its_closed_form() {
    // Against the unrolled (convolutional) form of the recurrence, computed here:
    // y_t = Σ_{s≤t} Σ_n C_t[n]·exp(A[d,n]·Σ_{u=s+1..t} Δ_u)·Δ_s·B_s[n]·x_s + D·x_t.
    let g = single_op_graph("selective_scan b=2 l=5 d_inner=3 d_state=4").unwrap();
    let v = passes(&g);
    let l = v.layer("selective_scan").unwrap();
    assert_eq!(
        (l.counted_macs, l.modeled_macs, l.gemm_rel_err),
        (0, 0, None)
    );
    let exec = naive::execute(&g, &DataGen::new(SEED)).unwrap();
    let [x, dt, bm, cm] = ["x", "delta", "B", "C"].map(|n| output(&exec, &g, n));
    let y = output(&exec, &g, "selective_scan");
    let (a, dskip) = data::scan_params(&DataGen::new(SEED), "selective_scan", 3, 4);
    for b in 0..2 {
        for d in 0..3 {
            for t in 0..5 {
                let mut want = dskip.data[d] * x.at(&[b, t, d]);
                for s in 0..=t {
                    let decay: f64 = (s + 1..=t).map(|u| dt.at(&[b, u, d])).sum();
                    for n in 0..4 {
                        want += cm.at(&[b, t, n])
                            * (a.at(&[d, n]) * decay).exp()
                            * dt.at(&[b, s, d])
                            * bm.at(&[b, s, n])
                            * x.at(&[b, s, d]);
                    }
                }
                assert!((y.at(&[b, t, d]) - want).abs() < 1e-9, "{b} {d} {t}");
            }
        }
    }
}

// ---- the checker can fail ----

#[test]
fn a_perturbed_weight_is_detected_in_that_layer_only() {
    let g = single_op_graph("conv2d n=1 c=4 h=6 w=6 k=4 r=3 s=3 pad=1").unwrap();
    let clean = DataGen::new(SEED);
    let faulty = clean.clone().with_fault("conv2d.weight", 5, 1e-2);
    let v = verify_with(&g, &clean, &faulty).unwrap();
    assert!(!v.passed());
    let l = v.layer("conv2d").unwrap();
    assert!(l.gemm_rel_err.unwrap() > TOLERANCE, "{v}");
    // The Einsum comparison uses the oracle's own operands, so it still agrees.
    assert!(l.einsums[0].rel_err < TOLERANCE);
    assert!(v.layer("x").unwrap().problems(TOLERANCE).is_empty());
}

#[test]
fn a_wrong_padding_offset_in_an_einsum_is_detected() {
    let g = single_op_graph("conv2d n=1 c=2 h=6 w=6 k=3 r=3 s=3 pad=1").unwrap();
    let idx = g.find("conv2d").unwrap();
    let exec = naive::execute(&g, &DataGen::new(SEED)).unwrap();
    let product = &exec.run(idx).unwrap().products[0];
    let mut e = lower::lower_node(&g, idx)
        .into_iter()
        .find_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            _ => None,
        })
        .unwrap();
    assert!(check_einsum(&e, Some(product)).unwrap().rel_err < 1e-12);
    // Shift the input's row projection by one: a padding bug.
    e.input.proj[2].offset += 1;
    assert!(check_einsum(&e, Some(product)).unwrap().rel_err > TOLERANCE);
}

#[test]
fn a_wrong_mac_model_and_a_missing_einsum_are_reported() {
    let g = single_op_graph("attention b=1 heads=2 seq=3 head_dim=2").unwrap();
    let idx = g.find("attention").unwrap();
    let exec = naive::execute(&g, &DataGen::new(SEED)).unwrap();
    let mut kernels = lower::lower_node(&g, idx);
    kernels.retain(|k| !matches!(k, Kernel::Einsum(e) if e.name.ends_with(".context")));
    let l = check_layer(&g, &exec, idx, &kernels, &DataGen::new(SEED)).unwrap();
    let p = l.problems(TOLERANCE);
    assert!(p.iter().any(|m| m.contains("counted")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("attention.context")), "{p:?}");
}

#[test]
fn a_missing_bias_kernel_is_reported() {
    let g = single_op_graph("linear tokens=2 in=3 out=2 bias=true").unwrap();
    let idx = g.find("linear").unwrap();
    let exec = naive::execute(&g, &DataGen::new(SEED)).unwrap();
    let mut kernels = lower::lower_node(&g, idx);
    kernels.retain(|k| matches!(k, Kernel::Einsum(_)));
    let l = check_layer(&g, &exec, idx, &kernels, &DataGen::new(SEED)).unwrap();
    assert!(l.problems(TOLERANCE).iter().any(|m| m.contains("bias")));
}

// ---- errors, not panics ----

#[test]
fn a_full_size_network_is_refused_not_run() {
    let g = crate::workload::families::build("resnet", toml::Table::new(), &Default::default())
        .unwrap();
    assert!(matches!(
        verify(&g, SEED),
        Err(CheckError::TooLarge { what: "MACs", .. })
    ));
    // No MACs at all, but 10^10 elements: refused before anything is allocated.
    let g = single_op_graph("relu shape=100000x100000").unwrap();
    let e = verify(&g, SEED).unwrap_err();
    assert!(e.to_string().contains("tensor elements"), "{e}");
}

#[test]
fn the_report_prints_one_row_per_layer() {
    let v = spec("linear tokens=2 in=3 out=2");
    let text = v.to_string();
    assert!(text.contains("linear") && text.contains("ok"), "{text}");
    assert!(v.max_rel_err() < 1e-12);
}

// ---- randomized sweeps: any valid configuration must pass all three comparisons ----

mod sweeps {
    use super::*;
    use crate::workload::op::{Attention, Conv1d};
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 48,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Random grouped, strided, dilated, asymmetrically padded convs. Checked against
        /// the GEMM path (im2col) and the Einsum executor; invalid shapes are skipped.
        #[test]
        fn conv2d_any_geometry(
            n in 1usize..3, cg in 1usize..4, kg in 1usize..4, groups in 1usize..4,
            h in 1usize..9, w in 1usize..9, r in 1usize..4, s in 1usize..4,
            sh in 1usize..4, sw in 1usize..4, dh in 1usize..3, dw in 1usize..3,
            pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3, bias: bool,
        ) {
            let mut g = Graph::new("conv", DType::Fp32);
            let x = g.input("x", &[n, cg * groups, h, w]).unwrap();
            let c = Conv2d {
                out_channels: kg * groups,
                kernel: [r, s],
                stride: [sh, sw],
                pad_begin: [pt, pl],
                pad_end: [pb, pr],
                dilation: [dh, dw],
                groups,
                bias,
            };
            prop_assume!(g.add("conv", Op::Conv2d(c), &[x]).is_ok());
            let v = verify(&g, SEED).unwrap();
            prop_assert!(v.passed(), "{}", v);
        }

        #[test]
        fn conv1d_any_geometry(
            n in 1usize..3, cg in 1usize..4, kg in 1usize..4, groups in 1usize..4,
            l in 1usize..12, kernel in 1usize..5, stride in 1usize..4, dil in 1usize..3,
            pad in 0usize..3, causal: bool, bias: bool,
        ) {
            let mut g = Graph::new("conv1d", DType::Fp32);
            let x = g.input("x", &[n, cg * groups, l]).unwrap();
            let c = Conv1d { out_channels: kg * groups, kernel, stride, pad, dilation: dil, groups, causal, bias };
            prop_assume!(g.add("conv", Op::Conv1d(c), &[x]).is_ok());
            let v = verify(&g, SEED).unwrap();
            prop_assert!(v.passed(), "{}", v);
        }

        /// Random (grouped-query, causal, cached) attention shapes, checked against the
        /// per-head GEMM path and the scores/context Einsums.
        #[test]
        fn attention_any_shape(
            b in 1usize..3, kv_heads in 1usize..3, group in 1usize..4, head_dim in 1usize..5,
            sq in 1usize..5, skv in 1usize..5, cache in 0usize..5, causal: bool,
        ) {
            let heads = kv_heads * group;
            let mut g = Graph::new("attn", DType::Fp32);
            let q = g.input("q", &[b, sq, heads * head_dim]).unwrap();
            let k = g.input("k", &[b, skv, kv_heads * head_dim]).unwrap();
            let v = g.input("v", &[b, skv, kv_heads * head_dim]).unwrap();
            let at = Attention { heads, kv_heads, head_dim, causal, kv_cache: cache };
            g.add("attn", Op::Attention(at), &[q, k, v]).unwrap();
            let v = verify(&g, SEED).unwrap();
            prop_assert!(v.passed(), "{}", v);
        }

        /// Random MoE routing statistics (skew, capacity, top-k, gated or not): counted
        /// MACs must equal the lowering's per-expert GEMMs, outputs the GEMM path's.
        #[test]
        fn moe_any_routing(
            tokens in 1usize..10, d in 1usize..5, experts in 1usize..6, k in 1usize..3,
            ffn in 1usize..5, skew in 0.0f64..3.0, capacity in 0.0f64..2.0, gated: bool,
        ) {
            let top_k = k.min(experts);
            let m = crate::workload::op::Moe {
                experts,
                top_k,
                ffn_dim: ffn,
                gated,
                activation: Activation::Silu,
                capacity_factor: (capacity > 0.25).then_some(capacity),
                routing: if skew > 0.1 { crate::workload::Routing::Zipf(skew) } else { crate::workload::Routing::Balanced },
            };
            let mut g = Graph::new("moe", DType::Fp32);
            let x = g.input("x", &[1, tokens, d]).unwrap();
            g.add("moe", Op::Moe(m), &[x]).unwrap();
            let v = verify(&g, SEED).unwrap();
            prop_assert!(v.passed(), "{}", v);
        }

        /// Linear on any axis of a rank-1..4 tensor.
        #[test]
        fn linear_any_axis(dims in proptest::collection::vec(1usize..5, 1..5), pick in 0usize..4, out in 1usize..5, bias: bool) {
            let axis = pick % dims.len();
            let mut g = Graph::new("linear", DType::Fp32);
            let x = g.input("x", &dims).unwrap();
            let op = Op::Linear { out_features: out, bias, axis: Some(axis), tied: false };
            g.add("fc", op, &[x]).unwrap();
            let v = verify(&g, SEED).unwrap();
            prop_assert!(v.passed(), "{}", v);
        }
    }
}
