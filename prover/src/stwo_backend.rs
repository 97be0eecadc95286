//! The stwo backend: Circle STARK over M31, SIMD backend, Blake2s Merkle commitments.
//!
//! The statement bound into the Fiat–Shamir channel, in this order, on both sides: the PCS
//! configuration, the verification key's commitment, the public inputs and outputs, the
//! preprocessed root (from the key, never from the proof), the main trace root, then — after the
//! relations are drawn — every component's claimed LogUp sum, then the interaction root. The
//! verifier also checks that the claimed sums plus the public inputs' and outputs' LogUp terms
//! add to zero.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ciro_circuits::field::m31;
use ciro_circuits::stwo::trace::{self, Columns, ComponentTrace};
use ciro_circuits::stwo::{CiroEval, Kind, Relations};
use ciro_circuits::Circuit;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;
use serde::{Deserialize, Serialize};
use stwo::core::channel::{Blake2sChannel, Channel};
use stwo::core::fields::m31::M31;
use stwo::core::fields::qm31::SecureField;
use stwo::core::fields::FieldExpOps;
use stwo::core::fri::FriConfig;
use stwo::core::pcs::{CommitmentSchemeVerifier, PcsConfig};
use stwo::core::poly::circle::CanonicCoset;
use stwo::core::proof::StarkProof;
use stwo::core::utils::MaybeOwned;
use stwo::core::vcs::blake2_hash::Blake2sHash;
use stwo::core::vcs_lifted::blake2_merkle::{Blake2sMerkleChannel, Blake2sMerkleHasher};
use stwo::prover::backend::simd::SimdBackend;
use stwo::prover::poly::circle::PolyOps;
use stwo::prover::poly::twiddles::TwiddleTree;
use stwo::prover::{prove, CommitmentSchemeProver, CommitmentTreeProver};
use stwo_constraint_framework::{FrameworkComponent, Relation, TraceLocationAllocator};

use crate::bundle::{
    BundleHeader, KeyFile, ProofBundle, ProofParams, PublicTensor, BUNDLE_VERSION,
};
use crate::error::{ProveError, VerifyError};
use crate::{ProofSystem, Stage};

pub const BACKEND: &str = "stwo";

/// Corrupts a generated trace (soundness tests only).
type Tamper<'a> = &'a dyn Fn(&mut [ComponentTrace]);
const VK_FORMAT: &str = "ciro-stwo-vk";
const VK_VERSION: u32 = 1;
/// Largest proof we attempt to decode.
const MAX_PROOF_BYTES: u64 = 256 << 20;

/// FRI and proof-of-work settings. The defaults give 20 + 1 × 80 = 100 conjectured bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StwoParams {
    pub log_blowup: u32,
    pub n_queries: u32,
    pub pow_bits: u32,
}

impl Default for StwoParams {
    fn default() -> Self {
        StwoParams {
            log_blowup: 1,
            n_queries: 80,
            pow_bits: 20,
        }
    }
}

impl StwoParams {
    pub fn security_bits(&self) -> u32 {
        self.pow_bits + self.log_blowup * self.n_queries
    }

    fn pcs(&self, lifting_log_size: u32) -> PcsConfig {
        PcsConfig {
            pow_bits: self.pow_bits,
            fri_config: FriConfig::new(0, self.log_blowup, self.n_queries as usize, 1),
            lifting_log_size: Some(lifting_log_size),
        }
    }

