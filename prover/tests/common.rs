//! Shared helpers: the fixture helpers of `ciro-test-support`, and stwo keys per fixture made
//! once per test binary.
#![allow(dead_code)]

use std::sync::OnceLock;

use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;
use ciro_prover::{ProofSystem, StwoBackend, StwoProvingKey, StwoVerifyingKey};
// Each test binary uses some of these.
#[allow(unused_imports)]
pub use ciro_test_support::{compile_fixture, compile_named, sample_input, with_changed_weight};

pub struct Fixture {
    pub model: CompiledModel,
    pub pk: StwoProvingKey,
    pub vk: StwoVerifyingKey,
    pub input: Vec<IntTensor>,
}

/// Compiles and sets up a fixture (a model, or else an op) once per test binary.
pub fn fixture(name: &'static str) -> &'static Fixture {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(&'static str, &'static Fixture)>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut c = cache.lock().unwrap();
    if let Some((_, f)) = c.iter().find(|(n, _)| *n == name) {
        return f;
    }
    let (model, input) = compile_named(name);
    let (pk, vk) = StwoBackend::default().setup(&model).expect("setup");
    let f: &'static Fixture = Box::leak(Box::new(Fixture {
        model,
        pk,
        vk,
        input,
    }));
    c.push((name, f));
    f
}
