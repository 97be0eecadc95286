//! The wiring family: Input and Const, and the pure data movement ops Reshape (Flatten, Squeeze,
//! Unsqueeze, Reshape), Transpose, Slice, Concat, Pad and Gather (Expand and Tile are a Gather per
//! axis that grows; Trilu multiplies by its constant 0/1 mask). They keep their input's scale,
//! bound and error (a Pad adds its value to the bound; a Concat aligns its parts' scales), and
//! cost wiring only in a circuit. Inputs and constants are imported by the walk over the model
//! ([`crate::onnx::lower`]); the reshape helpers here also serve the linear family's einsum
//! normalisation.

use tract_onnx::prelude::tract_data::internal::DimLike;
use tract_onnx::tract_core::ops::array::{
    Gather, MultiBroadcastTo, Pad, PadMode, Slice, Tile, Trilu, TypedConcat,
};
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::identity::Identity;
use tract_onnx::tract_core::ops::nn::NearestUpsample;

use crate::builder::{Builder, FloatConst};
use crate::error::Result;
use crate::eval::{increment, permute, strides, IntTensor};
use crate::ir::{Bound, Node, NodeId, Op};
use crate::onnx::{tensor_to_const, tensor_to_indices, tract_err, Lowering};
use crate::quant::{quantize, scale_f};

/// The quantized stand-in for an infinite (mask) constant: far outside any calibrated
/// activation, well inside every field budget.
pub const MASK_SENTINEL: i64 = 1 << 24;

// ---- import (tract's decluttered ops) ----

/// Imports a data-movement op (`Identity`; `AxisOp`: reshapes and axis moves; `Slice`; `Downsample`: a
/// strided slice; `TypedConcat`; constant `Pad`; `Gather` with constant indices); `None` for
/// other ops. Inputs and constants are imported by the walk itself ([`crate::onnx::lower`]).
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let op = &model.node(id).op;
    if op.downcast_ref::<Identity>().is_some() {
        return Some(l.arg_node(id, 0, l.b.config.scale));
    }
    if let Some(a) = op.downcast_ref::<AxisOp>() {
        return Some(axis_op(l, id, a));
    }
    if let Some(s) = op.downcast_ref::<Slice>() {
        return Some(slice(l, id, s));
    }
    if let Some(d) = op.downcast_ref::<Downsample>() {
        return Some(downsample(l, id, d));
    }
    if let Some(c) = op.downcast_ref::<TypedConcat>() {
        return Some(concat(l, id, c));
    }
    if let Some(p) = op.downcast_ref::<Pad>() {
        return Some(pad(l, id, p));
    }
    if let Some(g) = op.downcast_ref::<Gather>() {
        return Some(gather(l, id, g));
    }
    if op.downcast_ref::<MultiBroadcastTo>().is_some() || op.downcast_ref::<Tile>().is_some() {
        return Some(repeat(l, id));
    }
    if let Some(t) = op.downcast_ref::<Trilu>() {
        return Some(trilu(l, id, t));
    }
    if let Some(u) = op.downcast_ref::<NearestUpsample>() {
        return Some(upsample(l, id, &u.scales));
    }
    None
}

/// ONNX Resize, nearest, by integer factors (what tract's `NearestUpsample` is): along each
/// axis scaled by `f`, output position `i` reads input position `i / f`.
fn upsample(l: &mut Lowering, id: usize, scales: &[usize]) -> Result<NodeId> {
    let mut x = l.arg_node(id, 0, l.b.config.scale)?;
    let mut shape = l.b.node(x).shape.clone();
    if scales.len() != shape.len() {
        return Err(l.unsupported(id, ": one scale per axis expected"));
    }
    for (axis, &f) in scales.iter().enumerate() {
        if f <= 1 {
            continue;
        }
        shape[axis] *= f;
        let indices = (0..shape[axis]).map(|i| i / f).collect();
        x = l.b.wiring(Op::Gather { axis, indices }, x, shape.clone())?;
    }
    Ok(x)
}

/// ONNX Expand (tract's `MultiBroadcastTo`) and Tile: along each axis that grows from `n` to
/// `m` (a multiple of `n`), output position `i` reads input position `i mod n`.
fn repeat(l: &mut Lowering, id: usize) -> Result<NodeId> {
    let mut x = l.arg_node(id, 0, l.b.config.scale)?;
    let out = l.out_shape(id);
    let mut shape = l.b.node(x).shape.clone();
    if shape.len() < out.len() {
        shape.splice(0..0, std::iter::repeat_n(1, out.len() - shape.len()));
        x = l.b.wiring(Op::Reshape, x, shape.clone())?;
    }
    if shape.len() != out.len() {
        return Err(l.unsupported(id, &format!(": cannot repeat {shape:?} to {out:?}")));
    }
    for (axis, &m) in out.iter().enumerate() {
        let n = shape[axis];
        if n == m {
            continue;
        }
        if n == 0 || m % n != 0 {
            return Err(l.unsupported(id, &format!(": cannot repeat {shape:?} to {out:?}")));
        }
        shape[axis] = m;
        let indices = (0..m).map(|i| i % n).collect();
        x = l.b.wiring(Op::Gather { axis, indices }, x, shape.clone())?;
    }
    Ok(x)
}

