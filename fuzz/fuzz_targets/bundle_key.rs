//! Any bytes as a verification key (first byte 0), as a proof bundle checked against
//! mlp_small's stwo key (1), plonky2 key (3) or halo2 key (otherwise), or as a plonky2
//! aggregate (4). Every tampered bundle or aggregate must be rejected with an error; a panic or
//! an "OK" for a changed proof is a finding.
#![no_main]

use std::sync::OnceLock;

use ciro_prover::plonky2_backend::aggregate::{verify_aggregate, Aggregate};
use ciro_prover::{load_verifying_key, DynVerifyingKey, ProofBundle};
use libfuzzer_sys::fuzz_target;

mod caught_panics;
use caught_panics::quiet_caught_panics;

const STWO_KEY: &[u8] = include_bytes!("../seeds/mlp_small.stwo.vk.json");
const HALO2_KEY: &[u8] = include_bytes!("../seeds/mlp_small.halo2.vk.json");
const PLONKY2_KEY: &[u8] = include_bytes!("../seeds/mlp_small.plonky2.vk.json");

fn key(
    bytes: &'static [u8],
    slot: &'static OnceLock<Box<dyn DynVerifyingKey>>,
) -> &'static dyn DynVerifyingKey {
    slot.get_or_init(|| load_verifying_key(bytes).expect("the seed key loads"))
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    static STWO: OnceLock<Box<dyn DynVerifyingKey>> = OnceLock::new();
    static HALO2: OnceLock<Box<dyn DynVerifyingKey>> = OnceLock::new();
    static PLONKY2: OnceLock<Box<dyn DynVerifyingKey>> = OnceLock::new();
    quiet_caught_panics();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let _ = load_verifying_key(rest);
        return;
    }
    if mode == 4 {
        if let Ok(agg) = Aggregate::from_bytes(rest) {
            if verify_aggregate(&agg).is_ok() {
                assert_eq!(agg.to_bytes(), rest, "a changed aggregate verified");
            }
        }
        return;
    }
    let Ok(bundle) = ProofBundle::from_bytes(rest) else {
        return;
    };
    let vk = match mode {
        1 => key(STWO_KEY, &STWO),
        3 => key(PLONKY2_KEY, &PLONKY2),
        _ => key(HALO2_KEY, &HALO2),
    };
    // Bundles are read back in full: a bundle that verifies must serialise to the same bytes
    // (no accepted variant of a proof the honest prover did not make).
    if ciro_verifier::verify(vk, &bundle).is_ok() {
        assert_eq!(bundle.to_bytes(), rest, "a changed bundle verified");
    }
});
