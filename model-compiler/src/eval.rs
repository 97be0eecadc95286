//! The reference integer evaluator: runs a [`Graph`] exactly as the semantics on [`Op`] state.
//! It is the witness generator's ground truth. This file holds the walk, the tensor helpers the
//! families share (broadcasting, strides, permutation, rounding) and the dispatch to each
//! family's evaluation ([`crate::ops`]).

use crate::error::CompileError;
use crate::ir::{Bound, Graph, Node, Op, OpFamily};
use crate::ops;

/// A row-major integer tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntTensor {
    pub shape: Vec<usize>,
    pub data: Vec<i64>,
}

impl IntTensor {
    pub fn new(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        IntTensor { shape, data }
    }
}

pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// numpy broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// For each flat index of `out_shape`, the flat index of the broadcast input of `in_shape`.
pub fn broadcast_map(out_shape: &[usize], in_shape: &[usize]) -> Vec<usize> {
    let rank = out_shape.len();
    let offset = rank - in_shape.len();
    let in_strides = strides(in_shape);
    let n: usize = out_shape.iter().product();
    let mut map = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        let mut flat = 0;
        for (d, &i) in idx.iter().enumerate().skip(offset) {
            if in_shape[d - offset] != 1 {
                flat += i * in_strides[d - offset];
            }
        }
        map.push(flat);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    map
}

/// `floor((2n + d) / (2d))` for `d > 0`: division rounded half up.
pub fn round_div(n: i64, d: i64) -> i64 {
    debug_assert!(d > 0);
    (2 * n + d).div_euclid(2 * d)
}

/// `floor((x + 2^(bits-1)) / 2^bits)`.
pub fn rescale(x: i64, bits: u32) -> i64 {
    if bits == 0 {
        return x;
    }
    (x + (1i64 << (bits - 1))) >> bits
}

/// For reductions: (outer, axis_len, inner) of a shape around a set of contiguous or
/// non-contiguous axes is not needed — we map each input flat index to its output flat index.
pub fn reduce_map(shape: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let out_shape: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
        .collect();
    let map = broadcast_map(shape, &out_shape);
    (out_shape, map)
}

/// Evaluates one node given its input tensors, by its family ([`crate::ops`]).
pub fn eval_node(node: &Node, inputs: &[&IntTensor]) -> IntTensor {
    let data = match node.op.family() {
        OpFamily::Linear => ops::linear::eval(node, inputs),
        OpFamily::Elementwise => ops::elementwise::eval(node, inputs),
        OpFamily::Activation => ops::activation::eval(node, inputs),
        OpFamily::Pooling => ops::pooling::eval(node, inputs),
        OpFamily::Reduction => ops::reduction::eval(node, inputs),
        OpFamily::Softmax => ops::softmax::eval(node, inputs),
        OpFamily::Wiring => ops::wiring::eval(node, inputs),
    };
    IntTensor::new(node.shape.clone(), data)
}

/// `data` (row-major, `shape`) with its axes permuted: output axis `d` is input axis `perm[d]`.
pub fn permute<T: Copy>(data: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let in_strides = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; out_shape.len()];
    for _ in 0..data.len() {
        let flat: usize = idx
            .iter()
            .enumerate()
            .map(|(d, &i)| i * in_strides[perm[d]])
            .sum();
        out.push(data[flat]);
        increment(&mut idx, &out_shape);
    }
    out
}

pub(crate) fn increment(idx: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        idx[d] += 1;
        if idx[d] < shape[d] {
            return;
        }
        idx[d] = 0;
    }
}

/// A range-checked node ([`Op::is_range_checked`]) whose value leaves its checked range: the
/// input is outside what the model was calibrated on, and no proof of it exists.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeViolation {
    pub node: String,
    pub op: &'static str,
    /// The first value outside the range, and the range (integers at `scale`).
    pub value: i64,
    pub bound: Bound,
    pub scale: u32,
}

