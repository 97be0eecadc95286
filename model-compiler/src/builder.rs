//! Builds IR nodes one op at a time, deriving for each its shape, scale, proven integer bound and
//! proven error bound (interval analysis and error propagation live here, next to each other).

use crate::error::{CompileError, Result};
use crate::eval::{broadcast_shape, rescale, round_div};
use crate::ir::{Bound, Func, Node, NodeId, Op, QuantConfig};
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
    fn out_dim(&self, input: usize, d: usize) -> Result<usize> {
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

fn shapes_str(shapes: &[&[usize]]) -> String {
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
    fn real_max(&self, id: NodeId) -> f64 {
        let n = &self.nodes[id];
        n.bound.abs_max() as f64 / scale_f(n.scale) + n.error
    }

    /// Largest magnitude of the dequantized values of `id`.
    fn quant_max(&self, id: NodeId) -> f64 {
        let n = &self.nodes[id];
        n.bound.abs_max() as f64 / scale_f(n.scale)
    }

    fn error(&self, reason: impl Into<String>) -> CompileError {
        CompileError::Bound {
            node: self.current.clone(),
            reason: reason.into(),
        }
    }

    fn push(
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

    /// A quantized constant at `scale`; its error is the actual largest quantization error.
    pub fn constant(&mut self, c: &FloatConst, scale: u32) -> Result<NodeId> {
        let values: Vec<i64> = c
            .values
            .iter()
            .map(|&v| quantize(v as f64, scale))
            .collect();
        let error = c
            .values
            .iter()
            .zip(&values)
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

    fn const_values(&self, id: NodeId) -> Option<&[i64]> {
        match &self.nodes[id].op {
            Op::Const { values } => Some(values),
            _ => None,
        }
    }

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

    /// `a · b` with `a` `[M, K]` or `[B, M, K]` and `b` `[K, N]` or `[B, K, N]`.
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        let (ra, rb) = (na.shape.len(), nb.shape.len());
        let k = *na.shape.last().unwrap_or(&0);
        let ok = (ra == 2 || ra == 3)
            && (rb == 2 || (rb == 3 && ra == 3 && na.shape[0] == nb.shape[0]))
            && nb.shape[rb - 2] == k;
        if !ok {
            return Err(CompileError::Unsupported {
                op: "MatMul".into(),
                node: self.current.clone(),
                shapes: shapes_str(&[&na.shape, &nb.shape]),
                detail: ": shapes do not form [B?,M,K]·[B?,K,N]".into(),
            });
        }
        let n = nb.shape[rb - 1];
        let mut shape = na.shape.clone();
        *shape.last_mut().unwrap() = n;
        // Per output column: sum over k of |b| (for the error) and the term intervals (bound).
        let (alo, ahi) = (na.bound.lo as i128, na.bound.hi as i128);
        let (mut lo, mut hi, mut col_abs) = (0i128, 0i128, 0f64);
        if let Some(bv) = self.const_values(b) {
            let batches = if rb == 3 { nb.shape[0] } else { 1 };
            for bt in 0..batches {
                for j in 0..n {
                    let (mut l, mut h, mut abs) = (0i128, 0i128, 0i128);
                    for kk in 0..k {
                        let w = bv[(bt * k + kk) * n + j] as i128;
                        l += (alo * w).min(ahi * w).min(0);
                        h += (alo * w).max(ahi * w).max(0);
                        abs += w.abs();
                    }
                    lo = lo.min(l);
                    hi = hi.max(h);
                    col_abs = col_abs.max(abs as f64);
                }
            }
        } else {
            let (blo, bhi) = (nb.bound.lo as i128, nb.bound.hi as i128);
            let prods = [alo * blo, alo * bhi, ahi * blo, ahi * bhi];
            lo = k as i128 * prods.iter().copied().min().unwrap().min(0);
            hi = k as i128 * prods.iter().copied().max().unwrap().max(0);
            col_abs = k as f64 * nb.bound.abs_max() as f64;
        }
        let bound = self.checked_bound(lo, hi)?;
        let error = col_abs / scale_f(nb.scale) * na.error + k as f64 * self.real_max(a) * nb.error;
        let scale = na.scale + nb.scale;
        self.push(Op::MatMul, vec![a, b], shape, scale, bound, error)
    }

    fn checked_bound(&self, lo: i128, hi: i128) -> Result<Bound> {
        let limit = 1i128 << self.config.max_bits;
        if lo <= -limit || hi >= limit {
            return Err(self.error(format!(
                "accumulator bound [{lo}, {hi}] exceeds 2^{}; use a smaller --scale",
                self.config.max_bits
            )));
        }
        Ok(Bound::new(lo as i64, hi as i64))
    }

    /// NCHW convolution with a constant OIHW kernel node `w`.
    pub fn conv(&mut self, x: NodeId, w: NodeId, win: Window) -> Result<NodeId> {
        let (nx, nw) = (&self.nodes[x], &self.nodes[w]);
        if nx.shape.len() != 4 || nw.shape.len() != 4 || nx.shape[1] != nw.shape[1] {
            return Err(CompileError::Unsupported {
                op: "Conv".into(),
                node: self.current.clone(),
                shapes: shapes_str(&[&nx.shape, &nw.shape]),
                detail: ": only 2-D NCHW convolutions with group 1 are supported".into(),
            });
        }
        let wv = self
            .const_values(w)
            .ok_or_else(|| self.error("convolution kernel must be a constant"))?;
        let shape = vec![
            nx.shape[0],
            nw.shape[0],
            win.out_dim(nx.shape[2], 0)?,
            win.out_dim(nx.shape[3], 1)?,
        ];
        let per_out: usize = nw.shape[1..].iter().product();
        let (alo, ahi) = (nx.bound.lo as i128, nx.bound.hi as i128);
        let (mut lo, mut hi, mut col_abs) = (0i128, 0i128, 0f64);
        for oc in wv.chunks(per_out) {
            let (mut l, mut h, mut abs) = (0i128, 0i128, 0i128);
            for &w in oc {
                let w = w as i128;
                l += (alo * w).min(ahi * w).min(0);
                h += (alo * w).max(ahi * w).max(0);
                abs += w.abs();
            }
            lo = lo.min(l);
            hi = hi.max(h);
            col_abs = col_abs.max(abs as f64);
        }
        let bound = self.checked_bound(lo, hi)?;
        let error =
            col_abs / scale_f(nw.scale) * nx.error + per_out as f64 * self.real_max(x) * nw.error;
        let scale = nx.scale + nw.scale;
        let op = Op::Conv {
            strides: win.strides,
            dilations: win.dilations,
            pads_before: win.pads_before,
            pads_after: win.pads_after,
        };
        self.push(op, vec![x, w], shape, scale, bound, error)
    }

    fn broadcast(&self, a: NodeId, b: NodeId, op: &str) -> Result<Vec<usize>> {
        let (sa, sb) = (&self.nodes[a].shape, &self.nodes[b].shape);
        broadcast_shape(sa, sb).ok_or_else(|| CompileError::Unsupported {
            op: op.into(),
            node: self.current.clone(),
            shapes: shapes_str(&[sa, sb]),
            detail: ": shapes do not broadcast".into(),
        })
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
        let bound = self.checked_bound(*p.iter().min().unwrap(), *p.iter().max().unwrap())?;
        let error =
            self.real_max(a) * self.nodes[b].error + self.quant_max(b) * self.nodes[a].error;
        let scale = self.nodes[a].scale + self.nodes[b].scale;
        self.push(Op::Mul, vec![a, b], shape, scale, bound, error)
    }

    /// `clamp(x, min, max)` with real-valued constant limits.
    pub fn clamp(&mut self, x: NodeId, min: Option<f64>, max: Option<f64>) -> Result<NodeId> {
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

    pub fn leaky_relu(&mut self, x: NodeId, alpha: f64) -> Result<NodeId> {
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
            let table: Vec<i64> = (lo..=hi)
                .map(|v| quantize(func.apply(v as f64 / scale_f(s)), out_scale))
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
            let lip = func.lipschitz(real_lo - n.error, real_hi + n.error);
            let error = lip * n.error + 0.5 / scale_f(out_scale) + sat_err;
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

    pub fn softmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        let out_scale = self.config.scale;
        let mut x = self.at_most(x, self.config.scale)?;
        let n_axis = self.nodes[x].shape[axis] as f64;
        let exp_bits = 16.min(
            self.config
                .max_bits
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

    fn pool_shape(&self, x: NodeId, win: &Window, op: &str) -> Result<Vec<usize>> {
        let s = &self.nodes[x].shape;
        if s.len() != 4 {
            return Err(CompileError::Unsupported {
                op: op.into(),
                node: self.current.clone(),
                shapes: shapes_str(&[s]),
                detail: ": only 2-D NCHW pooling is supported".into(),
            });
        }
        if win.pads_before.iter().zip(&win.kernel).any(|(p, k)| p >= k)
            || win.pads_after.iter().zip(&win.kernel).any(|(p, k)| p >= k)
        {
            return Err(self.error("pooling padding must be smaller than the kernel"));
        }
        Ok(vec![
            s[0],
            s[1],
            win.out_dim(s[2], 0)?,
            win.out_dim(s[3], 1)?,
        ])
    }

    pub fn max_pool(&mut self, x: NodeId, win: Window) -> Result<NodeId> {
        let shape = self.pool_shape(x, &win, "MaxPool")?;
        let n = &self.nodes[x];
        let (scale, bound, error) = (n.scale, n.bound, n.error);
        let op = Op::MaxPool {
            kernel: win.kernel,
            strides: win.strides,
            pads_before: win.pads_before,
            pads_after: win.pads_after,
        };
        self.push(op, vec![x], shape, scale, bound, error)
    }

    pub fn sum_pool(&mut self, x: NodeId, win: Window) -> Result<NodeId> {
        let shape = self.pool_shape(x, &win, "SumPool")?;
        let n = &self.nodes[x];
        let k = (win.kernel[0] * win.kernel[1]) as i128;
        let lo = k * (n.bound.lo as i128).min(0);
        let hi = k * (n.bound.hi as i128).max(0);
        let bound = self.checked_bound(lo, hi)?;
        let (scale, error) = (n.scale, n.error * k as f64);
        let op = Op::SumPool {
            kernel: win.kernel,
            strides: win.strides,
            pads_before: win.pads_before,
            pads_after: win.pads_after,
        };
        self.push(op, vec![x], shape, scale, bound, error)
    }

    pub fn reduce(&mut self, x: NodeId, axes: Vec<usize>, is_max: bool) -> Result<NodeId> {
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
