//! The elementwise family: the broadcasting binary ops Add, Sub, Mul, Max, Min and DivConst, and
//! the scale changes ScaleUp and Rescale that align operands (used by every other family through
//! [`Builder::to_scale`] and [`Builder::at_most`]). A binary op with a scalar constant under
//! `Max`/`Min` is a clamp (ReLU, Clip) and goes to [`super::activation`]; a division by a
//! constant is a multiplication by its reciprocal, and DivConst (exact rounded division) is what
//! average pooling divides its sums with.

use tract_onnx::tract_core::ops::binary::TypedBinOp;

use crate::builder::{Builder, FloatConst};
use crate::error::Result;
use crate::eval::{broadcast_map, rescale, round_div, IntTensor};
use crate::ir::{Bound, Node, NodeId, Op};
use crate::onnx::{Lowering, Value};
use crate::quant::scale_f;

// ---- import (tract's decluttered ops) ----

/// Imports a binary op (`Add`, `Sub`, `Mul`, `Div` by a constant, `Max`, `Min`); `None` for
/// other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let bin = model.node(id).op.downcast_ref::<TypedBinOp>()?;
    Some(l.binary(id, bin.0.name().as_ref()))
}

impl Lowering<'_> {
    pub(crate) fn binary(&mut self, id: usize, name: &str) -> Result<NodeId> {
        let (a, b) = (self.arg(id, 0), self.arg(id, 1));
        let scale = self.b.config.scale;
        let sw = self.b.config.weight_scale;
        match (name, a, b) {
            ("Add" | "Sub", Value::Node(x), Value::Const(c)) => {
                let s = self.b.node(x).scale;
                let c = self.b.constant(&c, s)?;
                self.b.add(x, c, name == "Sub")
            }
            ("Add" | "Sub", Value::Const(c), Value::Node(x)) => {
                let s = self.b.node(x).scale;
                let c = self.b.constant(&c, s)?;
                self.b.add(c, x, name == "Sub")
            }
            ("Add" | "Sub", Value::Node(x), Value::Node(y)) => self.b.add(x, y, name == "Sub"),
            ("Mul", Value::Node(x), Value::Const(c)) | ("Mul", Value::Const(c), Value::Node(x)) => {
                let x = self.b.at_most(x, scale)?;
                let c = self.b.constant(&c, sw)?;
                self.b.mul(x, c)
            }
            ("Mul", Value::Node(x), Value::Node(y)) => {
                let x = self.b.at_most(x, scale)?;
                let y = self.b.at_most(y, scale)?;
                self.b.mul(x, y)
            }
            ("Div", Value::Node(x), Value::Const(c)) => {
                if c.values.iter().any(|&v| v == 0.0 || !v.is_finite()) {
                    return Err(self.unsupported(id, ": division by zero"));
                }
                let recip = FloatConst {
                    shape: c.shape.clone(),
                    values: c.values.iter().map(|&v| 1.0 / v).collect(),
                };
                let x = self.b.at_most(x, scale)?;
                let c = self.b.constant(&recip, sw)?;
                self.b.mul(x, c)
            }
            ("Max" | "Min", Value::Node(x), Value::Const(c))
            | ("Max" | "Min", Value::Const(c), Value::Node(x)) => {
                let is_max = name == "Max";
                if let Some(v) = c.scalar() {
                    let v = v as f64;
                    return if is_max {
                        self.b.clamp(x, Some(v), None)
                    } else {
                        self.b.clamp(x, None, Some(v))
                    };
                }
                let s = self.b.node(x).scale;
                let c = self.b.constant(&c, s)?;
                self.b.max_min(x, c, is_max)
            }
            ("Max" | "Min", Value::Node(x), Value::Node(y)) => self.b.max_min(x, y, name == "Max"),
            _ => Err(self.unsupported(id, "")),
        }
    }
}

// ---- bound and error analysis ----

