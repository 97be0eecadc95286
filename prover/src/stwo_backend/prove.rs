//! The stwo prover: setup (the circuit and its committed preprocessed tree) and proving. Built
//! with the `stwo-prover` feature only; verification needs none of it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ciro_circuits::stwo::trace::{self, Columns, ComponentTrace};
use ciro_circuits::stwo::Relations;
use ciro_circuits::Circuit;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;
use stwo::core::channel::{Blake2sChannel, Channel};
use stwo::core::poly::circle::CanonicCoset;
use stwo::core::utils::MaybeOwned;
use stwo::core::vcs_lifted::blake2_merkle::Blake2sMerkleChannel;
use stwo::prover::backend::simd::SimdBackend;
use stwo::prover::poly::circle::PolyOps;
use stwo::prover::poly::twiddles::TwiddleTree;
use stwo::prover::{prove, CommitmentSchemeProver, CommitmentTreeProver};

use super::{
    bincode_options, components, mix_statement, ComponentInfo, StwoParams, StwoProof,
    StwoVerifyingKey, BACKEND, VK_FORMAT, VK_VERSION,
};
use crate::bundle::{BundleHeader, KeyFile, ProofBundle, PublicTensor, BUNDLE_VERSION};
use crate::error::{ProveError, VerifyError};
use crate::public::{flatten_inputs, panic_message, public_tensors, tensors};
use crate::registry::{BackendId, DynProvingKey, DynVerifyingKey, TypedBackend};
use crate::{ProofSystem, Stage};

/// Corrupts a generated trace (soundness tests only).
type Tamper<'a> = &'a dyn Fn(&mut [ComponentTrace]);
/// The circuit, and its preprocessed tree committed once at setup (with the twiddles it was
/// built with), so that proofs do not re-commit the weights.
pub struct StwoProvingKey {
    pub circuit: Circuit,
    pub vk: StwoVerifyingKey,
    commitment: String,
    twiddles: TwiddleTree<SimdBackend>,
    preprocessed: CommitmentTreeProver<SimdBackend, Blake2sMerkleChannel>,
}

impl StwoProvingKey {
    pub fn commitment(&self) -> &str {
        &self.commitment
    }
}

fn serialize(p: StwoProof) -> Result<Vec<u8>, ProveError> {
    use bincode::Options;
    bincode_options()
        .serialize(&p)
        .map_err(|e| ProveError::Backend(format!("serialising the proof: {e}")))
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StwoBackend {
    pub params: StwoParams,
}

impl StwoBackend {
    pub fn new(params: StwoParams) -> Self {
        StwoBackend { params }
    }

    fn prove_inner(
        &self,
        pk: &StwoProvingKey,
        inputs: &[IntTensor],
        tamper: Option<Tamper<'_>>,
        witness: Option<Vec<i64>>,
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError> {
        let vk = &pk.vk;
        let flat = flatten_inputs(&vk.inputs, inputs)?;
        progress(Stage::Witness);
        let values = match witness {
            Some(v) => v,
            None => pk.circuit.assign(&flat)?,
        };
        let outputs: Vec<i64> = pk
            .circuit
            .outputs
            .iter()
            .map(|&c| values[c as usize])
            .collect();
        let mut comps = trace::build(&pk.circuit, Some(&values));
        if let Some(t) = tamper {
            t(&mut comps);
            trace::count_multiplicities(&pk.circuit, &mut comps);
        }
        let cols: Vec<Columns> = comps.iter().map(Columns::from_trace).collect();
        progress(Stage::Commit);
        let pcs = vk.pcs();
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u8>, ProveError> {
            let channel = &mut Blake2sChannel::default();
            mix_statement(channel, &pcs, &pk.commitment, &flat, &outputs);
            let mut scheme =
                CommitmentSchemeProver::<SimdBackend, Blake2sMerkleChannel>::new(pcs, &pk.twiddles);
            scheme.set_store_polynomials_coefficients();
            scheme.commit_tree(MaybeOwned::Borrowed(&pk.preprocessed), channel);
            let mut tb = scheme.tree_builder();
            tb.extend_evals(cols.iter().flat_map(|c| c.main_evals()).collect::<Vec<_>>());
            tb.commit(channel);
            let rel = Relations::draw(channel);
            let (inter, sums): (Vec<_>, Vec<_>) = cols.iter().map(|c| c.interaction(&rel)).unzip();
            channel.mix_felts(&sums);
            let mut tb = scheme.tree_builder();
            tb.extend_evals(inter.into_iter().flatten().collect::<Vec<_>>());
            tb.commit(channel);
            let comps = components(vk, &rel, &sums);
            let refs: Vec<&dyn stwo::prover::ComponentProver<SimdBackend>> = comps
                .iter()
                .map(|c| c as &dyn stwo::prover::ComponentProver<SimdBackend>)
                .collect();
            #[cfg(feature = "testing")]
            if tamper.is_some() {
                let stark = cheat::prove_without_self_check(&refs, channel, scheme);
                return serialize(StwoProof {
                    claimed_sums: sums,
                    stark,
                });
            }
            let stark = prove::<SimdBackend, Blake2sMerkleChannel>(&refs, channel, scheme)
                .map_err(|e| ProveError::Backend(format!("{e:?}")))?;
            serialize(StwoProof {
                claimed_sums: sums,
                stark,
            })
        }));
        let proof = result.map_err(|e| ProveError::Backend(panic_message(e)))??;
        progress(Stage::Done);
        Ok(ProofBundle {
            header: BundleHeader {
                version: BUNDLE_VERSION,
                backend: BACKEND.into(),
                params: self.params.describe(),
                model_name: vk.model_name.clone(),
                model_commitment: pk.commitment.clone(),
                inputs: tensors(&vk.inputs, &flat),
                input_hash: None,
                outputs: tensors(&vk.outputs, &outputs),
                weights_proof: None,
            },
            proof,
        })
    }

    /// Proves with a witness corrupted by `tamper` after it is generated and before it is
    /// committed: the soundness suite's hook. The verifier must reject every such proof.
    #[cfg(feature = "testing")]
    pub fn prove_tampered(
        &self,
        pk: &StwoProvingKey,
        inputs: &[IntTensor],
        tamper: &dyn Fn(&mut [ComponentTrace]),
    ) -> Result<ProofBundle, ProveError> {
        self.prove_inner(pk, inputs, Some(tamper), None, &mut |_| {})
    }

    /// Proves with the cells given instead of computed: a cheating prover's witness (for example
    /// one that leaves a calibrated range, from [`Circuit::assign_unchecked`]). The soundness
    /// suite's hook; the verifier must reject every such proof.
    #[cfg(feature = "testing")]
    pub fn prove_witness(
        &self,
        pk: &StwoProvingKey,
        inputs: &[IntTensor],
        values: Vec<i64>,
    ) -> Result<ProofBundle, ProveError> {
        self.prove_inner(pk, inputs, Some(&|_| {}), Some(values), &mut |_| {})
    }
}

