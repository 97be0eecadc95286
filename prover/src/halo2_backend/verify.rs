//! Verification of a halo2-KZG bundle from its key alone: the public values, the private
//! weights' Schnorr proof, then the KZG proof (SHPLONK, Keccak transcript).

use std::panic::{catch_unwind, AssertUnwindSafe};

use ciro_circuits::halo2::fr;
use ciro_circuits::poseidon;
use halo2_axiom::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_axiom::plonk::verify_proof;
use halo2_axiom::poly::kzg::commitment::KZGCommitmentScheme;
use halo2_axiom::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_axiom::poly::kzg::strategy::SingleStrategy;
use snark_verifier::system::halo2::transcript::evm::ChallengeEvm;

use super::{
    params_info, proof_weight_commitments, weight_points, Halo2VerifyingKey, ReadTranscript,
    WeightVisibility, BACKEND,
};
use crate::bundle::{KeyFile, ProofBundle, PublicTensor};
use crate::error::VerifyError;
use crate::halo2_weights;
use crate::public::{check_tensors, panic_message, shown_input, ShownInput};

/// Checks `bundle` against `vk`; returns the public outputs it proves.
pub fn verify(
    vk: &Halo2VerifyingKey,
    bundle: &ProofBundle,
) -> Result<Vec<PublicTensor>, VerifyError> {
    let h = &bundle.header;
    h.check_against(&vk.commitment(), BACKEND, &params_info())?;
    let shown: Vec<Fr> = match shown_input(h, &vk.inputs, vk.input_visibility)? {
        ShownInput::Values(v) => v.into_iter().map(fr).collect(),
        ShownInput::Hash(x) => vec![poseidon::from_hex(x).ok_or_else(|| {
            VerifyError::Malformed(format!("input hash {x:?} is not a field element"))
        })?],
        ShownInput::Nothing => Vec::new(),
    };
    let outputs = check_tensors("outputs", &h.outputs, &vk.outputs, false)?;
    if (vk.weight_visibility == WeightVisibility::Private) != vk.weight_commitment.is_some() {
        return Err(VerifyError::Malformed(
            "the key's weight setting and weight commitment disagree".into(),
        ));
    }
    // Private weights: the proof's weight columns must hold the committed weights (checked
    // first, it is cheap).
    match (&vk.weight_commitment, &h.weights_proof) {
        (Some(wc), Some(wp)) => {
            let bytes = hex::decode(wp)
                .map_err(|_| VerifyError::Malformed("the weights proof is not hex".into()))?;
            let (bases, published) = weight_points(wc)?;
            let in_proof = proof_weight_commitments(&bundle.proof)?;
            halo2_weights::verify(&bases, &published, &in_proof, &bytes)?;
        }
        (Some(_), None) => {
            return Err(VerifyError::WeightOpening(
                "the key keeps the weights private; the bundle has no weights proof".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(VerifyError::Mismatch {
                field: "weights proof".into(),
                detail: "the key fixes the weights; the bundle must not carry one".into(),
            })
        }
        (None, None) => {}
    }
    let instance: Vec<Fr> = shown
        .into_iter()
        .chain(outputs.iter().map(|&v| fr(v)))
        .collect();
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), VerifyError> {
        let (params, key) = vk.halo2_parts()?;
        let mut rest = bundle.proof.as_slice();
        {
            let mut transcript = ReadTranscript::new(&mut rest);
            verify_proof::<
                KZGCommitmentScheme<Bn256>,
                VerifierSHPLONK<'_, Bn256>,
                ChallengeEvm<G1Affine>,
                ReadTranscript<'_, '_>,
                SingleStrategy<'_, Bn256>,
            >(
                &params,
                &key,
                SingleStrategy::new(&params),
                &[&[&instance]],
                &mut transcript,
            )
            .map_err(|e| VerifyError::Snark(format!("{e:?}")))?;
        }
        // Bytes the transcript never read are not part of the proof: refuse them.
        if !rest.is_empty() {
            return Err(VerifyError::Malformed(format!(
                "{} bytes after the end of the proof",
                rest.len()
            )));
        }
        Ok(())
    }));
    match result {
        Ok(r) => r?,
        Err(e) => return Err(VerifyError::Malformed(panic_message(e))),
    }
    Ok(h.outputs.clone())
}
