//! ONNX import end to end, on real files built by `tests/data/make_onnx.py` (onnx
//! 1.17, checked with `onnx.checker`): shapes, MACs, parameters, the batch override,
//! errors, and the `coex inspect` command line.

use coex::lower::lower;
use coex::workload::{
    self, Activation, BinaryKind, Conv1d, Conv2d, Graph, NormKind, Op, WorkloadError,
};
use std::path::PathBuf;
use std::process::Command;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load(name: &str, batch: Option<usize>) -> Graph {
    workload::load(&data(name), batch).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn macs(g: &Graph) -> u64 {
    lower(g).unwrap().iter().map(|w| w.macs()).sum()
}

fn op<'g>(g: &'g Graph, node: &str) -> &'g Op {
    &g.node(g.find(node).unwrap_or_else(|| panic!("no node '{node}'")))
        .op
}

fn shape(g: &Graph, node: &str) -> Vec<usize> {
    g.node(g.find(node).unwrap_or_else(|| panic!("no node '{node}'")))
        .output
        .shape
        .clone()
}

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.g.node_indices()
        .map(|i| g.node(i).op.kind_name())
        .collect()
}

#[test]
fn small_cnn_shapes_macs_and_params() {
    let g = load("small_cnn.onnx", None);
    // The symbolic batch "N" becomes 1.
    assert_eq!(shape(&g, "image"), [1, 3, 16, 16]);
    assert_eq!(
        op(&g, "conv1"),
        &Op::Conv2d(Conv2d::new(8, 3, 1, 1).bias(true))
    );
    assert_eq!(
        op(&g, "bn1"),
        &Op::Norm {
            kind: NormKind::Batch
        }
    );
    assert_eq!(shape(&g, "pool1"), [1, 8, 8, 8]);
    // Asymmetric pads [0, 0, 1, 1]: nothing before, one row/column after.
    let conv2 = Conv2d {
        pad_begin: [0, 0],
        pad_end: [1, 1],
        ..Conv2d::new(16, 3, 2, 0)
    };
    assert_eq!(op(&g, "conv2"), &Op::Conv2d(conv2));
    assert_eq!(shape(&g, "conv2"), [1, 16, 4, 4]);
    assert_eq!(
        op(&g, "dwconv"),
        &Op::Conv2d(Conv2d::new(16, 3, 1, 1).groups(16).bias(true))
    );
    assert_eq!(
        op(&g, "relu6"),
        &Op::Act {
            act: Activation::Relu6
        }
    );
    assert_eq!(shape(&g, "flatten"), [1, 16]);
    assert_eq!(
        op(&g, "fc"),
        &Op::Linear {
            out_features: 10,
            bias: true,
            axis: None,
            tied: false
        }
    );
    assert_eq!(shape(&g, "fc"), [1, 10]);
    // Initializers (weights, BN statistics, clip bounds) are not graph nodes.
    assert_eq!(
        kinds(&g),
        [
            "input",
            "conv2d",
            "batchnorm",
            "relu",
            "maxpool",
            "conv2d",
            "dwconv2d",
            "relu6",
            "globalpool",
            "reshape",
            "linear"
        ]
    );
    // conv1  8·16·16 outputs × 3·3·3 taps  = 55 296
    // conv2  16·4·4  outputs × 8·3·3 taps  = 18 432   (H = (8 + 0 + 1 − 3)/2 + 1 = 4)
    // dwconv 16·4·4  outputs × 1·3·3 taps  =  2 304
    // fc     10 outputs × 16 inputs        =    160
    assert_eq!(macs(&g), 55_296 + 18_432 + 2_304 + 160);
    // conv1 216+8, bn1 8+8 (running stats are buffers), conv2 1152, dwconv 144+16, fc 160+10
    assert_eq!(g.params(), 1_722);
}

