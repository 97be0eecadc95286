//! plonky2 setup (building the circuit: its verifier and prover data) and proving (the
//! `plonky2-prover` feature).

use std::panic::{catch_unwind, AssertUnwindSafe};

use ciro_circuits::plonky2::{Plonky2Circuit, C, D, F};
use ciro_circuits::Circuit;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;
use plonky2::field::types::Field;
use plonky2::plonk::proof::ProofWithPublicInputs;
use plonky2::util::serialization::{DefaultGateSerializer, Write};

use super::{
    hash_hex, params_info, InputVisibility, Plonky2VerifyingKey, BACKEND, OPENING_FORMAT,
    VK_FORMAT, VK_VERSION,
};
use crate::bundle::{BundleHeader, KeyFile, ProofBundle, PublicTensor, BUNDLE_VERSION};
use crate::error::{ProveError, VerifyError};
use crate::halo2_weights::WeightOpening;
use crate::public::{flatten_inputs, panic_message, public_tensors, tensors};
use crate::registry::{BackendId, DynProvingKey, DynVerifyingKey, TypedBackend};
use crate::{ProofSystem, Stage};

pub struct Plonky2ProvingKey {
    pub circuit: Circuit,
    pub built: Plonky2Circuit,
    pub vk: Plonky2VerifyingKey,
    commitment: String,
    /// Private weights: the opening (the commitment's blinding) and its four elements.
    opening: Option<(WeightOpening, [F; 4])>,
}

/// The plonky2 proof system.
#[derive(Default)]
pub struct Plonky2Backend {
    /// What keys made by `setup` show of the input.
    inputs: InputVisibility,
    /// Private weights: `Some(None)` makes a new opening at setup, `Some(Some(o))` uses `o`.
    weights: Option<Option<WeightOpening>>,
}

/// Four uniform field elements for a new opening.
fn new_opening(model_hash: &str) -> WeightOpening {
    use plonky2::field::types::Field64;
    use rand::RngCore;
    let mut rng = rand::rngs::OsRng;
    let mut element = || loop {
        let v = rng.next_u64();
        if v < F::ORDER {
            return format!("{v:016x}");
        }
    };
    WeightOpening {
        format: OPENING_FORMAT.into(),
        version: 1,
        model_hash: model_hash.into(),
        blinds: vec![(0..4).map(|_| element()).collect()],
    }
}

/// The blinding elements of a plonky2 opening for `model_hash`.
fn opening_blinds(o: &WeightOpening, model_hash: &str) -> Result<[F; 4], ProveError> {
    if o.format != OPENING_FORMAT || o.version != 1 {
        return Err(ProveError::Backend(format!(
            "not a plonky2 weight opening ({} version {})",
            o.format, o.version
        )));
    }
    if o.model_hash != model_hash {
        return Err(ProveError::Backend(format!(
            "the weight opening belongs to another model ({}, not {model_hash})",
            o.model_hash
        )));
    }
    let hex = match o.blinds.as_slice() {
        [one] if one.len() == 4 => one,
        _ => {
            return Err(ProveError::Backend(
                "a plonky2 weight opening holds one list of four blinding elements".into(),
            ))
        }
    };
    let mut out = [F::ZERO; 4];
    for (o, h) in out.iter_mut().zip(hex) {
        use plonky2::field::types::Field64;
        let v = u64::from_str_radix(h, 16)
            .ok()
            .filter(|&v| h.len() == 16 && v < F::ORDER)
            .ok_or_else(|| {
                ProveError::Backend(format!("blinding element {h:?} is not a field element"))
            })?;
        *o = F::from_canonical_u64(v);
    }
    Ok(out)
}

fn backend_error(what: &str) -> impl Fn(String) -> ProveError + '_ {
    move |e| ProveError::Backend(format!("plonky2 {what}: {e}"))
}

impl Plonky2Backend {
    pub fn new() -> Self {
        Plonky2Backend::default()
    }

    /// The same backend, making keys whose proofs show the input as `inputs` says.
    pub fn with_inputs(mut self, inputs: InputVisibility) -> Self {
        self.inputs = inputs;
        self
    }

