//! Offline verification: a proof bundle and a verification key, never the weights.

pub mod evm;

use std::path::Path;

use ciro_prover::{
    Halo2Backend, Halo2VerifyingKey, KeyFile, ProofBundle, ProofSystem, PublicTensor, StwoBackend,
    StwoVerifyingKey, VerifyError,
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

/// A verification key of either backend.
#[derive(Clone, Debug)]
pub enum AnyKey {
    Stwo(StwoVerifyingKey),
    Halo2(Halo2VerifyingKey),
}

impl AnyKey {
    /// Reads a key file of either backend (told apart by its `format` field).
    pub fn load(path: &Path) -> Result<AnyKey, Error> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
        AnyKey::from_json(&bytes).map_err(|e| Error::Key(format!("{}: {e}", path.display())))
    }

    pub fn from_json(bytes: &[u8]) -> Result<AnyKey, String> {
        #[derive(serde::Deserialize)]
        struct Format {
            format: String,
        }
        let f: Format =
            serde_json::from_slice(bytes).map_err(|e| format!("not a verification key: {e}"))?;
        let bad = |e: serde_json::Error| format!("malformed {} key: {e}", f.format);
        match f.format.as_str() {
            "ciro-stwo-vk" => Ok(AnyKey::Stwo(serde_json::from_slice(bytes).map_err(bad)?)),
            "ciro-halo2-vk" => Ok(AnyKey::Halo2(serde_json::from_slice(bytes).map_err(bad)?)),
            other => Err(format!("unknown key format {other:?}")),
        }
    }

    pub fn model_name(&self) -> &str {
        match self {
            AnyKey::Stwo(k) => &k.model_name,
            AnyKey::Halo2(k) => &k.model_name,
        }
    }

    pub fn commitment(&self) -> String {
        match self {
            AnyKey::Stwo(k) => k.commitment(),
            AnyKey::Halo2(k) => k.commitment(),
        }
    }
}

/// Verifies a stwo `bundle` against `vk`.
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

/// Verifies a halo2-KZG `bundle` against `vk` (no SRS file needed: the key holds the points).
pub fn verify_halo2(vk: &Halo2VerifyingKey, bundle: &ProofBundle) -> Result<Verified, Error> {
    let outputs = Halo2Backend::new(".").verify(vk, bundle)?;
    Ok(Verified {
        model_name: vk.model_name.clone(),
        model_commitment: bundle.header.model_commitment.clone(),
        outputs,
        labels: vk.labels.clone(),
        security_bits: ciro_prover::halo2_backend::SECURITY_BITS,
    })
}

/// Verifies `bundle` against a key of either backend.
pub fn verify_any(vk: &AnyKey, bundle: &ProofBundle) -> Result<Verified, Error> {
    match vk {
        AnyKey::Stwo(k) => verify(k, bundle),
        AnyKey::Halo2(k) => verify_halo2(k, bundle),
    }
}

/// Loads both files and verifies.
pub fn verify_files(bundle: &Path, vk: &Path) -> Result<Verified, Error> {
    let vk = AnyKey::load(vk)?;
    let bundle = ProofBundle::load(bundle)?;
    verify_any(&vk, &bundle)
}
