//! The softmax family: Softmax along one axis, with its exp table and the normalising division
//! (the semantics are on [`Op::Softmax`]).

use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

use crate::builder::Builder;
use crate::error::Result;
use crate::eval::{reduce_map, round_div, IntTensor};
use crate::ir::{Bound, Node, NodeId, Op};
use crate::onnx::Lowering;
use crate::quant::{quantize, scale_f};

// ---- import (tract's decluttered ops) ----

/// Imports a float `Softmax` over one axis; `None` for other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let s = model.node(id).op.downcast_ref::<Softmax>()?;
    Some(softmax(l, id, s))
}

fn softmax(l: &mut Lowering, id: usize, s: &Softmax) -> Result<NodeId> {
    if s.kind != SoftmaxKind::Softmax || s.axes.len() != 1 || s.quant_output_dt.is_some() {
        return Err(l.unsupported(id, ": only float softmax over one axis is supported"));
    }
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    l.b.softmax(x, s.axes[0])
}

// ---- bound and error analysis ----

impl Builder {
    pub fn softmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        let out_scale = self.config.scale;
        let mut x = self.at_most(x, self.config.scale)?;
        let n_axis = self.nodes[x].shape[axis] as f64;
        // The division `e·2^scale / s` stays within 30 bits, so every proof system's field
        // (M31 included) holds it.
        let exp_bits = 16.min(
            self.config
                .max_bits
                .min(30)
                .saturating_sub(out_scale + 2 + n_axis.log2().ceil() as u32),
        );
        if exp_bits < 4 {
            return Err(self.error("softmax: not enough value budget for its exp table"));
        }
        loop {
            let n = &self.nodes[x];
            let s = n.scale;
            // Below in_lo, exp(d) * 2^exp_bits < 0.5 rounds to 0 anyway.
            let cutoff = ((0.5 / scale_f(exp_bits)).ln() * scale_f(s)).floor() as i64;
            let in_lo = cutoff.max(n.bound.lo - n.bound.hi);
            let len = (-in_lo + 1) as u64;
            if len > 1u64 << self.config.table_bits {
                x = self.rescale(x, 1)?;
                continue;
            }
            let table: Vec<i64> = (in_lo..=0)
                .map(|d| quantize((d as f64 / scale_f(s)).exp(), exp_bits))
                .collect();
            let error =
                n.error / 2.0 + (n_axis + 1.0) / scale_f(exp_bits + 1) + 0.5 / scale_f(out_scale);
            let shape = n.shape.clone();
            let bound = Bound::new(0, 1i64 << out_scale);
            let op = Op::Softmax {
                axis,
                in_lo,
                exp_bits,
                table,
            };
            return self.push(op, vec![x], shape, out_scale, bound, error);
        }
    }
}

// ---- reference evaluation ----

pub(crate) fn eval(node: &Node, inputs: &[&IntTensor]) -> Vec<i64> {
    let Op::Softmax {
        axis, in_lo, table, ..
    } = &node.op
    else {
        unreachable!("{} is not a softmax", node.op.name())
    };
    let x = inputs[0];
    let (_, map) = reduce_map(&x.shape, &[*axis]);
    let groups = x.data.len() / x.shape[*axis];
    let mut max = vec![i64::MIN; groups];
    for (i, &g) in map.iter().enumerate() {
        max[g] = max[g].max(x.data[i]);
    }
    let e: Vec<i64> = map
        .iter()
        .enumerate()
        .map(|(i, &g)| table[((x.data[i] - max[g]).max(*in_lo) - in_lo) as usize])
        .collect();
    let mut sum = vec![0i64; groups];
    for (i, &g) in map.iter().enumerate() {
        sum[g] += e[i];
    }
    let one = 1i64 << node.scale;
    map.iter()
        .enumerate()
        .map(|(i, &g)| round_div(e[i] * one, sum[g]))
        .collect()
}