#[test]
fn tiny_block_shapes_macs_and_params() {
    let g = load("tiny_block.onnx", None);
    // MatMul + bias Add from a PyTorch Linear is one linear layer with a bias,
    // whichever side of the Add the bias is on.
    for name in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        assert_eq!(
            op(&g, name),
            &Op::Linear {
                out_features: 16,
                bias: true,
                axis: None,
                tied: false
            },
            "{name}"
        );
    }
    assert!(g.find("q_bias").is_none() && g.find("k_bias").is_none());
    // Reshape from a Constant node, from an initializer, and from Shape→Gather→Unsqueeze→Concat.
    assert_eq!(shape(&g, "q_split"), [1, 8, 2, 8]);
    assert_eq!(shape(&g, "k_heads_t"), [1, 2, 8, 8]);
    assert_eq!(shape(&g, "v_split"), [1, 8, 2, 8]);
    assert_eq!(op(&g, "scores"), &Op::MatMul { transpose_b: false });
    assert_eq!(shape(&g, "scores"), [1, 2, 8, 8]);
    assert_eq!(op(&g, "softmax"), &Op::Softmax { axis: 3 });
    assert_eq!(shape(&g, "merge"), [1, 8, 16]);
    assert_eq!(
        op(&g, "ln"),
        &Op::Norm {
            kind: NormKind::Layer
        }
    );
    // The five erf-GELU nodes are one activation.
    let gelus: Vec<_> =
        g.g.node_indices()
            .filter(|&i| {
                g.node(i).op
                    == Op::Act {
                        act: Activation::Gelu,
                    }
            })
            .collect();
    assert_eq!(gelus.len(), 1);
    assert_eq!(g.node(gelus[0]).output.shape, [1, 8, 32]);
    assert_eq!(g.inputs_of(gelus[0]), [g.find("fc1").unwrap()]);
    assert_eq!(g.inputs_of(g.find("fc2").unwrap()), gelus);
    // The learned layer scale is a parameter; the attention scale is a hyperparameter.
    assert_eq!(
        op(&g, "layer_scale"),
        &Op::Constant {
            shape: vec![16],
            learned: true
        }
    );
    assert_eq!(
        op(&g, "attn.scale"),
        &Op::Constant {
            shape: vec![1],
            learned: false
        }
    );
    assert_eq!(
        op(&g, "layer_scale_mul"),
        &Op::Binary {
            op: BinaryKind::Mul
        }
    );
    assert_eq!(shape(&g, "residual2"), [1, 8, 16]);
    // q, k, v, o   4 × 8 tokens × 16 × 16     = 8 192
    // scores       2 heads × 8 × 8 keys × 8   = 1 024
    // context      2 heads × 8 × 8 × 8 keys   = 1 024
    // fc1, fc2     2 × 8 tokens × 16 × 32     = 8 192
    assert_eq!(macs(&g), 8_192 + 1_024 + 1_024 + 8_192);
    // q/k/v/o 4·(256+16), ln 16+16, fc1 512+32, fc2 512+16, layer scale 16
    assert_eq!(g.params(), 2_208);
}

#[test]
fn small_conv1d_causal_conv_folded_bias_and_silu() {
    let g = load("small_conv1d.onnx", None);
    let conv1 = Conv1d {
        out_channels: 8,
        kernel: 3,
        stride: 1,
        pad: 1,
        dilation: 1,
        groups: 1,
        causal: false,
        bias: true,
    };
    assert_eq!(op(&g, "conv1"), &Op::Conv1d(conv1));
    assert_eq!(
        op(&g, "silu/Sigmoid"),
        &Op::Act {
            act: Activation::Silu
        }
    );
    // pads [4, 0] with kernel 3, dilation 2 is causal; the separate Add is its bias.
    let dw = Conv1d {
        out_channels: 8,
        kernel: 3,
        stride: 1,
        pad: 0,
        dilation: 2,
        groups: 8,
        causal: true,
        bias: true,
    };
    assert_eq!(op(&g, "causal_dw"), &Op::Conv1d(dw));
    assert_eq!(shape(&g, "causal_dw"), [2, 8, 32]);
    assert!(g.find("causal_dw_bias").is_none());
    assert_eq!(shape(&g, "head"), [2, 4]);
    // The file fixes batch 2.
    // conv1  2·8·32 outputs × 4·3 taps = 6 144
    // dw     2·8·32 outputs × 3 taps   = 1 536
    // head   2 rows × 256 × 4          = 2 048
    assert_eq!(macs(&g), 6_144 + 1_536 + 2_048);
    // conv1 96+8, dw 24+8, head 1024+4
    assert_eq!(g.params(), 1_164);
}

#[test]
fn batch_override_scales_work_not_parameters() {
    let g = load("small_cnn.onnx", Some(4));
    assert_eq!(shape(&g, "image"), [4, 3, 16, 16]);
    assert_eq!(shape(&g, "fc"), [4, 10]);
    assert_eq!(macs(&g), 4 * 76_192);
    assert_eq!(g.params(), 1_722);
    // The Shape→Gather→Concat reshape follows the new batch.
    let g = load("tiny_block.onnx", Some(3));
    assert_eq!(shape(&g, "v_split"), [3, 8, 2, 8]);
    assert_eq!(shape(&g, "residual2"), [3, 8, 16]);
    assert_eq!(macs(&g), 3 * 18_432);
    // A batch fixed in the file is overridden too.
    let g = load("small_conv1d.onnx", Some(1));
    assert_eq!(shape(&g, "head"), [1, 4]);
    assert_eq!(macs(&g), 9_728 / 2);
}

