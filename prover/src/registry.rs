//! The backend registry: the one list of Ciro's proof systems ([`backends`]), the name every
//! crate uses for them ([`BackendId`]), and object-safe views of their keys and provers, so the
//! verifier, the service, the CLI and the benches handle any backend without naming it.
//!
//! Adding a proof system: its folders in `circuits/` and `prover/`, a [`BackendId`] variant, and
//! one entry in [`backends`]. The typed [`crate::ProofSystem`] trait stays for code that knows
//! its backend (tests, tamper hooks); [`DynProver`] is its object-safe twin, implemented for every
//! `ProofSystem` whose keys implement the object-safe key traits.

use std::any::Any;
use std::fmt;
#[cfg(feature = "prove")]
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bundle::{KeyFile, ProofBundle, PublicTensor};
use crate::error::VerifyError;
use crate::halo2_backend::Halo2VerifyingKey;
#[cfg(feature = "prove")]
use crate::halo2_backend::InputVisibility;
#[cfg(feature = "prove")]
use crate::halo2_weights::WeightOpening;
use crate::plonky2_backend::Plonky2VerifyingKey;
use crate::public::TensorInfo;
use crate::stwo_backend::StwoVerifyingKey;
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
use crate::{error::ProveError, ProofSystem, Stage};
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
use ciro_circuits::{Circuit, CircuitError, FieldBudget};
use ciro_model_compiler::{eval::IntTensor, CompileOptions, CompiledModel, Graph};

/// A proof system, by the name users, the API and the database use (`stwo`, `halo2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendId {
    /// Circle STARK over M31: fastest, transparent, large proofs, not zero-knowledge.
    Stwo,
    /// PLONKish with KZG over BN254: succinct, zero-knowledge, EVM-verifiable.
    Halo2,
    /// PLONK with FRI over Goldilocks: transparent, zero-knowledge.
    Plonky2,
}

impl BackendId {
    /// The name users type and the API shows.
    pub fn name(self) -> &'static str {
        backend(self).name
    }

    /// The backend name a bundle's header carries.
    pub fn bundle_name(self) -> &'static str {
        backend(self).bundle_name
    }

    /// Whether its proofs verify on EVM chains.
    pub fn evm(self) -> bool {
        backend(self).evm
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendId {
    type Err = String;

    /// Accepts a backend's name or its bundle name (`halo2` or `halo2-kzg`).
    fn from_str(s: &str) -> Result<Self, String> {
        backends()
            .iter()
            .find(|b| b.name.eq_ignore_ascii_case(s) || b.bundle_name.eq_ignore_ascii_case(s))
            .map(|b| b.id)
            .ok_or_else(|| {
                let names: Vec<_> = backends().iter().map(|b| b.name).collect();
                let (last, rest) = names.split_last().expect("backends are registered");
                format!(
                    "unknown proof system {s:?}: choose {} or {last}",
                    rest.join(", ")
                )
            })
    }
}

/// Parses a verification key file of one backend.
pub type KeyLoader = fn(&[u8]) -> Result<Box<dyn DynVerifyingKey>, String>;
/// Makes one backend's prover.
#[cfg(feature = "prove")]
pub type ProverMaker = fn(&ProverSettings) -> Result<Box<dyn DynProver>, ProveError>;

/// One registered proof system.
pub struct BackendInfo {
    pub id: BackendId,
    /// See [`BackendId::name`].
    pub name: &'static str,
    /// See [`BackendId::bundle_name`].
    pub bundle_name: &'static str,
    /// One line for help texts.
    pub summary: &'static str,
    /// The `format` field of its verification key files.
    pub key_format: &'static str,
    /// Proving cost per unit of circuit size relative to stwo: what the service's quotes
    /// multiply by (measured 2026-11-29: halo2 0.3 s for the digit classifier at 2^10 rows to 10 s
    /// for the LeNet at 2^16, against 0.16–0.34 s with stwo; a flat factor until quotes come from
    /// each backend's own circuit size).
    pub relative_cost: u64,
    /// Whether its proofs verify on EVM chains (a generated Solidity verifier).
    pub evm: bool,
    /// What its field and gadgets prove exactly: the limits its circuits are lowered against.
    pub budget: FieldBudget,
    /// Parses a verification key file of this backend.
    pub load_key: KeyLoader,
    /// Makes a prover with these settings, or says why the backend cannot honour them.
    #[cfg(feature = "prove")]
    pub prover: ProverMaker,
}

impl BackendInfo {
    /// `graph`'s circuit under this backend's field budget, or why the budget refuses it
    /// (naming the node).
    pub fn lower(&self, graph: &Graph) -> Result<Circuit, CircuitError> {
        Circuit::from_graph(graph, &self.budget)
    }
}

/// Compile options whose scale search only picks scales every backend in `ids` can prove (their
/// field budgets hold the graph).
pub fn compile_options_for(ids: &[BackendId]) -> CompileOptions {
    CompileOptions {
        check: Some(ciro_circuits::fits(
            ids.iter().map(|&id| backend(id).budget).collect(),
        )),
        ..CompileOptions::default()
    }
}

/// Compile options for models every registered backend proves: what the CLI, the service and
/// the benchmarks compile with.
pub fn compile_options() -> CompileOptions {
    let ids: Vec<BackendId> = backends().iter().map(|b| b.id).collect();
    compile_options_for(&ids)
}

/// Every proof system of this build, in the order help texts list them.
pub fn backends() -> &'static [BackendInfo] {
    &BACKENDS
}

