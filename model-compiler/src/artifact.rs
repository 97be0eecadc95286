//! The compiled-model file: versioned, self-describing JSON whose content hash is the model's
//! identity (sha256 of the canonical serialisation of its graph).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CompileError, Result};
use crate::ir::{Graph, Op};

pub const FORMAT: &str = "ciro-compiled-model";
pub const FORMAT_VERSION: u32 = 1;

/// One scale tried by calibration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleTrial {
    pub scale: u32,
    #[serde(default)]
    pub weight_scale: u32,
    /// `ok`, or why the scale was refused (e.g. an accumulator bound past the value budget).
    pub outcome: String,
    pub max_abs_error: Option<f64>,
    pub label_agreement: Option<f64>,
}

/// A range the circuit checks: a rescale's or division's output, in real units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckedRange {
    pub node: String,
    pub op: String,
    pub scale: u32,
    pub lo: f64,
    pub hi: f64,
}

/// What calibration measured on its inputs for the chosen scale.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompileReport {
    pub calibration_samples: usize,
    /// True when no calibration inputs were given and seeded random inputs were used.
    pub synthetic_calibration: bool,
    pub max_abs_error: f64,
    pub mean_abs_error: f64,
    /// Largest |float output| seen, to read the errors against.
    pub float_output_max: f64,
    /// Fraction of samples whose argmax matches the float model (classifier outputs only).
    pub label_agreement: Option<f64>,
    /// True when no scale met the tolerance and the user accepted the most accurate one.
    #[serde(default)]
    pub accepted_inaccurate: bool,
    /// Where the range-checked nodes' ranges came from, and the margin.
    #[serde(default)]
    pub ranges: crate::compile::RangeMode,
    #[serde(default)]
    pub range_margin: f64,
    /// Every range the circuit checks (rescale and division outputs), in real units.
    #[serde(default)]
    pub checked_ranges: Vec<CheckedRange>,
    /// The inputs' symbolic dimensions and the sizes they were bound to.
    #[serde(default)]
    pub bound_dims: Vec<crate::onnx::BoundDim>,
    /// The compiler's proven error bound for each output.
    pub proven_output_error: Vec<f64>,
    pub trials: Vec<ScaleTrial>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompiledModel {
    pub format: String,
    pub version: u32,
    /// sha256 of the graph's canonical JSON: the model's identity.
    pub hash: String,
    pub graph: Graph,
    pub report: CompileReport,
}

pub fn graph_hash(graph: &Graph) -> String {
    let bytes = serde_json::to_vec(graph).expect("graphs serialise");
    hex::encode(Sha256::digest(bytes))
}

impl CompiledModel {
    pub fn new(graph: Graph, report: CompileReport) -> Self {
        CompiledModel {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            hash: graph_hash(&graph),
            graph,
            report,
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("compiled models serialise");
        // Write then rename, so a crash never leaves a half-written model behind. The temporary
        // name is this process's and this call's own: nodes sharing a models folder may save
        // the same model at once.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        dir.map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(&tmp, bytes))
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| CompileError::Write {
                path: path.display().to_string(),
                source,
            })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| CompileError::Io {
            path: p.clone(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|reason| CompileError::Artifact { path: p, reason })
    }

    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let head: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a compiled model ({e})"))?;
        if head.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(format!("not a {FORMAT} file"));
        }
        let version = head.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version != FORMAT_VERSION as u64 {
            return Err(format!(
                "format version {version} is not supported (this build reads version {FORMAT_VERSION}); recompile the model"
            ));
        }
        let model: CompiledModel =
            serde_json::from_value(head).map_err(|e| format!("malformed compiled model ({e})"))?;
        let hash = graph_hash(&model.graph);
        if hash != model.hash {
            return Err(format!(
                "content hash mismatch (file says {}, content is {hash}): the file was corrupted or edited",
                model.hash
            ));
        }
        validate(&model.graph)?;
        Ok(model)
    }
}

/// Structural checks so that evaluating a loaded graph cannot index out of bounds.
fn validate(g: &Graph) -> std::result::Result<(), String> {
    for (i, n) in g.nodes.iter().enumerate() {
        if n.inputs.iter().any(|&j| j >= i) {
            return Err(format!("node {i} reads a later node"));
        }
        let len: usize = n.shape.iter().product();
        let ok = match &n.op {
            Op::Input { index } => *index < g.inputs.len() && g.inputs[*index].shape == n.shape,
            Op::Const { values } => values.len() == len,
            Op::Lookup { table, .. } | Op::Softmax { table, .. } => !table.is_empty(),
            // Positive divisors only: constant counts, or a computed divisor proven positive.
            Op::DivConst => match &g.nodes[n.inputs[1]].op {
                Op::Const { values } => values.iter().all(|&v| v > 0),
                _ => g.nodes[n.inputs[1]].bound.lo > 0,
            },
            Op::Reshape => n.inputs.len() == 1 && g.nodes[n.inputs[0]].len() == len,
            _ => true,
        };
        if !ok {
            return Err(format!("node {i} ({}) is inconsistent", n.op.name()));
        }
    }
    if g.outputs.iter().any(|o| o.node >= g.nodes.len()) {
        return Err("an output names a missing node".into());
    }
    Ok(())
}