impl ProofSystem for StwoBackend {
    type ProvingKey = StwoProvingKey;
    type VerifyingKey = StwoVerifyingKey;

    fn name(&self) -> &'static str {
        BACKEND
    }

    fn setup(
        &self,
        model: &CompiledModel,
    ) -> Result<(StwoProvingKey, StwoVerifyingKey), ProveError> {
        let graph = &model.graph;
        let circuit = crate::registry::backend(BackendId::Stwo).lower(graph)?;
        let comps = trace::build(&circuit, None);
        let max_log = comps.iter().map(|c| c.log_size).max().unwrap_or(1);
        let lifting_log_size = max_log + self.params.log_blowup;
        let cols: Vec<Columns> = comps.iter().map(Columns::from_trace).collect();
        let (twiddles, preprocessed) = catch_unwind(AssertUnwindSafe(|| {
            let twiddles = SimdBackend::precompute_twiddles(
                CanonicCoset::new(max_log + 1 + self.params.log_blowup)
                    .circle_domain()
                    .half_coset,
            );
            let mut scheme = CommitmentSchemeProver::<SimdBackend, Blake2sMerkleChannel>::new(
                self.params.pcs(lifting_log_size),
                &twiddles,
            );
            scheme.set_store_polynomials_coefficients();
            let mut tb = scheme.tree_builder();
            tb.extend_evals(cols.iter().flat_map(|c| c.pre_evals()).collect::<Vec<_>>());
            tb.commit(&mut Blake2sChannel::default());
            let tree = match scheme.trees.pop() {
                Some(MaybeOwned::Owned(t)) => t,
                _ => unreachable!("the scheme owns the tree it just committed"),
            };
            (twiddles, tree)
        }))
        .map_err(|e| ProveError::Backend(panic_message(e)))?;
        let root = preprocessed.commitment.root();
        let (inputs, outputs) = public_tensors(model)?;
        let vk = StwoVerifyingKey {
            format: VK_FORMAT.into(),
            version: VK_VERSION,
            model_name: graph.name.clone(),
            model_hash: model.hash.clone(),
            params: self.params,
            lifting_log_size,
            preprocessed_root: hex::encode(root.0),
            components: comps
                .iter()
                .map(|c| ComponentInfo {
                    kind: c.kind,
                    log_size: c.log_size,
                })
                .collect(),
            inputs,
            input_reads: circuit.reads[..circuit.n_inputs as usize].to_vec(),
            outputs,
            output_cells: circuit.outputs.clone(),
            labels: graph.labels.clone(),
        };
        let commitment = KeyFile::commitment(&vk);
        Ok((
            StwoProvingKey {
                circuit,
                vk: vk.clone(),
                commitment,
                twiddles,
                preprocessed,
            },
            vk,
        ))
    }

    fn prove(
        &self,
        pk: &StwoProvingKey,
        inputs: &[IntTensor],
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError> {
        self.prove_inner(pk, inputs, None, None, progress)
    }

    fn verify(
        &self,
        vk: &StwoVerifyingKey,
        bundle: &ProofBundle,
    ) -> Result<Vec<PublicTensor>, VerifyError> {
        super::verify(vk, bundle)
    }
}

