//! halo2 key generation and proving (the `halo2-prover` feature).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;

use ciro_circuits::halo2::columns::WEIGHTS;
use ciro_circuits::halo2::{fr, Halo2Circuit, Layout, N_ADVICE, N_WEIGHT};
use ciro_circuits::poseidon;
use ciro_circuits::Circuit;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;
use halo2_axiom::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_axiom::halo2curves::group::Curve;
use halo2_axiom::halo2curves::group::GroupEncoding;
use halo2_axiom::plonk::{create_proof, keygen_pk, keygen_vk_custom, ProvingKey};
use halo2_axiom::poly::commitment::{Blind, Params, ParamsProver};
use halo2_axiom::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_axiom::poly::kzg::multiopen::ProverSHPLONK;
use halo2_axiom::SerdeFormat;
use rand::rngs::OsRng;
use snark_verifier::loader::native::NativeLoader;
use snark_verifier::system::halo2::transcript::evm::{ChallengeEvm, EvmTranscript};

use super::srs::default_srs_dir;
use super::{
    params_info, proof_weight_commitments, weight_points, Halo2VerifyingKey, InputVisibility,
    SrsInfo, WeightVisibility, BACKEND, VK_FORMAT, VK_VERSION,
};
use crate::bundle::{BundleHeader, KeyFile, ProofBundle, PublicTensor, BUNDLE_VERSION};
use crate::error::{ProveError, VerifyError};
use crate::halo2_weights::{self, WeightCommitment, WeightOpening};
use crate::public::{flatten_inputs, panic_message, public_tensors, tensors};
use crate::registry::{BackendId, DynProvingKey, DynVerifyingKey, TypedBackend};
use crate::{ProofSystem, Stage};

/// The Keccak-256 transcript the Solidity verifier replays: one proof serves both verifiers.
type WriteTranscript = EvmTranscript<G1Affine, NativeLoader, Vec<u8>, Vec<u8>>;

pub struct Halo2ProvingKey {
    pub circuit: Circuit,
    pub vk: Halo2VerifyingKey,
    params: ParamsKZG<Bn256>,
    pk: ProvingKey<G1Affine>,
    commitment: String,
    /// With private weights: the blinding values of the published weight commitment.
    opening: Option<WeightOpening>,
}

/// The rows halo2 fills with random values in every advice column (the last usable row and the
/// blinding rows after it), in order.
fn blinding_rows(keys: &ProvingKey<G1Affine>) -> std::ops::Range<usize> {
    let n = keys.get_vk().get_domain().n as usize;
    n - (keys.get_vk().cs().blinding_factors() + 1)..n
}

/// The KZG commitment to weight column `j` with `blinds` on its blinding rows.
fn weight_column_commitment(
    params: &ParamsKZG<Bn256>,
    keys: &ProvingKey<G1Affine>,
    layout: &Layout,
    j: usize,
    blinds: &[Fr],
) -> G1Affine {
    let n = params.n() as usize;
    let mut v = vec![Fr::zero(); n];
    for (cell, &w) in v
        .iter_mut()
        .zip(&layout.weight[WEIGHTS[j]])
        .take(layout.rows)
    {
        *cell = fr(w);
    }
    let rows = blinding_rows(keys);
    for (i, b) in rows.zip(blinds) {
        v[i] = *b;
    }
    let domain = keys.get_vk().get_domain();
    params
        .commit_lagrange(&domain.lagrange_from_vec(v), Blind::default())
        .to_affine()
}

