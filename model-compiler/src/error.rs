use thiserror::Error;

/// Everything that can go wrong turning an ONNX file and inputs into integer results.
#[derive(Debug, Error)]
pub enum CompileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed or unsupported ONNX model {path}: {reason}")]
    Onnx { path: String, reason: String },
    #[error("unsupported op `{op}` at node `{node}` (input shapes {shapes}){detail}")]
    Unsupported {
        op: String,
        node: String,
        shapes: String,
        detail: String,
    },
    #[error("node `{node}`: {reason}")]
    Bound { node: String, reason: String },
    /// The model is larger than the configured [`crate::Limits`].
    #[error("model {model} is too large to prove here: {reason}")]
    TooLarge { model: String, reason: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("input out of calibrated range: {0}")]
    OutOfRange(crate::eval::RangeViolation),
    #[error(
        "the quantized model disagrees with the float model: {measured}; {hint} \
         (or pass --accept-inaccurate to keep it anyway)"
    )]
    Inaccurate { measured: String, hint: String },
    #[error("invalid image {path}: {reason}")]
    Image { path: String, reason: String },
    #[error("invalid compiled model {path}: {reason}")]
    Artifact { path: String, reason: String },
    #[error("float reference (tract) failed: {0}")]
    Reference(String),
}

pub type Result<T, E = CompileError> = std::result::Result<T, E>;

/// A caught panic's message (a library's assertion on malformed data), for an error value.
pub fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
