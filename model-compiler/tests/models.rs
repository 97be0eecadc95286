//! Whole-model tests over every fixture model: compile with its calibration inputs, then check
//! proven bounds and proven output error against tract on many random inputs.

mod common;

use ciro_model_compiler::reference::FloatModel;
use common::*;

const MODELS: &[&str] = &[
    "mlp_small",
    "mlp_mnist",
    "cnn_lenet",
    "act_mix",
    "image_recognition_v1",
];

#[test]
fn fixture_models_stay_in_bounds_and_within_error() {
    for name in MODELS {
        let dir = fixtures().join("models").join(name);
        let loaded = load(&dir.join("model.onnx"));
        let samples = read_samples(&dir.join("calibration"));
        let compiled = compile_with(&loaded, &samples);
        let graph = &compiled.graph;
        let float = FloatModel::new(&loaded).unwrap();
        let n = if *name == "cnn_lenet" { 12 } else { 40 };
        let (mut worst, mut stated) = (0f64, 0f64);
        for x in samples.iter().cloned().chain(random_inputs(graph, n, 11)) {
            let (w, s) = check_bounds_and_error(graph, &float, &x);
            worst = worst.max(w);
            stated = stated.max(s);
        }
        // Calibration must have produced a useful model, not just a sound one.
        let r = &compiled.report;
        assert!(
            r.max_abs_error <= 0.05 * r.float_output_max.max(1.0),
            "{name}: calibration error {} too large for outputs up to {}",
            r.max_abs_error,
            r.float_output_max
        );
        println!(
            "{name:<22} scale {:>2}  calib max err {:.2e}  random max |int-float| {worst:.2e}  proven {stated:.2e}",
            graph.config.scale, r.max_abs_error
        );
    }
}

#[test]
fn compiled_model_hash_is_stable_and_round_trips() {
    let dir = fixtures().join("models/mlp_small");
    let loaded = load(&dir.join("model.onnx"));
    let samples = read_samples(&dir.join("calibration"));
    let a = compile_with(&loaded, &samples);
    let b = compile_with(&loaded, &samples);
    assert_eq!(a.hash, b.hash, "compiling twice gives the same identity");
    let path = std::env::temp_dir().join(format!("ciro-rt-{}.json", std::process::id()));
    a.save(&path).unwrap();
    let back = ciro_model_compiler::CompiledModel::load(&path).unwrap();
    assert_eq!(back, a);
    // A different scale is a different model.
    let other = ciro_model_compiler::compile(
        &loaded,
        &samples,
        &ciro_model_compiler::CompileOptions {
            scale: Some(a.graph.config.scale + 1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(other.hash, a.hash);
    std::fs::remove_file(path).ok();
}

/// A quantized model that misses the accuracy target is refused with what was measured and what
/// to try, unless the user accepts it explicitly; the tolerance is relative to the outputs' size.
#[test]
fn inaccurate_models_are_refused_unless_accepted() {
    use ciro_model_compiler::{compile, CompileError, CompileOptions};
    let dir = fixtures().join("models/mlp_small");
    let loaded = load(&dir.join("model.onnx"));
    let samples = read_samples(&dir.join("calibration"));
    let coarse = CompileOptions {
        scale: Some(4),
        ..Default::default()
    };
    match compile(&loaded, &samples, &coarse) {
        Err(e @ CompileError::Inaccurate { .. }) => {
            let msg = e.to_string();
            for want in [
                "2^4",
                "largest output error",
                "--scale",
                "--accept-inaccurate",
            ] {
                assert!(msg.contains(want), "`{want}` missing from: {msg}");
            }
        }
        other => panic!("scale 2^4 should be refused as inaccurate: {other:?}"),
    }
    let accepted = compile(
        &loaded,
        &samples,
        &CompileOptions {
            accept_inaccurate: true,
            ..coarse
        },
    )
    .expect("accepted explicitly");
    assert!(accepted.report.accepted_inaccurate);
    // 1% of the largest output passes at the default search; 0.01% is out of reach at 2^9.
    let ok = compile_with(&loaded, &samples);
    assert!(!ok.report.accepted_inaccurate);
    assert!(ok.report.max_abs_error <= 0.01 * ok.report.float_output_max);
    let strict = CompileOptions {
        scale: Some(9),
        tolerance: 0.0001,
        ..Default::default()
    };
    assert!(matches!(
        compile(&loaded, &samples, &strict),
        Err(CompileError::Inaccurate { .. })
    ));
}