/// The Schnorr proof that this proof's weight columns hold the committed weights: recovers the
/// blinding values halo2 drew for them from the recorded `draws`, checks that they reproduce
/// the proof's commitments, and proves.
fn prove_weights(
    pk: &Halo2ProvingKey,
    layout: &Layout,
    opening: &WeightOpening,
    draws: &[u8],
    proof: &[u8],
) -> Result<Vec<u8>, ProveError> {
    use halo2_axiom::halo2curves::ff::Field;
    let internal = |what: &str| ProveError::Backend(format!("private weights: {what}"));
    let rows = blinding_rows(&pk.pk).len();
    let mut replay = halo2_weights::Replay::new(draws);
    let mut drawn: Vec<Vec<Fr>> = (0..N_ADVICE + N_WEIGHT)
        .map(|_| (0..rows).map(|_| Fr::random(&mut replay)).collect())
        .collect();
    let proof_blinds = drawn.split_off(N_ADVICE);
    let in_proof = proof_weight_commitments(proof).map_err(|e| internal(&e.to_string()))?;
    for (j, (blinds, c)) in proof_blinds.iter().zip(&in_proof).enumerate() {
        if weight_column_commitment(&pk.params, &pk.pk, layout, j, blinds) != *c {
            return Err(internal(
                "the recorded blinding values do not reproduce the proof's commitments (has halo2's order of random draws changed?)",
            ));
        }
    }
    let wc = pk
        .vk
        .weight_commitment
        .as_ref()
        .ok_or_else(|| internal("the key has no weight commitment"))?;
    let (bases, published) = weight_points(wc).map_err(|e| internal(&e.to_string()))?;
    let published_blinds = opening.values().map_err(ProveError::Backend)?;
    halo2_weights::prove(
        &bases,
        &published,
        &in_proof,
        &proof_blinds,
        &published_blinds,
        &mut OsRng,
    )
    .map_err(|e| internal(&e.to_string()))
}

impl Halo2ProvingKey {
    pub fn commitment(&self) -> &str {
        &self.commitment
    }

    /// With private weights, the opening of the key's weight commitment: the owner keeps it
    /// (secret) to make further proofs under the same key.
    pub fn weight_opening(&self) -> Option<&WeightOpening> {
        self.opening.as_ref()
    }
}

/// The halo2-KZG proof system. `srs_dir` holds the cached or ceremony SRS files.
pub struct Halo2Backend {
    pub(super) srs_dir: PathBuf,
    pub(super) cache: Mutex<Vec<(u32, ParamsKZG<Bn256>, String)>>,
    /// What keys made by `setup` show of the input.
    inputs: InputVisibility,
    weights: WeightVisibility,
    /// With private weights: the opening to reuse (the same key again), or `None` for a new one.
    opening: Option<WeightOpening>,
    /// The largest circuit, `2^max_k` rows, `setup` accepts.
    max_k: u32,
}

/// The largest halo2 circuit accepted by default: `2^24` rows, the largest SRS file looked for
/// is `2^26`, and key generation at `2^24` already needs tens of GiB.
pub const MAX_K: u32 = 24;

impl Default for Halo2Backend {
    fn default() -> Self {
        Halo2Backend::new(default_srs_dir())
    }
}

fn hex_point<T: GroupEncoding>(p: &T) -> String {
    hex::encode(p.to_bytes().as_ref())
}
impl Halo2Backend {
    pub fn new(srs_dir: impl Into<PathBuf>) -> Self {
        Halo2Backend {
            srs_dir: srs_dir.into(),
            cache: Mutex::new(Vec::new()),
            inputs: InputVisibility::Public,
            weights: WeightVisibility::Fixed,
            opening: None,
            max_k: MAX_K,
        }
    }

    /// The same backend, refusing circuits of more than `2^max_k` rows at setup.
    pub fn with_max_k(mut self, max_k: u32) -> Self {
        self.max_k = max_k;
        self
    }

    /// The same backend, making keys with private weights: committed with `opening` (the key
    /// made with it before), or with fresh blinding values when `None`.
    pub fn with_private_weights(mut self, opening: Option<WeightOpening>) -> Self {
        self.weights = WeightVisibility::Private;
        self.opening = opening;
        self
    }

    /// The same backend, making keys whose proofs show the input as `inputs` says.
    pub fn with_inputs(mut self, inputs: InputVisibility) -> Self {
        self.inputs = inputs;
        self
    }

