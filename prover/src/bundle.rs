//! The proof bundle: everything a verifier needs besides the verification key.
//!
//! File layout: the magic `CIROPB01`, a little-endian `u64` header length, the header as JSON
//! (backend, parameters, model commitment, public input and output), a `u64` proof length and
//! the backend's proof bytes. Nothing in it is trusted: the verifier checks every field against
//! the verification key and the proof.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::BundleError;

pub const MAGIC: &[u8; 8] = b"CIROPB01";
pub const BUNDLE_VERSION: u32 = 1;
/// Refuse absurd sizes before allocating.
const MAX_HEADER: u64 = 256 << 20;
const MAX_PROOF: u64 = 1 << 30;

/// A public tensor at a fixed-point scale: real value = `values[i] / 2^scale`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicTensor {
    pub shape: Vec<usize>,
    pub scale: u32,
    pub values: Vec<i64>,
}

impl PublicTensor {
    pub fn real(&self) -> Vec<f64> {
        let s = (1u64 << self.scale) as f64;
        self.values.iter().map(|&v| v as f64 / s).collect()
    }
}

/// Proof-system parameters and what they buy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofParams {
    /// Merkle and Fiat–Shamir hash.
    pub hash: String,
    pub log_blowup: u32,
    pub n_queries: u32,
    pub pow_bits: u32,
    /// Conjectured bits of security: `pow_bits + log_blowup * n_queries`.
    pub security_bits: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHeader {
    pub version: u32,
    /// `stwo` (more to come).
    pub backend: String,
    pub params: ProofParams,
    pub model_name: String,
    /// Hash of the verification key (hex sha256): the model this proof is about.
    pub model_commitment: String,
    /// Empty when the proof keeps the input private or shows only its hash.
    pub inputs: Vec<PublicTensor>,
    /// halo2 with a hashed input: the input's Poseidon hash (0x-hex, big-endian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hash: Option<String>,
    pub outputs: Vec<PublicTensor>,
    /// halo2 with private weights: the proof (hex) that the proof's weight columns hold the
    /// weights the key commits to (`crate::halo2_weights`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_proof: Option<String>,
}

impl BundleHeader {
    /// The checks every backend makes first: the model, the backend and its parameters.
    pub(crate) fn check_against(
        &self,
        commitment: &str,
        backend: &str,
        params: &ProofParams,
    ) -> Result<(), crate::VerifyError> {
        use crate::VerifyError;
        if self.model_commitment != commitment {
            return Err(VerifyError::WrongModel {
                bundle: self.model_commitment.clone(),
                key: commitment.to_string(),
            });
        }
        if self.backend != backend {
            return Err(VerifyError::Mismatch {
                field: "backend".into(),
                detail: format!("`{}`, expected `{backend}`", self.backend),
            });
        }
        if self.params != *params {
            return Err(VerifyError::Mismatch {
                field: "parameters".into(),
                detail: format!("{:?}", self.params),
            });
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofBundle {
    pub header: BundleHeader,
    pub proof: Vec<u8>,
}

impl ProofBundle {
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("bundle headers serialise");
        container(MAGIC, &header, &self.proof)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        let (header, proof) = split_container(bytes, MAGIC)?;
        let header: BundleHeader = serde_json::from_slice(header)
            .map_err(|e| BundleError::Malformed(format!("header: {e}")))?;
        if header.version != BUNDLE_VERSION {
            return Err(BundleError::Malformed(format!(
                "bundle version {} (this build reads version {BUNDLE_VERSION})",
                header.version
            )));
        }
        Ok(ProofBundle {
            header,
            proof: proof.to_vec(),
        })
    }

    /// Writes atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), BundleError> {
        write_atomic(path, &self.to_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let bytes =
            std::fs::read(path).map_err(|e| BundleError::Io(path.display().to_string(), e))?;
        Self::from_bytes(&bytes)
    }
}

/// The file layout of bundles and aggregates: `magic`, a `u64` header length, the header, a
/// `u64` proof length, the proof.
pub(crate) fn container(magic: &[u8; 8], header: &[u8], proof: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 + header.len() + proof.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&(proof.len() as u64).to_le_bytes());
    out.extend_from_slice(proof);
    out
}

/// The header and proof of a file of [`container`]'s layout, sizes checked before allocating.
pub(crate) fn split_container<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
) -> Result<(&'a [u8], &'a [u8]), BundleError> {
    let mut rest = bytes;
    let mut take = |n: usize, what: &str| -> Result<&'a [u8], BundleError> {
        if rest.len() < n {
            return Err(BundleError::Truncated(format!(
                "needs {n} more bytes for the {what}, {} left",
                rest.len()
            )));
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a)
    };
    if take(8, "magic")? != magic {
        return Err(BundleError::NotABundle);
    }
    let len = u64::from_le_bytes(take(8, "header length")?.try_into().expect("8 bytes"));
    if len > MAX_HEADER {
        return Err(BundleError::Malformed(format!(
            "header length {len} is absurd"
        )));
    }
    let header = take(len as usize, "header")?;
    let len = u64::from_le_bytes(take(8, "proof length")?.try_into().expect("8 bytes"));
    if len > MAX_PROOF {
        return Err(BundleError::Malformed(format!(
            "proof length {len} is absurd"
        )));
    }
    let proof = take(len as usize, "proof")?;
    if !rest.is_empty() {
        return Err(BundleError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok((header, proof))
}

/// Writes `bytes` to `path` through a temporary file and a rename, creating the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    // A name of its own, so that concurrent writers of the same file cannot mix their bytes.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| BundleError::Io(dir.display().to_string(), e))?;
    }
    std::fs::write(&tmp, bytes).map_err(|e| BundleError::Io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| BundleError::Io(path.display().to_string(), e))
}

