//! The halo2 backend: PLONKish proofs with KZG commitments over BN254 (SHPLONK multi-opening),
//! zero-knowledge (advice columns are blinded), with a succinct proof of a few kilobytes.
//!
//! The structured reference string (SRS) is generated locally and cached on disk, or loaded from
//! a ceremony file placed in the SRS folder under the standard name `kzg_bn254_{k}.srs` (halo2's
//! raw `ParamsKZG` format; a larger one is downsized). A locally generated SRS is an *unsafe*
//! setup: whoever ran it could know its secret and forge proofs. Use a ceremony SRS for anything
//! that others must trust.
//!
//! Verification ([`verify`], the key and its parts) builds without any prover code; key
//! generation, the SRS and proving sit in `prove` and `srs` behind the `halo2-prover` feature.

#[cfg(feature = "halo2-prover")]
mod prove;
#[cfg(feature = "halo2-prover")]
mod srs;
mod verify;

use std::panic::{catch_unwind, AssertUnwindSafe};

use ciro_circuits::halo2::{fr, Halo2Circuit, Shape, N_ADVICE, N_WEIGHT};
pub use ciro_circuits::halo2::{InputVisibility, WeightVisibility};
use ciro_circuits::poseidon;
use halo2_axiom::halo2curves::bn256::{Bn256, Fr, G1Affine, G2Affine};
use halo2_axiom::halo2curves::group::GroupEncoding;
use halo2_axiom::plonk::VerifyingKey;
use halo2_axiom::poly::kzg::commitment::ParamsKZG;
use halo2_axiom::SerdeFormat;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use snark_verifier::loader::native::NativeLoader;
use snark_verifier::system::halo2::transcript::evm::EvmTranscript;

use crate::bundle::{KeyFile, ProofBundle, ProofParams, PublicTensor};
use crate::error::{ProveError, VerifyError};
use crate::halo2_weights::{self, WeightCommitment};
use crate::public::panic_message;
pub use crate::public::TensorInfo;
use crate::registry::{common_key_methods, BackendId, CircuitSize, DynVerifyingKey};
#[cfg(feature = "prove")]
pub(crate) use prove::prover;
#[cfg(feature = "halo2-prover")]
pub use prove::{Halo2Backend, Halo2ProvingKey, MAX_K};
#[cfg(feature = "halo2-prover")]
pub use srs::default_srs_dir;
pub use verify::verify;

pub const BACKEND: &str = "halo2-kzg";
pub(crate) const VK_FORMAT: &str = "ciro-halo2-vk";
/// 2: one lookup, six advice columns, public values on tagged rows (version 1 keys describe
/// another circuit and are refused).
const VK_VERSION: u32 = 2;
/// BN254 gives about 100 bits of security against the best known discrete-log attacks.
pub const SECURITY_BITS: u32 = 100;

/// The Keccak-256 transcript the Solidity verifier replays: one proof serves both verifiers.
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

impl DynVerifyingKey for Halo2VerifyingKey {
    common_key_methods!();
    fn backend(&self) -> BackendId {
        BackendId::Halo2
    }
    fn security_bits(&self) -> u32 {
        SECURITY_BITS
    }
    fn shape(&self) -> String {
        format!("2^{} rows, KZG SRS: {}", self.k, self.srs.origin)
    }
    fn size(&self) -> CircuitSize {
        let columns = self.halo2_parts().map_or(0, |(_, key)| {
            let cs = key.cs();
            cs.num_advice_columns() + cs.num_fixed_columns() + cs.num_instance_columns()
        });
        CircuitSize {
            rows: 1u64 << self.k,
            columns,
        }
    }
    fn verify(&self, bundle: &ProofBundle) -> Result<Vec<PublicTensor>, VerifyError> {
        verify(self, bundle)
    }
}
