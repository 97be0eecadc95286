//! Per-op tests: each single-op fixture compiles to the expected IR op, stays inside its proven
//! bounds on many random inputs, and its dequantized output matches tract's float output within
//! the error bound the compiler states.

mod common;

use ciro_model_compiler::reference::FloatModel;
use ciro_model_compiler::{CompileOptions, RangeMode};
use common::*;

/// (fixture, IR ops that must appear)
const OPS: &[(&str, &[&str])] = &[
    ("gemm", &["MatMul", "Add"]),
    ("matmul", &["MatMul"]),
    ("conv", &["Conv", "Add"]),
    ("batchnorm", &["Mul", "Add"]),
    ("add_broadcast", &["Add"]),
    ("sub", &["Sub"]),
    ("mul", &["Mul"]),
    ("div_const", &["Mul"]),
    ("relu", &["Clamp"]),
    ("leaky_relu", &["LeakyRelu"]),
    ("clip", &["Clamp"]),
    ("sigmoid", &["Lookup"]),
    ("tanh", &["Lookup"]),
    ("exp", &["Lookup"]),
    ("softmax", &["Softmax"]),
    ("maxpool", &["MaxPool"]),
    ("averagepool", &["SumPool", "DivConst"]),
    ("global_average_pool", &["ReduceSum", "Mul"]),
    ("flatten", &["Reshape"]),
    ("reshape", &["Reshape"]),
    ("transpose", &["Transpose"]),
    ("squeeze_unsqueeze", &["Reshape"]),
    ("concat", &["Concat"]),
    ("slice", &["Slice"]),
    ("pad", &["Pad"]),
    ("gather_const", &["Gather"]),
    ("gemm_symbolic_batch", &["MatMul", "Add"]),
    ("sqrt", &["Lookup"]),
    ("reciprocal", &["Lookup"]),
    ("log", &["Lookup"]),
    ("rsqrt", &["Lookup"]),
    ("gelu", &["Lookup"]),
    ("abs", &["Max"]),
    ("neg", &["Sub"]),
    ("square", &["Mul"]),
    ("less", &["Sub", "Mul", "Clamp"]),
    ("where", &["Sub", "Mul", "Clamp", "Add"]),
    ("not_greater_or_equal", &["Sub", "Mul", "Clamp"]),
    ("layernorm", &["ReduceSum", "DivConst", "Lookup", "Mul"]),
    ("reduce_min", &["ReduceMax", "Sub"]),
    ("matmul_activations", &["MatMul", "Transpose"]),
    ("causal_softmax", &["Softmax", "Mul", "Add"]),
    ("attention_head", &["MatMul", "Softmax"]),
    ("expand", &["Gather"]),
    ("tile", &["Gather"]),
    ("trilu", &["Mul"]),
    ("sign", &["Clamp", "Sub"]),
    ("floor", &["Rescale"]),
    ("ceil", &["Rescale", "Sub"]),
    ("round", &["Rescale"]),
    ("conv_transpose", &["Conv", "Pad", "Add"]),
    ("argmax", &["ReduceMax", "Clamp", "MatMul"]),
    ("bool_inputs", &["Add", "Mul"]),
    ("int_input", &["Mul"]),
    ("conv1d", &["Conv", "Reshape"]),
    ("averagepool1d", &["SumPool", "DivConst", "Reshape"]),
    // Computed indices (ScatterElements and ScatterND are left to the conformance suite: random
    // indices repeat, and ONNX leaves a repeated scatter index undefined).
    ("gather_computed", &["Clamp", "MatMul"]),
    ("gather_elements", &["Clamp", "Mul", "ReduceSum"]),
    ("gather_nd", &["Clamp", "Mul", "ReduceSum"]),
    ("one_hot", &["Clamp", "Sub"]),
    ("lstm", &["MatMul", "Lookup", "Mul"]),
    ("gru", &["MatMul", "Lookup", "Mul"]),
    ("pow_base", &["Lookup"]),
    ("cast_trunc", &["Rescale", "Clamp"]),
    ("div_tensor", &["DivConst"]),
    ("topk", &["ReduceMax", "MatMul", "Concat"]),
];