    pub fn describe(&self) -> ProofParams {
        ProofParams {
            hash: "blake2s".into(),
            log_blowup: self.log_blowup,
            n_queries: self.n_queries,
            pow_bits: self.pow_bits,
            security_bits: self.security_bits(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub scale: u32,
    /// Proven (inputs: declared) bound of every element.
    pub lo: i64,
    pub hi: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    pub kind: Kind,
    pub log_size: u32,
}

/// What a verifier needs: the commitment to the preprocessed columns (weights, wiring, tables)
/// and the shape of the AIR. It holds no weights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StwoVerifyingKey {
    pub format: String,
    pub version: u32,
    pub model_name: String,
    /// sha256 of the compiled graph the key was made from.
    pub model_hash: String,
    pub params: StwoParams,
    pub lifting_log_size: u32,
    /// Blake2s root of the preprocessed trace, hex.
    pub preprocessed_root: String,
    pub components: Vec<ComponentInfo>,
    pub inputs: Vec<TensorInfo>,
    /// How many times each public input cell is read.
    pub input_reads: Vec<u32>,
    pub outputs: Vec<TensorInfo>,
    /// The cell of each public output element.
    pub output_cells: Vec<u32>,
    pub labels: Option<Vec<String>>,
}

impl KeyFile for StwoVerifyingKey {
    const FORMAT: (&'static str, u32) = (VK_FORMAT, VK_VERSION);
    fn format(&self) -> (&str, u32) {
        (&self.format, self.version)
    }
}

impl StwoVerifyingKey {
    fn pcs(&self) -> PcsConfig {
        self.params.pcs(self.lifting_log_size)
    }
}

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

/// The proof payload inside a bundle.
#[derive(Serialize, Deserialize)]
struct StwoProof {
    claimed_sums: Vec<SecureField>,
    stark: StarkProof<Blake2sMerkleHasher>,
}

fn serialize(p: StwoProof) -> Result<Vec<u8>, ProveError> {
    use bincode::Options;
    bincode_options()
        .serialize(&p)
        .map_err(|e| ProveError::Backend(format!("serialising the proof: {e}")))
}

fn bincode_options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_limit(MAX_PROOF_BYTES)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StwoBackend {
    pub params: StwoParams,
}

/// Binds the statement: configuration, model, public values.
fn mix_statement(
    channel: &mut Blake2sChannel,
    pcs: &PcsConfig,
    commitment: &str,
    inputs: &[i64],
    outputs: &[i64],
) {
    pcs.mix_into(channel);
    let digest = hex::decode(commitment).unwrap_or_default();
    let words: Vec<u32> = digest
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
        .collect();
    channel.mix_u32s(&words);
    channel.mix_u64(inputs.len() as u64);
    channel.mix_u32s(&inputs.iter().map(|&v| m31(v).0).collect::<Vec<_>>());
    channel.mix_u64(outputs.len() as u64);
    channel.mix_u32s(&outputs.iter().map(|&v| m31(v).0).collect::<Vec<_>>());
}

/// The public inputs' and outputs' share of the wire relation.
fn public_sum(
    rel: &Relations,
    vk: &StwoVerifyingKey,
    inputs: &[i64],
    outputs: &[i64],
) -> SecureField {
    let mut sum = SecureField::from(M31::from_u32_unchecked(0));
    let frac = |id: u32, v: i64| -> SecureField {
        let d: SecureField = rel.wire.combine(&[M31::from_u32_unchecked(id), m31(v)]);
        d.inverse()
    };
    for (i, (&x, &reads)) in inputs.iter().zip(&vk.input_reads).enumerate() {
        if reads > 0 {
            sum += frac(i as u32, x) * M31::from_u32_unchecked(reads);
        }
    }
    for (&cell, &y) in vk.output_cells.iter().zip(outputs) {
        sum -= frac(cell, y);
    }
    sum
}

fn components(
    vk: &StwoVerifyingKey,
    rel: &Relations,
    sums: &[SecureField],
) -> Vec<FrameworkComponent<CiroEval>> {
    let ids: Vec<_> = vk
        .components
        .iter()
        .flat_map(|c| c.kind.pre_ids())
        .collect();
    let mut alloc = TraceLocationAllocator::new_with_preprocessed_columns(&ids);
    vk.components
        .iter()
        .zip(sums)
        .map(|(c, &sum)| {
            FrameworkComponent::new(
                &mut alloc,
                CiroEval {
                    kind: c.kind,
                    log_size: c.log_size,
                    relations: rel.clone(),
                },
                sum,
            )
        })
        .collect()
}

pub fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

pub(crate) fn flatten_inputs(
    infos: &[TensorInfo],
    inputs: &[IntTensor],
) -> Result<Vec<i64>, ProveError> {
    if inputs.len() != infos.len() {
        return Err(ProveError::Input(format!(
            "model takes {} input(s), got {}",
            infos.len(),
            inputs.len()
        )));
    }
    let mut flat = Vec::new();
    for (t, info) in inputs.iter().zip(infos) {
        if t.shape != info.shape {
            return Err(ProveError::Input(format!(
                "input `{}` has shape {:?}, the model expects {:?}",
                info.name, t.shape, info.shape
            )));
        }
        flat.extend_from_slice(&t.data);
    }
    Ok(flat)
}

pub(crate) fn tensors(infos: &[TensorInfo], flat: &[i64]) -> Vec<PublicTensor> {
    let mut at = 0;
    infos
        .iter()
        .map(|i| {
            let n: usize = i.shape.iter().product();
            let t = PublicTensor {
                shape: i.shape.clone(),
                scale: i.scale,
                values: flat[at..at + n].to_vec(),
            };
            at += n;
            t
        })
        .collect()
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
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError> {
        let vk = &pk.vk;
        let flat = flatten_inputs(&vk.inputs, inputs)?;
        progress(Stage::Witness);
        let values = pk.circuit.assign(&flat)?;
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
        self.prove_inner(pk, inputs, Some(tamper), &mut |_| {})
    }
}

pub(crate) fn check_tensors(
    what: &str,
    got: &[PublicTensor],
    want: &[TensorInfo],
    check_range: bool,
) -> Result<Vec<i64>, VerifyError> {
    if got.len() != want.len() {
        return Err(VerifyError::Mismatch {
            field: what.into(),
            detail: format!("{} tensors, the model has {}", got.len(), want.len()),
        });
    }
    let mut flat = Vec::new();
    for (g, w) in got.iter().zip(want) {
        let n: usize = w.shape.iter().product();
        if g.shape != w.shape || g.scale != w.scale || g.values.len() != n {
            return Err(VerifyError::Mismatch {
                field: what.into(),
                detail: format!(
                    "`{}` is shape {:?} scale {} with {} values, the model says shape {:?} scale {}",
                    w.name,
                    g.shape,
                    g.scale,
                    g.values.len(),
                    w.shape,
                    w.scale
                ),
            });
        }
        if check_range {
            if let Some(v) = g.values.iter().find(|&&v| v < w.lo || v > w.hi) {
                return Err(VerifyError::InputRange(format!(
                    "`{}` holds {v}, outside [{}, {}]",
                    w.name, w.lo, w.hi
                )));
            }
        }
        flat.extend_from_slice(&g.values);
    }
    Ok(flat)
}

/// The public inputs and outputs of a model, with their proven (inputs: declared) bounds.
pub(crate) fn public_tensors(
    model: &CompiledModel,
) -> Result<(Vec<TensorInfo>, Vec<TensorInfo>), ProveError> {
    let graph = &model.graph;
    let info = |name: &str, node: usize| {
        let n = &graph.nodes[node];
        TensorInfo {
            name: name.into(),
            shape: n.shape.clone(),
            scale: n.scale,
            lo: n.bound.lo,
            hi: n.bound.hi,
        }
    };
    let inputs = graph
        .inputs
        .iter()
        .enumerate()
        .map(|(index, i)| {
            let node = graph
                .nodes
                .iter()
                .position(|n| n.op == ciro_model_compiler::Op::Input { index })
                .ok_or_else(|| ProveError::Input(format!("input {index} has no node")))?;
            Ok(info(&i.name, node))
        })
        .collect::<Result<Vec<_>, ProveError>>()?;
    let outputs = graph
        .outputs
        .iter()
        .map(|o| info(&o.name, o.node))
        .collect();
    Ok((inputs, outputs))
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
        let circuit = Circuit::from_graph(graph)?;
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
        let commitment = vk.commitment();
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
        self.prove_inner(pk, inputs, None, progress)
    }

    fn verify(
        &self,
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
