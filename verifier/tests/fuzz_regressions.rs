//! Every bundle or key the `bundle_key` fuzzer (`fuzz/`) found crashing, replayed against the
//! same seed keys: each must be rejected with an error, and no panic may escape.

use std::path::Path;

use ciro_prover::plonky2_backend::aggregate::Aggregate;
use ciro_prover::{load_verifying_key, ProofBundle};

#[test]
fn bundles_and_keys_that_crashed_the_verifier_are_rejected() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let key = |name: &str| {
        load_verifying_key(&std::fs::read(root.join("seeds").join(name)).unwrap()).unwrap()
    };
    let (stwo, halo2, plonky2) = (
        key("mlp_small.stwo.vk.json"),
        key("mlp_small.halo2.vk.json"),
        key("mlp_small.plonky2.vk.json"),
    );
    let mut files: Vec<_> = std::fs::read_dir(root.join("regressions/bundle_key"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let (&mode, rest) = data.split_first().unwrap();
        if mode == 0 {
            let _ = load_verifying_key(rest);
            continue;
        }
        if mode == 4 {
            if let Ok(agg) = Aggregate::from_bytes(rest) {
                let r = ciro_prover::plonky2_backend::aggregate::verify_aggregate(&agg);
                assert!(r.is_err(), "{}: a changed aggregate verified", f.display());
            }
            continue;
        }
        let Ok(bundle) = ProofBundle::from_bytes(rest) else {
            continue;
        };
        let vk = match mode {
            1 => &stwo,
            3 => &plonky2,
            _ => &halo2,
        };
        let r = ciro_verifier::verify(vk.as_ref(), &bundle);
        assert!(r.is_err(), "{}: a changed bundle verified", f.display());
    }
}
