//! The cross-backend conformance suite: every op fixture and every model fixture proves and
//! verifies on *each registered backend* (through the object-safe registry, as the service and
//! CLI use them), the proven output equals the reference evaluator's (so the backends agree with
//! each other), the bundle survives a round trip through bytes, and a changed output is
//! rejected by the verifier.
//!
//! A new backend is covered by one more `conformance!` line.

use std::path::Path;

use ciro_model_compiler::eval::{eval, IntTensor};
use ciro_model_compiler::CompiledModel;
use ciro_prover::{BackendId, ProofBundle, ProverSettings};
use ciro_test_support as support;

fn settings() -> ProverSettings {
    ProverSettings {
        srs_dir: Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs"),
        ..ProverSettings::default()
    }
}

/// Proves `model` on `input` with `backend` and checks everything the suite promises.
fn conforms(backend: BackendId, what: &str, model: &CompiledModel, input: &[IntTensor]) {
    conforms_with(backend, &settings(), what, model, input)
}

/// [`conforms`] with other settings (what proofs show of the input, private weights).
fn conforms_with(
    backend: BackendId,
    settings: &ProverSettings,
    what: &str,
    model: &CompiledModel,
    input: &[IntTensor],
) {
    let prover = ciro_prover::prover(backend, settings).expect("prover");
    let pk = prover
        .setup(model, &mut |_| {})
        .unwrap_or_else(|e| panic!("{backend} {what}: setup: {e}"));
    let vk = pk.verifying_key();
    assert_eq!(vk.backend(), backend);
    let bundle = prover
        .prove(pk.as_ref(), input, &mut |_| {})
        .unwrap_or_else(|e| panic!("{backend} {what}: prove: {e}"));
    assert_eq!(bundle.header.backend, backend.bundle_name());
    let bundle = ProofBundle::from_bytes(&bundle.to_bytes()).expect("bundle round-trips");
    // The verifier sees the key only as a file, as users hand it over.
    let vk = ciro_prover::load_verifying_key(&vk.to_json()).expect("key round-trips");
    let outputs = vk
        .verify(&bundle)
        .unwrap_or_else(|e| panic!("{backend} {what}: verify: {e}"));
    let want = eval(&model.graph, input).expect("reference evaluation");
    assert_eq!(outputs.len(), want.len(), "{backend} {what}");
    for (o, w) in outputs.iter().zip(&want) {
        assert_eq!(
            o.values, w.data,
            "{backend} {what}: proven output differs from the reference evaluator"
        );
    }
    let mut tampered = bundle.clone();
    tampered.header.outputs[0].values[0] += 1;
    assert!(
        vk.verify(&tampered).is_err(),
        "{backend} {what}: a changed output verified"
    );
}

macro_rules! conformance {
    ($module:ident, $backend:expr) => {
        conformance!($module, $backend, |_: &str| true, |_: &str| true);
    };
    // `$ops` and `$models` pick the fixtures proven (a backend too slow for all of them in CI).
    ($module:ident, $backend:expr, $ops:expr, $models:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn every_op_fixture() {
                for name in support::op_fixtures()
                    .into_iter()
                    .filter(|n| ($ops)(n.as_str()))
                {
                    let (model, input) = support::compile_op(&name);
                    conforms($backend, &format!("op {name}"), &model, &input);
                }
            }

            #[test]
            fn every_model_fixture() {
                for name in support::MODELS.into_iter().filter(|n| ($models)(*n)) {
                    let model = support::compile_fixture(name);
                    let input = support::sample_input(&model, name);
                    conforms($backend, &format!("model {name}"), &model, &input);
                }
            }
        }
    };
}

/// The transformer fixtures: the encoder block's label and the nanoGPT decoder's next token
/// agree with the float model on at least 99 of 100 held-out inputs (random prompts for the
/// decoder), and both prove on stwo. halo2 proves them too (`ciro bench --backend halo2`), but
/// at 2^19 and 2^21 rows too slowly for this suite; the `attention_head` op fixture takes every
/// attention gadget through halo2 above.
#[test]
fn transformer_fixtures_agree_with_float_and_prove() {
    for name in ["transformer_block", "nanogpt"] {
        let model = support::compile_fixture(name);
        let agreement = support::label_agreement(&model, name, 100);
        assert!(agreement >= 0.99, "{name}: label agreement {agreement}");
        let input = support::sample_input(&model, name);
        conforms(BackendId::Stwo, &format!("model {name}"), &model, &input);
    }
}

conformance!(stwo, BackendId::Stwo);
conformance!(halo2, BackendId::Halo2);
// plonky2 takes 0.5-1.5 s a small circuit here (its zero-knowledge blinding alone is about
// 2,300 rows), so CI proves one op fixture per gate kind and a few op families, and three of the
// five models; `plonky2_all` (ignored) proves every fixture, with the input public, then hashed,
// then private, then with private weights:
// `cargo test --release --workspace --test conformance -- --ignored`.
const PLONKY2_CI_OPS: &[&str] = &[
    "relu",
    "div_tensor",
    "exp",
    "mul",
    "conv",
    "softmax",
    "layernorm",
];
const PLONKY2_CI_MODELS: &[&str] = &["mlp_small", "act_mix", "cnn_lenet"];
conformance!(
    plonky2,
    BackendId::Plonky2,
    |n: &str| PLONKY2_CI_OPS.contains(&n),
    |n: &str| PLONKY2_CI_MODELS.contains(&n)
);

mod plonky2_all {
    use ciro_circuits::halo2::InputVisibility;

    use super::*;

    fn every_fixture_with(settings: &ProverSettings, how: &str) {
        for name in support::op_fixtures() {
            let (model, input) = support::compile_op(&name);
            let what = format!("op {name}, {how}");
            conforms_with(BackendId::Plonky2, settings, &what, &model, &input);
        }
        for name in support::MODELS {
            let model = support::compile_fixture(name);
            let input = support::sample_input(&model, name);
            let what = format!("model {name}, {how}");
            conforms_with(BackendId::Plonky2, settings, &what, &model, &input);
        }
    }

    #[test]
    #[ignore = "minutes: every fixture on plonky2"]
    fn every_fixture() {
        every_fixture_with(&settings(), "input public");
    }

    #[test]
    #[ignore = "minutes: every fixture on plonky2, input hashed"]
    fn every_fixture_input_hashed() {
        let s = ProverSettings {
            inputs: InputVisibility::Hashed,
            ..settings()
        };
        every_fixture_with(&s, "input hashed");
    }

    #[test]
    #[ignore = "minutes: every fixture on plonky2, input private"]
    fn every_fixture_input_private() {
        let s = ProverSettings {
            inputs: InputVisibility::Private,
            ..settings()
        };
        every_fixture_with(&s, "input private");
    }

    #[test]
    #[ignore = "minutes: every fixture on plonky2, weights private"]
    fn every_fixture_weights_private() {
        let s = ProverSettings {
            private_weights: Some(None),
            ..settings()
        };
        every_fixture_with(&s, "weights private");
    }
}

/// Every registered backend has a `conformance!` line above.
#[test]
fn every_registered_backend_is_covered() {
    let covered = [BackendId::Stwo, BackendId::Halo2, BackendId::Plonky2];
    for b in ciro_prover::backends() {
        assert!(
            covered.contains(&b.id),
            "{} has no conformance line",
            b.name
        );
    }
}
