//! Any text as an EZKL-style JSON input: parsing, shape checks and quantization against a
//! compiled model.
#![no_main]

use std::sync::OnceLock;

use ciro_model_compiler::input::{check_inputs, parse_json};
use ciro_model_compiler::{quantize_inputs, CompiledModel};
use libfuzzer_sys::fuzz_target;

fn model() -> &'static CompiledModel {
    static M: OnceLock<CompiledModel> = OnceLock::new();
    M.get_or_init(|| {
        let loaded = ciro_model_compiler::onnx::load_bytes(
            include_bytes!("../../fixtures/models/mlp_small/model.onnx"),
            std::path::Path::new("mlp_small.onnx"),
            &Default::default(),
        )
        .expect("the fixture loads");
        ciro_model_compiler::compile(&loaded, &[], &ciro_prover::compile_options())
            .expect("the fixture compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(inputs) = parse_json(text) else {
        return;
    };
    let g = &model().graph;
    let shapes: Vec<Vec<usize>> = g.inputs.iter().map(|i| i.shape.clone()).collect();
    if check_inputs(&inputs, &shapes).is_ok() {
        let _ = quantize_inputs(g, &inputs);
    }
});
