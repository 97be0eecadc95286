//! What a model costs, measured from its static shapes right after loading, and the caps a
//! compilation refuses to pass. Lowering, calibration and key setup all allocate in proportion
//! to the multiply-accumulates (about 230 bytes per MAC at setup) and the tensor values, so both
//! are checked before any of them runs.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::Deconv;
use tract_onnx::tract_core::ops::Cost;

/// A model's size, in checked (saturating) arithmetic from tract's static shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelCost {
    /// Multiply-accumulates of one inference (matrix products, convolutions, transposed
    /// convolutions, recurrent layers once unrolled).
    pub macs: u64,
    /// Elements of every tensor together: weights, constants and intermediate results.
    pub values: u64,
}

/// The caps a compilation checks [`ModelCost`] against. The defaults are what one worker
/// proves in 16 GiB; a service sets its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_macs: u64,
    pub max_values: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_macs: 1 << 26,
            max_values: 1 << 24,
        }
    }
}

impl Limits {
    /// No caps (for tools that only inspect a model).
    pub const NONE: Limits = Limits {
        max_macs: u64::MAX,
        max_values: u64::MAX,
    };

    /// `Err` names the figure, its value and the cap.
    pub fn check(&self, cost: &ModelCost) -> Result<(), String> {
        let over = |what: &str, value: u64, limit: u64, flag: &str| {
            format!(
                "the model needs {value} {what}, more than the limit of {limit} ({flag} raises it where the machine has the memory)"
            )
        };
        if cost.macs > self.max_macs {
            return Err(over(
                "multiply-accumulates per inference",
                cost.macs,
                self.max_macs,
                "--max-macs",
            ));
        }
        if cost.values > self.max_values {
            return Err(over(
                "tensor values",
                cost.values,
                self.max_values,
                "--max-values",
            ));
        }
        Ok(())
    }
}

fn dim(d: &TDim) -> u64 {
    // A dimension still symbolic after binding counts as huge: it is refused, not guessed.
    d.to_i64().map_or(u64::MAX, |v| v.max(0) as u64)
}

fn elements(fact: &TypedFact) -> u64 {
    fact.shape
        .iter()
        .fold(1u64, |acc, d| acc.saturating_mul(dim(d)))
}

/// Sums tract's own FMA costs (convolutions, einsums) over the decluttered model, adds the
/// transposed convolutions tract does not cost, and counts every node output's elements
/// (constants included).
pub fn model_cost(model: &TypedModel) -> Result<ModelCost, String> {
    let mut cost = ModelCost::default();
    for node in model.nodes() {
        let inputs = node
            .inputs
            .iter()
            .map(|o| model.outlet_fact(*o))
            .collect::<TractResult<Vec<_>>>()
            .map_err(|e| format!("node `{}`: {e}", node.name))?;
        let macs = if let Some(deconv) = node.op_as::<Deconv>() {
            // Every input value meets every tap of its group's kernels.
            let per_value = (deconv.pool_spec.output_channels / deconv.group.max(1)) as u64;
            let taps = deconv
                .pool_spec
                .kernel_shape
                .iter()
                .fold(1u64, |a, &k| a.saturating_mul(k as u64));
            inputs.first().map_or(0, |x| {
                elements(x).saturating_mul(per_value).saturating_mul(taps)
            })
        } else {
            node.op
                .cost(&inputs)
                .map_err(|e| format!("node `{}`: {e}", node.name))?
                .iter()
                .filter(|(c, _)| matches!(c, Cost::FMA(_)))
                .fold(0u64, |a, (_, n)| a.saturating_add(dim(n)))
        };
        cost.macs = cost.macs.saturating_add(macs);
        for out in &node.outputs {
            cost.values = cost.values.saturating_add(elements(&out.fact));
        }
    }
    Ok(cost)
}
