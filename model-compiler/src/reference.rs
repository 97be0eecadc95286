//! The float reference: the ONNX model run in f32 by tract.

use tract_onnx::prelude::*;

use crate::error::{CompileError, Result};
use crate::onnx::LoadedModel;

/// A runnable f32 plan of a loaded model.
pub struct FloatModel {
    plan: std::sync::Arc<TypedRunnableModel>,
    shapes: Vec<Vec<usize>>,
}

impl FloatModel {
    pub fn new(loaded: &LoadedModel) -> Result<Self> {
        let plan = crate::proto::guarded(|| loaded.model.clone().into_runnable())
            .map_err(CompileError::Reference)?
            .map_err(|e| CompileError::Reference(e.to_string()))?;
        Ok(FloatModel {
            plan,
            shapes: loaded.input_shapes.clone(),
        })
    }

    /// Runs the model; returns each output flattened.
    pub fn run(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        crate::input::check_inputs(inputs, &self.shapes)?;
        let tensors: TVec<TValue> = inputs
            .iter()
            .zip(&self.shapes)
            .map(|(x, s)| Tensor::from_shape(s, x).map(|t| t.into_tvalue()))
            .collect::<TractResult<_>>()
            .map_err(|e| CompileError::Reference(e.to_string()))?;
        let outputs = crate::proto::guarded(|| self.plan.run(tensors))
            .map_err(CompileError::Reference)?
            .map_err(|e| CompileError::Reference(e.to_string()))?;
        outputs
            .iter()
            .map(|t| {
                let t = t
                    .cast_to::<f32>()
                    .map_err(|e| CompileError::Reference(e.to_string()))?;
                let v = t
                    .to_plain_array_view::<f32>()
                    .map_err(|e| CompileError::Reference(e.to_string()))?
                    .iter()
                    .copied()
                    .collect();
                Ok(v)
            })
            .collect()
    }
}
