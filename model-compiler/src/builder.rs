//! Builds IR nodes one op at a time, deriving for each its shape, scale, proven integer bound and
//! proven error bound (interval analysis and error propagation live next to each other). This
//! file holds the builder's shared part: pushing a node against the value budget, checked
//! accumulator bounds, calibrated ranges, broadcasting and window geometry. Each op's derivation
//! is a `Builder` method in its family's file ([`crate::ops`]).
//!
//! **Calibrated ranges.** Worst-case intervals carried from the input range through every layer
//! grow multiplicatively. So while it builds, the builder also evaluates every node on the
//! calibration samples, and gives each node whose values the circuit range-checks from both
//! sides ([`Op::is_range_checked`]: the rescales and constant divisions, whose division gadget
//! proves `q_lo <= q <= q_hi`) the range the samples reach, widened by a margin and never wider
//! than its worst case. Bounds downstream start from those checked ranges. An input that leaves
//! one has no witness: evaluation reports it ([`crate::eval::RangeViolation`]) and proving
//! fails; nothing unsound can be proven.

use crate::error::{CompileError, Result};
use crate::eval::{broadcast_shape, eval_node, IntTensor};
use crate::ir::{Bound, Node, NodeId, Op, QuantConfig};
use crate::quant::{quantize, scale_f};

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
    /// Every node's values on the calibration samples; `None` builds worst-case ranges only.
    calibration: Option<Calibration>,
}

/// Calibration samples and what each node computes on them.
struct Calibration {
    /// Real inputs: `samples[sample][model input]`, flattened.
    samples: Vec<Vec<Vec<f32>>>,
    /// A checked range is the samples' `[lo, hi]` widened by `margin · max(|lo|, |hi|, 1.0)`.
    margin: f64,
    /// Parallel to [`Builder::nodes`].
    values: Vec<NodeValues>,
}

enum NodeValues {
    /// A constant: the same on every sample.
    Shared(IntTensor),
    PerSample(Vec<IntTensor>),
}

impl NodeValues {
    fn get(&self, sample: usize) -> &IntTensor {
        match self {
            NodeValues::Shared(t) => t,
            NodeValues::PerSample(v) => &v[sample],
        }
    }
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
            calibration: None,
        }
    }

    /// A builder that takes the ranges of range-checked nodes from `samples` (real inputs, one
    /// `Vec` per model input) widened by `margin` (module doc).
    pub fn calibrated(config: QuantConfig, samples: Vec<Vec<Vec<f32>>>, margin: f64) -> Self {
        let mut b = Builder::new(config);
        if !samples.is_empty() {
            b.calibration = Some(Calibration {
                samples,
                margin: margin.max(0.0),
                values: Vec::new(),
            });
        }
        b
    }

    /// `node`'s values on the calibration samples; a range-checked node's bound narrows to the
    /// range they reach (widened by the margin).
    fn calibrate(&mut self, node: &mut Node) -> Result<()> {
        let Some(cal) = &mut self.calibration else {
            return Ok(());
        };
        let values = match &node.op {
            Op::Const { values } => {
                NodeValues::Shared(IntTensor::new(node.shape.clone(), values.clone()))
            }
            Op::Input { index } => {
                let mut per = Vec::with_capacity(cal.samples.len());
                for (s, sample) in cal.samples.iter().enumerate() {
                    let data: Vec<i64> = sample[*index]
                        .iter()
                        .map(|&v| quantize(v as f64, node.scale))
                        .collect();
                    if let Some(v) = data.iter().find(|v| !node.bound.contains(**v)) {
                        return Err(CompileError::Input(format!(
                            "calibration sample {s}: input {index} value {} is outside the declared input range",
                            *v as f64 / scale_f(node.scale)
                        )));
                    }
                    per.push(IntTensor::new(node.shape.clone(), data));
                }
                NodeValues::PerSample(per)
            }
            _ => NodeValues::PerSample(
                (0..cal.samples.len())
                    .map(|s| {
                        let args: Vec<&IntTensor> =
                            node.inputs.iter().map(|&i| cal.values[i].get(s)).collect();
                        eval_node(node, &args)
                    })
                    .collect(),
            ),
        };
        if node.op.is_range_checked() {
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for s in 0..cal.samples.len() {
                for &v in &values.get(s).data {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            if lo <= hi {
                let reach = lo
                    .unsigned_abs()
                    .max(hi.unsigned_abs())
                    .max(1 << node.scale) as f64;
                let widen = (cal.margin * reach).ceil() as i64;
                node.bound = Bound::new(
                    node.bound.lo.max(lo.saturating_sub(widen)),
                    node.bound.hi.min(hi.saturating_add(widen)),
                );
            }
        }
        cal.values.push(values);
        Ok(())
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
        // Past a table's singularity no bound holds; keep that one finite figure (JSON has no
        // infinity) however it propagates.
        let unbounded = crate::ops::activation::UNBOUNDED_ERROR;
        let error = if error.is_finite() {
            error.min(unbounded)
        } else {
            unbounded
        };
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
        let mut node = Node {
            name: self.current.clone(),
            op,
            inputs,
            shape,
            scale,
            bound,
            // A hair of slack for the float arithmetic of the error analysis itself.
            error: error * (1.0 + 1e-9),
        };
        self.calibrate(&mut node)?;
        self.nodes.push(node);
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
