//! The halo2 backend: PLONKish proofs with KZG commitments over BN254 (SHPLONK multi-opening),
//! zero-knowledge (advice columns are blinded), with a succinct proof of a few kilobytes.
//!
//! The structured reference string (SRS) is generated locally and cached on disk, or loaded from
//! a ceremony file placed in the SRS folder under the standard name `kzg_bn254_{k}.srs` (halo2's
//! raw `ParamsKZG` format; a larger one is downsized). A locally generated SRS is an *unsafe*
//! setup: whoever ran it could know its secret and forge proofs. Use a ceremony SRS for anything
//! that others must trust.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ciro_circuits::halo2::{fr, Halo2Circuit, Layout, Shape, N_ADVICE, N_WEIGHT};
pub use ciro_circuits::halo2::{InputVisibility, WeightVisibility};
use ciro_circuits::poseidon;
use ciro_circuits::Circuit;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;
use halo2_axiom::halo2curves::bn256::{Bn256, Fr, G1Affine, G2Affine};
use halo2_axiom::halo2curves::group::Curve;
use halo2_axiom::halo2curves::group::GroupEncoding;
use halo2_axiom::plonk::{
    create_proof, keygen_pk, keygen_vk_custom, verify_proof, ProvingKey, VerifyingKey,
};
use halo2_axiom::poly::commitment::{Params, ParamsProver};
use halo2_axiom::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_axiom::poly::kzg::multiopen::{ProverSHPLONK, VerifierSHPLONK};
use halo2_axiom::poly::kzg::strategy::SingleStrategy;
use halo2_axiom::SerdeFormat;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use snark_verifier::loader::native::NativeLoader;
use snark_verifier::system::halo2::transcript::evm::{ChallengeEvm, EvmTranscript};

use crate::bundle::{
    write_atomic, BundleHeader, KeyFile, ProofBundle, ProofParams, PublicTensor, BUNDLE_VERSION,
};
use crate::error::{ProveError, VerifyError};
use crate::halo2_weights::{self, WeightCommitment, WeightOpening};
use crate::stwo_backend::{
    check_tensors, flatten_inputs, panic_message, public_tensors, tensors, TensorInfo,
};
use crate::{ProofSystem, Stage};

pub const BACKEND: &str = "halo2-kzg";
const VK_FORMAT: &str = "ciro-halo2-vk";
/// 2: one lookup, six advice columns, public values on tagged rows (version 1 keys describe
/// another circuit and are refused).
const VK_VERSION: u32 = 2;
/// BN254 gives about 100 bits of security against the best known discrete-log attacks.
pub const SECURITY_BITS: u32 = 100;

/// The Keccak-256 transcript the Solidity verifier replays: one proof serves both verifiers.
type WriteTranscript = EvmTranscript<G1Affine, NativeLoader, Vec<u8>, Vec<u8>>;
type ReadTranscript<'a, 'b> = EvmTranscript<G1Affine, NativeLoader, &'a mut &'b [u8], Vec<u8>>;

fn params_info() -> ProofParams {
    ProofParams {
        hash: "KZG (SHPLONK) over BN254, Keccak-256 (EVM) transcript".into(),
        log_blowup: 0,
        n_queries: 0,
        pow_bits: 0,
        security_bits: SECURITY_BITS,
    }
}

/// Where the SRS lives and how it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrsInfo {
    /// `unsafe local setup` or `file <sha256>`.
    pub origin: String,
    /// The three points a KZG verifier needs (compressed, hex): `[1]_1`, `[1]_2`, `[s]_2`.
    pub g1: String,
    pub g2: String,
    pub s_g2: String,
}

