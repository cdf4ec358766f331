//! Unit tests on models built in memory, for cases the files in `tests/data` do not
//! cover (error paths, older opsets, rarer ops). `tests/onnx.rs` reads real files.

use super::proto::*;
use super::*;
use crate::workload::op::{Activation, BinaryKind, Conv2d, PoolKind};

fn node(op_type: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: outputs
            .first()
            .map(|o| format!("n_{o}"))
            .unwrap_or_default(),
        op_type: op_type.to_string(),
        attribute: attrs,
        domain: String::new(),
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attr_type::INTS,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: attr_type::INT,
        ..Default::default()
    }
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: v,
        r#type: attr_type::FLOAT,
        ..Default::default()
    }
}

fn string_attr(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: attr_type::STRING,
        ..Default::default()
    }
}

/// A float tensor of zeros stored as raw data.
fn weight(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        raw_data: vec![0; n as usize * 4],
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn int64s(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: data_type::INT64,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A graph input; `None` dimensions are symbolic.
fn input(name: &str, dims: &[Option<i64>], elem_type: i32) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, d)| Dimension {
            value: Some(match d {
                Some(v) => DimValue::DimValue(*v),
                None => DimValue::DimParam(format!("d{i}")),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
    opset: i64,
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "coex-test".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: inputs,
            output: vec![],
            value_info: vec![],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
    }
    .encode_to_vec()
}

/// An image input [N, 3, 8, 8] with a symbolic batch.
fn image() -> ValueInfoProto {
    input("x", &[None, Some(3), Some(8), Some(8)], data_type::FLOAT)
}

fn seq() -> ValueInfoProto {
    input("x", &[None, Some(4), Some(6)], data_type::FLOAT)
}

fn import(bytes: &[u8]) -> Result<Graph, WorkloadError> {
    parse(bytes, "m", None)
}

fn op_of<'g>(g: &'g Graph, name: &str) -> &'g Op {
    &g.node(g.find(name).unwrap_or_else(|| panic!("no node {name}")))
        .op
}

fn shape_of(g: &Graph, name: &str) -> Vec<usize> {
    g.node(g.find(name).unwrap()).output.shape.clone()
}

fn err_text(bytes: &[u8]) -> String {
    import(bytes).unwrap_err().to_string()
}

#[test]
fn batch_symbolic_fixed_and_overridden() {
    let relu = || vec![node("Relu", &["x"], &["y"], vec![])];
    let sym = model(relu(), vec![image()], vec![], 13);
    assert_eq!(shape_of(&import(&sym).unwrap(), "n_y"), [1, 3, 8, 8]);
    assert_eq!(
        shape_of(&parse(&sym, "m", Some(5)).unwrap(), "n_y"),
        [5, 3, 8, 8]
    );
    let fixed = model(
        relu(),
        vec![input("x", &[Some(4), Some(3)], data_type::FLOAT)],
        vec![],
        13,
    );
    assert_eq!(shape_of(&import(&fixed).unwrap(), "n_y"), [4, 3]);
    assert_eq!(
        shape_of(&parse(&fixed, "m", Some(2)).unwrap(), "n_y"),
        [2, 3]
    );
    let e = parse(&fixed, "m", Some(0)).unwrap_err().to_string();
    assert!(e.contains("≥ 1"), "{e}");
}

#[test]
fn symbolic_non_batch_axis_is_an_error_naming_the_input() {
    let m = model(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![input("tokens", &[None, None], data_type::INT64)],
        vec![],
        13,
    );
    let e = err_text(&m);
    assert!(
        e.contains("'tokens'") && e.contains("axis 1") && e.contains("'d1'"),
        "{e}"
    );
}

#[test]
fn initializers_listed_as_inputs_are_weights() {
    let m = model(
        vec![node("MatMul", &["x", "w"], &["y"], vec![])],
        vec![seq(), input("w", &[Some(6), Some(5)], data_type::FLOAT)],
        vec![weight("w", &[6, 5])],
        13,
    );
    let g = import(&m).unwrap();
    assert!(g.find("w").is_none(), "the weight is not a graph input");
    assert_eq!(g.params(), 30);
    assert_eq!(shape_of(&g, "n_y"), [1, 4, 5]);
}

#[test]
fn same_upper_padding_is_resolved() {
    let conv = node(
        "Conv",
        &["x", "w"],
        &["y"],
        vec![
            string_attr("auto_pad", "SAME_UPPER"),
            ints_attr("strides", &[2, 2]),
        ],
    );
    let g = import(&model(
        vec![conv],
        vec![image()],
        vec![weight("w", &[4, 3, 3, 3])],
        13,
    ))
    .unwrap();
    let want = Conv2d {
        pad_begin: [0, 0],
        pad_end: [1, 1],
        ..Conv2d::new(4, 3, 2, 0)
    };
    assert_eq!(op_of(&g, "n_y"), &Op::Conv2d(want));
    assert_eq!(shape_of(&g, "n_y"), [1, 4, 4, 4]);
}

