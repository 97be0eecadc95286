//! The activation family: Clamp (ReLU, Clip, and Max/Min with a scalar constant), LeakyRelu, the
//! functions evaluated by table lookup (Lookup: Sigmoid, Tanh, Exp, Erf, Sqrt, Rsqrt,
//! Reciprocal, Ln, GELU exact and tanh, SiLU, HardSwish), and Square, Neg and Abs, which are
//! exact (a product, a subtraction from 0, a max).

use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::PowConst;
use tract_onnx::tract_core::ops::nn::LeakyRelu;

use super::elementwise::Comparison;
use crate::builder::Builder;
use crate::error::Result;
use crate::eval::IntTensor;
use crate::ir::{Bound, Func, Node, NodeId, Op};
use crate::onnx::Lowering;
use crate::quant::{quantize, scale_f};

// ---- import (tract's decluttered ops) ----

/// Imports an element-wise activation (`LeakyRelu`, and `Sigmoid`, `Tanh`, `Exp`, `Erf` as
/// lookups); `None` for other ops. ReLU and Clip arrive as `Max`/`Min` with a scalar constant
/// ([`super::elementwise`] turns those into [`Builder::clamp`]).
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let ew = model.node(id).op.downcast_ref::<ElementWiseOp>()?;
    Some(activation(l, id, ew))
}

fn activation(l: &mut Lowering, id: usize, ew: &ElementWiseOp) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    if let Some(lr) = ew.0.downcast_ref::<LeakyRelu>() {
        return l.b.leaky_relu(x, lr.alpha as f64);
    }
    if let Some(p) = ew.0.downcast_ref::<PowConst>() {
        return match p.exponent {
            1.0 => Ok(x),
            2.0 => l.b.mul(x, x),
            e => l.b.lookup(x, Func::Pow(e.to_bits())),
        };
    }
    let func = match ew.0.name().as_str() {
        "Sigmoid" => Func::Sigmoid,
        "Tanh" => Func::Tanh,
        "Exp" => Func::Exp,
        "Erf" => Func::Erf,
        "Sqrt" => Func::Sqrt,
        "Rsqrt" => Func::Rsqrt,
        "Recip" => Func::Recip,
        "Ln" => Func::Ln,
        "GeluExact" => Func::GeluExact,
        "GeluApproximate" => Func::GeluTanh,
        "Silu" => Func::Silu,
        "HardSwish" => Func::HardSwish,
        "Cos" => Func::Cos,
        "Sin" => Func::Sin,
        "Tan" => Func::Tan,
        "Acos" => Func::Acos,
        "Asin" => Func::Asin,
        "Atan" => Func::Atan,
        // Exact: no table.
        "Square" => {
            // At the activation scale first, as any product (tract makes `x·x` a Square).
            let x = l.b.at_most(x, l.b.config.scale)?;
            return l.b.mul(x, x);
        }
        "Neg" => return l.b.neg(x),
        "Not" => return l.b.not(x),
        "Abs" => {
            let neg = l.b.neg(x)?;
            return l.b.max_min(x, neg, true);
        }
        "Sign" => return l.b.sign(x),
        "Floor" => return l.b.floor(x),
        "Ceil" => {
            let neg = l.b.neg(x)?;
            let f = l.b.floor(neg)?;
            return l.b.neg(f);
        }
        "Round" | "RoundHalfToEven" => return l.b.round(x),
        _ => return Err(l.unsupported(id, "")),
    };
    l.b.lookup(x, func)
}

/// The proven error of a value that no bound covers (a table's singularity within reach).
pub const UNBOUNDED_ERROR: f64 = 1e30;

// ---- bound and error analysis ----

impl Builder {
    /// `floor(x)` (ONNX Floor), exact on the quantized value: `x − ½` rescaled to scale 0 (the
    /// rescale rounds half up, so this is the floor). A step function: an input that carries
    /// error can land one step off (proven error 1).
    pub fn floor(&mut self, x: NodeId) -> Result<NodeId> {
        let x = self.at_most(x, self.config.scale)?;
        let s = self.nodes[x].scale;
        if s == 0 {
            return Ok(x);
        }
        let half = self.scalar(-0.5, s)?;
        let shifted = self.add(x, half, false)?;
        self.step(x, shifted, s)
    }