    /// The same backend, making keys with private weights: the key holds a hiding commitment
    /// to them, opened by `opening` (a new one if `None`; [`Plonky2ProvingKey::weight_opening`]).
    pub fn with_private_weights(mut self, opening: Option<WeightOpening>) -> Self {
        self.weights = Some(opening);
        self
    }

    /// Proves with the witness changed after plonky2 generated it: cell `cell` (and every copy
    /// of it) moved by `delta`. The soundness suite's hook; the verifier must reject the proof.
    #[cfg(feature = "testing")]
    pub fn prove_tampered(
        &self,
        pk: &Plonky2ProvingKey,
        inputs: &[IntTensor],
        cell: ciro_circuits::Cell,
        delta: i64,
    ) -> Result<ProofBundle, ProveError> {
        use ciro_circuits::plonky2::felt;
        use plonky2::iop::generator::generate_partial_witness;
        use plonky2::plonk::prover::prove_with_partition_witness;
        use plonky2::util::timing::TimingTree;
        let (flat, values) = pk.assign(inputs)?;
        let pw = pk.built.witness(&values, pk.blinds())?;
        let data = &pk.built.data;
        let mut witness = generate_partial_witness::<F, C, D>(pw, &data.prover_only, &data.common)
            .map_err(|e| backend_error("witness")(e.to_string()))?;
        let target = pk.built.cells[cell as usize];
        let rep = witness.representative_map[target.index(witness.num_wires, witness.degree)];
        let old = witness.values[rep].ok_or_else(|| backend_error("witness")("unset".into()))?;
        witness.values[rep] = Some(old + felt(delta));
        let proof = catch_unwind(AssertUnwindSafe(|| {
            prove_with_partition_witness::<F, C, D>(
                &data.prover_only,
                &data.common,
                witness,
                &mut TimingTree::default(),
            )
        }))
        .map_err(|e| backend_error("prover")(panic_message(e)))?
        .map_err(|e| backend_error("prover")(e.to_string()))?;
        pk.bundle(&flat, &values, &proof)
    }
}

impl Plonky2ProvingKey {
    pub fn commitment(&self) -> &str {
        &self.commitment
    }

    /// Private weights: the secret opening of the key's weight commitment.
    pub fn weight_opening(&self) -> Option<&WeightOpening> {
        self.opening.as_ref().map(|(o, _)| o)
    }

    fn blinds(&self) -> Option<[F; 4]> {
        self.opening.as_ref().map(|(_, b)| *b)
    }

    /// The inputs flattened and every cell computed.
    fn assign(&self, inputs: &[IntTensor]) -> Result<(Vec<i64>, Vec<i64>), ProveError> {
        let flat = flatten_inputs(&self.vk.inputs, inputs)?;
        let values = self.circuit.assign(&flat)?;
        Ok((flat, values))
    }

    fn bundle(
        &self,
        flat: &[i64],
        values: &[i64],
        proof: &ProofWithPublicInputs<F, C, D>,
    ) -> Result<ProofBundle, ProveError> {
        let mut bytes = Vec::new();
        bytes
            .write_proof(&proof.proof)
            .map_err(|e| backend_error("proof")(format!("{e:?}")))?;
        let out: Vec<i64> = self
            .circuit
            .outputs
            .iter()
            .map(|&c| values[c as usize])
            .collect();
        let (inputs, input_hash) = match self.vk.input_visibility {
            InputVisibility::Public => (tensors(&self.vk.inputs, flat), None),
            InputVisibility::Hashed => (
                Vec::new(),
                Some(hash_hex(ciro_circuits::plonky2::input::hash(flat))),
            ),
            InputVisibility::Private => (Vec::new(), None),
        };
        Ok(ProofBundle {
            header: BundleHeader {
                version: BUNDLE_VERSION,
                backend: BACKEND.into(),
                params: params_info(),
                model_name: self.vk.model_name.clone(),
                model_commitment: self.commitment.clone(),
                inputs,
                input_hash,
                outputs: tensors(&self.vk.outputs, &out),
                weights_proof: None,
            },
            proof: bytes,
        })
    }
}

