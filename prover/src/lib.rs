//! Ciro's proof systems. [`ProofSystem`] is the typed seam: `setup` turns a compiled model into a
//! proving and a verification key, `prove` turns inputs into a [`ProofBundle`], `verify` checks a
//! bundle against a verification key alone. [`registry`] lists the backends (stwo, halo2-KZG,
//! plonky2)
//! and gives object-safe views of their keys and provers, which the verifier, the service, the
//! CLI and the benches use.
//!
//! Features: `stwo-prover`, `halo2-prover` and `plonky2-prover` build each backend's setup and
//! proving (`prove`, the default, is all three); without them the crate verifies only, and builds no stwo prover.

pub mod bundle;
pub mod error;
pub mod halo2_backend;
pub mod halo2_weights;
pub mod plonky2_backend;
pub mod public;
pub mod registry;
pub mod stwo_backend;

#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
use ciro_model_compiler::eval::IntTensor;
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
use ciro_model_compiler::CompiledModel;

pub use bundle::{KeyFile, ProofBundle, ProofParams, PublicTensor};
pub use error::{BundleError, ProveError, VerifyError};
pub use halo2_backend::Halo2VerifyingKey;
#[cfg(feature = "halo2-prover")]
pub use halo2_backend::{Halo2Backend, Halo2ProvingKey};
pub use plonky2_backend::Plonky2VerifyingKey;
#[cfg(feature = "plonky2-prover")]
pub use plonky2_backend::{Plonky2Backend, Plonky2ProvingKey};
pub use public::TensorInfo;
pub use registry::{
    backend, backends, compile_options, compile_options_for, load_verifying_key, BackendId,
    CircuitSize, DynVerifyingKey,
};
#[cfg(feature = "prove")]
pub use registry::{prover, ProverSettings};
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
pub use registry::{DynProver, DynProvingKey};
#[cfg(feature = "stwo-prover")]
pub use stwo_backend::{StwoBackend, StwoProvingKey};
pub use stwo_backend::{StwoParams, StwoVerifyingKey};

/// Progress of a proof, reported to the caller as it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Computing every cell of the circuit from the inputs.
    Witness,
    /// Committing the traces and proving.
    Commit,
    Done,
}

impl Stage {
    pub fn describe(&self) -> &'static str {
        match self {
            Stage::Witness => "generating the witness",
            Stage::Commit => "committing and proving",
            Stage::Done => "done",
        }
    }
}

/// A proof system with its own key types (see [`registry::DynProver`] for the object-safe
/// view).
#[cfg(any(
    feature = "stwo-prover",
    feature = "halo2-prover",
    feature = "plonky2-prover"
))]
pub trait ProofSystem {
    type ProvingKey;
    type VerifyingKey;

    fn name(&self) -> &'static str;

    /// Builds the circuit of a compiled model and commits to its fixed columns.
    fn setup(
        &self,
        model: &CompiledModel,
    ) -> Result<(Self::ProvingKey, Self::VerifyingKey), ProveError>;

    /// Proves one inference on quantized inputs (one tensor per model input).
    fn prove(
        &self,
        pk: &Self::ProvingKey,
        inputs: &[IntTensor],
        progress: &mut dyn FnMut(Stage),
    ) -> Result<ProofBundle, ProveError>;

    /// Checks a bundle against a verification key; returns the public outputs it proves.
    fn verify(
        &self,
        vk: &Self::VerifyingKey,
        bundle: &ProofBundle,
    ) -> Result<Vec<PublicTensor>, VerifyError>;
}
