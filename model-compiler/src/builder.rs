//! Builds IR nodes one op at a time, deriving for each its shape, scale, proven integer bound and
//! proven error bound (interval analysis and error propagation live next to each other). This
//! file holds the builder's shared part: pushing a node against the value budget, checked
//! accumulator bounds, broadcasting and window geometry. Each op's derivation is a `Builder`
//! method in its family's file ([`crate::ops`]).

use crate::error::{CompileError, Result};
use crate::eval::broadcast_shape;
use crate::ir::{Bound, Node, NodeId, Op, QuantConfig};
use crate::quant::scale_f;

/// A float constant as it appears in the ONNX graph.
#[derive(Clone, Debug)]
pub struct FloatConst {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl FloatConst {
    pub fn scalar(&self) -> Option<f32> {
        (self.values.len() == 1).then(|| self.values[0])
    }
}

pub struct Builder {
    pub config: QuantConfig,
    pub nodes: Vec<Node>,
    /// Name given to the nodes pushed next (the source node being lowered).
    pub current: String,
}

/// Conv/pool window geometry.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pads_before: [usize; 2],
    pub pads_after: [usize; 2],
}

impl Window {
    pub(crate) fn out_dim(&self, input: usize, d: usize) -> Result<usize> {
        let span = (self.kernel[d] - 1) * self.dilations[d] + 1;
        let padded = input + self.pads_before[d] + self.pads_after[d];
        if padded < span {
            return Err(CompileError::Input(format!(
                "window {span} larger than padded input {padded}"
            )));
        }
        Ok((padded - span) / self.strides[d] + 1)
    }
}

pub(crate) fn shapes_str(shapes: &[&[usize]]) -> String {
    shapes
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Builder {
    pub fn new(config: QuantConfig) -> Self {
        Builder {
            config,
            nodes: Vec::new(),
            current: String::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Largest real magnitude node `id` can take (quantized bound plus error).
    pub(crate) fn real_max(&self, id: NodeId) -> f64 {
        let n = &self.nodes[id];
        n.bound.abs_max() as f64 / scale_f(n.scale) + n.error
    }

    /// Largest magnitude of the dequantized values of `id`.
    pub(crate) fn quant_max(&self, id: NodeId) -> f64 {
        let n = &self.nodes[id];
        n.bound.abs_max() as f64 / scale_f(n.scale)
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> CompileError {
        CompileError::Bound {
            node: self.current.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn push(
        &mut self,
        op: Op,
        inputs: Vec<NodeId>,
        shape: Vec<usize>,
        scale: u32,
        bound: Bound,
        error: f64,
    ) -> Result<NodeId> {
        let limit = 1i64 << self.config.max_bits;
        if bound.abs_max() >= limit {
            return Err(self.error(format!(
                "{} output bound [{}, {}] needs {} bits, more than the {} allowed (scale {}); \
                 use a smaller --scale",
                op.name(),
                bound.lo,
                bound.hi,
                bound.magnitude_bits(),
                self.config.max_bits,
                scale
            )));
        }
        self.nodes.push(Node {
            name: self.current.clone(),
            op,
            inputs,
            shape,
            scale,
            bound,
            // A hair of slack for the float arithmetic of the error analysis itself.
            error: error * (1.0 + 1e-9),
        });
        Ok(self.nodes.len() - 1)
    }

    pub(crate) fn const_values(&self, id: NodeId) -> Option<&[i64]> {
        match &self.nodes[id].op {
            Op::Const { values } => Some(values),
            _ => None,
        }
    }

    pub(crate) fn checked_bound(&self, lo: i128, hi: i128) -> Result<Bound> {
        let limit = 1i128 << self.config.max_bits;
        if lo <= -limit || hi >= limit {
            return Err(self.error(format!(
                "accumulator bound [{lo}, {hi}] exceeds 2^{}; use a smaller --scale",
                self.config.max_bits
            )));
        }
        Ok(Bound::new(lo as i64, hi as i64))
    }

    pub(crate) fn broadcast(&self, a: NodeId, b: NodeId, op: &str) -> Result<Vec<usize>> {
        let (sa, sb) = (&self.nodes[a].shape, &self.nodes[b].shape);
        broadcast_shape(sa, sb).ok_or_else(|| CompileError::Unsupported {
            op: op.into(),
            node: self.current.clone(),
            shapes: shapes_str(&[sa, sb]),
            detail: ": shapes do not broadcast".into(),
        })
    }
}
