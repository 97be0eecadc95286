//! Verification of a stwo bundle from its key alone (no prover code).

use std::panic::{catch_unwind, AssertUnwindSafe};

use ciro_circuits::stwo::Relations;
use stwo::core::channel::{Blake2sChannel, Channel};
use stwo::core::fields::m31::M31;
use stwo::core::fields::qm31::SecureField;
use stwo::core::pcs::CommitmentSchemeVerifier;
use stwo::core::vcs::blake2_hash::Blake2sHash;
use stwo::core::vcs_lifted::blake2_merkle::Blake2sMerkleChannel;

use super::{
    bincode_options, components, mix_statement, public_sum, StwoProof, StwoVerifyingKey, BACKEND,
};
use crate::bundle::{KeyFile, ProofBundle, PublicTensor};
use crate::error::VerifyError;
use crate::public::{check_tensors, panic_message};

/// Checks `bundle` against `vk`; returns the public outputs it proves.
pub fn verify(
    vk: &StwoVerifyingKey,
    bundle: &ProofBundle,
) -> Result<Vec<PublicTensor>, VerifyError> {
    let h = &bundle.header;
    let commitment = vk.commitment();
    h.check_against(&commitment, BACKEND, &vk.params.describe())?;
    if h.weights_proof.is_some() {
        return Err(VerifyError::Mismatch {
            field: "weights proof".into(),
            detail: "stwo keys fix the weights; the bundle must not carry one".into(),
        });
    }
    let inputs = check_tensors("inputs", &h.inputs, &vk.inputs, true)?;
    let outputs = check_tensors("outputs", &h.outputs, &vk.outputs, false)?;
    if inputs.len() != vk.input_reads.len() || outputs.len() != vk.output_cells.len() {
        return Err(VerifyError::Mismatch {
            field: "public values".into(),
            detail: "wrong count".into(),
        });
    }
    use bincode::Options;
    let proof: StwoProof = bincode_options()
        .deserialize(&bundle.proof)
        .map_err(|e| VerifyError::Malformed(format!("cannot decode the proof: {e}")))?;
    if proof.claimed_sums.len() != vk.components.len() {
        return Err(VerifyError::Malformed(format!(
            "{} claimed sums for {} components",
            proof.claimed_sums.len(),
            vk.components.len()
        )));
    }
    if proof.stark.0.commitments.len() != 4 {
        return Err(VerifyError::Malformed(format!(
            "{} commitments, expected 4",
            proof.stark.0.commitments.len()
        )));
    }
    let root = hex::decode(&vk.preprocessed_root)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            VerifyError::Malformed("the key's preprocessed root is not 32 hex bytes".into())
        })?;
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), VerifyError> {
        let pcs = vk.pcs();
        let channel = &mut Blake2sChannel::default();
        mix_statement(channel, &pcs, &commitment, &inputs, &outputs);
        let mut scheme = CommitmentSchemeVerifier::<Blake2sMerkleChannel>::new(pcs);
        let pre_sizes: Vec<u32> = vk
            .components
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.log_size, c.kind.pre_names().len()))
            .collect();
        scheme.commit(Blake2sHash(root), &pre_sizes, channel);
        let main_sizes: Vec<u32> = vk
            .components
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.log_size, c.kind.n_main()))
            .collect();
        scheme.commit(proof.stark.0.commitments[1], &main_sizes, channel);
        let rel = Relations::draw(channel);
        channel.mix_felts(&proof.claimed_sums);
        let total: SecureField = proof.claimed_sums.iter().copied().sum::<SecureField>()
            + public_sum(&rel, vk, &inputs, &outputs);
        if total != SecureField::from(M31::from_u32_unchecked(0)) {
            return Err(VerifyError::LogupSum);
        }
        let comps = components(vk, &rel, &proof.claimed_sums);
        let inter_sizes: Vec<u32> = comps
            .iter()
            .flat_map(|c| stwo::core::air::Component::trace_log_degree_bounds(c)[2].clone())
            .collect();
        scheme.commit(proof.stark.0.commitments[2], &inter_sizes, channel);
        let refs: Vec<&dyn stwo::core::air::Component> = comps
            .iter()
            .map(|c| c as &dyn stwo::core::air::Component)
            .collect();
        check_sampled_shape(&refs, pre_sizes.len(), &proof.stark.0.sampled_values)?;
        stwo::core::verifier::verify(&refs, channel, &mut scheme, proof.stark)
            .map_err(|e| VerifyError::Stark(e.to_string()))
    }));
    match result {
        Ok(r) => r?,
        Err(e) => {
            return Err(VerifyError::Malformed(format!(
                "verifier refused the proof ({})",
                panic_message(e)
            )))
        }
    }
    Ok(h.outputs.clone())
}

/// The out-of-domain samples must have the shape the components read: stwo evaluates the
/// constraints on them before it checks that, and a wrong count panics inside the evaluator
/// while a logup accumulator is live, whose drop then panics again — an abort no
/// `catch_unwind` stops (found by fuzzing `bundle_key`).
fn check_sampled_shape(
    components: &[&dyn stwo::core::air::Component],
    n_preprocessed: usize,
    sampled: &[Vec<Vec<SecureField>>],
) -> Result<(), VerifyError> {
    use stwo::core::circle::CirclePoint;
    use stwo::core::fields::qm31::SECURE_EXTENSION_DEGREE;
    let mask = stwo::core::air::Components {
        components: components.to_vec(),
        n_preprocessed_columns: n_preprocessed,
    }
    // The points depend on the degree bound; the shape, which is all that is compared, does not.
    .mask_points(
        CirclePoint::zero(),
        components
            .iter()
            .map(|c| c.max_constraint_log_degree_bound())
            .max()
            .unwrap_or(1),
        false,
    );
    let bad = |detail: String| VerifyError::Malformed(format!("sampled values: {detail}"));
    if sampled.len() != mask.len() + 1 {
        return Err(bad(format!(
            "{} trees, expected {}",
            sampled.len(),
            mask.len() + 1
        )));
    }
    for (tree, (want, got)) in mask.iter().zip(sampled).enumerate() {
        if want.len() != got.len() {
            return Err(bad(format!(
                "tree {tree} has {} columns, expected {}",
                got.len(),
                want.len()
            )));
        }
        if let Some(c) = (0..want.len()).find(|&c| want[c].len() != got[c].len()) {
            return Err(bad(format!(
                "tree {tree} column {c} has {} samples, expected {}",
                got[c].len(),
                want[c].len()
            )));
        }
    }
    let composition = &sampled[mask.len()];
    if composition.len() != 2 * SECURE_EXTENSION_DEGREE || composition.iter().any(|c| c.len() != 1)
    {
        return Err(bad("the composition tree has the wrong shape".into()));
    }
    Ok(())
}
