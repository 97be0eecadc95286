//! Every fixture model compiles, proves and verifies, and the proven output is the reference
//! evaluator's output.

mod common;

use ciro_model_compiler::eval::eval;
use ciro_prover::{ProofBundle, ProofSystem, StwoBackend};

fn prove_and_verify(name: &'static str) {
    let f = common::fixture(name);
    let backend = StwoBackend::default();
    let bundle = backend.prove(&f.pk, &f.input, &mut |_| {}).expect("prove");
    let bytes = bundle.to_bytes();
    let back = ProofBundle::from_bytes(&bytes).expect("bundle round-trips");
    let outputs = backend
        .verify(&f.vk, &back)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = eval(&f.model.graph, &f.input).expect("reference");
    for (o, w) in outputs.iter().zip(&want) {
        assert_eq!(
            o.values, w.data,
            "{name}: proven output differs from the reference evaluator"
        );
    }
    eprintln!("{name}: proof {} KiB", bytes.len() / 1024);
}

#[test]
fn mlp_small() {
    prove_and_verify("mlp_small");
}

#[test]
fn mlp_mnist() {
    prove_and_verify("mlp_mnist");
}

#[test]
fn cnn_lenet() {
    prove_and_verify("cnn_lenet");
}

#[test]
fn act_mix() {
    prove_and_verify("act_mix");
}

#[test]
fn image_recognition_v1() {
    prove_and_verify("image_recognition_v1");
}