/// The integer values of input `slot` of node `id`, which must be a constant (`what` names it
/// in the refusal).
fn const_indices(l: &Lowering, id: usize, slot: usize, what: &str) -> Result<Vec<i64>> {
    let outlet = l.model.node(id).inputs[slot];
    let fact = l
        .model
        .outlet_fact(outlet)
        .map_err(|e| l.unsupported(id, &tract_err(e)))?;
    let Some(k) = &fact.konst else {
        return Err(l.unsupported(id, &format!(": {what} must be constant")));
    };
    tensor_to_indices(k).map_err(|e| l.unsupported(id, &format!(": {e}")))
}

/// ONNX Trilu with a constant `k`: the input times its constant 0/1 triangle.
fn trilu(l: &mut Lowering, id: usize, t: &Trilu) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let k = match l.model.node(id).inputs.len() {
        1 => 0,
        _ => const_indices(l, id, 1, "the diagonal offset k")?
            .first()
            .copied()
            .unwrap_or(0),
    };
    let shape = l.b.node(x).shape.clone();
    let (rows, cols) = match shape.as_slice() {
        [.., r, c] => (*r, *c),
        _ => return Err(l.unsupported(id, ": Trilu needs a matrix")),
    };
    let values = (0..rows * cols)
        .map(|i| {
            let (r, c) = ((i / cols) as i64, (i % cols) as i64);
            let kept = if t.upper { c >= r + k } else { c <= r + k };
            if kept {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let mask = FloatConst {
        shape: vec![rows, cols],
        values,
    };
    let mask = l.b.constant(&mask, 0)?;
    l.b.mul(x, mask)
}

fn axis_op(l: &mut Lowering, id: usize, a: &AxisOp) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let shape = l.out_shape(id);
    match a {
        AxisOp::Move(from, to) => {
            let mut perm: Vec<usize> = (0..shape.len()).collect();
            let axis = perm.remove(*from);
            perm.insert(*to, axis);
            l.b.wiring(Op::Transpose { perm }, x, shape)
        }
        _ => l.b.wiring(Op::Reshape, x, shape),
    }
}

fn slice(l: &mut Lowering, id: usize, s: &Slice) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let (start, end) = match (s.start.as_usize(), s.end.as_usize()) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(l.unsupported(id, ": symbolic slice bounds")),
    };
    let op = Op::Slice {
        axis: s.axis,
        start,
        end,
        step: 1,
    };
    l.b.wiring(op, x, l.out_shape(id))
}

fn downsample(l: &mut Lowering, id: usize, d: &Downsample) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    if d.stride <= 0 {
        return Err(l.unsupported(id, ": negative slice steps are not supported"));
    }
    let n_in = l.b.node(x).shape[d.axis];
    let op = Op::Slice {
        axis: d.axis,
        start: d.modulo,
        end: n_in,
        step: d.stride as usize,
    };
    l.b.wiring(op, x, l.out_shape(id))
}

fn concat(l: &mut Lowering, id: usize, c: &TypedConcat) -> Result<NodeId> {
    let scale = l.b.config.scale;
    let parts = (0..l.model.node(id).inputs.len())
        .map(|i| l.arg_node(id, i, scale))
        .collect::<Result<Vec<_>>>()?;
    l.b.concat(parts, c.axis)
}

fn pad(l: &mut Lowering, id: usize, p: &Pad) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let PadMode::Constant(v) = &p.mode else {
        return Err(l.unsupported(id, ": only constant padding is supported"));
    };
    let v = tensor_to_const(v).map_err(|e| l.unsupported(id, &format!(": pad value {e}")))?;
    let value = quantize(v.values[0] as f64, l.b.node(x).scale);
    let op = Op::Pad {
        before: p.pads.iter().map(|p| p.0).collect(),
        after: p.pads.iter().map(|p| p.1).collect(),
        value,
    };
    l.b.wiring(op, x, l.out_shape(id))
}

