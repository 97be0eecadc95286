//! The reduction family: ReduceSum and ReduceMax over a set of axes (kept with size 1), and what
//! is built from them: ReduceMin, the mean of squares (variance, InstanceNorm), RmsNorm
//! (LayerNorm after its mean is subtracted) and ArgMax.

use tract_onnx::tract_core::ops::array::Topk;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

use crate::builder::{Builder, FloatConst};
use crate::error::Result;
use crate::eval::{reduce_map, IntTensor};
use crate::ir::{Node, NodeId, Op};
use crate::onnx::{Lowering, Value};
use crate::ops::elementwise::Comparison;

// ---- import (tract's decluttered ops) ----

/// Imports a `Reduce` (Sum, Max, Min, MeanOfSquares) and tract's `RmsNorm` (what a LayerNorm
/// becomes after its mean is subtracted); `None` for other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let op = &model.node(id).op;
    if let Some(rms) = op.downcast_ref::<RmsNorm>() {
        return Some(rms_norm(l, id, rms));
    }
    let r = op.downcast_ref::<Reduce>()?;
    Some(reduce(l, id, r))
}

fn reduce(l: &mut Lowering, id: usize, r: &Reduce) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let axes = r.axes.to_vec();
    match r.reducer {
        Reducer::Sum => l.b.reduce(x, axes, false),
        Reducer::Max => l.b.reduce(x, axes, true),
        // min x = -max(-x)
        Reducer::Min => {
            let neg = l.b.neg(x)?;
            let m = l.b.reduce(neg, axes, true)?;
            l.b.neg(m)
        }
        Reducer::MeanOfSquares => l.b.mean_of_squares(x, axes),
        Reducer::ArgMax(false) if axes.len() == 1 => l.b.argmax(x, axes[0]),
        _ => Err(l.unsupported(id, &format!(": reducer {:?} is not supported", r.reducer))),
    }
}

fn rms_norm(l: &mut Lowering, id: usize, rms: &RmsNorm) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let eps = rms
        .eps
        .cast_to_scalar::<f32>()
        .map_err(|e| l.unsupported(id, &format!(": epsilon {e}")))?;
    l.b.rms_norm(x, rms.axis, eps as f64)
}

/// ONNX TopK (largest first) with a constant `k`: its values and indices outputs.
pub(crate) fn top_k(l: &mut Lowering, id: usize, t: &Topk) -> Result<(NodeId, NodeId)> {
    if !t.largest {
        return Err(l.unsupported(id, ": only largest = 1 is supported"));
    }
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let n = l.b.node(x).shape[t.axis];
    let k = match l.arg(id, 1) {
        Value::Const(c) => c.values.first().map(|&v| v as usize),
        Value::Node(_) => None,
    };
    match k {
        Some(k) if (1..=n).contains(&k) => l.b.top_k(x, t.axis, k),
        _ => Err(l.unsupported(id, &format!(": k must be a constant in 1..={n}"))),
    }
}

// ---- bound and error analysis ----