impl Builder {
    /// Brings `id` to exactly `scale` (rescale down, or scale up).
    pub fn to_scale(&mut self, id: NodeId, scale: u32) -> Result<NodeId> {
        let s = self.nodes[id].scale;
        match s.cmp(&scale) {
            std::cmp::Ordering::Equal => Ok(id),
            std::cmp::Ordering::Greater => self.rescale(id, s - scale),
            std::cmp::Ordering::Less => {
                let n = &self.nodes[id];
                let bits = scale - s;
                let bound = Bound::new(n.bound.lo << bits, n.bound.hi << bits);
                let (shape, error) = (n.shape.clone(), n.error);
                self.push(Op::ScaleUp { bits }, vec![id], shape, scale, bound, error)
            }
        }
    }

    /// Brings `id` down to at most `scale`.
    pub fn at_most(&mut self, id: NodeId, scale: u32) -> Result<NodeId> {
        if self.nodes[id].scale > scale {
            self.to_scale(id, scale)
        } else {
            Ok(id)
        }
    }

    pub fn rescale(&mut self, id: NodeId, bits: u32) -> Result<NodeId> {
        let n = &self.nodes[id];
        let half = 1i64 << (bits - 1);
        if n.bound.hi + half >= 1i64 << self.config.max_bits {
            return Err(self.error("rescale rounding offset overflows the value budget"));
        }
        let scale = n.scale - bits;
        let bound = Bound::new(rescale(n.bound.lo, bits), rescale(n.bound.hi, bits));
        let error = n.error + 0.5 / scale_f(scale);
        let shape = n.shape.clone();
        self.push(Op::Rescale { bits }, vec![id], shape, scale, bound, error)
    }

