//! Recursive aggregation of plonky2 proofs: an aggregate of proofs of two models verifies in
//! one check and covers exactly its proofs; a changed, reordered or shortened statement list, a
//! changed proof, a proof not in the batch, a tampered inner proof and a statement proven by a
//! circuit other than the model's wrapper are each rejected.

mod common;

use std::sync::OnceLock;

use ciro_circuits::halo2::InputVisibility;
use ciro_circuits::plonky2::fri;
use ciro_circuits::plonky2::recursion::{self, Child, Merge, Wrapper};
use ciro_circuits::plonky2::F;
use ciro_model_compiler::eval::IntTensor;
use ciro_prover::plonky2_backend::aggregate::{
    aggregate, check_inclusion, check_models, hash_from_hex, hash_to_hex, statement_of,
    verify_aggregate, Aggregate, Statement,
};
use ciro_prover::{
    KeyFile, Plonky2Backend, Plonky2VerifyingKey, ProofBundle, ProofSystem, VerifyError,
};
use plonky2::field::types::Field;
use plonky2::iop::witness::{PartialWitness, WitnessWrite};
use plonky2::plonk::proof::ProofWithPublicInputs;
use plonky2::recursion::dummy_circuit::dummy_circuit;
use plonky2::util::serialization::Write;

struct Batch {
    mlp: Plonky2VerifyingKey,
    act: Plonky2VerifyingKey,
    /// Two proofs of mlp_small (different inputs), one of act_mix, one more of mlp_small
    /// that is not aggregated.
    bundles: Vec<ProofBundle>,
    outsider: ProofBundle,
    agg: Aggregate,
}

fn shifted(input: &[IntTensor], vk: &Plonky2VerifyingKey, k: i64) -> Vec<IntTensor> {
    let info = &vk.inputs[0];
    let mut x = input.to_vec();
    for v in x[0].data.iter_mut() {
        *v = (*v + k).clamp(info.lo, info.hi);
    }
    x
}

fn batch() -> &'static Batch {
    static B: OnceLock<Batch> = OnceLock::new();
    B.get_or_init(|| {
        let be = Plonky2Backend::new().with_inputs(InputVisibility::Hashed);
        let (m, mx) = common::compile_named("mlp_small");
        let (mpk, mlp) = be.setup(&m).expect("setup mlp_small");
        let (a, ax) = common::compile_named("act_mix");
        let (apk, act) = be.setup(&a).expect("setup act_mix");
        let prove = |pk, x: &[IntTensor]| be.prove(pk, x, &mut |_| {}).expect("proof");
        let bundles = vec![
            prove(&mpk, &mx),
            prove(&mpk, &shifted(&mx, &mlp, 3)),
            prove(&apk, &ax),
        ];
        let outsider = prove(&mpk, &shifted(&mx, &mlp, -5));
        let items: Vec<(&Plonky2VerifyingKey, &ProofBundle)> = vec![
            (&mlp, &bundles[0]),
            (&mlp, &bundles[1]),
            (&act, &bundles[2]),
        ];
        let (agg, stats) = aggregate(&items, &mut |m| eprintln!("{m}")).expect("aggregate");
        eprintln!("{stats:?}; {} bytes", agg.proof.len());
        Batch {
            mlp,
            act,
            bundles,
            outsider,
            agg,
        }
    })
}

fn rejected(agg: &Aggregate, case: &str) -> VerifyError {
    match verify_aggregate(agg) {
        Ok(_) => panic!("{case}: the aggregate was ACCEPTED"),
        Err(e) => {
            eprintln!("{case}: rejected: {e}");
            e
        }
    }
}

