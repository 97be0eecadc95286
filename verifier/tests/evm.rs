//! Every fixture's halo2 proof verified by its generated Solidity verifier in a real EVM (revm,
//! Osaka rules: EIP-170 enforced, 2^24 gas per transaction); changed public values, flipped
//! proof bytes, truncated calldata and another model's proof all revert. Prints the gas table.

use std::path::Path;

use ciro_prover::{Halo2Backend, ProofBundle, ProofSystem};
use ciro_test_support as common;
use ciro_verifier::evm::{self, LocalEvm, EIP170_LIMIT};

#[test]
fn every_fixture_verifies_on_the_evm_and_tampering_reverts() {
    let backend = Halo2Backend::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs"));
    let mut rows = Vec::new();
    let mut other: Option<ProofBundle> = None;
    for name in [
        "mlp_small",
        "mlp_mnist",
        "cnn_lenet",
        "act_mix",
        "image_recognition_v1",
    ] {
        let model = common::compile_fixture(name);
        let input = common::sample_input(&model, name);
        let (pk, vk) = backend.setup(&model).expect("halo2 setup");
        let bundle = backend.prove(&pk, &input, &mut |_| {}).expect("proof");
        ciro_verifier::verify(&vk, &bundle).expect("native verification");

        let verifier = evm::evm_verifier(&vk).expect("verifier generation");
        assert!(verifier.solidity.contains("pragma solidity 0.8.19;"));
        let mut chain = LocalEvm::default();
        let deployed = chain
            .deploy(&verifier)
            .unwrap_or_else(|e| panic!("{name}: deploy under EIP-170: {e}"));
        assert!(deployed.largest_runtime() <= EIP170_LIMIT);
        let calldata = evm::calldata(&bundle).unwrap();
        let ok = chain.call(deployed.entry, &calldata).unwrap();
        assert!(
            ok.accepted,
            "{name}: the EVM verifier rejected an honest proof"
        );

        let rejects = |chain: &mut LocalEvm, data: &[u8], case: &str| {
            let out = chain.call(deployed.entry, data).unwrap();
            assert!(!out.accepted, "{name}: {case}: the EVM verifier ACCEPTED");
        };
        let n_public = vk.n_public();
        // The last public value is an output: change it by one (big-endian, last byte).
        let mut changed = calldata.clone();
        changed[32 * n_public - 1] ^= 1;
        rejects(&mut chain, &changed, "output changed");
        // The first input value.
        let mut changed = calldata.clone();
        changed[31] ^= 1;
        rejects(&mut chain, &changed, "input changed");
        for at in [0, 100, bundle.proof.len() / 2, bundle.proof.len() - 1] {
            let mut flipped = calldata.clone();
            flipped[32 * n_public + at] ^= 0x10;
            rejects(&mut chain, &flipped, &format!("proof byte {at} flipped"));
        }
        rejects(
            &mut chain,
            &calldata[..calldata.len() - 32],
            "calldata truncated",
        );
        if let Some(prev) = &other {
            let data = evm::calldata(prev).unwrap();
            rejects(&mut chain, &data, "another model's proof");
        }
        rows.push(format!(
            "| {name} | {n_public} | {} | {} | {} | {} | {} | {} |",
            bundle.proof.len(),
            calldata.len(),
            deployed.runtime_bytes.len(),
            deployed.largest_runtime(),
            deployed.deploy_gas,
            ok.gas
        ));
        other = Some(bundle);
    }
    eprintln!("| model | public values | proof bytes | calldata bytes | contracts | largest runtime bytes | deploy gas | verify gas |");
    eprintln!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        eprintln!("{r}");
    }
}

/// A stwo bundle has no EVM calldata (the bundle is built by hand: this crate proves nothing
/// with stwo).
#[test]
fn a_stwo_bundle_is_refused() {
    let model = common::compile_fixture("mlp_small");
    let input = common::sample_input(&model, "mlp_small");
    let backend = Halo2Backend::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs"));
    let (pk, _) = backend.setup(&model).expect("halo2 setup");
    let mut b = backend.prove(&pk, &input, &mut |_| {}).unwrap();
    assert!(evm::calldata(&b).is_ok());
    b.header.backend = ciro_prover::BackendId::Stwo.bundle_name().into();
    let e = evm::calldata(&b).unwrap_err();
    assert!(e.to_string().contains("--backend halo2"), "{e}");
}

