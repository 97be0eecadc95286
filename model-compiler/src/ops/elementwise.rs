//! The elementwise family: the broadcasting binary ops Add, Sub, Mul, Max, Min and DivConst, and
//! the scale changes ScaleUp and Rescale that align operands (used by every other family through
//! [`Builder::to_scale`] and [`Builder::at_most`]). A binary op with a scalar constant under
//! `Max`/`Min` is a clamp (ReLU, Clip) and goes to [`super::activation`]; a division by a
//! constant is a multiplication by its reciprocal, and DivConst (exact rounded division) is what
//! average pooling divides its sums with.

use tract_onnx::prelude::{DatumType, OutletId};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::Iff;

use crate::builder::{Builder, FloatConst};
use crate::error::Result;
use crate::eval::{broadcast_map, rescale, round_div, IntTensor};
use crate::ir::{Bound, Func, Node, NodeId, Op};
use crate::onnx::{Lowering, Value};
use crate::quant::{quantize, scale_f};

/// The most bits [`Builder::mul_const`] adds to a small constant's scale.
const MAX_EXTRA_BITS: u32 = 16;

// ---- import (tract's decluttered ops) ----

/// Imports a binary op (`Add`, `Sub`, `Mul`, `Div` by a constant, `Max`, `Min`); `None` for
/// other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let op = &model.node(id).op;
    if op.downcast_ref::<Iff>().is_some() {
        return Some(l.where_(id));
    }
    if let Some(cast) = op.downcast_ref::<Cast>() {
        return Some(l.cast(id, cast.to));
    }
    let bin = op.downcast_ref::<TypedBinOp>()?;
    Some(l.binary(id, bin.0.name().as_ref()))
}