    pub fn setup_with_log(
        &self,
        model: &CompiledModel,
        log: &mut dyn FnMut(&str),
    ) -> Result<(Halo2ProvingKey, Halo2VerifyingKey), ProveError> {
        self.setup_with(model, self.inputs, log)
    }

    /// Key generation for proofs that show the input as `inputs` says.
    pub fn setup_with(
        &self,
        model: &CompiledModel,
        inputs: InputVisibility,
        log: &mut dyn FnMut(&str),
    ) -> Result<(Halo2ProvingKey, Halo2VerifyingKey), ProveError> {
        if let Some(e) = ciro_circuits::halo2::degree_cap_error() {
            return Err(ProveError::Backend(e));
        }
        let circuit = crate::registry::backend(BackendId::Halo2).lower(&model.graph)?;
        if inputs != InputVisibility::Public {
            // The circuit looks each input up in a table of its range, and the hash packs
            // `x - lo` as a 15-bit digit.
            for (lo, hi) in &circuit.bounds[..circuit.n_inputs as usize] {
                if hi - lo >= 1 << poseidon::DIGIT_BITS {
                    return Err(ProveError::Backend(format!(
                        "a hashed or private input needs each value's range below 2^15 at the input scale; this model's is [{lo}, {hi}]"
                    )));
                }
            }
        }
        let layout = Layout::with_settings(&circuit, None, inputs, self.weights);
        if layout.k > self.max_k {
            return Err(ProveError::Backend(format!(
                "model {} needs a halo2 circuit of 2^{} rows, more than the 2^{} allowed here",
                model.graph.name, layout.k, self.max_k
            )));
        }
        let (params, origin) = self.srs(layout.k, log)?;
        let shape = Halo2Circuit {
            layout: &layout,
            witness: false,
            fixed: true,
        };
        let keys = catch_unwind(AssertUnwindSafe(|| {
            // Selector compression: fewer fixed columns, so a smaller, cheaper EVM verifier.
            let vk = keygen_vk_custom(&params, &shape, true)?;
            keygen_pk(&params, vk, &shape)
        }))
        .map_err(|e| ProveError::Backend(panic_message(e)))?
        .map_err(|e| ProveError::Backend(format!("halo2 key generation: {e:?}")))?;
        let (opening, weight_commitment) = match self.weights {
            WeightVisibility::Fixed => (None, None),
            WeightVisibility::Private => {
                let (o, c) = self.commit_weights(model, &layout, &params, &keys)?;
                (Some(o), Some(c))
            }
        };
        let inputs_shown = inputs;
        let (inputs, outputs) = public_tensors(model)?;
        let vk = Halo2VerifyingKey {
            format: VK_FORMAT.into(),
            version: VK_VERSION,
            model_name: model.graph.name.clone(),
            model_hash: model.hash.clone(),
            k: layout.k,
            limb_bits: layout.limb_bits,
            srs: SrsInfo {
                origin,
                g1: hex_point(&params.get_g()[0]),
                g2: hex_point(&params.g2()),
                s_g2: hex_point(&params.s_g2()),
            },
            key: hex::encode(keys.get_vk().to_bytes(SerdeFormat::RawBytes)),
            inputs,
            input_visibility: inputs_shown,
            weight_visibility: self.weights,
            weight_commitment,
            outputs,
            labels: model.graph.labels.clone(),
        };
        let commitment = KeyFile::commitment(&vk);
        Ok((
            Halo2ProvingKey {
                circuit,
                vk: vk.clone(),
                params,
                pk: keys,
                commitment,
                opening,
            },
            vk,
        ))
    }

