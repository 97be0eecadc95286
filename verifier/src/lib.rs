//! Offline verification: a proof bundle and a verification key, never the weights.

use std::path::Path;

use ciro_prover::{
    ProofBundle, ProofSystem, PublicTensor, StwoBackend, StwoVerifyingKey, VerifyError,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot load the verification key: {0}")]
    Key(String),
    #[error("cannot load the bundle: {0}")]
    Bundle(ciro_prover::BundleError),
    #[error("REJECTED: {0}")]
    Rejected(VerifyError),
}

// Written out rather than `#[from]`, so the message is not repeated as the error's source.
impl From<ciro_prover::BundleError> for Error {
    fn from(e: ciro_prover::BundleError) -> Self {
        Error::Bundle(e)
    }
}

impl From<VerifyError> for Error {
    fn from(e: VerifyError) -> Self {
        Error::Rejected(e)
    }
}

/// A verified statement: the model and the outputs it produced.
#[derive(Clone, Debug)]
pub struct Verified {
    pub model_name: String,
    pub model_commitment: String,
    pub outputs: Vec<PublicTensor>,
    pub labels: Option<Vec<String>>,
    pub security_bits: u32,
}

impl Verified {
    /// For a single-output classifier with labels: the winning label.
    pub fn label(&self) -> Option<(usize, String)> {
        let out = self.outputs.first()?;
        let best = (0..out.values.len()).max_by_key(|&i| (out.values[i], std::cmp::Reverse(i)))?;
        let name = self
            .labels
            .as_ref()
            .and_then(|l| l.get(best).cloned())
            .unwrap_or_else(|| best.to_string());
        Some((best, name))
    }
}

/// Verifies `bundle` against `vk`.
pub fn verify(vk: &StwoVerifyingKey, bundle: &ProofBundle) -> Result<Verified, Error> {
    let backend = StwoBackend::new(vk.params);
    let outputs = backend.verify(vk, bundle)?;
    Ok(Verified {
        model_name: vk.model_name.clone(),
        model_commitment: bundle.header.model_commitment.clone(),
        outputs,
        labels: vk.labels.clone(),
        security_bits: vk.params.security_bits(),
    })
}

/// Loads both files and verifies.
pub fn verify_files(bundle: &Path, vk: &Path) -> Result<Verified, Error> {
    let vk = StwoVerifyingKey::load(vk).map_err(|e| Error::Key(e.to_string()))?;
    let bundle = ProofBundle::load(bundle)?;
    verify(&vk, &bundle)
}
