//! Translation rules on hand-made graphs: what folds where, what becomes which op, and what is
//! refused with which words.

use super::proto::*;
use super::{OnnxError, Place, load};
use crate::model::graph::{Graph, Op, Pointwise};
use prost::Message;
use std::path::PathBuf;

/// A model with one input `x` [N, 4, 6, 6] (symbolic N), the given nodes and initializers, and
/// output `y`.
fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>) -> ModelProto {
    let dim = |v: DimensionValue| Dimension { value: Some(v) };
    let input = ValueInfoProto {
        name: Some("x".into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(DimensionValue::DimParam("N".into())),
                        dim(DimensionValue::DimValue(4)),
                        dim(DimensionValue::DimValue(6)),
                        dim(DimensionValue::DimValue(6)),
                    ],
                }),
            }),
        }),
    };
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("polycnn tests".into()),
        producer_version: None,
        graph: Some(GraphProto {
            node: nodes,
            name: Some("g".into()),
            initializer: initializers,
            input: vec![input],
            output: vec![ValueInfoProto {
                name: Some("y".into()),
                r#type: None,
            }],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: None,
            version: Some(17),
        }],
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: Some(format!("{op}_{output}")),
        op_type: Some(op.into()),
        attribute: attributes,
        domain: None,
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(7),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