    /// The published weight commitment: `P_j` for each weight column with the opening's
    /// blinding values (a new random opening unless the backend was given one), and the
    /// blinding rows' bases `G_i`.
    fn commit_weights(
        &self,
        model: &CompiledModel,
        layout: &Layout,
        params: &ParamsKZG<Bn256>,
        keys: &ProvingKey<G1Affine>,
    ) -> Result<(WeightOpening, WeightCommitment), ProveError> {
        let rows = blinding_rows(keys);
        let opening = match &self.opening {
            Some(o) => {
                if o.model_hash != model.hash {
                    return Err(ProveError::Backend(format!(
                        "the weight opening belongs to another model ({}, not {})",
                        o.model_hash, model.hash
                    )));
                }
                o.clone()
            }
            None => WeightOpening::random(&model.hash, N_WEIGHT, rows.len(), &mut OsRng),
        };
        let blinds = opening.values().map_err(ProveError::Backend)?;
        if blinds.len() != N_WEIGHT || blinds.iter().any(|b| b.len() != rows.len()) {
            return Err(ProveError::Backend(format!(
                "the weight opening has {} columns of blinding values; this circuit needs {N_WEIGHT} of {}",
                blinds.len(),
                rows.len()
            )));
        }
        let columns = (0..N_WEIGHT)
            .map(|j| weight_column_commitment(params, keys, layout, j, &blinds[j]))
            .map(|p| halo2_weights::point_hex(&p))
            .collect();
        let domain = keys.get_vk().get_domain();
        let blinding_bases = rows
            .clone()
            .map(|i| {
                let mut v = vec![Fr::zero(); params.n() as usize];
                v[i] = Fr::one();
                let p = params
                    .commit_lagrange(&domain.lagrange_from_vec(v), Blind::default())
                    .to_affine();
                halo2_weights::point_hex(&p)
            })
            .collect();
        Ok((
            opening,
            WeightCommitment {
                columns,
                blinding_bases,
            },
        ))
    }

    fn prove_layout(
        &self,
        pk: &Halo2ProvingKey,
        flat: &[i64],
        layout: &Layout,
    ) -> Result<ProofBundle, ProveError> {
        let instance: Vec<Fr> = layout.instance_fr();
        let public = layout.instance();
        let outputs: Vec<i64> = public[public.len() - layout.n_outputs..].to_vec();
        let shown = pk.vk.input_visibility;
        // halo2 draws each advice column's blinding rows first: record the draws, so that with
        // private weights the prover knows its own weight columns' blinding values.
        let mut rng = halo2_weights::Recording::new(OsRng);
        let proof = catch_unwind(AssertUnwindSafe(|| {
            let mut transcript = WriteTranscript::new(Vec::new());
            create_proof::<
                KZGCommitmentScheme<Bn256>,
                ProverSHPLONK<'_, Bn256>,
                ChallengeEvm<G1Affine>,
                _,
                WriteTranscript,
                _,
            >(
                &pk.params,
                &pk.pk,
                &[Halo2Circuit {
                    layout,
                    witness: true,
                    fixed: false,
                }],
                &[&[&instance]],
                &mut rng,
                &mut transcript,
            )
            .map(|_| transcript.finalize())
        }))
        .map_err(|e| ProveError::Backend(panic_message(e)))?
        .map_err(|e| ProveError::Backend(format!("halo2 proving: {e:?}")))?;
        let weights_proof = match &pk.opening {
            None => None,
            Some(opening) => Some(hex::encode(prove_weights(
                pk, layout, opening, &rng.bytes, &proof,
            )?)),
        };
        Ok(ProofBundle {
            header: BundleHeader {
                version: BUNDLE_VERSION,
                backend: BACKEND.into(),
                params: params_info(),
                model_name: pk.vk.model_name.clone(),
                model_commitment: pk.commitment.clone(),
                inputs: match shown {
                    InputVisibility::Public => tensors(&pk.vk.inputs, flat),
                    _ => Vec::new(),
                },
                input_hash: (shown == InputVisibility::Hashed)
                    .then(|| poseidon::to_hex(&instance[0])),
                outputs: tensors(&pk.vk.outputs, &outputs),
                weights_proof,
            },
            proof,
        })
    }

