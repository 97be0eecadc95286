//! The plonky2 backend's soundness and zero-knowledge (that every fixture proves, verifies and
//! agrees with the other backends is the conformance suite's): the verifier rejects tampered
//! statements, proofs and one-cell witness changes (made through `Plonky2Backend::prove_tampered`,
//! after plonky2 generated the witness and before it commits to it), and a private-input
//! bundle shows nothing of the input.

mod common;

use std::sync::{Mutex, OnceLock};

use ciro_circuits::halo2::InputVisibility;
use ciro_circuits::{Cell, Gate};
use ciro_model_compiler::eval::IntTensor;
use ciro_prover::plonky2_backend::input_hash;
use ciro_prover::{
    KeyFile, Plonky2Backend, Plonky2ProvingKey, Plonky2VerifyingKey, ProofBundle, ProofSystem,
    VerifyError,
};
use plonky2::field::types::PrimeField64;
use plonky2::fri::reduction_strategies::FriReductionStrategy;

struct Keys {
    pk: Plonky2ProvingKey,
    vk: Plonky2VerifyingKey,
    input: Vec<IntTensor>,
}

fn keys(name: &'static str) -> &'static Keys {
    static CACHE: OnceLock<Mutex<Vec<(&'static str, &'static Keys)>>> = OnceLock::new();
    let mut c = CACHE.get_or_init(Default::default).lock().unwrap();
    if let Some((_, k)) = c.iter().find(|(n, _)| *n == name) {
        return k;
    }
    let (model, input) = common::compile_named(name);
    let (pk, vk) = Plonky2Backend::new().setup(&model).expect("plonky2 setup");
    let k: &'static Keys = Box::leak(Box::new(Keys { pk, vk, input }));
    c.push((name, k));
    k
}

fn honest(name: &'static str) -> (&'static Keys, ProofBundle) {
    let k = keys(name);
    let b = Plonky2Backend::new()
        .prove(&k.pk, &k.input, &mut |_| {})
        .expect("honest proof");
    ciro_prover::plonky2_backend::verify(&k.vk, &b).expect("the honest proof verifies");
    (k, b)
}

fn rejects(vk: &Plonky2VerifyingKey, b: &ProofBundle, case: &str) -> VerifyError {
    match ciro_prover::plonky2_backend::verify(vk, b) {
        Ok(_) => panic!("{case}: the verifier ACCEPTED"),
        Err(e) => {
            eprintln!("{case}: rejected: {e}");
            e
        }
    }
}

#[test]
fn tampered_statements_and_proofs_are_rejected() {
    let (k, b) = honest("mlp_small");
    for delta in [1, -1] {
        let mut t = b.clone();
        t.header.outputs[0].values[0] += delta;
        let e = rejects(&k.vk, &t, &format!("output[0] {delta:+}"));
        assert!(matches!(e, VerifyError::Plonky2(_)), "{e}");
    }
    let mut t = b.clone();
    let (lo, hi) = (k.vk.inputs[0].lo, k.vk.inputs[0].hi);
    let v = &mut t.header.inputs[0].values[0];
    *v = if *v < hi { *v + 1 } else { *v - 1 };
    assert!(matches!(
        rejects(&k.vk, &t, "input[0] ±1"),
        VerifyError::Plonky2(_)
    ));
    let mut t = b.clone();
    t.header.inputs[0].values[0] = lo - 1;
    assert!(matches!(
        rejects(&k.vk, &t, "input below range"),
        VerifyError::InputRange(_)
    ));

    let n = b.proof.len();
    for at in [0, 1, 31, 32, 100, n / 3, n / 2, 2 * n / 3, n - 33, n - 1] {
        let mut t = b.clone();
        t.proof[at] ^= 0x01;
        rejects(&k.vk, &t, &format!("proof byte {at}/{n} flipped"));
    }
    for len in [0, 32, n / 2, n - 1] {
        let mut t = b.clone();
        t.proof.truncate(len);
        rejects(&k.vk, &t, &format!("proof cut to {len} bytes"));
    }
    let mut extra = b.clone();
    extra.proof.extend_from_slice(&[0; 32]);
    assert!(matches!(
        rejects(&k.vk, &extra, "32 trailing bytes"),
        VerifyError::Malformed(_)
    ));

    // Another model's key, and this model's key with one weight changed.
    let other = keys("act_mix");
    let e = rejects(&other.vk, &b, "mlp_small proof, act_mix key");
    assert!(matches!(e, VerifyError::WrongModel { .. }), "{e}");
    let mut t = b.clone();
    t.header.model_commitment = other.vk.commitment();
    rejects(&other.vk, &t, "mlp_small proof relabelled for act_mix");
    let model = common::with_changed_weight(&common::compile_fixture("mlp_small"));
    let (_, changed) = Plonky2Backend::new()
        .setup(&model)
        .expect("setup of the changed model");
    assert_ne!(changed.key, k.vk.key, "the weights are in the key");
    let mut t = b.clone();
    t.header.model_commitment = changed.commitment();
    assert!(matches!(
        rejects(&changed, &t, "changed weight"),
        VerifyError::Plonky2(_)
    ));

    // A key file edited to weaken the proof system is refused before any proof is read, whether
    // the edit is in its configuration or in its FRI parameters' own copy of it.
    type Edit =
        fn(&mut plonky2::plonk::circuit_data::CommonCircuitData<ciro_circuits::plonky2::F, 2>);
    let edits: [(&str, Edit); 5] = [
        ("a key with 1 FRI query", |c| {
            c.config.fri_config.num_query_rounds = 1
        }),
        ("a key whose FRI parameters ask 1 query", |c| {
            c.fri_params.config.num_query_rounds = 1
        }),
        // A folding Ciro does not make (the key's strategy and its arities agree).
        ("a key folding by 4", |c| {
            let s = FriReductionStrategy::ConstantArityBits(2, 0);
            c.fri_params.reduction_arity_bits = s.reduction_arity_bits(c.degree_bits(), 3, 4, 28);
            c.config.fri_config.reduction_strategy = s.clone();
            c.fri_params.config.reduction_strategy = s;
        }),
        ("a key whose FRI parameters fold once less", |c| {
            c.fri_params.reduction_arity_bits.pop();
        }),
        // Answered at once, not by folding 2^60 rows.
        ("a key of 2^60 rows", |c| c.fri_params.degree_bits = 60),
    ];
    for (case, edit) in edits {
        let mut weak = k.vk.clone();
        let mut data = weak.circuit_data().unwrap();
        edit(&mut data.common);
        weak.key = hex::encode(
            data.to_bytes(&plonky2::util::serialization::DefaultGateSerializer)
                .unwrap(),
        );
        let mut t = b.clone();
        t.header.model_commitment = weak.commitment();
        assert!(matches!(
            rejects(&weak, &t, case),
            VerifyError::Malformed(_)
        ));
    }
}

/// The first cell a gate of `kind` writes in `pk`'s circuit.
fn written_by(pk: &Plonky2ProvingKey, kind: &str) -> Option<Cell> {
    pk.circuit.gates.iter().find_map(|g| match (kind, g) {
        ("mac", Gate::Mac { outs, .. }) => outs.first().copied(),
        (
            "arith",
            Gate::Arith {
                out, a: Some(_), ..
            },
        ) => Some(*out),
        ("constant", Gate::Arith { out, a: None, .. }) => Some(*out),
        ("select", Gate::Select { out, .. }) => Some(*out),
        ("div", Gate::Div { out, .. }) => Some(*out),
        ("lookup", Gate::Lookup { out, .. }) => Some(*out),
        _ => None,
    })
}

#[test]
fn one_wrong_witness_cell_is_rejected() {
    let kinds = ["mac", "arith", "constant", "select", "div", "lookup"];
    let fixtures = ["mlp_small", "act_mix", "mul", "div_tensor", "exp", "pad"];
    for kind in kinds {
        let found = fixtures
            .iter()
            .find_map(|&name| written_by(&keys(name).pk, kind).map(|c| (name, c)));
        let (name, cell) = found.unwrap_or_else(|| panic!("no fixture has a {kind} gate"));
        let k = keys(name);
        let t = Plonky2Backend::new()
            .prove_tampered(&k.pk, &k.input, cell, 1)
            .expect("a tampered proof is still produced");
        rejects(&k.vk, &t, &format!("{name}: {kind} cell {cell} + 1"));
    }
    // A public input cell changed in the witness but not in the statement.
    let k = keys("mlp_small");
    let t = Plonky2Backend::new()
        .prove_tampered(&k.pk, &k.input, 0, 1)
        .expect("a tampered proof is still produced");
    rejects(&k.vk, &t, "input cell 0 + 1");
}

#[test]
fn hashed_and_private_inputs_prove_the_same_outputs_and_bind_the_input() {
    let (_, public) = honest("mlp_small");
    let model = common::compile_fixture("mlp_small");
    let input = common::sample_input(&model, "mlp_small");
    let flat: Vec<i64> = input.iter().flat_map(|t| t.data.clone()).collect();
    for shown in [InputVisibility::Hashed, InputVisibility::Private] {
        let be = Plonky2Backend::new().with_inputs(shown);
        let (pk, vk) = be.setup(&model).expect("setup");
        assert_eq!(vk.input_visibility, shown);
        let b = be.prove(&pk, &input, &mut |_| {}).expect("proof");
        be.verify(&vk, &b).expect("the honest proof verifies");
        assert!(
            b.header.inputs.is_empty(),
            "{shown:?}: the bundle shows the input"
        );
        assert_eq!(b.header.outputs, public.header.outputs, "{shown:?}");
        let reject = |t: &ProofBundle, case: &str| rejects(&vk, t, &format!("{shown:?}: {case}"));
        match shown {
            InputVisibility::Hashed => {
                let h = input_hash(&vk, &flat).unwrap();
                assert_eq!(b.header.input_hash.as_deref(), Some(h.as_str()));
                let mut other = flat.clone();
                other[0] += if other[0] < vk.inputs[0].hi { 1 } else { -1 };
                let mut t = b.clone();
                t.header.input_hash = Some(input_hash(&vk, &other).unwrap());
                reject(&t, "another input's hash");
                let mut t = b.clone();
                t.header.input_hash = None;
                reject(&t, "no hash");
            }
            _ => {
                assert_eq!(b.header.input_hash, None);
                let mut t = b.clone();
                t.header.input_hash = Some(input_hash(&vk, &flat).unwrap());
                reject(&t, "a hash the key does not show");
            }
        }
        let mut t = b.clone();
        t.header.inputs = public.header.inputs.clone();
        reject(&t, "a bundle carrying the input");
        // The input one past its declared range in the witness (copies of the cell move with
        // it, values computed from it do not, so the arithmetic that feeds its range check
        // refuses it first; `a_private_input_of_a_one_value_range_is_pinned` in the circuits
        // crate has the honest prover face an out-of-range input).
        let past = vk.inputs[0].hi + 1 - flat[0];
        let t = be
            .prove_tampered(&pk, &input, 0, past)
            .expect("a tampered proof is still produced");
        reject(&t, "input past its declared range");
    }
}

/// Zero-knowledge: two proofs of the same statement (the same outputs) from different private
/// inputs show the same header, proofs of the same size that both verify, and none of the
/// input's values; proving one input twice gives different bytes (the proof is randomised).
#[test]
fn private_inputs_leave_no_trace_in_the_bundle() {
    let (model, _) = common::compile_named("relu");
    let be = Plonky2Backend::new().with_inputs(InputVisibility::Private);
    let (pk, vk) = be.setup(&model).expect("setup");
    let info = &vk.inputs[0];
    // ReLU of any negative input is 0: two inputs of distinctive negative values, one output.
    assert!(info.lo < -1, "the fixture's inputs reach negative values");
    let span = -info.lo;
    let input = |shift: i64| {
        let data: Vec<i64> = (0..info.len() as i64)
            .map(|i| info.lo + (7 * i + shift) % span)
            .collect();
        vec![IntTensor {
            shape: info.shape.clone(),
            data,
        }]
    };
    let (x, y) = (input(0), input(3));
    assert_ne!(x[0].data, y[0].data);
    let bx = be.prove(&pk, &x, &mut |_| {}).expect("proof of x");
    let by = be.prove(&pk, &y, &mut |_| {}).expect("proof of y");
    let bx2 = be.prove(&pk, &x, &mut |_| {}).expect("proof of x again");
    for b in [&bx, &by, &bx2] {
        be.verify(&vk, b).expect("verifies");
    }
    assert_eq!(bx.header, by.header, "the statements are the same");
    assert!(bx.header.inputs.is_empty() && bx.header.input_hash.is_none());
    assert_eq!(bx.proof.len(), by.proof.len());
    assert_ne!(bx.proof, bx2.proof, "proofs of one witness are randomised");
    // No input value appears in the bytes as a field element (8 bytes, little-endian).
    for (name, inp) in [("x", &x), ("y", &y)] {
        for &v in &inp[0].data {
            let bytes = ciro_circuits::plonky2::felt(v)
                .to_canonical_u64()
                .to_le_bytes();
            for b in [&bx, &by] {
                assert!(
                    !b.proof.windows(8).any(|w| w == bytes),
                    "{name}'s value {v} appears in a proof"
                );
                assert!(!b.to_bytes().windows(8).any(|w| w == bytes));
            }
        }
    }
}

/// Private weights: the key holds a hiding Poseidon commitment to the MAC and Arith
/// coefficients instead of the weights; proofs give the same outputs as with fixed weights; the
/// opening reproduces the key, a fresh opening commits differently under the same circuit; a
/// proof made with one weight changed (the same blinding) or checked against another commitment
/// to the same weights is rejected; and such proofs aggregate like any other.
#[test]
fn private_weights_prove_the_same_outputs_and_bind_the_committed_weights() {
    use ciro_prover::plonky2_backend::aggregate::{aggregate, check_inclusion};

    let (_, fixed) = honest("mlp_small");
    let (model, input) = common::compile_named("mlp_small");
    let be = Plonky2Backend::new().with_private_weights(None);
    let (pk, vk) = be.setup(&model).expect("setup");
    let wc = vk.weights_commitment.clone().expect("a weights commitment");
    let b = be.prove(&pk, &input, &mut |_| {}).expect("proof");
    be.verify(&vk, &b).expect("the honest proof verifies");
    assert_eq!(b.header.outputs, fixed.header.outputs);
    assert_eq!(
        vk.n_public(),
        fixed.header.outputs[0].values.len() + k_inputs(&vk) + 4
    );

    let opening = pk.weight_opening().expect("an opening").clone();
    let (_, again) = Plonky2Backend::new()
        .with_private_weights(Some(opening.clone()))
        .setup(&model)
        .expect("setup with the opening");
    assert_eq!(again.commitment(), vk.commitment());
    let (_, fresh) = Plonky2Backend::new()
        .with_private_weights(None)
        .setup(&model)
        .expect("setup with a new opening");
    assert_ne!(fresh.weights_commitment, Some(wc.clone()));
    assert_eq!(
        fresh.key, vk.key,
        "the circuit holds no weight: only the commitment differs"
    );

    // Another commitment to the same weights (relabelled so the model check passes).
    let mut t = b.clone();
    t.header.model_commitment = fresh.commitment();
    rejects(&fresh, &t, "another commitment to the same weights");

    // One weight changed, proved with the same blinding: its commitment differs.
    let changed = common::with_changed_weight(&model);
    let bc = Plonky2Backend::new().with_private_weights(Some(opening.clone()));
    let (cpk, cvk) = bc.setup(&changed).expect("setup of the changed model");
    assert_ne!(cvk.weights_commitment, vk.weights_commitment);
    let mut t = bc
        .prove(&cpk, &input, &mut |_| {})
        .expect("proof with a changed weight");
    t.header.model_commitment = vk.commitment();
    t.header.outputs = b.header.outputs.clone();
    rejects(&vk, &t, "a proof with one weight changed");

    // An opening of another model, or of another backend, is refused at setup.
    let (other, _) = common::compile_named("relu");
    let e = Plonky2Backend::new()
        .with_private_weights(Some(opening.clone()))
        .setup(&other)
        .err()
        .expect("an opening of another model is refused");
    assert!(e.to_string().contains("another model"), "{e}");
    let mut halo2ish = opening.clone();
    halo2ish.format = "ciro-halo2-weight-opening".into();
    assert!(Plonky2Backend::new()
        .with_private_weights(Some(halo2ish))
        .setup(&model)
        .is_err());

    // Aggregates cover private-weights proofs (the commitment is among the public values).
    let (agg, _) = aggregate(&[(&vk, &b)], &mut |_| {}).expect("aggregate");
    assert_eq!(check_inclusion(&agg, &vk, &b).unwrap(), vec![0]);
}

/// How many public values a key's input contributes.
fn k_inputs(vk: &Plonky2VerifyingKey) -> usize {
    match vk.input_visibility {
        InputVisibility::Public => vk.inputs.iter().map(|t| t.len()).sum(),
        InputVisibility::Hashed => 4,
        InputVisibility::Private => 0,
    }
}