/// The on-chain case: `mlp_mnist` with the input public only as its Poseidon hash and
/// the output public. One contract under EIP-170; a changed hash or output reverts.
#[test]
fn mlp_mnist_with_a_hashed_input_verifies_in_one_contract() {
    use ciro_prover::halo2_backend::InputVisibility;
    let backend = Halo2Backend::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs"))
        .with_inputs(InputVisibility::Hashed);
    let model = common::compile_fixture("mlp_mnist");
    let input = common::sample_input(&model, "mlp_mnist");
    let (pk, vk) = backend.setup(&model).expect("halo2 setup");
    let bundle = backend.prove(&pk, &input, &mut |_| {}).expect("proof");
    assert_eq!(vk.n_public(), 11);
    let verifier = evm::evm_verifier(&vk).expect("verifier generation");
    assert_eq!(verifier.contracts.len(), 1, "one contract");
    let mut chain = LocalEvm::default();
    let deployed = chain.deploy(&verifier).expect("deploys under EIP-170");
    let calldata = evm::calldata(&bundle).unwrap();
    let ok = chain.call(deployed.entry, &calldata).unwrap();
    assert!(ok.accepted);
    // The target (about 440.8k measured on 2026-11-29).
    assert!(ok.gas < 450_000, "verification took {} gas", ok.gas);
    for (at, case) in [(31, "hash changed"), (32 * 11 - 1, "output changed")] {
        let mut t = calldata.clone();
        t[at] ^= 1;
        assert!(
            !chain.call(deployed.entry, &t).unwrap().accepted,
            "{case}: ACCEPTED"
        );
    }
    eprintln!(
        "mlp_mnist, hashed input: {} bytes of code, deploy {} gas, verify {} gas, calldata {} bytes",
        deployed.largest_runtime(),
        deployed.deploy_gas,
        ok.gas,
        calldata.len()
    );
}

/// Private weights on chain: the entry contract checks the weights proof (that the proof's
/// weight columns hold the committed weights), then calls the halo2 verifier. The honest proof
/// passes; a flipped weights-proof byte and a proof made under another commitment to the same
/// weights revert at the entry, although the halo2 verifier alone accepts the latter.
#[test]
fn private_weights_are_checked_on_chain() {
    let srs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs");
    let model = common::compile_fixture("mlp_small");
    let input = common::sample_input(&model, "mlp_small");
    let prove = || {
        let be = Halo2Backend::new(&srs).with_private_weights(None);
        let (pk, vk) = be.setup(&model).expect("halo2 setup");
        let b = be.prove(&pk, &input, &mut |_| {}).expect("proof");
        ciro_verifier::verify(&vk, &b).expect("native verification");
        (vk, b)
    };
    let (vk, bundle) = prove();
    let (_, other) = prove();

    let verifier = evm::evm_verifier(&vk).expect("verifier generation");
    assert_eq!(
        verifier.contracts.last().map(|c| c.name.as_str()),
        Some("CiroPrivateWeights")
    );
    let mut chain = LocalEvm::default();
    let deployed = chain.deploy(&verifier).expect("deploys under EIP-170");
    let calldata = evm::calldata(&bundle).unwrap();
    let ok = chain.call(deployed.entry, &calldata).unwrap();
    assert!(ok.accepted, "the honest private-weights proof was rejected");

    let wp_len = hex::decode(bundle.header.weights_proof.as_ref().unwrap())
        .unwrap()
        .len();
    for back in [1, wp_len - 64, wp_len] {
        let mut t = calldata.clone();
        let at = t.len() - back;
        t[at] ^= 1;
        assert!(
            !chain.call(deployed.entry, &t).unwrap().accepted,
            "weights proof byte {back} from the end flipped: ACCEPTED"
        );
    }
    let foreign = evm::calldata(&other).unwrap();
    assert!(
        !chain.call(deployed.entry, &foreign).unwrap().accepted,
        "a proof under another weight commitment: ACCEPTED"
    );
    let halo2_only = deployed.addresses[deployed.addresses.len() - 2];
    assert!(
        chain
            .call(halo2_only, &foreign[..foreign.len() - wp_len])
            .unwrap()
            .accepted,
        "the halo2 verifier alone should accept it: the weight check is what binds"
    );
    eprintln!(
        "mlp_small, private weights: {} contracts, largest {} bytes, verify {} gas, calldata {} bytes",
        deployed.runtime_bytes.len(),
        deployed.largest_runtime(),
        ok.gas,
        calldata.len()
    );
}