impl std::fmt::Display for RangeViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let real = |v: i64| v as f64 / (1u64 << self.scale) as f64;
        write!(
            f,
            "node `{}` ({}) computes {} (real {:.4}), outside its calibrated range [{}, {}] \
             (real [{:.4}, {:.4}]): the input leaves the range the model was calibrated on; \
             recompile with calibration inputs like it, a larger --range-margin, or \
             --ranges worst-case",
            self.node,
            self.op,
            self.value,
            real(self.value),
            self.bound.lo,
            self.bound.hi,
            real(self.bound.lo),
            real(self.bound.hi)
        )
    }
}

/// Runs the whole graph on already-quantized inputs; returns every node's value.
/// Fails if an input has the wrong shape or lies outside its proven bound, or if a range-checked
/// node leaves its calibrated range ([`CompileError::OutOfRange`]): such an input has no proof.
pub fn eval_all(graph: &Graph, inputs: &[IntTensor]) -> Result<Vec<IntTensor>, CompileError> {
    let (values, violations) = eval_all_lenient(graph, inputs)?;
    match violations.into_iter().next() {
        Some(v) => Err(CompileError::OutOfRange(v)),
        None => Ok(values),
    }
}

/// As [`eval_all`], but range-checked nodes that leave their calibrated ranges are reported
/// (first value per node) instead of failing: what `ciro run` warns about.
pub fn eval_all_lenient(
    graph: &Graph,
    inputs: &[IntTensor],
) -> Result<(Vec<IntTensor>, Vec<RangeViolation>), CompileError> {
    if inputs.len() != graph.inputs.len() {
        return Err(CompileError::Input(format!(
            "model takes {} input(s), got {}",
            graph.inputs.len(),
            inputs.len()
        )));
    }
    let mut values: Vec<IntTensor> = Vec::with_capacity(graph.nodes.len());
    let mut violations = Vec::new();
    for node in &graph.nodes {
        let value = match node.op {
            Op::Input { index } => {
                let t = &inputs[index];
                if t.shape != node.shape {
                    return Err(CompileError::Input(format!(
                        "input {index} has shape {:?}, the model expects {:?}",
                        t.shape, node.shape
                    )));
                }
                if let Some(v) = t.data.iter().find(|v| !node.bound.contains(**v)) {
                    return Err(CompileError::Input(format!(
                        "input {index} value {} is outside the declared range {:?}",
                        *v as f64 / (1u64 << node.scale) as f64,
                        graph.inputs[index].range
                    )));
                }
                t.clone()
            }
            _ => {
                let args: Vec<&IntTensor> = node.inputs.iter().map(|&i| &values[i]).collect();
                let out = eval_node(node, &args);
                if node.op.is_range_checked() {
                    if let Some(&v) = out.data.iter().find(|v| !node.bound.contains(**v)) {
                        violations.push(RangeViolation {
                            node: node.name.clone(),
                            op: node.op.name(),
                            value: v,
                            bound: node.bound,
                            scale: node.scale,
                        });
                    }
                }
                out
            }
        };
        values.push(value);
    }
    Ok((values, violations))
}

/// Runs the graph and returns its outputs.
pub fn eval(graph: &Graph, inputs: &[IntTensor]) -> Result<Vec<IntTensor>, CompileError> {
    let mut values = eval_all(graph, inputs)?;
    Ok(graph
        .outputs
        .iter()
        .map(|o| std::mem::replace(&mut values[o.node], IntTensor::new(vec![0], vec![])))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_rules() {
        assert_eq!(rescale(5, 1), 3); // 2.5 -> 3 (half up)
        assert_eq!(rescale(-5, 1), -2); // -2.5 -> -2 (half up)
        assert_eq!(rescale(-6, 2), -1); // -1.5 -> -1
        assert_eq!(rescale(7, 2), 2); // 1.75 -> 2
        assert_eq!(round_div(7, 2), 4);
        assert_eq!(round_div(-7, 2), -3);
        assert_eq!(round_div(10, 4), 3);
        assert_eq!(round_div(9, 4), 2);
    }

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast_shape(&[1, 3, 4, 4], &[3, 1, 1]),
            Some(vec![1, 3, 4, 4])
        );
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        assert_eq!(broadcast_map(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_map(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
    }
}