/// What a verifier needs: the halo2 verifying key (which commits to the weights, coefficients,
/// tables and wiring as fixed columns and permutation), three SRS points, and the public
/// tensors' shapes and declared input ranges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halo2VerifyingKey {
    pub format: String,
    pub version: u32,
    pub model_name: String,
    pub model_hash: String,
    pub k: u32,
    /// The circuit's range-check limb width (part of its gates).
    pub limb_bits: u32,
    pub srs: SrsInfo,
    /// halo2's verifying key, `SerdeFormat::RawBytes`, hex.
    pub key: String,
    pub inputs: Vec<TensorInfo>,
    /// What proofs under this key show of the input.
    #[serde(default)]
    pub input_visibility: InputVisibility,
    /// Whether the weights are fixed in the key or private (then `weight_commitment` holds the
    /// published commitment every proof is checked against).
    #[serde(default)]
    pub weight_visibility: WeightVisibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_commitment: Option<WeightCommitment>,
    pub outputs: Vec<TensorInfo>,
    pub labels: Option<Vec<String>>,
}

fn max_limb_bits() -> u32 {
    ciro_circuits::halo2::MAX_LIMB_BITS
}

impl KeyFile for Halo2VerifyingKey {
    const FORMAT: (&'static str, u32) = (VK_FORMAT, VK_VERSION);
    fn format(&self) -> (&str, u32) {
        (&self.format, self.version)
    }
}

pub struct Halo2ProvingKey {
    pub circuit: Circuit,
    pub vk: Halo2VerifyingKey,
    params: ParamsKZG<Bn256>,
    pk: ProvingKey<G1Affine>,
    commitment: String,
    /// With private weights: the blinding values of the published weight commitment.
    opening: Option<WeightOpening>,
}

impl Halo2VerifyingKey {
    /// halo2's verifying key and verifier parameters (`[1]_1`, `[1]_2`, `[s]_2` and the size).
    pub fn halo2_parts(&self) -> Result<(ParamsKZG<Bn256>, VerifyingKey<G1Affine>), VerifyError> {
        if let Some(e) = ciro_circuits::halo2::degree_cap_error() {
            return Err(VerifyError::Malformed(e));
        }
        let g1: G1Affine = read_point(&self.srs.g1, "[1]_1")?;
        let g2: G2Affine = read_point(&self.srs.g2, "[1]_2")?;
        let s_g2: G2Affine = read_point(&self.srs.s_g2, "[s]_2")?;
        if !(1..=max_limb_bits()).contains(&self.limb_bits) {
            return Err(VerifyError::Malformed(format!(
                "the key's limb width {} is outside 1..={}",
                self.limb_bits,
                max_limb_bits()
            )));
        }
        let key_bytes = hex::decode(&self.key)
            .map_err(|_| VerifyError::Malformed("the halo2 key is not hex".into()))?;
        catch_unwind(AssertUnwindSafe(|| {
            let key = VerifyingKey::<G1Affine>::from_bytes::<Halo2Circuit<'static>>(
                &key_bytes,
                SerdeFormat::RawBytes,
                Shape {
                    limb_bits: self.limb_bits,
                    weights: self.weight_visibility,
                },
            )
            .map_err(|e| VerifyError::Malformed(format!("the halo2 key does not load: {e}")))?;
            if key.get_domain().k() != self.k {
                return Err(VerifyError::Malformed(
                    "the halo2 key's size disagrees".into(),
                ));
            }
            // `from_parts` is a method, so it is called on a throwaway 2-point setup.
            let params = ParamsKZG::<Bn256>::setup(1, OsRng).from_parts(
                self.k,
                vec![g1],
                Some(vec![]),
                g2,
                s_g2,
            );
            Ok((params, key))
        }))
        .map_err(|e| VerifyError::Malformed(panic_message(e)))?
    }

    /// How many public values (instance rows) a proof under this key carries.
    pub fn n_public(&self) -> usize {
        let size = |ts: &[TensorInfo]| -> usize {
            ts.iter().map(|t| t.shape.iter().product::<usize>()).sum()
        };
        let inputs = match self.input_visibility {
            InputVisibility::Public => size(&self.inputs),
            InputVisibility::Hashed => 1,
            InputVisibility::Private => 0,
        };
        inputs + size(&self.outputs)
    }
}

