//! Offline verification: a proof bundle and a verification key, never the weights. Any
//! registered backend's key works ([`ciro_prover::registry`]); this crate builds without any
//! prover code.

pub mod evm;

use std::path::Path;

use ciro_prover::{load_verifying_key, DynVerifyingKey, ProofBundle, PublicTensor, VerifyError};
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

/// Reads a verification key file of any backend (told apart by its `format` field).
pub fn load_key(path: &Path) -> Result<Box<dyn DynVerifyingKey>, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
    load_verifying_key(&bytes).map_err(|e| Error::Key(format!("{}: {e}", path.display())))
}

/// Verifies `bundle` against a key of any backend.
pub fn verify(vk: &dyn DynVerifyingKey, bundle: &ProofBundle) -> Result<Verified, Error> {
    let outputs = vk.verify(bundle)?;
    Ok(Verified {
        model_name: vk.model_name().to_string(),
        model_commitment: bundle.header.model_commitment.clone(),
        outputs,
        labels: vk.labels().map(<[String]>::to_vec),
        security_bits: vk.security_bits(),
    })
}

/// Loads both files and verifies.
pub fn verify_files(bundle: &Path, vk: &Path) -> Result<Verified, Error> {
    let vk = load_key(vk)?;
    let bundle = ProofBundle::load(bundle)?;
    verify(vk.as_ref(), &bundle)
}
