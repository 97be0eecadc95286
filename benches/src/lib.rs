//! Shared setup for the benchmarks: a fixture model compiled, its keys and its sample input.

use std::path::{Path, PathBuf};

use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::input::read_json;
use ciro_model_compiler::{compile_model_dir, quantize_inputs, CompileOptions};
use ciro_prover::{ProofSystem, StwoBackend, StwoProvingKey, StwoVerifyingKey};

pub const FIXTURE_MODELS: [&str; 5] = [
    "mlp_small",
    "mlp_mnist",
    "cnn_lenet",
    "act_mix",
    "image_recognition_v1",
];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub struct Prepared {
    pub pk: StwoProvingKey,
    pub vk: StwoVerifyingKey,
    pub input: Vec<IntTensor>,
}

/// Compiles a fixture model and sets up its stwo keys.
pub fn prepare(name: &str) -> Prepared {
    let dir = fixtures().join("models").join(name);
    let model = compile_model_dir(&dir, &CompileOptions::default()).expect("fixture compiles");
    let x = read_json(&dir.join("input.json")).expect("sample input");
    let input = quantize_inputs(&model.graph, &x).expect("sample input quantizes");
    let (pk, vk) = StwoBackend::default().setup(&model).expect("setup");
    Prepared { pk, vk, input }
}
