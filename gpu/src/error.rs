use thiserror::Error;

/// Why an engine refused its input (or, on a device, failed). Every variant is a value the
/// caller handles; no engine panics on malformed input.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EngineError {
    #[error(
        "a multi-scalar multiplication needs one scalar per base: {bases} bases, {scalars} scalars"
    )]
    LengthMismatch { bases: usize, scalars: usize },
    #[error("{what} needs a power-of-two length, not {len}")]
    NotPowerOfTwo { what: &'static str, len: usize },
    #[error(
        "BN254's scalar field has no multiplicative subgroup of order 2^{log_n} (2^{max} at most)"
    )]
    DomainTooLarge { log_n: u32, max: u32 },
    #[error("a Merkle tree needs at least one column")]
    NoColumns,
    #[error("Merkle column {index} has {len} rows, column 0 has {expected}")]
    ColumnLengths {
        index: usize,
        len: usize,
        expected: usize,
    },
}