impl Lowering<'_> {
    /// ONNX `Where` (tract's `Iff`): `cond ? x : y`, the condition a comparison's 0/1 or a
    /// constant (an attention mask).
    fn where_(&mut self, id: usize) -> Result<NodeId> {
        let c = match self.arg(id, 0) {
            Value::Node(c) => c,
            Value::Const(c) => self.b.constant(&c, 0)?,
        };
        let s = self.b.config.scale;
        // A constant branch (a mask's -inf) takes the other's scale, brought to the activation
        // scale first: rescaling the mask sentinel later would shrink it to a real number.
        let constant_beside = |l: &mut Self, c: FloatConst, n: NodeId| -> Result<_> {
            let n = l.b.at_most(n, s)?;
            let sn = l.b.node(n).scale;
            Ok((l.b.constant(&c, sn)?, n))
        };
        let (x, y) = match (self.arg(id, 1), self.arg(id, 2)) {
            (Value::Const(cx), Value::Node(ny)) => constant_beside(self, cx, ny)?,
            (Value::Node(nx), Value::Const(cy)) => {
                let (y, x) = constant_beside(self, cy, nx)?;
                (x, y)
            }
            _ => (self.arg_node(id, 1, s)?, self.arg_node(id, 2, s)?),
        };
        self.b.select_where(c, x, y)
    }

    /// A cast to a float type, or of a bool to anything, is the value itself (a comparison's 0/1
    /// included); to bool it is `x != 0`. Between integer types it is the value itself too (an
    /// argmax, an integer input); from a float to an integer it truncates towards zero (a floor
    /// where the value cannot be negative).
    fn cast(&mut self, id: usize, to: DatumType) -> Result<NodeId> {
        let x = self.arg_node(id, 0, self.b.config.scale)?;
        let from = self
            .model
            .outlet_fact(self.model.node(id).inputs[0])
            .map(|f| f.datum_type)
            .ok();
        let integer = |t: DatumType| t.is_integer() || t == DatumType::TDim;
        // A bool (a comparison's 0/1) is the same number in any type, and so is an input that
        // quantizing checked to be an integer.
        let integral = self.loaded_integer_input(x) || from.is_some_and(integer);
        if to.is_float() || from == Some(DatumType::Bool) || (integral && to != DatumType::Bool) {
            return Ok(x);
        }
        if to == DatumType::Bool {
            let zero = self.b.zero(x)?;
            return self.b.compare(x, zero, Comparison::Ne);
        }
        if !integer(to) {
            return Err(self.unsupported(id, &format!(": a cast to {to:?}")));
        }
        self.b.trunc(x)
    }

    /// The lowered `b` where input `slot` of node `id` is tract's `Recip(b)`.
    fn reciprocal_of(&self, id: usize, slot: usize) -> Option<NodeId> {
        let producer = self.model.node(self.model.node(id).inputs[slot].node);
        let ew = producer.op.downcast_ref::<ElementWiseOp>()?;
        if ew.0.name() != "Recip" {
            return None;
        }
        match self.values.get(&producer.inputs[0])? {
            Value::Node(b) => Some(*b),
            Value::Const(_) => None,
        }
    }

    /// Integer division by integer constants of one sign (ONNX Div on integer tensors),
    /// exactly: `x/|c|` rounded at a scale finer than `1/(2|c|)` (a division row) lands on the
    /// right side of every integer, so its truncation is `trunc(x/|c|)`; the sign applied after.
    fn integer_div(&mut self, id: usize, x: NodeId, c: &FloatConst) -> Result<NodeId> {
        let negative = c.values.iter().all(|&v| v < 0.0);
        if c.values.iter().any(|&v| v.fract() != 0.0)
            || !(negative || c.values.iter().all(|&v| v > 0.0))
        {
            return Err(self.unsupported(id, ": integer division by non-integers or mixed signs"));
        }
        let den: Vec<i64> = c.values.iter().map(|&v| v.abs() as i64).collect();
        let largest = *den.iter().max().unwrap_or(&1);
        let x = self.b.at_most(x, self.b.config.scale)?;
        let needed = (64 - (2 * largest as u64).leading_zeros()) + 1;
        let x = self.b.to_scale(x, self.b.node(x).scale.max(needed))?;
        let q = self.b.div_counts(x, den, c.shape.clone())?;
        let q = self.b.trunc(q)?;
        if negative {
            self.b.neg(q)
        } else {
            Ok(q)
        }
    }

    pub(crate) fn binary(&mut self, id: usize, name: &str) -> Result<NodeId> {
        if let Some(cmp) = Comparison::from_tract(name) {
            let s = self.b.config.scale;
            let (a, b) = match (self.arg(id, 0), self.arg(id, 1)) {
                (Value::Node(a), Value::Const(c)) => {
                    let sa = self.b.node(a).scale;
                    (a, self.b.constant(&c, sa)?)
                }
                (Value::Const(c), Value::Node(b)) => {
                    let sb = self.b.node(b).scale;
                    (self.b.constant(&c, sb)?, b)
                }
                _ => (self.arg_node(id, 0, s)?, self.arg_node(id, 1, s)?),
            };
            return self.b.compare(a, b, cmp);
        }
        let (a, b) = (self.arg(id, 0), self.arg(id, 1));
        let scale = self.b.config.scale;
        match (name, a, b) {
            ("And", Value::Node(x), Value::Node(y)) => self.b.mul(x, y),
            ("Or" | "Xor", Value::Node(x), Value::Node(y)) => {
                // x + y - k·x·y with k = 1 (or) or 2 (xor), on 0/1 values.
                let sum = self.b.add(x, y, false)?;
                let mut both = self.b.mul(x, y)?;
                if name == "Xor" {
                    both = self.b.add(both, both, false)?;
                }
                self.b.add(sum, both, true)
            }
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
                self.b.mul_const(x, &c)
            }
            ("Mul", Value::Node(x), Value::Node(y)) => {
                // a · (1/b), tract's spelling of a / b: an exact division where b > 0.
                for (slot, other) in [(1, x), (0, y)] {
                    if let Some(b) = self.reciprocal_of(id, slot) {
                        if let Some(q) = self.b.div_positive(other, b)? {
                            return Ok(q);
                        }
                    }
                }
                let x = self.b.at_most(x, scale)?;
                let y = self.b.at_most(y, scale)?;
                self.b.mul(x, y)
            }
            ("Div", Value::Node(x), Value::Const(c)) => {
                if c.values.iter().any(|&v| v == 0.0 || !v.is_finite()) {
                    return Err(self.unsupported(id, ": division by zero"));
                }
                let integer = self
                    .model
                    .outlet_fact(OutletId::new(id, 0))
                    .is_ok_and(|f| f.datum_type.is_integer() || f.datum_type == DatumType::TDim);
                if integer {
                    return self.integer_div(id, x, &c);
                }
                let recip = FloatConst {
                    shape: c.shape.clone(),
                    values: c.values.iter().map(|&v| 1.0 / v).collect(),
                };
                let x = self.b.at_most(x, scale)?;
                self.b.mul_const(x, &recip)
            }
            ("Pow", Value::Const(c), Value::Node(x)) => match c.scalar() {
                // c^x = e^(x·ln c) for a positive constant base.
                Some(base) if base > 0.0 => {
                    let x = self.b.at_most(x, scale)?;
                    let ln = FloatConst {
                        shape: vec![1],
                        values: vec![base.ln()],
                    };
                    let y = self.b.mul_const(x, &ln)?;
                    self.b.lookup(y, Func::Exp)
                }
                _ => Err(self.unsupported(id, ": a power of a base other than a positive scalar")),
            },
            // Shifts by constant amounts (what tract makes of an integer `x * 2^k`): exact.
            ("ShiftLeft" | "ShiftRight", Value::Node(x), Value::Const(c)) => {
                if c.values
                    .iter()
                    .any(|&k| !(0.0..=30.0).contains(&k) || k.fract() != 0.0)
                {
                    return Err(self.unsupported(id, ": shift amounts must be constants in 0..=30"));
                }
                let factor = |k: f32| 2f32.powi(k as i32);
                let c = FloatConst {
                    shape: c.shape.clone(),
                    values: c
                        .values
                        .iter()
                        .map(|&k| match name {
                            "ShiftLeft" => factor(k),
                            _ => 1.0 / factor(k),
                        })
                        .collect(),
                };
                let x = self.b.at_most(x, scale)?;
                let y = self.b.mul_const(x, &c)?;
                match name {
                    "ShiftLeft" => Ok(y),
                    _ => self.b.floor(y),
                }
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

/// A comparison, as tract names it after decluttering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
}

impl Comparison {
    fn from_tract(name: &str) -> Option<Self> {
        Some(match name {
            "GT" => Comparison::Gt,
            "LT" => Comparison::Lt,
            "GTE" => Comparison::Ge,
            "LTE" => Comparison::Le,
            "Eq" => Comparison::Eq,
            "NE" => Comparison::Ne,
            _ => return None,
        })
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

    /// `x·c` for a constant `c` quantized with the weight scale's bits *significant*: a small
    /// constant (a mean's `1/n`, a division by 1000) gets as many more bits as it has leading
    /// zeros, so its relative precision does not depend on its size; the product is rescaled
    /// by those bits (a division row), landing at the usual product scale.
    pub fn mul_const(&mut self, x: NodeId, c: &FloatConst) -> Result<NodeId> {
        let largest = c.values.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let ws = self.config.weight_scale;
        let relative_error = c
            .values
            .iter()
            .filter(|v| **v != 0.0)
            .map(|&v| {
                (v as f64 - quantize(v as f64, ws) as f64 / scale_f(ws)).abs() / v.abs() as f64
            })
            .fold(0.0, f64::max);
        // Only where the weight scale alone is coarse for it (1/300 at 2^10 is 12% off).
        let extra = match relative_error > 0.01 && largest > 0.0 && largest < 1.0 {
            true => (-largest.log2().floor()).min(MAX_EXTRA_BITS as f64) as u32,
            false => 0,
        };
        let c = self.constant(c, self.config.weight_scale + extra)?;
        let product = self.mul(x, c)?;
        // Back to the scale a weight-scale constant gives, so that what follows aligns to it
        // as before (a LayerNorm's `x − mean` scales `x` up to the mean's scale).
        match extra {
            0 => Ok(product),
            bits => self.rescale(product, bits),
        }
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

    /// The real number `v` at `scale`, as a one-element constant that broadcasts.
    pub fn scalar(&mut self, v: f32, scale: u32) -> Result<NodeId> {
        let c = FloatConst {
            shape: vec![1],
            values: vec![v],
        };
        self.constant(&c, scale)
    }

    /// A zero of `x`'s scale.
    pub fn zero(&mut self, x: NodeId) -> Result<NodeId> {
        self.scalar(0.0, self.nodes[x].scale)
    }

    /// `a > b` as 0.0 or 1.0 at `a`'s scale, exactly: the integers' difference `d` (in units of
    /// the common scale) times `2^s` read at scale `s` is `d` itself, and a clamp to `[0, 1]`
    /// leaves 1 exactly when `d >= 1`. The other comparisons are sums of two of these.
    pub fn compare(&mut self, a: NodeId, b: NodeId, cmp: Comparison) -> Result<NodeId> {
        let s = self.config.scale;
        let (a, b) = (self.at_most(a, s)?, self.at_most(b, s)?);
        let s = self.nodes[a].scale.max(self.nodes[b].scale);
        let (a, b) = (self.to_scale(a, s)?, self.to_scale(b, s)?);
        // The inputs' errors can flip a comparison: the result is then off by one.
        let flips = self.nodes[a].error > 0.0 || self.nodes[b].error > 0.0;
        let greater = |b: &mut Builder, x: NodeId, y: NodeId| -> Result<NodeId> {
            let d = b.add(x, y, true)?;
            let unit = b.scalar(scale_f(s) as f32, 0)?;
            let d = b.mul(d, unit)?;
            b.clamp(d, Some(0.0), Some(1.0))
        };
        let out = match cmp {
            Comparison::Gt => greater(self, a, b)?,
            Comparison::Lt => greater(self, b, a)?,
            Comparison::Ge => {
                let lt = greater(self, b, a)?;
                self.not(lt)?
            }
            Comparison::Le => {
                let gt = greater(self, a, b)?;
                self.not(gt)?
            }
            Comparison::Eq | Comparison::Ne => {
                let (g, l) = (greater(self, a, b)?, greater(self, b, a)?);
                let either = self.add(g, l, false)?;
                if cmp == Comparison::Ne {
                    either
                } else {
                    self.not(either)?
                }
            }
        };
        // Exact (0 or 1) unless an input's error can flip it.
        self.nodes[out].error = if flips { 1.0 } else { 0.0 };
        Ok(out)
    }

    /// `1 - x` for a 0/1 `x` (ONNX `Not`).
    pub fn not(&mut self, x: NodeId) -> Result<NodeId> {
        let one = self.scalar(1.0, self.nodes[x].scale)?;
        self.add(one, x, true)
    }

    /// `cond ? x : y` for a 0/1 `cond`, exactly: `y + cond·(x - y)`. The condition is brought
    /// to scale 0 first (exactly: it is 0 or 2^s) and the branches to the activation scale, so
    /// that the product does not stack their scales (PRelu's `slope·x` beside a comparison).
    pub fn select_where(&mut self, cond: NodeId, x: NodeId, y: NodeId) -> Result<NodeId> {
        let s = self.config.scale;
        let cond = match self.nodes[cond].scale {
            0 => cond,
            bits => {
                let error = self.nodes[cond].error;
                let c = self.rescale(cond, bits)?;
                self.nodes[c].error = error;
                c
            }
        };
        let (x, y) = (self.at_most(x, s)?, self.at_most(y, s)?);
        let d = self.add(x, y, true)?;
        let picked = self.mul(cond, d)?;
        self.add(y, picked, false)
    }

    /// `-x`, exactly: `0 - x`.
    pub fn neg(&mut self, x: NodeId) -> Result<NodeId> {
        let zero = self.zero(x)?;
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

    /// `a / b` for a computed `b` whose proven bound is positive, exactly: `round(a·2^k / b)`
    /// at the activation scale by a division row (`2·a·2^k + b = 2·b·q + r`, `r` in `[0, 2b)`
    /// range-checked). `None` where `b` may reach 0 or below; the caller then multiplies by a
    /// reciprocal table instead.
    pub fn div_positive(&mut self, a: NodeId, b: NodeId) -> Result<Option<NodeId>> {
        let s = self.config.scale;
        let b = self.at_most(b, s)?;
        let (nb, sb) = (&self.nodes[b], self.nodes[b].scale);
        if nb.bound.lo <= 0 || nb.error >= nb.bound.lo as f64 / scale_f(sb) {
            return Ok(None);
        }
        // The numerator at scale s + s_b, so that the quotient lands at s.
        let a = self.at_most(a, s)?;
        let num = self.to_scale(a, s + sb)?;
        let shape = self.broadcast(num, b, "Div")?;
        let (dlo, dhi) = (self.nodes[b].bound.lo, self.nodes[b].bound.hi);
        let bound = self.quotient_bound(num, dlo, dhi)?;
        // (a + δa)/(b + δb) − a/b = (δa·b − a·δb) / (b·(b + δb)), with b ≥ b_min > δb.
        let (a_max, b_min) = (self.real_max(a), dlo as f64 / scale_f(sb));
        let (ea, eb) = (self.nodes[a].error, self.nodes[b].error);
        let error = (ea + a_max * eb / b_min) / (b_min - eb) + 0.5 / scale_f(s);
        self.push(Op::DivConst, vec![num, b], shape, s, bound, error)
            .map(Some)
    }

    /// The bound of `round_div(num, d)` for `d` in `dmin..=dmax` (positive), refusing a
    /// numerator whose `2n + d` the value budget cannot hold.
    fn quotient_bound(&self, num: NodeId, dmin: i64, dmax: i64) -> Result<Bound> {
        let n = &self.nodes[num];
        if (n.bound.abs_max() as i128) * 2 + dmax as i128 >= 1i128 << self.config.max_bits {
            return Err(self.error("division numerator overflows the value budget"));
        }
        let cands = [
            round_div(n.bound.lo, dmin),
            round_div(n.bound.lo, dmax),
            round_div(n.bound.hi, dmin),
            round_div(n.bound.hi, dmax),
        ];
        let (lo, hi) = (cands.iter().min(), cands.iter().max());
        Ok(Bound::new(*lo.expect("four"), *hi.expect("four")))
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
        let bound = self.quotient_bound(x, dmin, dmax)?;
        let n = &self.nodes[x];
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
        // A computed divisor is proven positive for every input in range; one out of range
        // (`ciro run` evaluates leniently) reads as 1 rather than dividing by zero.
        Op::DivConst => binary(inputs[0], inputs[1], shape, |n, d| round_div(n, d.max(1))),
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