#[test]
fn unsupported_shapes_and_bounds_name_the_node() {
    let pool = node(
        "MaxPool",
        &["x"],
        &["p"],
        vec![
            ints_attr("kernel_shape", &[2, 2]),
            ints_attr("pads", &[0, 0, 1, 1]),
        ],
    );
    let e = err_text(&model(vec![pool], vec![image()], vec![], 13));
    assert!(
        e.contains("'n_p' (MaxPool)") && e.contains("asymmetric"),
        "{e}"
    );
    let clip = node("Clip", &["x", "lo", "hi"], &["c"], vec![]);
    let bounds = vec![floats("lo", &[], &[-1.0]), floats("hi", &[], &[1.0])];
    let e = err_text(&model(vec![clip], vec![image()], bounds, 13));
    assert!(e.contains("'n_c' (Clip)") && e.contains("(-1, 1)"), "{e}");
    let ln = node("LayerNormalization", &["x", "g"], &["l"], vec![]);
    let e = err_text(&model(vec![ln], vec![seq()], vec![weight("g", &[6])], 17));
    assert!(e.contains("without a bias"), "{e}");
}

#[test]
fn old_opsets_read_attributes() {
    // Opset 9: Clip bounds and Unsqueeze axes are attributes; Softmax defaults to axis 1.
    let nodes = vec![
        node(
            "Clip",
            &["x"],
            &["c"],
            vec![float_attr("min", 0.0), float_attr("max", 6.0)],
        ),
        node("Unsqueeze", &["c"], &["u"], vec![ints_attr("axes", &[-1])]),
        node("Softmax", &["u"], &["s"], vec![]),
    ];
    let g = import(&model(nodes, vec![seq()], vec![], 9)).unwrap();
    assert_eq!(
        op_of(&g, "n_c"),
        &Op::Act {
            act: Activation::Relu6
        }
    );
    assert_eq!(shape_of(&g, "n_u"), [1, 4, 6, 1]);
    assert_eq!(op_of(&g, "n_s"), &Op::Softmax { axis: 1 });
}

#[test]
fn reading_a_secondary_output_or_an_unknown_tensor_is_explained() {
    let nodes = vec![
        node("Dropout", &["x"], &["d", "mask"], vec![]),
        node("Relu", &["mask"], &["r"], vec![]),
    ];
    let e = err_text(&model(nodes, vec![seq()], vec![], 13));
    assert!(
        e.contains("'n_r' (Relu)") && e.contains("secondary output of node 'n_d'"),
        "{e}"
    );
    let e = err_text(&model(
        vec![node("Relu", &["nowhere"], &["r"], vec![])],
        vec![seq()],
        vec![],
        13,
    ));
    assert!(e.contains("'nowhere'") && e.contains("topological"), "{e}");
}

#[test]
fn wrongly_typed_attribute_is_an_error() {
    let bad = AttributeProto {
        name: "axis".into(),
        f: 1.0,
        r#type: attr_type::FLOAT,
        ..Default::default()
    };
    let e = err_text(&model(
        vec![node("Softmax", &["x"], &["s"], vec![bad])],
        vec![seq()],
        vec![],
        13,
    ));
    assert!(e.contains("attribute 'axis'"), "{e}");
}

#[test]
fn gemm_of_two_activations_is_a_matmul_plus_add() {
    // a = x as [4, 6] (negative Flatten axis), b = the same rows; y = a·bᵀ + c.
    let nodes = vec![
        node("Flatten", &["x"], &["a"], vec![int_attr("axis", -1)]),
        node("Flatten", &["x"], &["b"], vec![int_attr("axis", 2)]),
        node(
            "Gemm",
            &["a", "b", "c"],
            &["y"],
            vec![int_attr("transB", 1)],
        ),
    ];
    let g = import(&model(nodes, vec![seq()], vec![weight("c", &[4, 4])], 13)).unwrap();
    assert_eq!(shape_of(&g, "n_a"), [4, 6]);
    assert_eq!(shape_of(&g, "n_b"), [4, 6]);
    assert_eq!(op_of(&g, "n_y"), &Op::MatMul { transpose_b: true });
    assert_eq!(
        op_of(&g, "n_y.bias"),
        &Op::Binary {
            op: BinaryKind::Add
        }
    );
    assert_eq!(shape_of(&g, "n_y.bias"), [4, 4]);
    assert_eq!(g.params(), 16, "the stored C is a learned constant");
}

