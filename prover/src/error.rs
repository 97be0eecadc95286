use thiserror::Error;

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("cannot read or write {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("not a Ciro proof bundle (bad magic bytes)")]
    NotABundle,
    #[error("truncated proof bundle: {0}")]
    Truncated(String),
    #[error("malformed proof bundle: {0}")]
    Malformed(String),
}

#[derive(Debug, Error)]
pub enum ProveError {
    #[error(transparent)]
    Circuit(#[from] ciro_circuits::CircuitError),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("the prover failed: {0}")]
    Backend(String),
    /// The proof system cannot honour a setting (a hashed input on a backend that is not
    /// zero-knowledge).
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid key {0}: {1}")]
    Key(String, String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// Why a proof was rejected. Every variant is a rejection; none is a crash.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("the bundle is for model commitment {bundle}, the key is for {key}")]
    WrongModel { bundle: String, key: String },
    #[error("the bundle's {field} does not match the verification key: {detail}")]
    Mismatch { field: String, detail: String },
    #[error("public input out of the model's declared range: {0}")]
    InputRange(String),
    #[error("malformed proof: {0}")]
    Malformed(String),
    #[error("the LogUp sums do not cancel: the wiring, a lookup or a range check is violated")]
    LogupSum,
    #[error("the STARK proof does not verify: {0}")]
    Stark(String),
    #[error("the halo2 proof does not verify: {0}")]
    Snark(String),
    #[error("the plonky2 proof does not verify: {0}")]
    Plonky2(String),
    #[error("the private-weights check fails: {0}")]
    WeightOpening(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}