static BACKENDS: [BackendInfo; 3] = [
    BackendInfo {
        id: BackendId::Stwo,
        name: "stwo",
        bundle_name: crate::stwo_backend::BACKEND,
        summary: "Circle STARK over M31: fastest, transparent, large proofs, not zero-knowledge",
        key_format: crate::stwo_backend::VK_FORMAT,
        relative_cost: 1,
        evm: false,
        budget: FieldBudget::M31,
        load_key: load_typed::<StwoVerifyingKey>,
        #[cfg(feature = "prove")]
        prover: crate::stwo_backend::prover,
    },
    BackendInfo {
        id: BackendId::Halo2,
        name: "halo2",
        bundle_name: crate::halo2_backend::BACKEND,
        summary: "PLONKish with KZG over BN254: succinct, zero-knowledge, EVM-verifiable",
        key_format: crate::halo2_backend::VK_FORMAT,
        relative_cost: 25,
        evm: true,
        budget: FieldBudget::BN254,
        load_key: load_typed::<Halo2VerifyingKey>,
        #[cfg(feature = "prove")]
        prover: crate::halo2_backend::prover,
    },
    BackendInfo {
        id: BackendId::Plonky2,
        name: "plonky2",
        bundle_name: crate::plonky2_backend::BACKEND,
        summary: "PLONK with FRI over Goldilocks: transparent, zero-knowledge, 150-210 KB proofs, aggregatable",
        key_format: crate::plonky2_backend::VK_FORMAT,
        // Measured 2026-11-30: 1.1-1.3 s for the small fixtures (0.13-0.14 s with stwo), 4.6 s
        // for the LeNet (0.19 s) and 5.1 s for the MNIST MLP (0.12 s): about 10x at the median.
        relative_cost: 10,
        evm: false,
        budget: FieldBudget::GOLDILOCKS,
        load_key: load_typed::<Plonky2VerifyingKey>,
        #[cfg(feature = "prove")]
        prover: crate::plonky2_backend::prover,
    },
];

/// The registry entry of `id`.
pub fn backend(id: BackendId) -> &'static BackendInfo {
    backends()
        .iter()
        .find(|b| b.id == id)
        .expect("every BackendId is registered")
}

/// Reads a verification key of any backend, told apart by its `format` field.
pub fn load_verifying_key(bytes: &[u8]) -> Result<Box<dyn DynVerifyingKey>, String> {
    #[derive(Deserialize)]
    struct Format {
        format: String,
    }
    let f: Format =
        serde_json::from_slice(bytes).map_err(|e| format!("not a verification key: {e}"))?;
    let entry = backends()
        .iter()
        .find(|b| b.key_format == f.format)
        .ok_or_else(|| format!("unknown key format {:?}", f.format))?;
    (entry.load_key)(bytes)
}

