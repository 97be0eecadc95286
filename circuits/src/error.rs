use thiserror::Error;

/// Why a model cannot be turned into a circuit, or a witness into a trace.
#[derive(Debug, Error)]
pub enum CircuitError {
    #[error("node `{node}` ({op}) cannot be proven exactly in {field}: {detail}")]
    Overflow {
        /// The field whose budget the node leaves ([`crate::FieldBudget::name`]).
        field: &'static str,
        node: String,
        op: String,
        detail: String,
    },
    #[error("node `{node}` ({op}) is not supported by the circuits: {detail}")]
    Unsupported {
        node: String,
        op: String,
        detail: String,
    },
    #[error("malformed graph: {0}")]
    Malformed(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("cannot aggregate: {0}")]
    Aggregation(String),
    #[error("witness generation failed: {0}")]
    Witness(String),
}