    /// Element-wise `a + b` (`negate_b`: `a - b`), aligning scales first.
    pub fn add(&mut self, a: NodeId, b: NodeId, negate_b: bool) -> Result<NodeId> {
        let scale = self.nodes[a].scale.max(self.nodes[b].scale);
        let a = self.to_scale(a, scale)?;
        let b = self.to_scale(b, scale)?;
        let shape = self.broadcast(a, b, if negate_b { "Sub" } else { "Add" })?;
        let (ba, bb) = (self.nodes[a].bound, self.nodes[b].bound);
        let (lo, hi) = if negate_b {
            (ba.lo as i128 - bb.hi as i128, ba.hi as i128 - bb.lo as i128)
        } else {
            (ba.lo as i128 + bb.lo as i128, ba.hi as i128 + bb.hi as i128)
        };
        let bound = self.checked_bound(lo, hi)?;
        let error = self.nodes[a].error + self.nodes[b].error;
        let op = if negate_b { Op::Sub } else { Op::Add };
        self.push(op, vec![a, b], shape, scale, bound, error)
    }

    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        let shape = self.broadcast(a, b, "Mul")?;
        let (ba, bb) = (self.nodes[a].bound, self.nodes[b].bound);
        let p = [
            ba.lo as i128 * bb.lo as i128,
            ba.lo as i128 * bb.hi as i128,
            ba.hi as i128 * bb.lo as i128,
            ba.hi as i128 * bb.hi as i128,
        ];
        let mut lo = *p.iter().min().unwrap();
        if a == b {
            // A square is never negative.
            lo = if ba.lo <= 0 && ba.hi >= 0 {
                0
            } else {
                p[0].min(p[3])
            };
        }
        let bound = self.checked_bound(lo, *p.iter().max().unwrap())?;
        let error =
            self.real_max(a) * self.nodes[b].error + self.quant_max(b) * self.nodes[a].error;
        let scale = self.nodes[a].scale + self.nodes[b].scale;
        self.push(Op::Mul, vec![a, b], shape, scale, bound, error)
    }

    /// `-x`, exactly: `0 - x`.
    pub fn neg(&mut self, x: NodeId) -> Result<NodeId> {
        let zero = FloatConst {
            shape: vec![1],
            values: vec![0.0],
        };
        let zero = self.constant(&zero, self.nodes[x].scale)?;
        self.add(zero, x, true)
    }

    /// Element-wise max (`is_max`) or min of two nodes, aligning scales.
    pub fn max_min(&mut self, a: NodeId, b: NodeId, is_max: bool) -> Result<NodeId> {
        let scale = self.nodes[a].scale.max(self.nodes[b].scale);
        let a = self.to_scale(a, scale)?;
        let b = self.to_scale(b, scale)?;
        let shape = self.broadcast(a, b, if is_max { "Max" } else { "Min" })?;
        let (ba, bb) = (self.nodes[a].bound, self.nodes[b].bound);
        let bound = if is_max {
            Bound::new(ba.lo.max(bb.lo), ba.hi.max(bb.hi))
        } else {
            Bound::new(ba.lo.min(bb.lo), ba.hi.min(bb.hi))
        };
        let error = self.nodes[a].error.max(self.nodes[b].error);
        let op = if is_max { Op::Max } else { Op::Min };
        self.push(op, vec![a, b], shape, scale, bound, error)
    }

    /// Divides by positive integer counts (`den` values with `den_shape`, broadcast).
    pub fn div_counts(
        &mut self,
        x: NodeId,
        den: Vec<i64>,
        den_shape: Vec<usize>,
    ) -> Result<NodeId> {
        let (dmin, dmax) = (
            *den.iter().min().expect("non-empty counts"),
            *den.iter().max().expect("non-empty counts"),
        );
        debug_assert!(dmin > 0);
        let d = self.push(
            Op::Const { values: den },
            vec![],
            den_shape,
            0,
            Bound::new(dmin, dmax),
            0.0,
        )?;
        let shape = self.broadcast(x, d, "Div")?;
        let n = &self.nodes[x];
        if (n.bound.abs_max() as i128) * 2 + dmax as i128 >= 1i128 << self.config.max_bits {
            return Err(self.error("division numerator overflows the value budget"));
        }
        let cands = [
            round_div(n.bound.lo, dmin),
            round_div(n.bound.lo, dmax),
            round_div(n.bound.hi, dmin),
            round_div(n.bound.hi, dmax),
        ];
        let bound = Bound::new(*cands.iter().min().unwrap(), *cands.iter().max().unwrap());
        let error = n.error / dmin as f64 + 0.5 / scale_f(n.scale);
        let scale = n.scale;
        self.push(Op::DivConst, vec![x, d], shape, scale, bound, error)
    }
}

// ---- reference evaluation ----

pub(crate) fn eval(node: &Node, inputs: &[&IntTensor]) -> Vec<i64> {
    let shape = &node.shape;
    match &node.op {
        Op::Add => binary(inputs[0], inputs[1], shape, |a, b| a + b),
        Op::Sub => binary(inputs[0], inputs[1], shape, |a, b| a - b),
        Op::Mul => binary(inputs[0], inputs[1], shape, |a, b| a * b),
        Op::Max => binary(inputs[0], inputs[1], shape, |a, b| a.max(b)),
        Op::Min => binary(inputs[0], inputs[1], shape, |a, b| a.min(b)),
        Op::DivConst => binary(inputs[0], inputs[1], shape, round_div),
        Op::ScaleUp { bits } => inputs[0].data.iter().map(|&v| v << bits).collect(),
        Op::Rescale { bits } => inputs[0].data.iter().map(|&v| rescale(v, *bits)).collect(),
        _ => unreachable!("{} is not an elementwise op", node.op.name()),
    }
}

fn binary(a: &IntTensor, b: &IntTensor, shape: &[usize], f: impl Fn(i64, i64) -> i64) -> Vec<i64> {
    let ma = broadcast_map(shape, &a.shape);
    let mb = broadcast_map(shape, &b.shape);
    ma.iter()
        .zip(&mb)
        .map(|(&i, &j)| f(a.data[i], b.data[j]))
        .collect()
}