/// Real architectures: the onnx package's own "light" test models (ONNX model zoo
/// networks at opset 9, weights made by ConstantOfShape), copied by make_onnx.py.
/// Published counts (torchvision model cards; resnet50 also in
/// ../shared/reference/model_counts.csv): ResNet-50 4.089 G MACs and 25 557 032
/// params, VGG-19 19.63 G and 143 667 240, SqueezeNet 1.1 0.35 G and 1 235 496.
#[test]
fn reference_models_match_published_counts() {
    let cases: [(&str, u64, u64); 3] = [
        ("light_resnet50.onnx", 4_089_184_256, 25_557_032),
        ("light_vgg19.onnx", 19_632_062_464, 143_667_240),
        ("light_squeezenet.onnx", 349_151_936, 1_235_496),
    ];
    for (name, want_macs, want_params) in cases {
        let g = load(name, None);
        assert_eq!((macs(&g), g.params()), (want_macs, want_params), "{name}");
        // The file fixes batch 1 and hard-codes it in its Reshape targets; --batch 2
        // doubles the work.
        let g2 = load(name, Some(2));
        assert_eq!(
            (macs(&g2), g2.params()),
            (2 * want_macs, want_params),
            "{name} batch 2"
        );
    }
}

#[test]
fn unsupported_op_error_names_file_node_and_op() {
    let path = data("unsupported_op.onnx");
    let err = workload::load(&path, None).unwrap_err();
    let text = err.to_string();
    let WorkloadError::InFile { path: p, source } = err else {
        panic!("expected the file to be named: {text}");
    };
    assert_eq!(p, path);
    let WorkloadError::Onnx {
        node,
        op_type,
        message,
    } = *source
    else {
        panic!("expected an ONNX node error: {text}");
    };
    assert_eq!(
        (node.as_str(), op_type.as_str()),
        ("nms_0", "NonMaxSuppression")
    );
    assert!(
        message.contains("not supported") && message.contains("Conv, "),
        "{message}"
    );
    assert!(
        text.contains("unsupported_op.onnx") && text.contains("'nms_0'"),
        "{text}"
    );
}

#[test]
fn garbage_and_truncated_files_error_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = workload::load(&path, None).expect_err(name).to_string();
        assert!(err.contains(name), "error does not name the file: {err}");
        err
    };
    let err = check(
        "garbage.onnx",
        b"\xff\xfe this is not a protobuf \x00\x01\x02\x8f",
    );
    assert!(err.contains("not a readable ONNX model"), "{err}");
    check("empty.onnx", b"");
    let good = std::fs::read(data("small_cnn.onnx")).unwrap();
    for cut in (1..good.len()).step_by(7) {
        check(&format!("cut{cut}.onnx"), &good[..cut]);
    }
    // Pseudo-random bytes (xorshift), many seeds.
    for seed in 1..50u64 {
        let mut s = seed;
        let bytes: Vec<u8> = (0..300)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        check(&format!("random{seed}.onnx"), &bytes);
    }
}

fn coex(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coex"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run coex")
}

#[test]
fn cli_inspect_json_prints_totals() {
    let out = coex(&["inspect", "tests/data/small_cnn.onnx", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["total"]["macs"], 76_192);
    assert_eq!(json["total"]["params"], 1_722);
    assert_eq!(json["network"], "small_cnn");
    let out = coex(&[
        "inspect",
        "tests/data/tiny_block.onnx",
        "--batch",
        "2",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["total"]["macs"], 2 * 18_432);
}

#[test]
fn cli_unsupported_op_fails_naming_the_node() {
    let out = coex(&["inspect", "tests/data/unsupported_op.onnx"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported_op.onnx")
            && err.contains("'nms_0'")
            && err.contains("NonMaxSuppression"),
        "{err}"
    );
}

/// Corrupted copies of every model (bytes overwritten at pseudo-random places) load
/// or fail with an error; whatever loads also lowers. Nothing panics.
#[test]
fn corrupted_files_never_panic() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for name in [
        "small_cnn.onnx",
        "tiny_block.onnx",
        "small_conv1d.onnx",
        "unsupported_op.onnx",
    ] {
        let good = std::fs::read(data(name)).unwrap();
        for _ in 0..N_MUTATIONS {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            if let Ok(g) = workload::onnx::parse(&bytes, name, None) {
                let _ = (lower(&g).map(|w| w.len()), g.params());
            }
        }
    }
}

/// Per model; kept small for test time (a 100 000-mutation run found nothing more).
const N_MUTATIONS: usize = 2_000;
