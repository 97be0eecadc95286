//! Verification of a plonky2 bundle from its key alone: the public values rebuilt from the
//! bundle's header (so the proof is checked against what the header claims), then plonky2's
//! verifier.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ciro_circuits::plonky2::{felt, C, D, F};
use plonky2::field::types::Field;
use plonky2::plonk::circuit_data::VerifierCircuitData;
use plonky2::plonk::proof::ProofWithPublicInputs;
use plonky2::util::serialization::{Buffer, Read};

use super::{params_info, parse_hash, Plonky2VerifyingKey, BACKEND};
use crate::bundle::{KeyFile, ProofBundle, PublicTensor};
use crate::error::VerifyError;
use crate::public::{check_tensors, panic_message, shown_input, ShownInput};

/// Checks `bundle` against `vk`; returns the public outputs it proves.
pub fn verify(
    vk: &Plonky2VerifyingKey,
    bundle: &ProofBundle,
) -> Result<Vec<PublicTensor>, VerifyError> {
    let h = &bundle.header;
    let public_inputs = public_inputs(vk, bundle)?;
    let data = vk.circuit_data()?;
    let proof = read_proof(&bundle.proof, &data.common)?;
    verify_proof(
        &data,
        ProofWithPublicInputs {
            proof,
            public_inputs,
        },
    )?;
    Ok(h.outputs.clone())
}

/// plonky2's verifier, with a panic on a malformed proof as an error.
pub(crate) fn verify_proof(
    data: &VerifierCircuitData<F, C, D>,
    proof: ProofWithPublicInputs<F, C, D>,
) -> Result<(), VerifyError> {
    catch_unwind(AssertUnwindSafe(|| data.verify(proof)))
        .map_err(|e| VerifyError::Malformed(panic_message(e)))?
        .map_err(|e| VerifyError::Plonky2(e.to_string()))
}

/// The public values a proof under `vk` must have for `bundle`'s header to be true (the
/// header's model, backend and tensors checked against the key first).
pub(crate) fn public_inputs(
    vk: &Plonky2VerifyingKey,
    bundle: &ProofBundle,
) -> Result<Vec<F>, VerifyError> {
    let h = &bundle.header;
    h.check_against(&vk.commitment(), BACKEND, &params_info())?;
    if h.weights_proof.is_some() {
        return Err(VerifyError::Mismatch {
            field: "weights proof".into(),
            detail: "plonky2 keys fix the weights; the bundle must not carry one".into(),
        });
    }
    let shown: Vec<F> = match shown_input(h, &vk.inputs, vk.input_visibility)? {
        ShownInput::Values(v) => v.into_iter().map(felt).collect(),
        ShownInput::Hash(x) => parse_hash(x)
            .ok_or_else(|| {
                VerifyError::Malformed(format!("input hash {x:?} is not four field elements"))
            })?
            .into_iter()
            .map(F::from_canonical_u64)
            .collect(),
        ShownInput::Nothing => Vec::new(),
    };
    let outputs = check_tensors("outputs", &h.outputs, &vk.outputs, false)?;
    let weights = match &vk.weights_commitment {
        None => Vec::new(),
        Some(c) => parse_hash(c)
            .ok_or_else(|| {
                VerifyError::Malformed(format!(
                    "weights commitment {c:?} is not four field elements"
                ))
            })?
            .into_iter()
            .map(F::from_canonical_u64)
            .collect(),
    };
    Ok(shown
        .into_iter()
        .chain(outputs.into_iter().map(felt))
        .chain(weights)
        .collect())
}

/// Reads a plonky2 proof of `common`'s shape, all of `bytes` (a malformed proof is an error,
/// never a panic).
pub(crate) fn read_proof(
    bytes: &[u8],
    common: &plonky2::plonk::circuit_data::CommonCircuitData<F, D>,
) -> Result<plonky2::plonk::proof::Proof<F, C, D>, VerifyError> {
    let read = catch_unwind(AssertUnwindSafe(|| {
        let mut buffer = Buffer::new(bytes);
        let proof = buffer.read_proof::<F, C, D>(common).map_err(|e| {
            VerifyError::Malformed(format!("the plonky2 proof does not read: {e:?}"))
        })?;
        if !buffer.unread_bytes().is_empty() {
            return Err(VerifyError::Malformed(format!(
                "{} bytes after the end of the proof",
                buffer.unread_bytes().len()
            )));
        }
        Ok(proof)
    }));
    read.map_err(|e| VerifyError::Malformed(panic_message(e)))?
}