/// With worst-case ranges, every input inside the declared range evaluates inside every proven
/// bound and within the proven error; with calibrated ranges (from the one sample), every input
/// either does the same or leaves a range-checked node's range, and then evaluation refuses it.
#[test]
fn every_op_matches_float_within_its_proven_error() {
    let dir = fixtures().join("ops");
    let mut report = Vec::new();
    for (name, ops) in OPS {
        let path = dir.join(format!("{name}.onnx"));
        let loaded = load(&path);
        let sample =
            ciro_model_compiler::input::read_json(&dir.join(format!("{name}.json"))).unwrap();
        let worst_case = CompileOptions {
            ranges: RangeMode::WorstCase,
            ..CompileOptions::default()
        };
        let compiled = compile_opts(&loaded, std::slice::from_ref(&sample), &worst_case);
        let graph = &compiled.graph;
        let present: Vec<&str> = graph.nodes.iter().map(|n| n.op.name()).collect();
        for op in *ops {
            assert!(
                present.contains(op),
                "{name}: expected a {op} node, IR has {present:?}"
            );
        }
        let float = FloatModel::new(&loaded).unwrap();
        let (mut worst, mut stated) = check_bounds_and_error(graph, &float, &sample);
        for x in random_inputs(graph, 40, 7) {
            let (w, s) = check_bounds_and_error(graph, &float, &x);
            worst = worst.max(w);
            stated = stated.max(s);
        }
        let calibrated = compile_with(&loaded, std::slice::from_ref(&sample));
        let cgraph = &calibrated.graph;
        check_bounds_and_error(cgraph, &float, &sample);
        let mut refused = 0;
        for x in random_inputs(cgraph, 40, 7) {
            refused += usize::from(check_bounds_unless_out_of_range(cgraph, &float, &x).is_err());
        }
        report.push(format!(
            "{name:<20} scale {:>2}  max |int-float| {worst:.2e}  proven {stated:.2e}  \
             calibrated: {refused}/40 out of range",
            graph.config.scale
        ));
    }
    println!("{}", report.join("\n"));
}

/// A symbolic batch dimension (as PyTorch's `dynamic_axes` and EZKL's corpus have it) binds to 1,
/// or to what `--dim` says; a binding that names no dimension of the file is refused.
#[test]
fn symbolic_dimensions_bind_to_one_or_as_told() {
    use ciro_model_compiler::onnx::{self, BoundDim, DimBindings};
    let path = fixtures().join("ops/gemm_symbolic_batch.onnx");
    let one = load(&path);
    assert_eq!(one.input_shapes, vec![vec![1, 6]]);
    assert_eq!(
        one.bound_dims,
        vec![BoundDim {
            input: "x".into(),
            axis: 0,
            name: "batch_size".into(),
            size: 1
        }]
    );
    let sample =
        ciro_model_compiler::input::read_json(&fixtures().join("ops/gemm_symbolic_batch.json"))
            .unwrap();
    let compiled = compile_with(&one, std::slice::from_ref(&sample));
    assert_eq!(compiled.report.bound_dims, one.bound_dims);
    assert_eq!(compiled.graph.inputs[0].shape, vec![1, 6]);

    let three = DimBindings([("batch_size".to_string(), 3)].into_iter().collect());
    let loaded = onnx::load_with(&path, &three).unwrap();
    assert_eq!(loaded.input_shapes, vec![vec![3, 6]]);
    assert_eq!(loaded.bound_dims[0].size, 3);

    let typo = DimBindings([("batch".to_string(), 2)].into_iter().collect());
    let err = onnx::load_with(&path, &typo)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("no symbolic dimension `batch`"), "{err}");
    assert!(err.contains("batch_size"), "{err}");

    assert_eq!(DimBindings::parse_one("N=4"), Ok(("N".into(), 4)));
    assert!(DimBindings::parse_one("N=0").is_err());
    assert!(DimBindings::parse_one("N").is_err());
    assert!(DimBindings::parse_one("N=x").is_err());
}
