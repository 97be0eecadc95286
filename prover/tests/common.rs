//! Shared helpers: compile a fixture model and quantize its sample input.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ciro_model_compiler::compile::CompileOptions;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::input::read_json;
use ciro_model_compiler::{compile_model_dir, quantize_inputs, CompiledModel};
use ciro_prover::{ProofSystem, StwoBackend, StwoProvingKey, StwoVerifyingKey};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn compile_fixture(name: &str) -> CompiledModel {
    compile_model_dir(
        &fixtures().join("models").join(name),
        &CompileOptions::default(),
    )
    .expect("fixture compiles")
}

pub fn sample_input(model: &CompiledModel, name: &str) -> Vec<IntTensor> {
    let x =
        read_json(&fixtures().join("models").join(name).join("input.json")).expect("sample input");
    quantize_inputs(&model.graph, &x).expect("sample input quantizes")
}

pub struct Fixture {
    pub model: CompiledModel,
    pub pk: StwoProvingKey,
    pub vk: StwoVerifyingKey,
    pub input: Vec<IntTensor>,
}

/// Compiles and sets up a fixture once per test binary.
pub fn fixture(name: &'static str) -> &'static Fixture {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(&'static str, &'static Fixture)>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    if let Some((_, f)) = c.iter().find(|(n, _)| *n == name) {
        return f;
    }
    let model = compile_fixture(name);
    let (pk, vk) = StwoBackend::default().setup(&model).expect("setup");
    let input = sample_input(&model, name);
    let f: &'static Fixture = Box::leak(Box::new(Fixture {
        model,
        pk,
        vk,
        input,
    }));
    c.push((name, f));
    f
}

/// A copy of `model` with its first weight tensor's first value changed by one.
pub fn with_changed_weight(model: &CompiledModel) -> CompiledModel {
    let mut model = model.clone();
    let w = model
        .graph
        .nodes
        .iter_mut()
        .find_map(|n| match &mut n.op {
            ciro_model_compiler::Op::Const { values } if values.len() > 1 => Some(values),
            _ => None,
        })
        .expect("a weight tensor");
    w[0] += 1;
    model
}
