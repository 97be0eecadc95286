//! The plonky2 backend: PLONK with FRI over Goldilocks, Poseidon hashing, no trusted setup, and
//! zero-knowledge on (plonky2 blinds the wires and permutation products), so a hashed or
//! private input stays hidden.
//!
//! The verification key is plonky2's verifier data (the circuit digest, the Merkle cap of the
//! constants and permutation, which commit to the weights and wiring, and the circuit's common
//! data), with the public tensors' shapes and ranges. Verification ([`verify`]) builds without
//! proving code; setup and proving sit in `prove` behind the `plonky2-prover` feature.

pub mod aggregate;
#[cfg(feature = "plonky2-prover")]
mod prove;
mod verify;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use ciro_circuits::halo2::InputVisibility;
use ciro_circuits::plonky2::{config, fri, C, D, F};
use plonky2::field::types::Field64;
use plonky2::plonk::circuit_data::VerifierCircuitData;
use plonky2::util::serialization::DefaultGateSerializer;
use serde::{Deserialize, Serialize};

use crate::bundle::{KeyFile, ProofBundle, ProofParams, PublicTensor};
use crate::error::{ProveError, VerifyError};
use crate::public::panic_message;
pub use crate::public::TensorInfo;
use crate::registry::{common_key_methods, BackendId, CircuitSize, DynVerifyingKey};
#[cfg(feature = "prove")]
pub(crate) use prove::prover;
#[cfg(feature = "plonky2-prover")]
pub use prove::{Plonky2Backend, Plonky2ProvingKey};
pub use verify::verify;

pub const BACKEND: &str = "plonky2";
pub(crate) const VK_FORMAT: &str = "ciro-plonky2-vk";
const VK_VERSION: u32 = 1;
/// The largest verifier data a key may carry (its lookup tables are most of it).
const MAX_KEY_BYTES: usize = 64 << 20;

/// The parameters every plonky2 proof of Ciro uses (plonky2's standard configuration).
pub(crate) fn params_info() -> ProofParams {
    proof_params(&config(), "Poseidon over Goldilocks, FRI, zero-knowledge")
}

/// What a bundle records of a plonky2 configuration.
pub(crate) fn proof_params(
    c: &plonky2::plonk::circuit_data::CircuitConfig,
    hash: &str,
) -> ProofParams {
    let fri = &c.fri_config;
    ProofParams {
        hash: hash.into(),
        log_blowup: fri.rate_bits as u32,
        n_queries: fri.num_query_rounds as u32,
        pow_bits: fri.proof_of_work_bits,
        security_bits: c.security_bits as u32,
    }
}

/// What a verifier needs: plonky2's verifier data and the public tensors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plonky2VerifyingKey {
    pub format: String,
    pub version: u32,
    pub model_name: String,
    pub model_hash: String,
    /// log2 of the circuit's rows.
    pub degree_bits: usize,
    /// plonky2's `VerifierCircuitData` (its default gate serializer), hex.
    pub key: String,
    pub inputs: Vec<TensorInfo>,
    /// What proofs under this key show of the input.
    pub input_visibility: InputVisibility,
    pub outputs: Vec<TensorInfo>,
    pub labels: Option<Vec<String>>,
    /// Private weights: the commitment every proof shows (`0x`, four elements: Poseidon over
    /// the MAC and Arith coefficients and four secret blinding elements). `None`: the weights
    /// are constants of the circuit, which `key` commits to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_commitment: Option<String>,
}

