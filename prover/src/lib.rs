//! Ciro's proof systems. [`ProofSystem`] is the seam: `setup` turns a compiled model into a
//! proving and a verification key, `prove` turns inputs into a [`ProofBundle`], `verify` checks a
//! bundle against a verification key alone. stwo is the first implementation; halo2-KZG and
//! plonky2 plug in as further ones.

pub mod bundle;
pub mod error;
pub mod halo2_backend;
pub mod halo2_weights;
pub mod stwo_backend;

use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;

pub use bundle::{KeyFile, ProofBundle, ProofParams, PublicTensor};
pub use error::{BundleError, ProveError, VerifyError};
pub use halo2_backend::{Halo2Backend, Halo2ProvingKey, Halo2VerifyingKey};
pub use stwo_backend::{StwoBackend, StwoParams, StwoProvingKey, StwoVerifyingKey};

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
