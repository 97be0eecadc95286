//! Calibrated ranges are enforced by the circuit, on every backend. An input that drives a
//! range-checked node (a rescale) out of its calibrated range has no honest proof: proving fails
//! and names the node. A cheating prover's witness for it (the true values, so one quotient lies
//! past its checked range while the division equation still holds) is rejected by the verifier.

use std::path::Path;

use ciro_circuits::Circuit;
use ciro_model_compiler::compile::compile_model_dir;
use ciro_model_compiler::eval::{IntTensor, RangeViolation};
use ciro_model_compiler::{quantize_inputs, run_lenient, CompileOptions, CompiledModel};
use ciro_prover::{Halo2Backend, ProofBundle, ProofSystem, ProveError, StwoBackend};

/// mlp_small calibrated on its samples with no margin, and a seeded ±1 input that leaves one of
/// its calibrated ranges.
fn model_and_outlier() -> (CompiledModel, Vec<IntTensor>, RangeViolation) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/mlp_small");
    let opts = CompileOptions {
        range_margin: 0.0,
        ..CompileOptions::default()
    };
    let model = compile_model_dir(&dir, &opts).expect("mlp_small compiles");
    let len: usize = model.graph.inputs[0].shape.iter().product();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..500 {
        let x: Vec<f32> = (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if state >> 63 == 1 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let (_, violations) = run_lenient(&model.graph, std::slice::from_ref(&x)).unwrap();
        if let Some(v) = violations.into_iter().next() {
            let input = quantize_inputs(&model.graph, &[x]).unwrap();
            return (model, input, v);
        }
    }
    panic!("no ±1 input leaves a calibrated range of mlp_small");
}

fn flat(input: &[IntTensor]) -> Vec<i64> {
    input.iter().flat_map(|t| t.data.iter().copied()).collect()
}

fn assert_names_the_node(err: &str, v: &RangeViolation) {
    assert!(
        err.contains(&format!("`{}`", v.node)) && err.contains("calibrated range"),
        "the error should name node `{}` and its calibrated range: {err}",
        v.node
    );
}

/// Proving the outlier fails naming the node; a cheating prover's witness for it (the true
/// values, made into a proof by `prove_witness`) is rejected by the verifier.
fn outlier_has_no_proof<B: ProofSystem>(
    backend: &B,
    circuit: impl Fn(&B::ProvingKey) -> &Circuit,
    prove_witness: impl Fn(&B::ProvingKey, &[IntTensor], Vec<i64>) -> Result<ProofBundle, ProveError>,
) {
    let (model, input, violation) = model_and_outlier();
    let (pk, vk) = backend.setup(&model).expect("setup");
    let err = backend.prove(&pk, &input, &mut |_| {}).unwrap_err();
    assert_names_the_node(&err.to_string(), &violation);
    let cheat = circuit(&pk).assign_unchecked(&flat(&input)).unwrap();
    let bundle = prove_witness(&pk, &input, cheat).expect("the prover proves what it is given");
    let rejected = backend
        .verify(&vk, &bundle)
        .expect_err("the verifier ACCEPTED");
    eprintln!("{}: {violation}\n  rejected: {rejected}", backend.name());
}

#[test]
fn stwo_rejects_a_witness_outside_a_calibrated_range() {
    let backend = StwoBackend::default();
    outlier_has_no_proof(
        &backend,
        |pk| &pk.circuit,
        |pk, input, cheat| backend.prove_witness(pk, input, cheat),
    );
}

#[test]
fn halo2_rejects_a_witness_outside_a_calibrated_range() {
    let backend = Halo2Backend::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs"));
    outlier_has_no_proof(
        &backend,
        |pk| &pk.circuit,
        |pk, input, cheat| backend.prove_witness(pk, input, cheat),
    );
}
