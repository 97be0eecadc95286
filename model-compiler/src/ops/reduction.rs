//! The reduction family: ReduceSum and ReduceMax over a set of axes (kept with size 1).

use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};

use crate::builder::Builder;
use crate::error::Result;
use crate::eval::{reduce_map, IntTensor};
use crate::ir::{Node, NodeId, Op};
use crate::onnx::Lowering;

// ---- import (tract's decluttered ops) ----

/// Imports a `Reduce` with the `Sum` or `Max` reducer; `None` for other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let r = model.node(id).op.downcast_ref::<Reduce>()?;
    Some(reduce(l, id, r))
}

fn reduce(l: &mut Lowering, id: usize, r: &Reduce) -> Result<NodeId> {
    let is_max = match r.reducer {
        Reducer::Sum => false,
        Reducer::Max => true,
        _ => return Err(l.unsupported(id, &format!(": reducer {:?} is not supported", r.reducer))),
    };
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    l.b.reduce(x, r.axes.to_vec(), is_max)
}

// ---- bound and error analysis ----

impl Builder {
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