#[test]
fn embedding_lookup_class_token_pick_and_slices() {
    let nodes = vec![
        node("Gather", &["table", "ids"], &["e"], vec![]),
        node(
            "Gather",
            &["e", "zero"],
            &["cls"],
            vec![int_attr("axis", 1)],
        ),
        node("Slice", &["e", "starts", "ends", "axes"], &["s"], vec![]),
    ];
    let inits = vec![
        weight("table", &[100, 6]),
        TensorProto {
            dims: vec![],
            ..int64s("zero", &[0])
        },
        int64s("starts", &[1, 2]),
        int64s("ends", &[i64::MAX, -1]),
        int64s("axes", &[1, 2]),
    ];
    let ids = input("ids", &[None, Some(5)], data_type::INT64);
    let g = import(&model(nodes, vec![ids], inits, 13)).unwrap();
    assert_eq!(op_of(&g, "n_e"), &Op::Embedding { vocab: 100, dim: 6 });
    assert_eq!(shape_of(&g, "n_cls.squeeze"), [1, 6]);
    assert_eq!(shape_of(&g, "n_s.1"), [1, 4, 6]);
    assert_eq!(shape_of(&g, "n_s.2"), [1, 4, 3]);
    assert_eq!(g.params(), 600);
}

#[test]
fn gelu_with_early_half_and_hardswish_collapse() {
    let c = |name: &str, v: f32| floats(name, &[], &[v]);
    let nodes = vec![
        node("Mul", &["x", "half"], &["h"], vec![]),
        node("Mul", &["x", "inv_sqrt2"], &["d"], vec![]),
        node("Erf", &["d"], &["e"], vec![]),
        node("Add", &["one", "e"], &["a"], vec![]),
        node("Mul", &["h", "a"], &["g"], vec![]),
        node(
            "HardSigmoid",
            &["g"],
            &["hs"],
            vec![float_attr("alpha", 1.0 / 6.0), float_attr("beta", 0.5)],
        ),
        node("Mul", &["hs", "g"], &["y"], vec![]),
    ];
    let inits = vec![
        c("half", 0.5),
        c("inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2),
        c("one", 1.0),
    ];
    let g = import(&model(nodes, vec![seq()], inits, 13)).unwrap();
    let ops: Vec<&Op> = g.g.node_indices().map(|i| &g.node(i).op).collect();
    assert_eq!(
        ops[1..],
        [
            &Op::Act {
                act: Activation::Gelu
            },
            &Op::Act {
                act: Activation::Hardswish
            }
        ],
        "{ops:?}"
    );
}

#[test]
fn pattern_with_an_outside_reader_is_not_collapsed() {
    // `e` is also a graph output, so the Erf must stay: it has no coex op.
    let c = |name: &str, v: f32| floats(name, &[], &[v]);
    let nodes = vec![
        node("Div", &["x", "sqrt2"], &["d"], vec![]),
        node("Erf", &["d"], &["e"], vec![]),
        node("Add", &["e", "one"], &["a"], vec![]),
        node("Mul", &["x", "a"], &["m"], vec![]),
        node("Mul", &["m", "half"], &["y"], vec![]),
    ];
    let inits = vec![
        c("sqrt2", std::f32::consts::SQRT_2),
        c("one", 1.0),
        c("half", 0.5),
    ];
    let mut m = ModelProto::decode(model(nodes, vec![seq()], inits, 13).as_slice()).unwrap();
    if let Some(g) = m.graph.as_mut() {
        g.output.push(ValueInfoProto {
            name: "e".into(),
            r#type: None,
        });
    }
    let e = err_text(&m.encode_to_vec());
    assert!(
        e.contains("'n_e' (Erf)") && e.contains("outside the erf GELU pattern"),
        "{e}"
    );
}

#[test]
fn stored_weights_may_live_outside_the_file() {
    // External data: the dimensions are enough for a weight.
    let w = TensorProto {
        name: "w".into(),
        dims: vec![2, 3, 1, 1],
        data_type: data_type::FLOAT,
        data_location: 1,
        ..Default::default()
    };
    let g = import(&model(
        vec![node("Conv", &["x", "w"], &["y"], vec![])],
        vec![image()],
        vec![w],
        13,
    ))
    .unwrap();
    assert_eq!(shape_of(&g, "n_y"), [1, 2, 8, 8]);
    assert_eq!(g.params(), 6);
}

#[test]
fn pools_and_unknown_domains() {
    let nodes = vec![
        node(
            "AveragePool",
            &["x"],
            &["p"],
            vec![
                ints_attr("kernel_shape", &[3, 3]),
                ints_attr("pads", &[1, 1, 1, 1]),
            ],
        ),
        node("GlobalMaxPool", &["p"], &["gp"], vec![]),
    ];
    let g = import(&model(nodes, vec![image()], vec![], 13)).unwrap();
    assert_eq!(
        op_of(&g, "n_p"),
        &Op::Pool {
            pool: PoolKind::Avg,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1]
        }
    );
    assert_eq!(shape_of(&g, "n_gp"), [1, 3, 1, 1]);
    let mut custom = node("FusedGemm", &["x"], &["y"], vec![]);
    custom.domain = "com.microsoft".into();
    let e = err_text(&model(vec![custom], vec![image()], vec![], 13));
    assert!(
        e.contains("'n_y' (FusedGemm)") && e.contains("com.microsoft"),
        "{e}"
    );
}