fn int64s(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(7),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// A 4 → 4 channel 3x3 convolution `name` reading `input`, weights all `w`.
fn conv(input: &str, output: &str, w: f32, pads: &[i64]) -> (NodeProto, TensorProto) {
    let weight = format!("{output}.w");
    (
        node("Conv", &[input, &weight], output, vec![ints("pads", pads)]),
        floats(&weight, &[4, 4, 3, 3], &[w; 144]),
    )
}

fn gap_flatten(input: &str) -> Vec<NodeProto> {
    vec![
        node("GlobalAveragePool", &[input], "pooled", vec![]),
        node("Flatten", &["pooled"], "y", vec![]),
    ]
}

fn try_load(m: &ModelProto, tag: &str) -> Result<Graph, OnnxError> {
    let dir = std::env::temp_dir().join(format!("polycnn-onnx-unit-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(format!("{tag}.onnx"));
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let result = load(&path);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn node_named<'g>(g: &'g Graph, name: &str) -> &'g Op {
    &g.nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
        .op
}

#[test]
fn batch_norm_folds_into_its_conv_and_otherwise_becomes_an_affine_node() {
    let (c1, w1) = conv("x", "c1", 0.5, &[1, 1, 1, 1]);
    let bn = |input: &str, output: &str| node("BatchNormalization", &[input, "g", "b", "m", "v"], output, vec![]);
    let stats = vec![
        floats("g", &[4], &[2.0; 4]),
        floats("b", &[4], &[1.0; 4]),
        floats("m", &[4], &[0.5; 4]),
        floats("v", &[4], &[4.0; 4]),
    ];
    // conv → bn (folded); x + conv → bn (not: Add has no weights).
    let mut nodes = vec![
        c1,
        bn("c1", "bn1"),
        node("Add", &["x", "bn1"], "sum", vec![]),
        bn("sum", "bn2"),
    ];
    nodes.extend(gap_flatten("bn2"));
    let g = try_load(&model(nodes, [vec![w1], stats].concat()), "bn").unwrap();
    let Op::Conv2d(c) = node_named(&g, "Conv_c1") else {
        panic!()
    };
    let scale = 2.0 / (4.0f64 + 1e-5).sqrt();
    assert_eq!(c.weight.data[0], (0.5 * scale) as f32);
    assert_eq!(c.bias[0], ((0.0 - 0.5) * scale + 1.0) as f32);
    assert!(g.nodes.iter().all(|n| n.name != "BatchNormalization_bn1"), "folded");
    let Op::Affine(a) = node_named(&g, "BatchNormalization_bn2") else {
        panic!()
    };
    assert_eq!(a.scale, vec![scale as f32; 4]);
    assert_eq!(a.shift, vec![(-0.5 * scale + 1.0) as f32; 4]);
}

#[test]
fn a_conv_read_twice_is_not_folded_into() {
    let (c1, w1) = conv("x", "c1", 0.5, &[1, 1, 1, 1]);
    let mut nodes = vec![
        c1,
        node("Mul", &["c1", "two"], "scaled", vec![]),
        node("Add", &["c1", "scaled"], "sum", vec![]),
    ];
    nodes.extend(gap_flatten("sum"));
    let g = try_load(&model(nodes, vec![w1, floats("two", &[], &[2.0])]), "shared").unwrap();
    let Op::Conv2d(c) = node_named(&g, "Conv_c1") else {
        panic!()
    };
    assert_eq!(
        c.weight.data[0], 0.5,
        "the conv's other reader needs its unscaled output"
    );
    assert!(matches!(node_named(&g, "Mul_scaled"), Op::Affine(_)));
}

#[test]
fn zero_pad_folds_into_the_next_conv_and_max_pool_only_after_relu() {
    let (c1, w1) = conv("padded", "c1", 0.5, &[0, 0, 0, 0]);
    let pads = int64s("pads", &[0, 0, 1, 2, 0, 0, 1, 0]);
    let mut nodes = vec![node("Pad", &["x", "pads"], "padded", vec![]), c1];
    nodes.extend(gap_flatten("c1"));
    let g = try_load(&model(nodes, vec![w1.clone(), pads.clone()]), "pad_conv").unwrap();
    let Op::Conv2d(c) = node_named(&g, "Conv_c1") else {
        panic!()
    };
    assert_eq!(c.window.pads, [1, 2, 1, 0]);

    let pool = |input: &str| {
        node(
            "MaxPool",
            &[input],
            "mp",
            vec![ints("kernel_shape", &[3, 3]), ints("pads", &[0, 0, 1, 1])],
        )
    };
    let pads = int64s("pads", &[0, 0, 1, 1, 0, 0, 0, 0]);
    let mut nodes = vec![node("Pad", &["x", "pads"], "padded", vec![]), pool("padded")];
    nodes.extend(gap_flatten("mp"));
    let err = try_load(&model(nodes, vec![pads.clone()]), "pad_pool").unwrap_err();
    assert_eq!(
        err.place,
        Place::Node {
            name: "MaxPool_mp".into(),
            op_type: "MaxPool".into(),
            opset: 17
        }
    );
    assert!(err.detail.contains("may be negative"), "{err}");

    let mut nodes = vec![
        node("Relu", &["x"], "r", vec![]),
        node("Pad", &["r", "pads"], "padded", vec![]),
        pool("padded"),
    ];
    nodes.extend(gap_flatten("mp"));
    let g = try_load(&model(nodes, vec![pads]), "relu_pad_pool").unwrap();
    let Op::MaxPool { pool, .. } = node_named(&g, "MaxPool_mp") else {
        panic!()
    };
    assert_eq!(pool.pads, [1, 1, 1, 1]);
}

#[test]
fn exact_only_functions_and_silu() {
    let mut nodes = vec![
        node("Sigmoid", &["x"], "s", vec![]),
        node("Mul", &["x", "s"], "silu", vec![]),
        node("Tanh", &["silu"], "t", vec![]),
    ];
    nodes.extend(gap_flatten("t"));
    let g = try_load(&model(nodes, vec![]), "pointwise").unwrap();
    assert!(matches!(
        node_named(&g, "Mul_silu"),
        Op::Pointwise {
            func: Pointwise::Silu,
            input: 0
        }
    ));
    assert!(matches!(
        node_named(&g, "Tanh_t"),
        Op::Pointwise {
            func: Pointwise::Tanh,
            ..
        }
    ));
    assert_eq!(g.exact_only_nodes().len(), 3);
}

#[test]
fn gemm_transposes_and_scales() {
    let gemm = AttributeProto {
        name: Some("alpha".into()),
        f: Some(2.0),
        r#type: Some(1),
        ..Default::default()
    };
    let nodes = vec![
        node("GlobalAveragePool", &["x"], "p", vec![]),
        node("Flatten", &["p"], "f", vec![]),
        node("Gemm", &["f", "B", "C"], "y", vec![gemm]),
    ];
    let b: Vec<f32> = (0..8).map(|v| v as f32).collect(); // [4, 2]: transB = 0
    let g = try_load(
        &model(nodes, vec![floats("B", &[4, 2], &b), floats("C", &[2], &[1.0, -1.0])]),
        "gemm",
    )
    .unwrap();
    let Op::Linear(l) = node_named(&g, "Gemm_y") else {
        panic!()
    };
    assert_eq!(l.weight.shape, vec![2, 4]);
    assert_eq!(l.weight.data, vec![0.0, 4.0, 8.0, 12.0, 2.0, 6.0, 10.0, 14.0]);
    assert_eq!(l.bias, vec![1.0, -1.0]);
}

#[test]
fn refusals_name_the_node_and_what_is_wrong() {
    let check = |nodes: Vec<NodeProto>, inits: Vec<TensorProto>, tag: &str, node: &str, words: &str| {
        let err = try_load(&model(nodes, inits), tag).unwrap_err();
        match &err.place {
            Place::Node { name, .. } => assert_eq!(name, node, "{err}"),
            other => panic!("{tag}: {other:?} in {err}"),
        }
        assert!(err.detail.contains(words), "{tag}: {err}");
    };
    let target = int64s("shape", &[0, 4, 36]);
    check(
        vec![node("Reshape", &["x", "shape"], "y", vec![])],
        vec![target],
        "reshape",
        "Reshape_y",
        "only [N, -1]",
    );
    check(
        vec![
            node("Softmax", &["x"], "s", vec![]),
            node("Flatten", &["s"], "y", vec![]),
        ],
        vec![],
        "softmax",
        "Softmax_s",
        "not supported",
    );
    let mut dropout = node("Dropout", &["x"], "d", vec![]);
    dropout.output.push("mask".into());
    check(
        vec![dropout, node("Add", &["d", "mask"], "y", vec![])],
        vec![],
        "dropout_mask",
        "Dropout_d",
        "output #1",
    );
    check(
        vec![node("ReduceMean", &["x"], "y", vec![ints("axes", &[1])])],
        vec![],
        "reduce_channels",
        "ReduceMean_y",
        "only over H and W",
    );
}

#[test]
fn unused_nodes_are_not_translated_and_an_image_output_is_refused() {
    let mut nodes = gap_flatten("x");
    nodes.push(node("Softmax", &["x"], "unused", vec![]));
    assert!(try_load(&model(nodes, vec![]), "unused").is_ok());
    let err = try_load(&model(vec![node("Relu", &["x"], "y", vec![])], vec![]), "image_out").unwrap_err();
    assert!(err.detail.contains("not one score per class"), "{err}");
}

#[test]
fn float16_and_double_initializers_are_read_as_f32() {
    let half = TensorProto {
        name: Some("C".into()),
        dims: vec![4],
        data_type: Some(10),
        raw_data: Some(
            [1.5f32, -2.0, 0.25, 65504.0]
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        ..Default::default()
    };
    let double = TensorProto {
        name: Some("B".into()),
        dims: vec![4, 4],
        data_type: Some(11),
        double_data: (0..16).map(|v| v as f64 / 3.0).collect(),
        ..Default::default()
    };
    let nodes = vec![
        node("GlobalAveragePool", &["x"], "p", vec![]),
        node("Flatten", &["p"], "f", vec![]),
        node("Gemm", &["f", "B", "C"], "y", vec![int("transB", 1)]),
    ];
    let g = try_load(&model(nodes, vec![half, double]), "f16").unwrap();
    let Op::Linear(l) = node_named(&g, "Gemm_y") else {
        panic!()
    };
    assert_eq!(l.bias, vec![1.5, -2.0, 0.25, 65504.0]);
    assert_eq!(l.weight.data[1], (1.0f64 / 3.0) as f32);
}

#[test]
fn site_names_are_unique_even_when_node_names_are_not() {
    let mut a = node("Relu", &["x"], "a", vec![]);
    let mut b = node("Relu", &["a"], "b", vec![]);
    a.name = Some("act".into());
    b.name = Some("act".into());
    let mut c = node("Relu", &["b"], "c", vec![]);
    c.name = None;
    let mut nodes = vec![a, b, c];
    nodes.extend(gap_flatten("c"));
    let g = try_load(&model(nodes, vec![]), "names").unwrap();
    let names: Vec<&str> = g.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["act", "act (b)", "c"]);
}