fn load_typed<K: DynVerifyingKey + KeyFile + 'static>(
    bytes: &[u8],
) -> Result<Box<dyn DynVerifyingKey>, String> {
    Ok(Box::new(K::from_json(bytes)?))
}

/// How big a key's circuit is: rows summed over its tables, and committed columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitSize {
    pub rows: u64,
    pub columns: usize,
}

/// The [`DynVerifyingKey`] methods every key file answers the same way, from its fields
/// `model_name`, `model_hash`, `inputs`, `outputs` and `labels` and its [`KeyFile`] commitment.
macro_rules! common_key_methods {
    () => {
        fn model_name(&self) -> &str {
            &self.model_name
        }
        fn model_hash(&self) -> &str {
            &self.model_hash
        }
        fn commitment(&self) -> String {
            $crate::bundle::KeyFile::commitment(self)
        }
        fn inputs(&self) -> &[$crate::public::TensorInfo] {
            &self.inputs
        }
        fn outputs(&self) -> &[$crate::public::TensorInfo] {
            &self.outputs
        }
        fn labels(&self) -> Option<&[String]> {
            self.labels.as_deref()
        }
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec_pretty(self).expect("keys serialise")
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
}
pub(crate) use common_key_methods;

/// A verification key of any backend: what a verifier, the service and the CLI need of it.
pub trait DynVerifyingKey: Send + Sync + fmt::Debug {
    fn backend(&self) -> BackendId;
    fn model_name(&self) -> &str;
    /// sha256 of the compiled graph the key was made from.
    fn model_hash(&self) -> &str;
    /// The model commitment: sha256 of the key file.
    fn commitment(&self) -> String;
    fn inputs(&self) -> &[TensorInfo];
    fn outputs(&self) -> &[TensorInfo];
    fn labels(&self) -> Option<&[String]>;
    /// Conjectured bits of security of proofs under this key.
    fn security_bits(&self) -> u32;
    /// One line on the circuit's shape.
    fn shape(&self) -> String;
    /// The circuit's size, for benchmarks and quotes.
    fn size(&self) -> CircuitSize;
    /// The key file's bytes (what [`load_verifying_key`] reads back).
    fn to_json(&self) -> Vec<u8>;
    /// Checks a bundle against this key; returns the public outputs it proves.
    fn verify(&self, bundle: &ProofBundle) -> Result<Vec<PublicTensor>, VerifyError>;
    /// For backend-specific uses (a halo2 key's EVM verifier).
    fn as_any(&self) -> &dyn Any;
}

impl dyn DynVerifyingKey + '_ {
    /// The concrete key, when it is of type `K`.
    pub fn downcast_ref<K: 'static>(&self) -> Option<&K> {
        self.as_any().downcast_ref()
    }
}

/// Settings a prover is made with. Each backend refuses what it cannot do rather than ignore
/// it.
#[cfg(feature = "prove")]
#[derive(Clone, Debug)]
pub struct ProverSettings {
    /// Where setup-heavy backends keep their parameters (halo2's KZG SRS).
    pub srs_dir: PathBuf,
    /// What proofs show of the input.
    pub inputs: InputVisibility,
    /// Private weights behind a published commitment: `Some(None)` makes a new opening,
    /// `Some(Some(o))` reuses `o`.
    pub private_weights: Option<Option<WeightOpening>>,
    /// halo2 refuses a circuit of more than `2^max_halo2_k` rows before it makes an SRS or keys
    /// (both grow with `2^k`).
    pub max_halo2_k: u32,
}

#[cfg(feature = "prove")]
impl Default for ProverSettings {
    fn default() -> Self {
        ProverSettings {
            srs_dir: crate::halo2_backend::default_srs_dir(),
            inputs: InputVisibility::Public,
            private_weights: None,
            max_halo2_k: crate::halo2_backend::MAX_K,
        }
    }
}

/// A proving key of any backend.
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
pub trait DynProvingKey: Send + Sync {
    fn verifying_key(&self) -> &dyn DynVerifyingKey;
    /// The lowered circuit the key proves.
    fn circuit(&self) -> &ciro_circuits::Circuit;
    /// With private weights, the secret opening of the key's weight commitment, which its
    /// owner must keep to make further proofs under the same key.
    fn weight_opening(&self) -> Option<&crate::halo2_weights::WeightOpening> {
        None
    }
    fn as_any(&self) -> &dyn Any;
}