#[cfg(feature = "testing")]
/// A cheating prover for the soundness suite: the same protocol as `stwo::prover::prove`, minus
/// its final self-check (which refuses a witness that breaks a constraint), so that such a proof
/// reaches the verifier as it would from an adversary. Never used outside tampered proofs.
mod cheat {
    use stwo::core::circle::CirclePoint;
    use stwo::core::fields::qm31::SECURE_EXTENSION_DEGREE;
    use stwo::core::pcs::utils::get_lifting_log_size;
    use stwo::core::proof::StarkProof;
    use stwo::core::vcs_lifted::blake2_merkle::{Blake2sMerkleChannel, Blake2sMerkleHasher};
    use stwo::prover::backend::simd::SimdBackend;
    use stwo::prover::{CommitmentSchemeProver, ComponentProver, ComponentProvers};

    use super::{Blake2sChannel, Channel};

    pub fn prove_without_self_check(
        components: &[&dyn ComponentProver<SimdBackend>],
        channel: &mut Blake2sChannel,
        mut scheme: CommitmentSchemeProver<'_, SimdBackend, Blake2sMerkleChannel>,
    ) -> StarkProof<Blake2sMerkleHasher> {
        let provers = ComponentProvers {
            components: components.to_vec(),
            n_preprocessed_columns: scheme.trees[0].polynomials.len(),
        };
        let random_coeff = channel.draw_secure_felt();
        let composition = provers.compute_composition_polynomial(
            random_coeff,
            &scheme.trace(),
            scheme.twiddles,
            scheme.config.fri_config.log_blowup_factor,
        );
        let (left, right) = composition.split_at_mid();
        let mut tb = scheme.tree_builder();
        tb.extend_polys(left.into_coordinate_polys());
        tb.extend_polys(right.into_coordinate_polys());
        tb.commit(channel);
        let oods_point = CirclePoint::get_random_point(channel);
        let split_log_size = scheme.trees.last().expect("trees").commitment.layers.len() as u32 - 1;
        let lifting = get_lifting_log_size(&scheme.config, split_log_size);
        let max_log_degree_bound = lifting - scheme.config.fri_config.log_blowup_factor;
        let mut points = provers
            .components()
            .mask_points(oods_point, max_log_degree_bound, false);
        points.push(vec![vec![oods_point]; 2 * SECURE_EXTENSION_DEGREE]);
        StarkProof(scheme.prove_values(points, channel).proof)
    }
}

impl DynProvingKey for StwoProvingKey {
    fn verifying_key(&self) -> &dyn DynVerifyingKey {
        &self.vk
    }
    fn circuit(&self) -> &Circuit {
        &self.circuit
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TypedBackend for StwoBackend {
    const ID: BackendId = BackendId::Stwo;
}

/// The registry's constructor: stwo proofs show the input and fix the weights in the key.
#[cfg(feature = "prove")]
pub(crate) fn prover(
    settings: &crate::registry::ProverSettings,
) -> Result<Box<dyn crate::registry::DynProver>, ProveError> {
    use crate::halo2_backend::InputVisibility;
    if settings.inputs != InputVisibility::Public {
        return Err(ProveError::Unsupported(
            "stwo proofs are not zero-knowledge, so they show the input: a hashed or private input needs halo2 (`--backend halo2`)".into(),
        ));
    }
    if settings.private_weights.is_some() {
        return Err(ProveError::Unsupported(
            "stwo proofs are not zero-knowledge, so the key fixes the weights: private weights need halo2 or plonky2 (`--backend halo2|plonky2`)".into(),
        ));
    }
    Ok(Box::new(StwoBackend::default()))
}
