//! Public values, the same for every backend: the tensors a key declares ([`TensorInfo`]), the
//! flattening of a prover's inputs, and the verifier's check of a bundle's tensors against the
//! key.

use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::CompiledModel;
use serde::{Deserialize, Serialize};

use ciro_circuits::halo2::InputVisibility;

use crate::bundle::{BundleHeader, PublicTensor};
use crate::error::{ProveError, VerifyError};

/// A public tensor as a verification key declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub scale: u32,
    /// Proven (inputs: declared) bound of every element.
    pub lo: i64,
    pub hi: i64,
}

impl TensorInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub use ciro_model_compiler::panic_message;

/// The prover's inputs, checked against the key's shapes, as one flat list.
pub fn flatten_inputs(infos: &[TensorInfo], inputs: &[IntTensor]) -> Result<Vec<i64>, ProveError> {
    if inputs.len() != infos.len() {
        return Err(ProveError::Input(format!(
            "model takes {} input(s), got {}",
            infos.len(),
            inputs.len()
        )));
    }
    let mut flat = Vec::new();
    for (t, info) in inputs.iter().zip(infos) {
        if t.shape != info.shape {
            return Err(ProveError::Input(format!(
                "input `{}` has shape {:?}, the model expects {:?}",
                info.name, t.shape, info.shape
            )));
        }
        flat.extend_from_slice(&t.data);
    }
    Ok(flat)
}

/// Cuts a flat list of values into the key's tensors (the caller made `flat` from them).
pub fn tensors(infos: &[TensorInfo], flat: &[i64]) -> Vec<PublicTensor> {
    let mut at = 0;
    infos
        .iter()
        .map(|i| {
            let n = i.len();
            let t = PublicTensor {
                shape: i.shape.clone(),
                scale: i.scale,
                values: flat[at..at + n].to_vec(),
            };
            at += n;
            t
        })
        .collect()
}

/// Checks a bundle's tensors (`what`: "inputs" or "outputs") against the key's, and the values
/// against their declared range where `check_range`; returns the values, flattened.
pub fn check_tensors(
    what: &str,
    got: &[PublicTensor],
    want: &[TensorInfo],
    check_range: bool,
) -> Result<Vec<i64>, VerifyError> {
    if got.len() != want.len() {
        return Err(VerifyError::Mismatch {
            field: what.into(),
            detail: format!("{} tensors, the model has {}", got.len(), want.len()),
        });
    }
    let mut flat = Vec::new();
    for (g, w) in got.iter().zip(want) {
        if g.shape != w.shape || g.scale != w.scale || g.values.len() != w.len() {
            return Err(VerifyError::Mismatch {
                field: what.into(),
                detail: format!(
                    "`{}` is shape {:?} scale {} with {} values, the model says shape {:?} scale {}",
                    w.name,
                    g.shape,
                    g.scale,
                    g.values.len(),
                    w.shape,
                    w.scale
                ),
            });
        }
        if check_range {
            if let Some(v) = g.values.iter().find(|&&v| v < w.lo || v > w.hi) {
                return Err(VerifyError::InputRange(format!(
                    "`{}` holds {v}, outside [{}, {}]",
                    w.name, w.lo, w.hi
                )));
            }
        }
        flat.extend_from_slice(&g.values);
    }
    Ok(flat)
}

/// The public inputs and outputs of a model, with their proven (inputs: declared) bounds.
pub fn public_tensors(
    model: &CompiledModel,
) -> Result<(Vec<TensorInfo>, Vec<TensorInfo>), ProveError> {
    let graph = &model.graph;
    let info = |name: &str, node: usize| {
        let n = &graph.nodes[node];
        TensorInfo {
            name: name.into(),
            shape: n.shape.clone(),
            scale: n.scale,
            lo: n.bound.lo,
            hi: n.bound.hi,
        }
    };
    let inputs = graph
        .inputs
        .iter()
        .enumerate()
        .map(|(index, i)| {
            let node = graph
                .nodes
                .iter()
                .position(|n| n.op == ciro_model_compiler::Op::Input { index })
                .ok_or_else(|| ProveError::Input(format!("input {index} has no node")))?;
            Ok(info(&i.name, node))
        })
        .collect::<Result<Vec<_>, ProveError>>()?;
    let outputs = graph
        .outputs
        .iter()
        .map(|o| info(&o.name, o.node))
        .collect();
    Ok((inputs, outputs))
}

/// What a bundle shows of the input, once it agrees with the key's setting.
pub enum ShownInput<'a> {
    /// The values, flattened and within their declared range.
    Values(Vec<i64>),
    /// The input hash as the bundle writes it (each backend parses its own).
    Hash(&'a str),
    Nothing,
}

/// Checks what a bundle shows of the input against the key's `visibility` (the same rules on
/// every backend that can hide the input): a public input's tensors and range, a hashed
/// input's hash and nothing else, a private input nothing at all.
pub fn shown_input<'a>(
    h: &'a BundleHeader,
    infos: &[TensorInfo],
    visibility: InputVisibility,
) -> Result<ShownInput<'a>, VerifyError> {
    let mismatch = |field: &str, detail: &str| VerifyError::Mismatch {
        field: field.into(),
        detail: detail.into(),
    };
    if visibility == InputVisibility::Public {
        if h.input_hash.is_some() {
            return Err(mismatch("input hash", "the key shows the input itself"));
        }
        return Ok(ShownInput::Values(check_tensors(
            "inputs", &h.inputs, infos, true,
        )?));
    }
    if !h.inputs.is_empty() {
        return Err(mismatch(
            "inputs",
            "the key keeps the input private: a bundle must not carry it",
        ));
    }
    match (visibility, &h.input_hash) {
        (InputVisibility::Hashed, Some(x)) => Ok(ShownInput::Hash(x)),
        (InputVisibility::Hashed, None) => Err(mismatch("input hash", "missing")),
        (_, Some(_)) => Err(mismatch("input hash", "the key keeps the input private")),
        (_, None) => Ok(ShownInput::Nothing),
    }
}