fn gather(l: &mut Lowering, id: usize, g: &Gather) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let idx_outlet = l.model.node(id).inputs[1];
    let rank = l
        .model
        .outlet_fact(idx_outlet)
        .map_err(|e| l.unsupported(id, &tract_err(e)))?
        .rank();
    let n = l.b.node(x).shape[g.axis] as i64;
    let raw = const_indices(l, id, 1, "gather indices")?;
    let mut indices = Vec::with_capacity(raw.len());
    for i in raw {
        let i = if i < 0 { i + n } else { i };
        if !(0..n).contains(&i) {
            return Err(l.unsupported(id, &format!(": gather index {i} out of range 0..{n}")));
        }
        indices.push(i as usize);
    }
    if rank > 1 {
        return Err(l.unsupported(id, ": gather indices must be a scalar or a vector"));
    }
    let x_rank = l.b.node(x).shape.len();
    let mut shape = l.b.node(x).shape.clone();
    shape[g.axis] = indices.len();
    let gathered = l.b.wiring(
        Op::Gather {
            axis: g.axis,
            indices,
        },
        x,
        shape.clone(),
    )?;
    let out = l.out_shape(id);
    if out.len() != x_rank || out != shape {
        l.b.wiring(Op::Reshape, gathered, out)
    } else {
        Ok(gathered)
    }
}

impl Lowering<'_> {
    pub(crate) fn reshape_if(&mut self, x: NodeId, shape: Vec<usize>) -> Result<NodeId> {
        let n = self.b.node(x);
        if n.shape == shape {
            return Ok(x);
        }
        // Reshape of a reshape reads the original data directly.
        let src = if n.op == Op::Reshape { n.inputs[0] } else { x };
        if self.b.node(src).shape == shape {
            return Ok(src);
        }
        self.b.wiring(Op::Reshape, src, shape)
    }

    pub(crate) fn permute_reshape(
        &mut self,
        x: NodeId,
        perm: &[usize],
        shape: Vec<usize>,
    ) -> Result<NodeId> {
        let s = &self.b.node(x).shape;
        // Moving only size-1 axes leaves the data order unchanged: a reshape is enough.
        let moved: Vec<usize> = perm.iter().copied().filter(|&p| s[p] != 1).collect();
        let x = if moved.windows(2).any(|w| w[0] > w[1]) {
            let s = &self.b.node(x).shape;
            let tshape = perm.iter().map(|&p| s[p]).collect();
            self.b.wiring(
                Op::Transpose {
                    perm: perm.to_vec(),
                },
                x,
                tshape,
            )?
        } else {
            x
        };
        self.reshape_if(x, shape)
    }
}

// ---- bound and error analysis ----

impl Builder {
    pub fn input(&mut self, index: usize, shape: Vec<usize>, range: [f64; 2]) -> Result<NodeId> {
        let s = self.config.scale;
        let bound = Bound::new(quantize(range[0], s), quantize(range[1], s));
        self.push(
            Op::Input { index },
            vec![],
            shape,
            s,
            bound,
            0.5 / scale_f(s),
        )
    }

    /// Marks a node exact (no quantization error): an integer input.
    pub fn exact(&mut self, x: NodeId) {
        self.nodes[x].error = 0.0;
    }

    /// A quantized constant at `scale`; its error is the actual largest quantization error.
    /// Infinities and float-minimum-like sentinels (|v| ≥ 1e30, what attention masks fill with)
    /// stand for ±∞: they become ±[`MASK_SENTINEL`] with no error, a value no calibrated
    /// activation comes near, which a softmax's exp turns into exactly 0 as it does -∞.
    pub fn constant(&mut self, c: &FloatConst, scale: u32) -> Result<NodeId> {
        let sentinel = |v: f32| v.is_infinite() || v.abs() >= 1e30;
        let values: Vec<i64> = c
            .values
            .iter()
            .map(|&v| match sentinel(v) {
                true => MASK_SENTINEL * v.signum() as i64,
                false => quantize(v as f64, scale),
            })
            .collect();
        let error = c
            .values
            .iter()
            .zip(&values)
            .filter(|(&v, _)| !sentinel(v))
            .map(|(&v, &q)| (v as f64 - q as f64 / scale_f(scale)).abs())
            .fold(0.0, f64::max);
        let lo = values.iter().copied().min().unwrap_or(0);
        let hi = values.iter().copied().max().unwrap_or(0);
        self.push(
            Op::Const { values },
            vec![],
            c.shape.clone(),
            scale,
            Bound::new(lo, hi),
            error,
        )
    }