impl ProofSystem for Plonky2Backend {
    type ProvingKey = Plonky2ProvingKey;
    type VerifyingKey = Plonky2VerifyingKey;

    fn name(&self) -> &'static str {
        BACKEND
    }

    fn setup(
        &self,
        model: &CompiledModel,
    ) -> Result<(Plonky2ProvingKey, Plonky2VerifyingKey), ProveError> {
        let circuit = crate::registry::backend(BackendId::Plonky2).lower(&model.graph)?;
        let opening = match &self.weights {
            None => None,
            Some(o) => {
                let o = o.clone().unwrap_or_else(|| new_opening(&model.hash));
                let blinds = opening_blinds(&o, &model.hash)?;
                Some((o, blinds))
            }
        };
        let built = catch_unwind(AssertUnwindSafe(|| {
            Plonky2Circuit::build(&circuit, self.inputs, opening.is_some())
        }))
        .map_err(|e| backend_error("circuit")(panic_message(e)))??;
        let weights_commitment = match (&opening, &built.private_weights) {
            (Some((_, blinds)), Some(w)) => Some(hash_hex(
                ciro_circuits::plonky2::weights_commitment(w, *blinds),
            )),
            _ => None,
        };
        let key = built
            .data
            .verifier_data()
            .to_bytes(&DefaultGateSerializer)
            .map_err(|e| backend_error("key")(format!("{e:?}")))?;
        let (inputs, outputs) = public_tensors(model)?;
        let vk = Plonky2VerifyingKey {
            format: VK_FORMAT.into(),
            version: VK_VERSION,
            model_name: model.graph.name.clone(),
            model_hash: model.hash.clone(),
            degree_bits: built.data.common.degree_bits(),
            key: hex::encode(key),
            inputs,
            input_visibility: self.inputs,
            outputs,
            labels: model.graph.labels.clone(),
            weights_commitment,
        };
        let commitment = KeyFile::commitment(&vk);
        Ok((
            Plonky2ProvingKey {
                circuit,
                built,
                vk: vk.clone(),
                commitment,
                opening,
            },
            vk,
        ))
    }

    fn prove(
        &self,
        pk: &Plonky2ProvingKey,
        inputs: &[IntTensor],
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError> {
        progress(Stage::Witness);
        let (flat, values) = pk.assign(inputs)?;
        let pw = pk.built.witness(&values, pk.blinds())?;
        progress(Stage::Commit);
        let proof = catch_unwind(AssertUnwindSafe(|| pk.built.data.prove(pw)))
            .map_err(|e| backend_error("prover")(panic_message(e)))?
            .map_err(|e| backend_error("prover")(e.to_string()))?;
        let bundle = pk.bundle(&flat, &values, &proof)?;
        progress(Stage::Done);
        Ok(bundle)
    }

    fn verify(
        &self,
        vk: &Plonky2VerifyingKey,
        bundle: &ProofBundle,
    ) -> Result<Vec<PublicTensor>, VerifyError> {
        super::verify(vk, bundle)
    }
}

impl DynProvingKey for Plonky2ProvingKey {
    fn verifying_key(&self) -> &dyn DynVerifyingKey {
        &self.vk
    }
    fn circuit(&self) -> &Circuit {
        &self.circuit
    }
    fn weight_opening(&self) -> Option<&WeightOpening> {
        Plonky2ProvingKey::weight_opening(self)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TypedBackend for Plonky2Backend {
    const ID: BackendId = BackendId::Plonky2;
}

/// The registry's constructor.
#[cfg(feature = "prove")]
pub(crate) fn prover(
    settings: &crate::registry::ProverSettings,
) -> Result<Box<dyn crate::registry::DynProver>, ProveError> {
    let mut be = Plonky2Backend::new().with_inputs(settings.inputs);
    if let Some(opening) = &settings.private_weights {
        be = be.with_private_weights(opening.clone());
    }
    Ok(Box::new(be))
}