/// A verification key file: versioned JSON whose SHA-256 is the model commitment bundles
/// carry.
pub trait KeyFile: serde::Serialize + serde::de::DeserializeOwned {
    /// The `format` and `version` this build writes and reads.
    const FORMAT: (&'static str, u32);
    fn format(&self) -> (&str, u32);

    fn commitment(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(
            serde_json::to_vec(self).expect("keys serialise"),
        ))
    }

    fn save(&self, path: &Path) -> Result<(), crate::ProveError> {
        write_atomic(
            path,
            &serde_json::to_vec_pretty(self).expect("keys serialise"),
        )
        .map_err(crate::ProveError::from)
    }

    /// Parses a key file's bytes and checks its format and version.
    fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let vk: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("malformed {} key: {e}", Self::FORMAT.0))?;
        let (format, version) = vk.format();
        if (format, version) != Self::FORMAT {
            return Err(format!(
                "format {format} v{version} (this build reads {} v{})",
                Self::FORMAT.0,
                Self::FORMAT.1
            ));
        }
        Ok(vk)
    }

    fn load(path: &Path) -> Result<Self, crate::ProveError> {
        let key_err = |m: String| crate::ProveError::Key(path.display().to_string(), m);
        let bytes = std::fs::read(path).map_err(|e| key_err(e.to_string()))?;
        Self::from_json(&bytes).map_err(key_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProofBundle {
        ProofBundle {
            header: BundleHeader {
                version: BUNDLE_VERSION,
                backend: "stwo".into(),
                params: ProofParams {
                    hash: "blake2s".into(),
                    log_blowup: 1,
                    n_queries: 80,
                    pow_bits: 20,
                    security_bits: 100,
                },
                model_name: "m".into(),
                model_commitment: "ab".into(),
                inputs: vec![PublicTensor {
                    shape: vec![2],
                    scale: 3,
                    values: vec![1, -2],
                }],
                input_hash: None,
                outputs: vec![PublicTensor {
                    shape: vec![1],
                    scale: 3,
                    values: vec![7],
                }],
                weights_proof: None,
            },
            proof: vec![1, 2, 3, 250],
        }
    }

    #[test]
    fn round_trips_and_refuses_truncation() {
        let b = sample();
        let bytes = b.to_bytes();
        assert_eq!(ProofBundle::from_bytes(&bytes).unwrap(), b);
        for cut in [0, 5, 8, 12, bytes.len() - 1] {
            assert!(
                ProofBundle::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(
            ProofBundle::from_bytes(&extra),
            Err(BundleError::Malformed(_))
        ));
        assert!(matches!(
            ProofBundle::from_bytes(b"not a bundle at all"),
            Err(BundleError::NotABundle)
        ));
    }

    #[test]
    fn real_values_use_the_scale() {
        assert_eq!(sample().header.inputs[0].real(), vec![0.125, -0.25]);
    }
}