    /// `x` rounded towards zero (a float-to-integer Cast): the floor where `x` cannot be
    /// negative, otherwise `x < 0 ? −floor(−x) : floor(x)`.
    pub fn trunc(&mut self, x: NodeId) -> Result<NodeId> {
        let down = self.floor(x)?;
        if self.nodes[x].bound.lo >= 0 {
            return Ok(down);
        }
        let neg = self.neg(x)?;
        let up = self.floor(neg)?;
        let up = self.neg(up)?;
        let zero = self.zero(x)?;
        let negative = self.compare(x, zero, Comparison::Lt)?;
        self.select_where(negative, up, down)
    }

    /// `round(x)` (ONNX Round: a tie goes to the even neighbour), exactly: `up` and `down`
    /// are `x` rescaled to scale 0 with ties rounded up and down (they differ only at a tie),
    /// and the result is `down + (up - down)·[down is odd]`, the parity being
    /// `2·round_up(down / 2) - down`.
    pub fn round(&mut self, x: NodeId) -> Result<NodeId> {
        let x = self.at_most(x, self.config.scale)?;
        let s = self.nodes[x].scale;
        if s == 0 {
            return Ok(x);
        }
        let up = self.step(x, x, s)?;
        let one_step = self.scalar(-1.0 / scale_f(s) as f32, s)?;
        let below = self.add(x, one_step, false)?;
        let down = self.step(x, below, s)?;
        let half_unit = self.scalar(0.5, 1)?;
        let halved = self.mul(down, half_unit)?;
        let halved = self.rescale(halved, 1)?;
        let twice = self.add(halved, halved, false)?;
        let odd = self.add(twice, down, true)?;
        let tie = self.add(up, down, true)?;
        let fix = self.mul(tie, odd)?;
        let out = self.add(down, fix, false)?;
        self.nodes[out].error = self.nodes[up].error;
        Ok(out)
    }

    /// `v` rescaled by `bits` to scale 0, as the integer step of `x`: exact unless `x` carries
    /// error.
    fn step(&mut self, x: NodeId, v: NodeId, bits: u32) -> Result<NodeId> {
        let out = self.rescale(v, bits)?;
        self.nodes[out].error = if self.nodes[x].error > 0.0 { 1.0 } else { 0.0 };
        Ok(out)
    }

    /// `sign(x)` (ONNX Sign) as `[x > 0] − [x < 0]`, each an exact comparison.
    pub fn sign(&mut self, x: NodeId) -> Result<NodeId> {
        use super::elementwise::Comparison;
        let zero = self.zero(x)?;
        let pos = self.compare(x, zero, Comparison::Gt)?;
        let neg = self.compare(x, zero, Comparison::Lt)?;
        self.add(pos, neg, true)
    }

    /// `clamp(x, min, max)` with real-valued constant limits.
    pub fn clamp(&mut self, x: NodeId, min: Option<f64>, max: Option<f64>) -> Result<NodeId> {
        // Compare at the activation scale, not at a product's: the comparison's range check is
        // then narrow (and ReLU commutes with the rescale exactly).
        let x = self.at_most(x, self.config.scale)?;
        let n = &self.nodes[x];
        let s = n.scale;
        let qmin = min.map(|m| quantize(m, s));
        let qmax = max.map(|m| quantize(m, s));
        let const_err = [min.zip(qmin), max.zip(qmax)]
            .into_iter()
            .flatten()
            .map(|(r, q)| (r - q as f64 / scale_f(s)).abs())
            .fold(0.0, f64::max);
        let c = |v: i64| {
            let v = qmin.map_or(v, |m| v.max(m));
            qmax.map_or(v, |m| v.min(m))
        };
        let bound = Bound::new(c(n.bound.lo), c(n.bound.hi));
        let (shape, error) = (n.shape.clone(), n.error.max(const_err));
        let op = Op::Clamp {
            min: qmin,
            max: qmax,
        };
        self.push(op, vec![x], shape, s, bound, error)
    }