#[test]
fn an_aggregate_of_two_models_verifies_and_covers_exactly_its_proofs() {
    let b = batch();
    let statements = verify_aggregate(&b.agg).expect("the aggregate verifies");
    assert_eq!(statements.len(), 3);
    let keys = [&b.mlp, &b.mlp, &b.act];
    for (i, (vk, bundle)) in keys.iter().zip(&b.bundles).enumerate() {
        assert_eq!(
            check_inclusion(&b.agg, vk, bundle).expect("covered"),
            vec![i]
        );
        assert_eq!(statements[i], statement_of(vk, bundle).unwrap());
    }
    assert_eq!(
        statements[0].circuit, statements[1].circuit,
        "one wrapper per model"
    );
    assert_ne!(statements[0].circuit, statements[2].circuit);
    assert_ne!(statements[0].public_values, statements[1].public_values);
    assert_eq!(b.agg.header.models.len(), 2, "each model listed once");
    assert_eq!(
        check_models(&statements, &[&b.mlp, &b.act]).unwrap(),
        vec![true; 3]
    );
    assert_eq!(
        check_models(&statements, &[&b.act]).unwrap(),
        vec![false, false, true]
    );
    // Through the file format.
    let back = Aggregate::from_bytes(&b.agg.to_bytes()).expect("reads back");
    assert_eq!(back, b.agg);
    verify_aggregate(&back).expect("verifies after a round trip");
    // A proof of the same model that is not in the batch, and a proof under another key.
    let e = check_inclusion(&b.agg, &b.mlp, &b.outsider).unwrap_err();
    assert!(e.to_string().contains("does not cover"), "{e}");
    assert!(matches!(
        check_inclusion(&b.agg, &b.act, &b.bundles[0]),
        Err(VerifyError::WrongModel { .. })
    ));
}

/// The aggregate with its statement list changed by `edit` (through the full statements).
fn edited(agg: &Aggregate, edit: impl FnOnce(&mut Vec<Statement>)) -> Aggregate {
    let mut t = agg.clone();
    let mut s = t.statements().unwrap();
    edit(&mut s);
    t.set_statements(&s);
    t
}

#[test]
fn changed_reordered_or_shortened_statement_lists_and_changed_proofs_are_rejected() {
    let b = batch();
    rejected(&edited(&b.agg, |s| s.swap(0, 1)), "two statements swapped");
    rejected(
        &edited(&b.agg, |s| {
            s.pop();
        }),
        "the last statement dropped",
    );
    rejected(&edited(&b.agg, Vec::clear), "no statement");
    let extra = statement_of(&b.mlp, &b.outsider).unwrap();
    let e = extra.clone();
    rejected(
        &edited(&b.agg, |s| s.push(e)),
        "a statement it does not cover appended",
    );
    let e = extra.clone();
    rejected(
        &edited(&b.agg, |s| s[1] = e),
        "a statement it does not cover in place of one it does",
    );
    rejected(
        &edited(&b.agg, |s| s[2].circuit = s[0].circuit.clone()),
        "a statement's circuit changed",
    );
    let mut t = b.agg.clone();
    t.header.statements[0].0 = 7;
    assert!(matches!(
        rejected(&t, "a statement naming no model"),
        VerifyError::Malformed(_)
    ));
    // The model a statement claims is not in the proof: only the keys confirm it.
    let t = edited(&b.agg, |s| s[2].model_commitment = b.mlp.commitment());
    let s = verify_aggregate(&t).expect("the proof does not cover the claimed model");
    assert!(check_models(&s, &[&b.mlp]).is_err());
    let mut t = b.agg.clone();
    t.header.aggregator = t.header.models[0].circuit.clone();
    assert!(matches!(
        rejected(&t, "another aggregator"),
        VerifyError::Mismatch { .. }
    ));
    for at in [0, b.agg.proof.len() / 2, b.agg.proof.len() - 1] {
        let mut t = b.agg.clone();
        t.proof[at] ^= 1;
        rejected(&t, &format!("proof byte {at} flipped"));
    }
    let mut t = b.agg.clone();
    t.proof.truncate(t.proof.len() - 8);
    rejected(&t, "proof truncated");
    let mut bytes = b.agg.to_bytes();
    bytes.truncate(bytes.len() - 1);
    assert!(Aggregate::from_bytes(&bytes).is_err());
}

