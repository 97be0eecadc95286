//! The stwo backend: Circle STARK over M31, SIMD backend, Blake2s Merkle commitments.
//!
//! The statement bound into the Fiat–Shamir channel, in this order, on both sides: the PCS
//! configuration, the verification key's commitment, the public inputs and outputs, the
//! preprocessed root (from the key, never from the proof), the main trace root, then — after the
//! relations are drawn — every component's claimed LogUp sum, then the interaction root. The
//! verifier also checks that the claimed sums plus the public inputs' and outputs' LogUp terms
//! add to zero.

#[cfg(feature = "stwo-prover")]
mod prove;
mod verify;

use ciro_circuits::field::m31;
use ciro_circuits::stwo::{CiroEval, Kind, Relations};
use serde::{Deserialize, Serialize};
use stwo::core::channel::{Blake2sChannel, Channel};
use stwo::core::fields::m31::M31;
use stwo::core::fields::qm31::SecureField;
use stwo::core::fields::FieldExpOps;
use stwo::core::fri::FriConfig;
use stwo::core::pcs::PcsConfig;
use stwo::core::proof::StarkProof;
use stwo::core::vcs_lifted::blake2_merkle::Blake2sMerkleHasher;
use stwo_constraint_framework::{FrameworkComponent, Relation, TraceLocationAllocator};

use crate::bundle::{KeyFile, ProofBundle, ProofParams, PublicTensor};
use crate::error::VerifyError;
pub use crate::public::TensorInfo;
use crate::registry::{common_key_methods, BackendId, CircuitSize, DynVerifyingKey};
#[cfg(feature = "prove")]
pub(crate) use prove::prover;
#[cfg(feature = "stwo-prover")]
pub use prove::{StwoBackend, StwoProvingKey};
pub use verify::verify;

pub const BACKEND: &str = "stwo";

pub(crate) const VK_FORMAT: &str = "ciro-stwo-vk";
/// 2: MAC rows read 8 inputs once for 4 accumulators (was 4 products on one accumulator).
const VK_VERSION: u32 = 2;
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

/// The proof payload inside a bundle.
#[derive(Serialize, Deserialize)]
struct StwoProof {
    claimed_sums: Vec<SecureField>,
    stark: StarkProof<Blake2sMerkleHasher>,
}

fn bincode_options() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_limit(MAX_PROOF_BYTES)
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

impl DynVerifyingKey for StwoVerifyingKey {
    common_key_methods!();
    fn backend(&self) -> BackendId {
        BackendId::Stwo
    }
    fn security_bits(&self) -> u32 {
        self.params.security_bits()
    }
    fn shape(&self) -> String {
        self.components
            .iter()
            .map(|c| format!("{} 2^{}", c.kind.name(), c.log_size))
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn size(&self) -> CircuitSize {
        CircuitSize {
            rows: self.components.iter().map(|c| 1u64 << c.log_size).sum(),
            // Preprocessed, main, and interaction columns (4 per pair of lookups).
            columns: self
                .components
                .iter()
                .map(|c| {
                    c.kind.pre_names().len()
                        + c.kind.n_main()
                        + 4 * c.kind.lookups().len().div_ceil(2)
                })
                .sum(),
        }
    }
    fn verify(&self, bundle: &ProofBundle) -> Result<Vec<PublicTensor>, VerifyError> {
        verify(self, bundle)
    }
}