impl Builder {
    /// The first position of the largest value along `axis` (ONNX ArgMax; the axis kept with
    /// size 1), exactly: the index `Σ i·first_i` of [`Self::first_max`]'s one-hot. An input that
    /// carries error can move it to another near-maximal position (proven error `n − 1`).
    pub fn argmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        let x = self.at_most(x, self.config.scale)?;
        let mut kept = self.nodes[x].shape.clone();
        let n = kept[axis];
        kept[axis] = 1;
        let (rows, moved) = self.axis_last_2d(x, axis)?;
        let (_, first) = self.first_max(moved, rows, n)?;
        let index = self.index_of(first, n)?;
        self.wiring(Op::Reshape, index, kept)
    }

    /// ONNX TopK with a constant `k` (largest first, ties to the lower index): `k` rounds of
    /// [`Self::first_max`], each taking its maximum and index and then lowering the chosen
    /// entry below every other (`x − first·(x − lo)`, `lo` under the proven bound). Values and
    /// indices, each with the axis of length `k` where `axis` was.
    pub fn top_k(&mut self, x: NodeId, axis: usize, k: usize) -> Result<(NodeId, NodeId)> {
        let x = self.at_most(x, self.config.scale)?;
        let shape = self.nodes[x].shape.clone();
        let n = shape[axis];
        let (rows, mut moved) = self.axis_last_2d(x, axis)?;
        let (mut values, mut indices) = (Vec::new(), Vec::new());
        for j in 0..k {
            let (max, first) = self.first_max(moved, rows, n)?;
            values.push(max);
            indices.push(self.index_of(first, n)?);
            if j + 1 < k {
                let s = self.nodes[moved].scale;
                let lo = self.nodes[moved].bound.lo - 1;
                let floor = self.scalar(lo as f32 / crate::quant::scale_f(s) as f32, s)?;
                let lift = self.add(moved, floor, true)?;
                let drop = self.mul(first, lift)?;
                let drop = self.at_most(drop, s)?;
                moved = self.add(moved, drop, true)?;
            }
        }
        let values = self.concat(values, 1)?; // [rows, k]
        let indices = self.concat(indices, 1)?;
        let mut out_shape = shape;
        out_shape[axis] = k;
        Ok((
            self.axis_back(values, &out_shape, axis)?,
            self.axis_back(indices, &out_shape, axis)?,
        ))
    }

    /// `x` with `axis` moved last and the others flattened: `[rows, n]`.
    fn axis_last_2d(&mut self, x: NodeId, axis: usize) -> Result<(usize, NodeId)> {
        let n = self.nodes[x].shape[axis];
        let (rows, moved) = self.axis_last(x, axis)?;
        Ok((rows, self.wiring(Op::Reshape, moved, vec![rows, n])?))
    }

    /// The maximum of each row of `x` `[rows, n]` and the one-hot of its first position:
    /// `eq = [x ≥ max]`, `seen = min(Σ_{j<i} eq_j, 1)` by a MAC with a constant triangle,
    /// `first = eq − eq·seen`. Exact on exact inputs.
    fn first_max(&mut self, x: NodeId, rows: usize, n: usize) -> Result<(NodeId, NodeId)> {
        let max = self.reduce(x, vec![1], true)?;
        let eq = self.compare(x, max, Comparison::Ge)?;
        let before = FloatConst {
            shape: vec![n, n],
            values: (0..n * n)
                .map(|k| f32::from(u8::from(k / n < k % n)))
                .collect(),
        };
        let before = self.constant(&before, 0)?;
        let before = self.matmul(eq, before)?;
        let seen = self.clamp(before, Some(0.0), Some(1.0))?;
        let both = self.mul(eq, seen)?;
        let both = self.at_most(both, self.nodes[eq].scale)?;
        let first = self.add(eq, both, true)?;
        debug_assert_eq!(self.nodes[first].shape, vec![rows, n]);
        Ok((max, first))
    }

    /// `Σ i·first_i` per row of a one-hot `[rows, n]`: `[rows, 1]`, with proven error `n − 1`
    /// where the one-hot carries error.
    fn index_of(&mut self, first: NodeId, n: usize) -> Result<NodeId> {
        let iota = FloatConst {
            shape: vec![n, 1],
            values: (0..n).map(|i| i as f32).collect(),
        };
        let iota = self.constant(&iota, 0)?;
        let out = self.matmul(first, iota)?;
        self.nodes[out].error = if self.nodes[first].error > 0.0 {
            (n - 1) as f64
        } else {
            0.0
        };
        Ok(out)
    }

    pub fn reduce(&mut self, x: NodeId, axes: Vec<usize>, is_max: bool) -> Result<NodeId> {
        // A sum multiplies magnitudes by its count: sum at the activation scale, not at a
        // product's scale, so that the field budget holds it.
        let x = if is_max {
            x
        } else {
            self.at_most(x, self.config.scale)?
        };
        let n = &self.nodes[x];
        let count: usize = axes.iter().map(|&a| n.shape[a]).product();
        let shape: Vec<usize> = n
            .shape
            .iter()
            .enumerate()
            .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
            .collect();
        let scale = n.scale;
        if is_max {
            let (bound, error) = (n.bound, n.error);
            return self.push(Op::ReduceMax { axes }, vec![x], shape, scale, bound, error);
        }
        let c = count as i128;
        let bound = self.checked_bound(
            c * (n.bound.lo as i128).min(0),
            c * (n.bound.hi as i128).max(0),
        )?;
        let error = n.error * count as f64;
        self.push(Op::ReduceSum { axes }, vec![x], shape, scale, bound, error)
    }
}

impl Builder {
    /// `mean(x², axes)`: the squares summed (MAC rows) and divided by the count (a rounded,
    /// range-checked division, so the mean takes a calibrated range).
    pub fn mean_of_squares(&mut self, x: NodeId, axes: Vec<usize>) -> Result<NodeId> {
        let x = self.at_most(x, self.config.scale)?;
        let count: usize = axes.iter().map(|&a| self.nodes[x].shape[a]).product();
        let sq = self.mul(x, x)?;
        let sum = self.reduce(sq, axes, false)?;
        self.div_counts(sum, vec![count.max(1) as i64], vec![1])
    }

    /// `x / √(mean(x², axis) + eps)`: the mean of squares, `1/√` by table, a product, and a
    /// rescale to the activation scale.
    pub fn rms_norm(&mut self, x: NodeId, axis: usize, eps: f64) -> Result<NodeId> {
        let x = self.at_most(x, self.config.scale)?;
        let ms = self.mean_of_squares(x, vec![axis])?;
        let eps = self.scalar(eps as f32, self.nodes[ms].scale)?;
        let v = self.add(ms, eps, false)?;
        let r = self.lookup(v, crate::ir::Func::Rsqrt)?;
        let y = self.mul(x, r)?;
        // The product's worst case (largest x times the 1/√ of the smallest mean) is far above
        // what a normalised value reaches; a rescale's calibrated range bounds what follows.
        self.at_most(y, self.config.scale)
    }
}

// ---- reference evaluation ----

pub(crate) fn eval(node: &Node, inputs: &[&IntTensor]) -> Vec<i64> {
    let (Op::ReduceSum { axes } | Op::ReduceMax { axes }) = &node.op else {
        unreachable!("{} is not a reduction", node.op.name())
    };
    let x = inputs[0];
    let (_, map) = reduce_map(&x.shape, axes);
    let is_max = matches!(node.op, Op::ReduceMax { .. });
    let mut out = vec![if is_max { i64::MIN } else { 0 }; node.len()];
    for (i, &o) in map.iter().enumerate() {
        out[o] = if is_max {
            out[o].max(x.data[i])
        } else {
            out[o] + x.data[i]
        };
    }
    out
}
