//! Every single-op fixture (each IR op the compiler emits) proves and verifies, and the proven
//! output equals the reference evaluator's.

mod common;

use ciro_model_compiler::compile::CompileOptions;
use ciro_model_compiler::eval::eval;
use ciro_model_compiler::input::read_json;
use ciro_model_compiler::{compile, onnx, quantize_inputs};
use ciro_prover::{ProofSystem, StwoBackend};

#[test]
fn every_op_fixture_proves_and_verifies() {
    let dir = common::fixtures().join("ops");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "json").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    // `unsupported_op` exists to test the compiler's refusal.
    names.retain(|n| n != "unsupported_op");
    names.sort();
    assert!(names.len() >= 20, "op fixtures missing: {names:?}");
    let backend = StwoBackend::default();
    for name in &names {
        let loaded = onnx::load(&dir.join(format!("{name}.onnx"))).unwrap();
        let x = read_json(&dir.join(format!("{name}.json"))).unwrap();
        let model = compile(
            &loaded,
            std::slice::from_ref(&x),
            &CompileOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = quantize_inputs(&model.graph, &x).unwrap();
        let (pk, vk) = backend
            .setup(&model)
            .unwrap_or_else(|e| panic!("{name}: setup: {e}"));
        let bundle = backend
            .prove(&pk, &input, &mut |_| {})
            .unwrap_or_else(|e| panic!("{name}: prove: {e}"));
        let outputs = backend
            .verify(&vk, &bundle)
            .unwrap_or_else(|e| panic!("{name}: verify: {e}"));
        let want = eval(&model.graph, &input).unwrap();
        for (o, w) in outputs.iter().zip(&want) {
            assert_eq!(
                o.values, w.data,
                "{name}: proven output differs from the evaluator"
            );
        }
        let mut tampered = bundle.clone();
        tampered.header.outputs[0].values[0] += 1;
        assert!(
            backend.verify(&vk, &tampered).is_err(),
            "{name}: a changed output verified"
        );
    }
}