    pub fn leaky_relu(&mut self, x: NodeId, alpha: f64) -> Result<NodeId> {
        // As for clamp: compare at the activation scale.
        let x = self.at_most(x, self.config.scale)?;
        let bits = self.config.weight_scale;
        let slope = quantize(alpha, bits);
        let n = &self.nodes[x];
        let f = |v: i64| -> i128 {
            if v >= 0 {
                (v as i128) << bits
            } else {
                v as i128 * slope as i128
            }
        };
        let mut pts = vec![f(n.bound.lo), f(n.bound.hi)];
        if n.bound.lo < 0 && n.bound.hi >= 0 {
            pts.extend([f(-1), f(0)]);
        }
        let bound = self.checked_bound(*pts.iter().min().unwrap(), *pts.iter().max().unwrap())?;
        let alpha_err = (alpha - slope as f64 / scale_f(bits)).abs();
        let error = alpha.abs().max(1.0) * n.error + alpha_err * self.quant_max(x);
        let (shape, scale) = (n.shape.clone(), n.scale + bits);
        let op = Op::LeakyRelu {
            slope,
            slope_bits: bits,
        };
        self.push(op, vec![x], shape, scale, bound, error)
    }

    /// A table-lookup activation; rescales the input first if its domain is too wide.
    pub fn lookup(&mut self, x: NodeId, func: Func) -> Result<NodeId> {
        let out_scale = self.config.scale;
        let mut x = self.at_most(x, self.config.scale)?;
        loop {
            let n = &self.nodes[x];
            let s = n.scale;
            let (mut lo, mut hi) = (n.bound.lo, n.bound.hi);
            if let Some(sat) = func.saturation() {
                let limit = (sat * scale_f(s)).ceil() as i64;
                lo = lo.max(-limit).min(limit);
                hi = hi.min(limit).max(-limit);
            }
            let len = (hi - lo + 1) as u64;
            if len > 1u64 << self.config.table_bits {
                if s == 0 {
                    return Err(self.error(format!("{} input range too wide", func.name())));
                }
                let bits = (64 - (len - 1).leading_zeros())
                    .saturating_sub(self.config.table_bits)
                    .max(1);
                x = self.rescale(x, bits.min(s))?;
                continue;
            }
            let (real_lo, real_hi) = (lo as f64 / scale_f(s), hi as f64 / scale_f(s));
            if func == Func::Exp
                && (real_hi + n.error).exp() * scale_f(out_scale)
                    >= (1u64 << self.config.max_bits) as f64
            {
                return Err(self.error(format!(
                    "exp of inputs up to {real_hi:.3} overflows the value budget at scale {out_scale}"
                )));
            }
            let step = 1.0 / scale_f(s);
            let table: Vec<i64> = (lo..=hi)
                .map(|v| quantize(func.tabulate(v as f64 * step, step), out_scale))
                .collect();
            let bound = Bound::new(*table.iter().min().unwrap(), *table.iter().max().unwrap());
            // Saturation: beyond the domain the function is within `sat_err` of its edge value.
            let mut sat_err: f64 = 0.0;
            if n.bound.lo < lo {
                sat_err = sat_err.max((func.apply(-1e3) - func.apply(real_lo)).abs());
            }
            if n.bound.hi > hi {
                sat_err = sat_err.max((func.apply(1e3) - func.apply(real_hi)).abs());
            }
            // Near the singularity of 1/√x, 1/x or ln x the table holds the value one step away:
            // no error bound holds for inputs that can reach it.
            let error = if func.reaches_singularity(real_lo - n.error, real_hi + n.error, step) {
                UNBOUNDED_ERROR
            } else {
                func.propagate(real_lo, real_hi, n.error, step) + 0.5 / scale_f(out_scale) + sat_err
            };
            let shape = n.shape.clone();
            let op = Op::Lookup {
                func,
                in_lo: lo,
                in_scale: s,
                table,
            };
            return self.push(op, vec![x], shape, out_scale, bound, error);
        }
    }
}

// ---- reference evaluation ----

pub(crate) fn eval(node: &Node, inputs: &[&IntTensor]) -> Vec<i64> {
    let x = &inputs[0].data;
    match &node.op {
        Op::Clamp { min, max } => x
            .iter()
            .map(|&v| {
                let v = min.map_or(v, |m| v.max(m));
                max.map_or(v, |m| v.min(m))
            })
            .collect(),
        Op::LeakyRelu { slope, slope_bits } => x
            .iter()
            .map(|&v| if v >= 0 { v << slope_bits } else { v * slope })
            .collect(),
        Op::Lookup { in_lo, table, .. } => x
            .iter()
            .map(|&v| table[(v.clamp(*in_lo, in_lo + table.len() as i64 - 1) - in_lo) as usize])
            .collect(),
        _ => unreachable!("{} is not an activation", node.op.name()),
    }
}