impl KeyFile for Plonky2VerifyingKey {
    const FORMAT: (&'static str, u32) = (VK_FORMAT, VK_VERSION);
    fn format(&self) -> (&str, u32) {
        (&self.format, self.version)
    }
}

impl Plonky2VerifyingKey {
    /// plonky2's verifier data, checked to be of Ciro's configuration and of this key's size
    /// and public values (a key file cannot lower the security or change the statement).
    pub fn circuit_data(&self) -> Result<VerifierCircuitData<F, C, D>, VerifyError> {
        if self.key.len() > 2 * MAX_KEY_BYTES {
            return Err(VerifyError::Malformed(format!(
                "the plonky2 key is over {} MiB",
                MAX_KEY_BYTES >> 20
            )));
        }
        let bytes = hex::decode(&self.key)
            .map_err(|_| VerifyError::Malformed("the plonky2 key is not hex".into()))?;
        let data = catch_unwind(AssertUnwindSafe(|| {
            VerifierCircuitData::<F, C, D>::from_bytes(bytes, &DefaultGateSerializer)
        }))
        .map_err(|e| VerifyError::Malformed(panic_message(e)))?
        .map_err(|e| VerifyError::Malformed(format!("the plonky2 key does not load: {e:?}")))?;
        // The configuration is Ciro's but for the FRI folding, which each circuit chooses
        // among the foldings Ciro makes (`ciro_circuits::plonky2::fri`); the FRI parameters the
        // verifier uses are the key's own copy: they must be the ones that configuration gives
        // at this size.
        let mut c = config();
        c.fri_config.reduction_strategy = data.common.config.fri_config.reduction_strategy.clone();
        let degree_bits = data.common.fri_params.degree_bits;
        // Goldilocks has subgroups of at most 2^32 points for the blown-up domain; a larger
        // size is malformed (and plonky2 would fold it for ever below).
        if degree_bits + c.fri_config.rate_bits > 32 {
            return Err(VerifyError::Malformed(format!(
                "the plonky2 key claims 2^{degree_bits} rows"
            )));
        }
        let admissible = fri::admissible(&c.fri_config.reduction_strategy);
        if !admissible
            || data.common.config != c
            || data.common.fri_params != c.fri_config.fri_params(degree_bits, c.zero_knowledge)
        {
            return Err(VerifyError::Malformed(
                "the plonky2 key is not of Ciro's configuration (security, zero-knowledge)".into(),
            ));
        }
        if data.common.degree_bits() != self.degree_bits {
            return Err(VerifyError::Malformed(
                "the plonky2 key's size disagrees".into(),
            ));
        }
        if data.common.num_public_inputs != self.n_public() {
            return Err(VerifyError::Malformed(format!(
                "the plonky2 key takes {} public values, its tensors {}",
                data.common.num_public_inputs,
                self.n_public()
            )));
        }
        Ok(data)
    }

    /// How many public values a proof under this key carries.
    pub fn n_public(&self) -> usize {
        let size = |ts: &[TensorInfo]| -> usize { ts.iter().map(|t| t.len()).sum() };
        let inputs = match self.input_visibility {
            InputVisibility::Public => size(&self.inputs),
            InputVisibility::Hashed => 4,
            InputVisibility::Private => 0,
        };
        inputs
            + size(&self.outputs)
            + if self.weights_commitment.is_some() {
                4
            } else {
                0
            }
    }
}

/// The Poseidon hash (over Goldilocks) of an input, as a hashed-input proof shows it: `0x` and
/// four 16-digit elements. What a user computes to check a proof is about their input.
pub fn input_hash(vk: &Plonky2VerifyingKey, flat: &[i64]) -> Result<String, ProveError> {
    let n: usize = vk.inputs.iter().map(|t| t.len()).sum();
    if n != flat.len() {
        return Err(ProveError::Backend(format!(
            "{} input values, the key declares {n}",
            flat.len()
        )));
    }
    Ok(hash_hex(ciro_circuits::plonky2::input::hash(flat)))
}

/// The format of a plonky2 weight opening (a [`crate::halo2_weights::WeightOpening`] whose one
/// column holds the commitment's four blinding elements).
pub const OPENING_FORMAT: &str = "ciro-plonky2-weight-opening";

pub(crate) fn hash_hex(h: [u64; 4]) -> String {
    let mut s = String::from("0x");
    for e in h {
        s.push_str(&format!("{e:016x}"));
    }
    s
}

/// The four field elements of an input hash as [`input_hash`] writes it.
pub(crate) fn parse_hash(s: &str) -> Option<[u64; 4]> {
    let hex = s.strip_prefix("0x")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u64; 4];
    for (i, o) in out.iter_mut().enumerate() {
        let e = u64::from_str_radix(&hex[16 * i..16 * i + 16], 16).ok()?;
        if e >= F::ORDER {
            return None;
        }
        *o = e;
    }
    Some(out)
}

impl DynVerifyingKey for Plonky2VerifyingKey {
    common_key_methods!();
    fn backend(&self) -> BackendId {
        BackendId::Plonky2
    }
    fn security_bits(&self) -> u32 {
        params_info().security_bits
    }
    fn shape(&self) -> String {
        format!("2^{} rows, FRI (no trusted setup)", self.degree_bits)
    }
    fn size(&self) -> CircuitSize {
        CircuitSize {
            rows: 1u64 << self.degree_bits.min(63),
            columns: config().num_wires,
        }
    }
    fn verify(&self, bundle: &ProofBundle) -> Result<Vec<PublicTensor>, VerifyError> {
        verify(self, bundle)
    }
}
