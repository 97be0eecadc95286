//! Bad input gives clear errors, never panics; the tests assert the messages.

mod common;

use ciro_model_compiler::input::read_image;
use ciro_model_compiler::onnx;
use ciro_model_compiler::{run, CompiledModel};
use common::*;

fn mlp_small() -> CompiledModel {
    let dir = fixtures().join("models/mlp_small");
    compile_with(
        &load(&dir.join("model.onnx")),
        &read_samples(&dir.join("calibration")),
    )
}

#[test]
fn unsupported_op_names_op_node_and_shapes() {
    let loaded = load(&fixtures().join("ops/unsupported_op.onnx"));
    let err = ciro_model_compiler::compile(&loaded, &[], &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported op `CumSum`"), "{err}");
    assert!(err.contains("at node `"), "{err}");
    assert!(err.contains("[1, 8]"), "{err}");
}

/// tract rewrites a TopK into its own `Topk`; the refusal (of the smallest k) still speaks of
/// the user's file: its op type and node name, with tract's rewrite beside them.
#[test]
fn refusals_name_the_onnx_op_and_node() {
    let loaded = load(&fixtures().join("ops/unsupported_op_topk.onnx"));
    let err = ciro_model_compiler::compile(&loaded, &[], &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported op `TopK` at node `tk`"), "{err}");
    assert!(err.contains("[tract's `"), "{err}");
}

/// A 10^12-element input declared in a few bytes is refused at load, before any allocation.
#[test]
fn huge_declared_tensors_are_refused_at_load() {
    let err = onnx::load(&fixtures().join("ops/huge_input.onnx"))
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("input `x` has 1000000000000 elements"),
        "{err}"
    );
    assert!(err.contains("per tensor"), "{err}");
    // As a constant shape that tract would fold into a tensor while loading.
    let err = onnx::load(&fixtures().join("ops/huge_constant.onnx"))
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("the shape given to ConstantOfShape node `cos` has 1000000000000 elements"),
        "{err}"
    );
}

#[test]
fn malformed_onnx_is_an_error() {
    let err = onnx::load(&fixtures().join("ops/malformed.onnx"))
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("malformed or unsupported ONNX model"), "{err}");
    assert!(err.contains("malformed.onnx"), "{err}");
    let missing = onnx::load(std::path::Path::new("/nonexistent/model.onnx"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        missing.contains("cannot read /nonexistent/model.onnx"),
        "{missing}"
    );
}

#[test]
fn wrong_shape_nan_and_out_of_range_inputs_are_refused() {
    let m = mlp_small();
    let err = run(&m.graph, &[vec![0.0; 63]]).unwrap_err().to_string();
    assert!(
        err.contains("63 values") && err.contains("[1, 64]"),
        "{err}"
    );
    let mut x = vec![0.0f32; 64];
    x[5] = f32::NAN;
    let err = run(&m.graph, &[x]).unwrap_err().to_string();
    assert!(err.contains("NaN") && err.contains("position 5"), "{err}");
    let mut x = vec![0.0f32; 64];
    x[3] = f32::INFINITY;
    assert!(run(&m.graph, &[x]).is_err());
    let mut x = vec![0.0f32; 64];
    x[2] = 7.5;
    let err = run(&m.graph, &[x]).unwrap_err().to_string();
    assert!(err.contains("outside the declared input range"), "{err}");
    let err = run(&m.graph, &[]).unwrap_err().to_string();
    assert!(err.contains("takes 1 input(s), got 0"), "{err}");
}

#[test]
fn undecodable_image_is_an_error() {
    let spec = ciro_model_compiler::ir::ImageSpec {
        height: 8,
        width: 8,
        channels: 1,
        range: [0.0, 1.0],
    };
    let path = std::env::temp_dir().join(format!("ciro-bad-{}.png", std::process::id()));
    std::fs::write(&path, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let err = read_image(&path, &spec).unwrap_err().to_string();
    assert!(
        err.contains("invalid image") && err.contains("cannot decode"),
        "{err}"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn tampered_compiled_model_is_refused() {
    let m = mlp_small();
    let text = serde_json::to_string(&m).unwrap();
    // Change one weight: the hash no longer matches.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let nodes = v["graph"]["nodes"].as_array_mut().unwrap();
    let c = nodes
        .iter_mut()
        .find(|n| n["op"].get("Const").is_some())
        .unwrap();
    let w = &mut c["op"]["Const"]["values"][0];
    *w = serde_json::json!(w.as_i64().unwrap() + 1);
    let err = CompiledModel::from_bytes(v.to_string().as_bytes()).unwrap_err();
    assert!(err.contains("content hash mismatch"), "{err}");
    let err = CompiledModel::from_bytes(&text.as_bytes()[..text.len() / 2]).unwrap_err();
    assert!(err.contains("not a compiled model"), "{err}");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["version"] = serde_json::json!(99);
    let err = CompiledModel::from_bytes(v.to_string().as_bytes()).unwrap_err();
    assert!(err.contains("format version 99 is not supported"), "{err}");
}

/// An input declared int64 (or bool) takes integers only: 0.5 is refused when quantizing, and an
/// integer is exact at any scale.
#[test]
fn integer_inputs_take_integers_only() {
    let dir = fixtures().join("ops");
    let loaded = load(&dir.join("int_input.onnx"));
    let sample = ciro_model_compiler::input::read_json(&dir.join("int_input.json")).unwrap();
    let compiled = compile_with(&loaded, std::slice::from_ref(&sample));
    assert!(compiled.graph.inputs[0].integer);
    assert_eq!(compiled.report.max_abs_error, 0.0);
    let mut x = sample.clone();
    x[0][0] = 0.5;
    let err = run(&compiled.graph, &x).unwrap_err().to_string();
    assert!(err.contains("is not an integer"), "{err}");
}

/// The size caps hold before anything is lowered: 1.8G multiply-accumulates declared in 7 KB
/// are measured from the static shapes and refused with the figure and the limit, and a raised
/// cap lets the same check pass.
#[test]
fn models_past_the_size_caps_are_refused_with_their_figures() {
    let loaded = load(&fixtures().join("ops/huge_macs.onnx"));
    assert_eq!(loaded.cost.macs, 64 * 1024 * 1024 * 27);
    let err = ciro_model_compiler::compile(&loaded, &[], &Default::default())
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("needs 1811939328 multiply-accumulates") && err.contains("limit of 67108864"),
        "{err}"
    );
    let small = load(&fixtures().join("models/mlp_small/model.onnx"));
    let tight = ciro_model_compiler::Limits {
        max_macs: u64::MAX,
        max_values: small.cost.values - 1,
    };
    let err = tight.check(&small.cost).unwrap_err();
    assert!(err.contains("tensor values"), "{err}");
    assert!(ciro_model_compiler::Limits::default()
        .check(&small.cost)
        .is_ok());
}

/// A `ciro.image` that does not describe the input is refused at load (a decompression bomb is
/// the service's test, `scheduler/tests/hardening.rs`).
#[test]
fn image_declarations_and_image_sizes_are_bounded() {
    let err = onnx::load(&fixtures().join("ops/bad_image_spec.onnx"))
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("an image of 1000000×1000000"), "{err}");
    let spec = ciro_model_compiler::ir::ImageSpec {
        height: 28,
        width: 28,
        channels: 1,
        range: [0.0, 1.0],
    };
    let err = ciro_model_compiler::input::check_image_spec(&spec, &[vec![1, 64]]).unwrap_err();
    assert!(
        err.contains("784 values") && err.contains("[1, 64]"),
        "{err}"
    );
}