/// The wrapper verifies the inner proof in its circuit: a proof whose public values were
/// changed (the native check skipped) cannot be wrapped, and `aggregate` refuses a bundle that
/// does not verify.
#[test]
fn a_tampered_inner_proof_is_not_aggregated() {
    let b = batch();
    let data = b.mlp.circuit_data().unwrap();
    let wrapper = Wrapper::build(&data).expect("wrapper");
    // mlp_small is small enough to fold by 2; the merge circuit carries the gates verifying
    // such a proof takes, so one recursive step wraps it.
    assert_eq!(
        data.common.config.fri_config.reduction_strategy,
        fri::BY_TWO
    );
    assert_eq!(wrapper.stages(), 1);
    let mut t = b.bundles[0].clone();
    t.header.outputs[0].values[0] += 1;
    let items = [(&b.mlp, &t)];
    let e = aggregate(&items, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("proof 0"), "{e}");
    // Straight into the wrapper: the honest proof with one public value changed.
    let mut buf = plonky2::util::serialization::Buffer::new(&b.bundles[0].proof);
    use plonky2::util::serialization::Read;
    let proof = buf.read_proof(&data.common).unwrap();
    let honest = ProofWithPublicInputs {
        proof,
        public_inputs: public_values(&b.mlp, &b.bundles[0]),
    };
    wrapper.prove(&honest).expect("the honest proof wraps");
    let mut bad = honest.clone();
    bad.public_inputs[5] += F::ONE;
    let e = wrapper
        .prove(&bad)
        .expect_err("a changed inner statement was wrapped");
    eprintln!("wrapping a changed statement: {e}");
}

/// The field elements a bundle's proof is about, recomputed here from its header (hashed
/// input: the four elements of the hash, then the outputs).
fn public_values(vk: &Plonky2VerifyingKey, b: &ProofBundle) -> Vec<F> {
    let h = b.header.input_hash.as_ref().expect("hashed input");
    let mut v = hash_from_hex(h, "input hash").unwrap().elements.to_vec();
    v.extend(
        b.header.outputs[0]
            .values
            .iter()
            .map(|&x| ciro_circuits::plonky2::felt(x)),
    );
    assert_eq!(v.len(), vk.n_public());
    v
}

/// A prover who merges a proof of some other circuit of the right shape, one that shows the
/// honest public values without verifying anything, gets a valid aggregate, but its statement
/// names that circuit: the model's key refuses it and the job is not covered.
#[test]
fn a_statement_proven_by_another_circuit_is_refused_for_the_model() {
    let b = batch();
    let honest = statement_of(&b.mlp, &b.bundles[0]).unwrap();
    let merge = Merge::get();
    let fake = dummy_circuit::<_, ciro_circuits::plonky2::C, 2>(merge.shape());
    let values = hash_from_hex(&honest.public_values, "values").unwrap();
    // The fake circuit's public inputs are free: the honest values hash, then zeros.
    let mut pw = PartialWitness::new();
    for (i, &t) in fake.prover_only.public_inputs.iter().enumerate() {
        let v = values.elements.get(i).copied().unwrap_or(F::ZERO);
        pw.set_target(t, v).unwrap();
    }
    let fake_proof = fake.prove(pw).expect("fake proof");
    let top = merge
        .prove(Child::Leaf(&fake_proof, &fake.verifier_only), None)
        .expect("merge of the fake");
    let mut proof = Vec::new();
    proof.write_proof(&top.proof).unwrap();
    let circuit = recursion::circuit_hash(&fake.verifier_only);
    let mut agg = b.agg.clone();
    agg.set_statements(&[Statement {
        circuit: hash_to_hex(circuit),
        ..honest.clone()
    }]);
    agg.proof = proof;
    let s = verify_aggregate(&agg).expect("a valid proof of what it says");
    assert_eq!(s[0].public_values, honest.public_values);
    let e = check_models(&s, &[&b.mlp]).unwrap_err();
    assert!(e.to_string().contains("another circuit"), "{e}");
    let e = check_inclusion(&agg, &b.mlp, &b.bundles[0]).unwrap_err();
    assert!(e.to_string().contains("does not cover"), "{e}");
}