#[test]
fn undecodable_and_empty_files_are_explained() {
    let e = err_text(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(
        e.contains("not a readable ONNX model") && e.contains("protobuf"),
        "{e}"
    );
    let e = err_text(&[]);
    assert!(e.contains("no graph nodes"), "{e}");
    let old = model(
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![seq()],
        vec![],
        6,
    );
    assert!(err_text(&old).contains("opset 6"));
}

#[test]
fn absurd_sizes_are_errors_not_overflows() {
    let conv = |pads: &[i64]| node("Conv", &["x", "w"], &["y"], vec![ints_attr("pads", pads)]);
    let w = || vec![weight("w", &[2, 3, 3, 3])];
    let e = err_text(&model(
        vec![conv(&[i64::MAX, 0, 0, 0])],
        vec![image()],
        w(),
        13,
    ));
    assert!(e.contains("pads"), "{e}");
    let huge = input(
        "x",
        &[None, Some(3), Some(1 << 30), Some(1 << 30)],
        data_type::FLOAT,
    );
    let e = err_text(&model(vec![conv(&[0, 0, 0, 0])], vec![huge], w(), 13));
    assert!(e.contains("more than"), "{e}");
    let e = parse(
        &model(vec![conv(&[0; 4])], vec![image()], w(), 13),
        "m",
        Some(usize::MAX),
    )
    .unwrap_err();
    assert!(e.to_string().contains("more than"), "{e}");
    let reshape = node("Reshape", &["x", "s"], &["r"], vec![]);
    let spec = vec![int64s("s", &[1 << 40, 1 << 40, 1 << 40])];
    let e = err_text(&model(vec![reshape], vec![image()], spec, 13));
    assert!(e.contains("more elements than the input"), "{e}");
}

#[test]
fn generated_weights_sums_and_transposed_weights() {
    // Weights made by ConstantOfShape (and listed as graph inputs, as old files do), a
    // three-way Sum, and a stored weight transposed in the graph before a MatMul.
    let w_shape = int64s("w_shape", &[4, 3, 1, 1]);
    let nodes = vec![
        node("ConstantOfShape", &["w_shape"], &["w"], vec![]),
        node("Conv", &["x", "w"], &["c"], vec![]),
        node("Sum", &["c", "c", "c"], &["s"], vec![]),
        node("Flatten", &["s"], &["f"], vec![]),
        node("Transpose", &["wt"], &["w2"], vec![]),
        node("MatMul", &["f", "w2"], &["y"], vec![]),
    ];
    let listed = input("w", &[Some(4), Some(3), Some(1), Some(1)], data_type::FLOAT);
    let inits = vec![w_shape, weight("wt", &[5, 256])];
    let g = import(&model(nodes, vec![image(), listed], inits, 13)).unwrap();
    assert!(
        g.find("w").is_none(),
        "a graph input made by a node is not an input"
    );
    assert_eq!(shape_of(&g, "n_s.2"), [1, 4, 8, 8]);
    assert_eq!(shape_of(&g, "n_y"), [1, 5]);
    assert_eq!(g.params(), 12 + 256 * 5);
}

#[test]
fn gemm_beta_zero_ignores_c_and_inputs_are_not_weights() {
    let gemm = node(
        "Gemm",
        &["x", "w", "c"],
        &["y"],
        vec![float_attr("beta", 0.0)],
    );
    let x = input("x", &[None, Some(6)], data_type::FLOAT);
    let g = import(&model(
        vec![gemm],
        vec![x],
        vec![weight("w", &[6, 2]), weight("c", &[2])],
        13,
    ))
    .unwrap();
    assert_eq!(g.params(), 12);
    let conv = node("Conv", &["x", "w"], &["y"], vec![]);
    let w = input("w", &[Some(2), Some(3), Some(1), Some(1)], data_type::FLOAT);
    let e = err_text(&model(vec![conv], vec![image(), w], vec![], 13));
    assert!(e.contains("weight 'w' is a graph input"), "{e}");
}