    /// An NCHW tensor with `strides[a] - 1` zeros between neighbours along H and W (what a
    /// transposed convolution convolves): per axis, a unit axis after it padded with zeros to
    /// the stride, merged back, and the trailing zeros sliced off.
    pub fn insert_zeros(&mut self, x: NodeId, strides: [usize; 2]) -> Result<NodeId> {
        let mut x = x;
        for (a, s) in [(2usize, strides[0]), (3, strides[1])] {
            if s <= 1 {
                continue;
            }
            let mut shape = self.nodes[x].shape.clone();
            let n = shape[a];
            shape.insert(a + 1, 1);
            x = self.wiring(Op::Reshape, x, shape.clone())?;
            let (mut before, mut after) = (vec![0; shape.len()], vec![0; shape.len()]);
            (before[a + 1], after[a + 1]) = (0, s - 1);
            shape[a + 1] = s;
            let pad = Op::Pad {
                before,
                after,
                value: 0,
            };
            x = self.wiring(pad, x, shape.clone())?;
            shape.remove(a + 1);
            shape[a] = n * s;
            x = self.wiring(Op::Reshape, x, shape.clone())?;
            shape[a] = (n - 1) * s + 1;
            let slice = Op::Slice {
                axis: a,
                start: 0,
                end: shape[a],
                step: 1,
            };
            x = self.wiring(slice, x, shape)?;
        }
        Ok(x)
    }

    /// A data-movement op: same scale, bound and error as its (single) input.
    pub fn wiring(&mut self, op: Op, x: NodeId, shape: Vec<usize>) -> Result<NodeId> {
        let n = &self.nodes[x];
        let (scale, bound, error) = (n.scale, n.bound, n.error);
        let mut bound = bound;
        if let Op::Pad { value, .. } = &op {
            bound = bound.union(&Bound::point(*value));
        }
        self.push(op, vec![x], shape, scale, bound, error)
    }

    pub fn concat(&mut self, parts: Vec<NodeId>, axis: usize) -> Result<NodeId> {
        let scale = parts
            .iter()
            .map(|&p| self.nodes[p].scale)
            .max()
            .unwrap_or(0);
        let parts = parts
            .into_iter()
            .map(|p| self.to_scale(p, scale))
            .collect::<Result<Vec<_>>>()?;
        let first = &self.nodes[parts[0]];
        let mut shape = first.shape.clone();
        shape[axis] = parts.iter().map(|&p| self.nodes[p].shape[axis]).sum();
        let bound = parts
            .iter()
            .map(|&p| self.nodes[p].bound)
            .reduce(|a, b| a.union(&b))
            .unwrap();
        let error = parts
            .iter()
            .map(|&p| self.nodes[p].error)
            .fold(0.0, f64::max);
        self.push(Op::Concat { axis }, parts, shape, scale, bound, error)
    }
}

// ---- reference evaluation ----

pub(crate) fn eval(node: &Node, inputs: &[&IntTensor]) -> Vec<i64> {
    let shape = &node.shape;
    match &node.op {
        Op::Input { .. } => unreachable!("inputs are fed, not evaluated"),
        Op::Const { values } => values.clone(),
        Op::Reshape => inputs[0].data.clone(),
        Op::Transpose { perm } => permute(&inputs[0].data, &inputs[0].shape, perm),
        Op::Slice {
            axis, start, step, ..
        } => gather_axis(inputs[0], *axis, shape, |i| start + i * step),
        Op::Gather { axis, indices } => gather_axis(inputs[0], *axis, shape, |i| indices[i]),
        Op::Concat { axis } => {
            let outer: usize = shape[..*axis].iter().product();
            let mut out = Vec::with_capacity(node.len());
            for o in 0..outer {
                for t in inputs {
                    let chunk: usize = t.shape[*axis..].iter().product();
                    out.extend_from_slice(&t.data[o * chunk..(o + 1) * chunk]);
                }
            }
            out
        }
        Op::Pad { before, value, .. } => {
            let x = inputs[0];
            let in_strides = strides(&x.shape);
            let mut out = Vec::with_capacity(node.len());
            let mut idx = vec![0usize; shape.len()];
            for _ in 0..node.len() {
                let mut flat = 0;
                let mut inside = true;
                for d in 0..shape.len() {
                    let i = idx[d] as isize - before[d] as isize;
                    if i < 0 || i >= x.shape[d] as isize {
                        inside = false;
                        break;
                    }
                    flat += i as usize * in_strides[d];
                }
                out.push(if inside { x.data[flat] } else { *value });
                increment(&mut idx, shape);
            }
            out
        }
        _ => unreachable!("{} is not a wiring op", node.op.name()),
    }
}

/// Output element at position `i` along `axis` is input element `source(i)` along `axis`.
fn gather_axis(
    x: &IntTensor,
    axis: usize,
    shape: &[usize],
    source: impl Fn(usize) -> usize,
) -> Vec<i64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let (n_out, n_in) = (shape[axis], x.shape[axis]);
    let mut out = Vec::with_capacity(outer * n_out * inner);
    for o in 0..outer {
        for i in 0..n_out {
            let s = source(i);
            let base = (o * n_in + s) * inner;
            out.extend_from_slice(&x.data[base..base + inner]);
        }
    }
    out
}