/// The instance column a halo2 bundle claims, in circuit order: the inputs (or their hash),
/// then the outputs.
pub fn bundle_instance(bundle: &ProofBundle) -> Result<Vec<Fr>, VerifyError> {
    let h = &bundle.header;
    let hash = match &h.input_hash {
        Some(x) => Some(poseidon::from_hex(x).ok_or_else(|| {
            VerifyError::Malformed(format!("input hash {x:?} is not a field element"))
        })?),
        None => None,
    };
    let values = |ts: &[PublicTensor]| -> Vec<Fr> {
        ts.iter()
            .flat_map(|t| t.values.iter().map(|&v| fr(v)))
            .collect()
    };
    Ok(values(&h.inputs)
        .into_iter()
        .chain(hash)
        .chain(values(&h.outputs))
        .collect())
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
) -> Result<G1Affine, ProveError> {
    let n = params.n() as usize;
    let mut v = vec![Fr::zero(); n];
    for (cell, &w) in v.iter_mut().zip(&layout.weight[j]).take(layout.rows) {
        *cell = fr(w);
    }
    let rows = blinding_rows(keys);
    for (i, b) in rows.zip(blinds) {
        v[i] = *b;
    }
    halo2_weights::commit_rows(params, v).map_err(engine_error)
}

fn engine_error(e: ciro_gpu::EngineError) -> ProveError {
    ProveError::Backend(format!("private weights: {e}"))
}

/// The proof's advice commitments to the weight columns, read from the start of the proof
/// (halo2 writes the advice commitments first, in column order).
pub fn proof_weight_commitments(proof: &[u8]) -> Result<Vec<G1Affine>, VerifyError> {
    use halo2_axiom::transcript::TranscriptRead;
    let mut rest = proof;
    let mut transcript = ReadTranscript::new(&mut rest);
    let mut points = Vec::with_capacity(N_ADVICE + N_WEIGHT);
    for _ in 0..N_ADVICE + N_WEIGHT {
        points.push(transcript.read_point().map_err(|e| {
            VerifyError::Malformed(format!("the proof's advice commitments do not read: {e}"))
        })?);
    }
    Ok(points.split_off(N_ADVICE))
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
        if weight_column_commitment(&pk.params, &pk.pk, layout, j, blinds)? != *c {
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
    .map_err(engine_error)
}

/// The key's blinding bases and published weight commitments as points.
fn weight_points(wc: &WeightCommitment) -> Result<(Vec<G1Affine>, Vec<G1Affine>), VerifyError> {
    let read = |v: &[String], what: &str| -> Result<Vec<G1Affine>, VerifyError> {
        v.iter()
            .map(|h| {
                halo2_weights::point_from_hex(h).ok_or_else(|| {
                    VerifyError::Malformed(format!("the key's {what} {h:?} is not a curve point"))
                })
            })
            .collect()
    };
    let bases = read(&wc.blinding_bases, "blinding base")?;
    let published = read(&wc.columns, "weight commitment")?;
    if published.len() != N_WEIGHT || bases.is_empty() {
        return Err(VerifyError::Malformed(format!(
            "the key's weight commitment has {} columns and {} bases",
            published.len(),
            bases.len()
        )));
    }
    Ok((bases, published))
}

/// The Poseidon hash of an input (flattened, quantized values) as a key with a hashed input
/// shows it; what a user computes to check that a proof is about their input.
pub fn input_hash(vk: &Halo2VerifyingKey, flat: &[i64]) -> Result<String, ProveError> {
    let lo: Vec<i64> = vk
        .inputs
        .iter()
        .flat_map(|t| std::iter::repeat_n(t.lo, t.shape.iter().product()))
        .collect();
    if lo.len() != flat.len() {
        return Err(ProveError::Backend(format!(
            "{} input values, the key declares {}",
            flat.len(),
            lo.len()
        )));
    }
    poseidon::hash_input(flat, &lo)
        .map(|h| poseidon::to_hex(&h))
        .ok_or_else(|| ProveError::Backend("an input value is out of its declared range".into()))
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
    srs_dir: PathBuf,
    cache: Mutex<Vec<(u32, ParamsKZG<Bn256>, String)>>,
    /// What keys made by `setup` show of the input.
    inputs: InputVisibility,
    weights: WeightVisibility,
    /// With private weights: the opening to reuse (the same key again), or `None` for a new one.
    opening: Option<WeightOpening>,
}

/// The default SRS folder: `$CIRO_SRS_DIR`, else `~/.cache/ciro/srs`, else `./.ciro-srs`.
pub fn default_srs_dir() -> PathBuf {
    std::env::var_os("CIRO_SRS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ciro/srs")))
        .unwrap_or_else(|| PathBuf::from(".ciro-srs"))
}

