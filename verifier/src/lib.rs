//! Offline verification: a proof bundle and a verification key, never the weights. Any
//! registered backend's key works ([`ciro_prover::registry`]); this crate builds without any
//! prover code.

pub mod aggregate;
pub mod evm;

use std::path::Path;

use ciro_model_compiler::quant::quantize;
use ciro_prover::{load_verifying_key, DynVerifyingKey, ProofBundle, PublicTensor, VerifyError};
use sha2::{Digest, Sha256};
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
    /// The inputs the proof is about, when it shows them.
    pub inputs: Vec<PublicTensor>,
    /// The Poseidon hash of the input, when the proof shows only that (halo2 or plonky2, hashed
    /// inputs).
    pub input_hash: Option<String>,
}

/// How a verified proof shows its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProvenInput {
    /// The values, summarised by a SHA-256 digest of their shapes, scales and values.
    Public { digest: String },
    /// Only their Poseidon hash.
    Hashed { hash: String },
    /// Nothing.
    Private,
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

    pub fn proven_input(&self) -> ProvenInput {
        if let Some(hash) = &self.input_hash {
            return ProvenInput::Hashed { hash: hash.clone() };
        }
        if self.inputs.is_empty() {
            return ProvenInput::Private;
        }
        let mut h = Sha256::new();
        for t in &self.inputs {
            h.update(serde_json::to_vec(&(&t.shape, t.scale, &t.values)).unwrap_or_default());
        }
        ProvenInput::Public {
            digest: hex::encode(h.finalize()),
        }
    }

    /// Checks that the proof is about `inputs` (real values, as an input file holds them):
    /// each is quantized at the proven tensor's scale and must equal the proven value, or, for a
    /// hashed input, hash to the proven hash under `vk`. `Err` says where they differ.
    pub fn check_inputs(
        &self,
        vk: &dyn DynVerifyingKey,
        inputs: &[Vec<f32>],
    ) -> Result<(), String> {
        match self.proven_input() {
            ProvenInput::Private => Err(
                "the proof hides its input entirely, so it cannot be checked against a file".into(),
            ),
            ProvenInput::Public { .. } => {
                let scales: Vec<u32> = self.inputs.iter().map(|t| t.scale).collect();
                for (i, (mine, proven)) in quantize_at(inputs, &scales)?
                    .iter()
                    .zip(&self.inputs)
                    .enumerate()
                {
                    if mine.len() != proven.values.len() {
                        return Err(format!(
                            "input {i} of the proof has {} values, the file's has {}",
                            proven.values.len(),
                            mine.len()
                        ));
                    }
                    if let Some(p) = (0..mine.len()).find(|&p| mine[p] != proven.values[p]) {
                        return Err(format!(
                            "the proof is about another input: input {i} at position {p} is {} in the proof and {} in the file (at scale 2^{})",
                            proven.values[p], mine[p], proven.scale
                        ));
                    }
                }
                Ok(())
            }
            ProvenInput::Hashed { hash } => {
                let scales: Vec<u32> = vk.inputs().iter().map(|t| t.scale).collect();
                let flat: Vec<i64> = quantize_at(inputs, &scales)?
                    .into_iter()
                    .flatten()
                    .collect();
                let mine = if let Some(key) =
                    vk.downcast_ref::<ciro_prover::halo2_backend::Halo2VerifyingKey>()
                {
                    ciro_prover::halo2_backend::input_hash(key, &flat)
                } else if let Some(key) =
                    vk.downcast_ref::<ciro_prover::plonky2_backend::Plonky2VerifyingKey>()
                {
                    ciro_prover::plonky2_backend::input_hash(key, &flat)
                } else {
                    return Err(format!("{} proofs do not hash their input", vk.backend()));
                }
                .map_err(|e| e.to_string())?;
                if mine != hash {
                    return Err(format!(
                        "the proof is about another input: its input hash is {hash}, the file's is {mine}"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Real input values (as an input file holds them) quantized at each input's scale `2^s`: the
/// integers a proof about them shows.
pub fn quantize_at(inputs: &[Vec<f32>], scales: &[u32]) -> Result<Vec<Vec<i64>>, String> {
    if inputs.len() != scales.len() {
        return Err(format!(
            "the proof is about {} input(s), the file has {}",
            scales.len(),
            inputs.len()
        ));
    }
    Ok(inputs
        .iter()
        .zip(scales)
        .map(|(x, &s)| x.iter().map(|&v| quantize(v as f64, s)).collect())
        .collect())
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
        inputs: bundle.header.inputs.clone(),
        input_hash: bundle.header.input_hash.clone(),
    })
}

/// Loads both files and verifies.
pub fn verify_files(bundle: &Path, vk: &Path) -> Result<Verified, Error> {
    let vk = load_key(vk)?;
    let bundle = ProofBundle::load(bundle)?;
    verify(vk.as_ref(), &bundle)
}