    /// Proves with the witness layout corrupted by `tamper` after it is computed: the soundness
    /// suite's hook. The verifier must reject every such proof.
    #[cfg(feature = "testing")]
    pub fn prove_tampered(
        &self,
        pk: &Halo2ProvingKey,
        inputs: &[IntTensor],
        tamper: &dyn Fn(&mut Layout),
    ) -> Result<ProofBundle, ProveError> {
        let flat = flatten_inputs(&pk.vk.inputs, inputs)?;
        let values = pk.circuit.assign(&flat)?;
        let mut layout = pk.layout(&values);
        tamper(&mut layout);
        self.prove_layout(pk, &flat, &layout)
    }

    /// Proves with the cells given instead of computed: a cheating prover's witness (for example
    /// one that leaves a calibrated range, from `Circuit::assign_unchecked`). The soundness
    /// suite's hook; the verifier must reject every such proof.
    #[cfg(feature = "testing")]
    pub fn prove_witness(
        &self,
        pk: &Halo2ProvingKey,
        inputs: &[IntTensor],
        values: Vec<i64>,
    ) -> Result<ProofBundle, ProveError> {
        let flat = flatten_inputs(&pk.vk.inputs, inputs)?;
        let layout = pk.layout(&values);
        self.prove_layout(pk, &flat, &layout)
    }
}

impl Halo2ProvingKey {
    /// The witness layout of `values` (every cell) under the key's input and weight settings.
    fn layout(&self, values: &[i64]) -> Layout {
        Layout::with_limbs(
            &self.circuit,
            Some(values),
            self.vk.input_visibility,
            self.vk.weight_visibility,
            self.vk.limb_bits,
        )
    }
}

impl ProofSystem for Halo2Backend {
    type ProvingKey = Halo2ProvingKey;
    type VerifyingKey = Halo2VerifyingKey;

    fn name(&self) -> &'static str {
        BACKEND
    }

    fn setup(
        &self,
        model: &CompiledModel,
    ) -> Result<(Halo2ProvingKey, Halo2VerifyingKey), ProveError> {
        self.setup_with_log(model, &mut |_| {})
    }

    fn prove(
        &self,
        pk: &Halo2ProvingKey,
        inputs: &[IntTensor],
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError> {
        let flat = flatten_inputs(&pk.vk.inputs, inputs)?;
        progress(Stage::Witness);
        let values = pk.circuit.assign(&flat)?;
        let layout = pk.layout(&values);
        progress(Stage::Commit);
        let bundle = self.prove_layout(pk, &flat, &layout)?;
        progress(Stage::Done);
        Ok(bundle)
    }

    fn verify(
        &self,
        vk: &Halo2VerifyingKey,
        bundle: &ProofBundle,
    ) -> Result<Vec<PublicTensor>, VerifyError> {
        super::verify(vk, bundle)
    }
}

impl DynProvingKey for Halo2ProvingKey {
    fn verifying_key(&self) -> &dyn DynVerifyingKey {
        &self.vk
    }
    fn circuit(&self) -> &Circuit {
        &self.circuit
    }
    fn weight_opening(&self) -> Option<&WeightOpening> {
        self.opening.as_ref()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TypedBackend for Halo2Backend {
    const ID: BackendId = BackendId::Halo2;

    fn setup_logged(
        &self,
        model: &CompiledModel,
        log: &mut dyn FnMut(&str),
    ) -> Result<(Halo2ProvingKey, Halo2VerifyingKey), ProveError> {
        self.setup_with_log(model, log)
    }
}

/// The registry's constructor.
#[cfg(feature = "prove")]
pub(crate) fn prover(
    settings: &crate::registry::ProverSettings,
) -> Result<Box<dyn crate::registry::DynProver>, ProveError> {
    let backend = Halo2Backend::new(&settings.srs_dir)
        .with_inputs(settings.inputs)
        .with_max_k(settings.max_halo2_k);
    Ok(Box::new(match &settings.private_weights {
        Some(opening) => backend.with_private_weights(opening.clone()),
        None => backend,
    }))
}