#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
impl dyn DynProvingKey + '_ {
    pub fn downcast_ref<K: 'static>(&self) -> Option<&K> {
        self.as_any().downcast_ref()
    }
}

/// The object-safe face of a [`ProofSystem`]: setup, prove and verify on boxed keys.
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
pub trait DynProver: Send + Sync {
    fn id(&self) -> BackendId;
    /// Builds the circuit of a compiled model and makes its keys; `log` hears slow steps (an
    /// SRS being generated).
    fn setup(
        &self,
        model: &CompiledModel,
        log: &mut dyn FnMut(&str),
    ) -> Result<Box<dyn DynProvingKey>, ProveError>;
    /// Proves one inference on quantized inputs (one tensor per model input).
    fn prove(
        &self,
        pk: &dyn DynProvingKey,
        inputs: &[IntTensor],
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError>;
}

/// A typed backend whose keys have object-safe views; what [`DynProver`] is implemented for.
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
pub trait TypedBackend: ProofSystem<ProvingKey: DynProvingKey + 'static> + Send + Sync {
    const ID: BackendId;
    /// `setup` with a log of slow steps (defaults to plain `setup`).
    fn setup_logged(
        &self,
        model: &CompiledModel,
        _log: &mut dyn FnMut(&str),
    ) -> Result<(Self::ProvingKey, Self::VerifyingKey), ProveError> {
        self.setup(model)
    }
}

#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
impl<B: TypedBackend> DynProver for B {
    fn id(&self) -> BackendId {
        B::ID
    }

    fn setup(
        &self,
        model: &CompiledModel,
        log: &mut dyn FnMut(&str),
    ) -> Result<Box<dyn DynProvingKey>, ProveError> {
        let (pk, _vk) = self.setup_logged(model, log)?;
        Ok(Box::new(pk))
    }

    fn prove(
        &self,
        pk: &dyn DynProvingKey,
        inputs: &[IntTensor],
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError> {
        let pk = pk.downcast_ref::<B::ProvingKey>().ok_or_else(|| {
            ProveError::Backend(format!(
                "a {} proving key was given to the {} prover",
                pk.verifying_key().backend(),
                B::ID
            ))
        })?;
        ProofSystem::prove(self, pk, inputs, progress)
    }
}

/// Makes the prover of `id` with `settings`.
#[cfg(feature = "prove")]
pub fn prover(id: BackendId, settings: &ProverSettings) -> Result<Box<dyn DynProver>, ProveError> {
    (backend(id).prover)(settings)
}

#[cfg(test)]
mod budget_tests {
    #[test]
    fn the_circuits_crate_lists_every_backends_budget() {
        let registry: Vec<_> = super::backends().iter().map(|b| b.budget).collect();
        assert_eq!(registry, ciro_circuits::PROVING_BUDGETS.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_is_registered_once_with_distinct_names() {
        for (i, b) in backends().iter().enumerate() {
            assert_eq!(backend(b.id).name, b.name);
            assert_eq!(b.name.parse::<BackendId>().unwrap(), b.id);
            assert_eq!(b.bundle_name.parse::<BackendId>().unwrap(), b.id);
            for other in &backends()[i + 1..] {
                assert_ne!(b.id, other.id);
                assert_ne!(b.name, other.name);
                assert_ne!(b.key_format, other.key_format);
            }
        }
        assert!("plonky3".parse::<BackendId>().is_err());
    }

    #[test]
    fn unknown_and_malformed_keys_are_refused_with_a_reason() {
        let e = load_verifying_key(br#"{"format": "ciro-nope-vk"}"#).unwrap_err();
        assert!(e.contains("unknown key format"), "{e}");
        let e = load_verifying_key(b"not json").unwrap_err();
        assert!(e.contains("not a verification key"), "{e}");
        let e = load_verifying_key(br#"{"format": "ciro-stwo-vk", "version": 1}"#).unwrap_err();
        assert!(e.contains("malformed ciro-stwo-vk key"), "{e}");
    }
}