impl Default for Halo2Backend {
    fn default() -> Self {
        Halo2Backend::new(default_srs_dir())
    }
}

fn hex_point<T: GroupEncoding>(p: &T) -> String {
    hex::encode(p.to_bytes().as_ref())
}

fn read_point<T: GroupEncoding>(s: &str, what: &str) -> Result<T, VerifyError> {
    let bad = || VerifyError::Malformed(format!("the key's SRS point {what} is invalid"));
    let bytes = hex::decode(s).map_err(|_| bad())?;
    let mut repr = T::Repr::default();
    if repr.as_ref().len() != bytes.len() {
        return Err(bad());
    }
    repr.as_mut().copy_from_slice(&bytes);
    Option::from(T::from_bytes(&repr)).ok_or_else(bad)
}

impl Halo2Backend {
    pub fn new(srs_dir: impl Into<PathBuf>) -> Self {
        Halo2Backend {
            srs_dir: srs_dir.into(),
            cache: Mutex::new(Vec::new()),
            inputs: InputVisibility::Public,
            weights: WeightVisibility::Fixed,
            opening: None,
        }
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

    fn srs_path(&self, k: u32) -> PathBuf {
        self.srs_dir.join(format!("kzg_bn254_{k}.srs"))
    }

    /// The SRS for `2^k` rows: from memory, from a file of this size or larger, or a new unsafe
    /// local setup that is then cached.
    pub fn srs(
        &self,
        k: u32,
        log: &mut dyn FnMut(&str),
    ) -> Result<(ParamsKZG<Bn256>, String), ProveError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, p, origin)) = cache.iter().find(|(kk, _, _)| *kk == k) {
            return Ok((p.clone(), origin.clone()));
        }
        let io =
            |e: std::io::Error, p: &Path| ProveError::Backend(format!("SRS {}: {e}", p.display()));
        let mut found = None;
        for kk in k..=26 {
            let path = self.srs_path(kk);
            if path.exists() {
                found = Some((kk, path));
                break;
            }
        }
        let (params, origin) = match found {
            Some((kk, path)) => {
                let bytes = std::fs::read(&path).map_err(|e| io(e, &path))?;
                let mut p =
                    ParamsKZG::<Bn256>::read(&mut Cursor::new(&bytes)).map_err(|e| io(e, &path))?;
                if p.k() != kk {
                    return Err(ProveError::Backend(format!(
                        "SRS {} holds 2^{} points, its name says 2^{kk}",
                        path.display(),
                        p.k()
                    )));
                }
                let digest = hex::encode(Sha256::digest(&bytes));
                let origin = match std::fs::read_to_string(path.with_extension("origin")) {
                    Ok(o) if o.trim() == "unsafe local setup" => o.trim().to_string(),
                    Ok(o) if o.trim().starts_with("file ") => o.trim().to_string(),
                    _ => format!("file {digest}"),
                };
                if kk > k {
                    // Downsizing recomputes the Lagrange basis (tens of seconds): keep the result.
                    log(&format!("downsizing the 2^{kk} SRS to 2^{k}"));
                    p.downsize(k);
                    let mut out = Vec::new();
                    p.write(&mut out).map_err(|e| io(e, &self.srs_dir))?;
                    let small = self.srs_path(k);
                    write_atomic(&small, &out)?;
                    write_atomic(
                        &small.with_extension("origin"),
                        format!("{origin}\n").as_bytes(),
                    )?;
                }
                (p, origin)
            }
            None => {
                log(&format!(
                    "generating an unsafe local KZG setup for 2^{k} rows (cached in {})",
                    self.srs_dir.display()
                ));
                let p = ParamsKZG::<Bn256>::setup(k, OsRng);
                let mut bytes = Vec::new();
                p.write(&mut bytes).map_err(|e| io(e, &self.srs_dir))?;
                std::fs::create_dir_all(&self.srs_dir).map_err(|e| io(e, &self.srs_dir))?;
                let path = self.srs_path(k);
                write_atomic(&path, &bytes)?;
                write_atomic(&path.with_extension("origin"), b"unsafe local setup\n")?;
                (p, "unsafe local setup".to_string())
            }
        };
        cache.push((k, params.clone(), origin.clone()));
        Ok((params, origin))
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
        let circuit = Circuit::from_graph(&model.graph)?;
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
        let commitment = vk.commitment();
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
            .map(|p| p.map(|p| halo2_weights::point_hex(&p)))
            .collect::<Result<_, _>>()?;
        let blinding_bases = rows
            .clone()
            .map(|i| {
                let mut v = vec![Fr::zero(); params.n() as usize];
                v[i] = Fr::one();
                halo2_weights::commit_rows(params, v).map(|p| halo2_weights::point_hex(&p))
            })
            .collect::<Result<_, _>>()
            .map_err(engine_error)?;
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
        let mut layout = Layout::with_settings(
            &pk.circuit,
            Some(&values),
            pk.vk.input_visibility,
            pk.vk.weight_visibility,
        );
        tamper(&mut layout);
        self.prove_layout(pk, &flat, &layout)
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
        let layout = Layout::with_settings(
            &pk.circuit,
            Some(&values),
            pk.vk.input_visibility,
            pk.vk.weight_visibility,
        );
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
        let h = &bundle.header;
        h.check_against(&vk.commitment(), BACKEND, &params_info())?;
        let shown: Vec<Fr> = match vk.input_visibility {
            InputVisibility::Public => {
                if h.input_hash.is_some() {
                    return Err(VerifyError::Mismatch {
                        field: "input hash".into(),
                        detail: "the key shows the input itself".into(),
                    });
                }
                check_tensors("inputs", &h.inputs, &vk.inputs, true)?
                    .into_iter()
                    .map(fr)
                    .collect()
            }
            hidden => {
                if !h.inputs.is_empty() {
                    return Err(VerifyError::Mismatch {
                        field: "inputs".into(),
                        detail: "the key keeps the input private: a bundle must not carry it"
                            .into(),
                    });
                }
                match (hidden, &h.input_hash) {
                    (InputVisibility::Hashed, Some(x)) => {
                        vec![poseidon::from_hex(x).ok_or_else(|| {
                            VerifyError::Malformed(format!(
                                "input hash {x:?} is not a field element"
                            ))
                        })?]
                    }
                    (InputVisibility::Hashed, None) => {
                        return Err(VerifyError::Mismatch {
                            field: "input hash".into(),
                            detail: "missing".into(),
                        })
                    }
                    (_, Some(_)) => {
                        return Err(VerifyError::Mismatch {
                            field: "input hash".into(),
                            detail: "the key keeps the input private".into(),
                        })
                    }
                    (_, None) => Vec::new(),
                }
            }
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
}
