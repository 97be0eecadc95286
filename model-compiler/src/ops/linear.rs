//! The linear family: MatMul (ONNX MatMul, Gemm, and a Flatten folded into Gemm all arrive as
//! tract `EinSum`s, normalised here to `[B?, M, K]·[B?, K, N]` with transposes and reshapes
//! around) and Conv (2-D, NCHW, OIHW kernel, group 1). A convolution's bias is an [`Op::Add`]
//! ([`super::elementwise`]). Bound analysis sums each output's term intervals per column of
//! constant weights; the error propagates through `|w|` sums.

use tract_onnx::tract_core::ops::cnn::{Conv, Deconv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;

use crate::builder::{shapes_str, Builder, FloatConst, Window};
use crate::error::{CompileError, Result};
use crate::eval::IntTensor;
use crate::ir::{Node, NodeId, Op};
use crate::onnx::{tract_err, Lowering, Value};
use crate::quant::scale_f;

// ---- import (tract's decluttered ops) ----

/// Imports an `EinSum` (MatMul, Gemm, Flatten·Gemm) or a `Conv`; `None` for other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let op = &model.node(id).op;
    if let Some(e) = op.downcast_ref::<EinSum>() {
        return Some(l.einsum(id, e));
    }
    if let Some(conv) = op.downcast_ref::<Conv>() {
        return Some(l.conv(id, conv));
    }
    if let Some(d) = op.downcast_ref::<Deconv>() {
        return Some(l.deconv(id, d));
    }
    None
}

impl Lowering<'_> {
    pub(crate) fn conv(&mut self, id: usize, conv: &Conv) -> Result<NodeId> {
        if conv.group != 1 || conv.q_params.is_some() || conv.kernel_fmt != KernelFormat::OIHW {
            return Err(self.unsupported(
                id,
                ": only float OIHW convolutions with group 1 are supported",
            ));
        }
        let sw = self.b.config.weight_scale;
        let x = self.arg_node(id, 0, self.b.config.scale)?;
        let x = self.b.at_most(x, self.b.config.scale)?;
        let x = self.view_as_2d(x)?;
        let Value::Const(mut kernel) = self.arg(id, 1) else {
            return Err(self.unsupported(id, ": the kernel must be a constant"));
        };
        if kernel.shape.len() == 3 {
            // A 1-D kernel [O, C, k] is the 2-D [O, C, 1, k].
            kernel.shape.insert(2, 1);
        }
        let w = self.b.constant(&kernel, sw)?;
        let win = self.window(id, &conv.pool_spec, x)?;
        let y = self.b.conv(x, w, win)?;
        let y = self.conv_bias(id, y, kernel.shape[0])?;
        self.restore_1d(id, y)
    }

    /// ONNX ConvTranspose (tract's `Deconv`), 2-D, group 1: the convolution, stride 1, of the
    /// input with `stride - 1` zeros inserted between its values and padded by
    /// `dilation·(k - 1)` less the transposed convolution's own padding, with the kernel's taps
    /// reversed. The zeros are constants: they cost nothing.
    pub(crate) fn deconv(&mut self, id: usize, d: &Deconv) -> Result<NodeId> {
        let spec = &d.pool_spec;
        if d.group != 1 || spec.data_format != DataFormat::NCHW || spec.kernel_shape.len() != 2 {
            return Err(self.unsupported(
                id,
                ": only 2-D NCHW transposed convolutions with group 1 are supported",
            ));
        }
        let scale = self.b.config.scale;
        let x = self.arg_node(id, 0, scale)?;
        let x = self.b.at_most(x, scale)?;
        let Value::Const(kernel) = self.arg(id, 1) else {
            return Err(self.unsupported(id, ": the kernel must be a constant"));
        };
        // tract holds the kernel as OIHW ([C_out, C_in, kH, kW]), whatever ONNX's layout.
        let &[co, ci, kh, kw] = kernel.shape.as_slice() else {
            return Err(self.unsupported(id, ": the kernel must be 2-D"));
        };
        let in_shape = self.b.node(x).shape.clone();
        if in_shape.len() != 4 || in_shape[1] != ci {
            return Err(self.unsupported(id, ": the input must be NCHW with the kernel's C_in"));
        }
        let pair = |v: &Option<tract_onnx::prelude::TVec<usize>>| {
            v.as_ref().map(|s| [s[0], s[1]]).unwrap_or([1, 1])
        };
        let (strides, dil, k) = (pair(&spec.strides), pair(&spec.dilations), [kh, kw]);
        let adj = [0, 1].map(|a| d.adjustments.get(a).copied().unwrap_or(0));
        let pads = spec
            .padding
            .compute_for_deconv(&in_shape[2..4], &k, &dil, &strides, &adj)
            .map_err(|e| self.unsupported(id, &format!(": {}", tract_err(e))))?;
        let (mut before, mut after) = ([0; 2], [0; 2]);
        for a in 0..2 {
            let span = dil[a] * (k[a] - 1);
            match (
                span.checked_sub(pads[a].pad_before),
                (span + adj[a]).checked_sub(pads[a].pad_after),
            ) {
                (Some(b), Some(f)) => (before[a], after[a]) = (b, f),
                _ => return Err(self.unsupported(id, ": padding wider than the kernel")),
            }
        }
        let x = self.b.insert_zeros(x, strides)?;
        let mut flipped = vec![0f32; kernel.values.len()];
        for (t, &v) in kernel.values.iter().enumerate() {
            // Tap (o, c, i, j) of the transposed convolution is tap (o, c, kh-1-i, kw-1-j) of
            // the convolution.
            let (j, i, oc) = (t % kw, (t / kw) % kh, t / (kw * kh));
            flipped[(oc * kh + (kh - 1 - i)) * kw + (kw - 1 - j)] = v;
        }
        let w = FloatConst {
            shape: vec![co, ci, kh, kw],
            values: flipped,
        };
        let w = self.b.constant(&w, self.b.config.weight_scale)?;
        let win = Window {
            kernel: k,
            strides: [1, 1],
            dilations: dil,
            pads_before: before,
            pads_after: after,
        };
        let y = self.b.conv(x, w, win)?;
        self.conv_bias(id, y, co)
    }

    /// Adds a convolution's bias (input 2, one value per output channel, or one for all).
    fn conv_bias(&mut self, id: usize, y: NodeId, channels: usize) -> Result<NodeId> {
        if self.model.node(id).inputs.len() > 2 {
            if let Value::Const(bias) = self.arg(id, 2) {
                if bias.values.iter().any(|&v| v != 0.0) {
                    let o = channels;
                    let bias = if bias.values.len() == 1 {
                        FloatConst {
                            shape: vec![1, o, 1, 1],
                            values: vec![bias.values[0]; o],
                        }
                    } else {
                        FloatConst {
                            shape: vec![1, o, 1, 1],
                            values: bias.values,
                        }
                    };
                    let scale = self.b.node(y).scale;
                    let bn = self.b.constant(&bias, scale)?;
                    return self.b.add(y, bn, false);
                }
            } else {
                return Err(self.unsupported(id, ": the bias must be a constant"));
            }
        }
        Ok(y)
    }

    pub(crate) fn einsum(&mut self, id: usize, e: &EinSum) -> Result<NodeId> {
        if e.q_params.is_some() || self.model.node(id).inputs.len() != 2 {
            return Err(self.unsupported(id, ": only float two-operand einsums are supported"));
        }
        let scale = self.b.config.scale;
        let sw = self.b.config.weight_scale;
        // The variable operand plays `a`; a constant operand (weights) plays `b`.
        let (ia, ib) = match (self.arg(id, 0), self.arg(id, 1)) {
            (Value::Const(_), Value::Node(_)) => (1, 0),
            _ => (0, 1),
        };
        let shape_of = |l: &Self, slot: usize| -> Vec<usize> {
            match l.arg(id, slot) {
                Value::Node(n) => l.b.node(n).shape.clone(),
                Value::Const(c) => c.shape.clone(),
            }
        };
        let (sa, sb) = (shape_of(self, ia), shape_of(self, ib));
        let out_shape = self.out_shape(id);
        // Classify each axis: batch (a, b, out), m (a, out), n (b, out), k (a, b).
        let (mut batch, mut m, mut n, mut k) = (vec![], vec![], vec![], vec![]);
        let (mut a_extra, mut b_extra) = (vec![], vec![]);
        for axis in e.axes.iter_all_axes() {
            let pa = axis.inputs[ia].first().copied();
            let pb = axis.inputs[ib].first().copied();
            let po = axis.outputs[0].first().copied();
            if axis.inputs[ia].len() > 1 || axis.inputs[ib].len() > 1 {
                return Err(
                    self.unsupported(id, ": repeated einsum axes (diagonals) are not supported")
                );
            }
            match (pa, pb, po) {
                (Some(pa), Some(pb), Some(po)) => batch.push((pa, pb, po)),
                (Some(pa), None, Some(po)) => m.push((pa, po)),
                (None, Some(pb), Some(po)) => n.push((pb, po)),
                (Some(pa), Some(pb), None) => k.push((pa, pb)),
                (Some(pa), None, None) if sa[pa] == 1 => a_extra.push(pa),
                (None, Some(pb), None) if sb[pb] == 1 => b_extra.push(pb),
                (None, None, Some(_)) => {}
                _ => {
                    return Err(self.unsupported(
                        id,
                        &format!(": einsum {} sums over an axis of one operand only", e.axes),
                    ))
                }
            }
        }
        let prod =
            |dims: &[usize], shape: &[usize]| dims.iter().map(|&d| shape[d]).product::<usize>();
        let bsz = prod(&batch.iter().map(|t| t.0).collect::<Vec<_>>(), &sa);
        let msz = prod(&m.iter().map(|t| t.0).collect::<Vec<_>>(), &sa);
        let ksz = prod(&k.iter().map(|t| t.0).collect::<Vec<_>>(), &sa);
        let nsz = prod(&n.iter().map(|t| t.0).collect::<Vec<_>>(), &sb);
        // a: [batch, m, k, extra] -> [B?, M, K]
        let perm_a: Vec<usize> = batch
            .iter()
            .map(|t| t.0)
            .chain(m.iter().map(|t| t.0))
            .chain(k.iter().map(|t| t.0))
            .chain(a_extra.iter().copied())
            .collect();
        let perm_b: Vec<usize> = batch
            .iter()
            .map(|t| t.1)
            .chain(k.iter().map(|t| t.1))
            .chain(n.iter().map(|t| t.0))
            .chain(b_extra.iter().copied())
            .collect();
        let a3 = if batch.is_empty() {
            vec![msz, ksz]
        } else {
            vec![bsz, msz, ksz]
        };
        let b3 = if batch.is_empty() {
            vec![ksz, nsz]
        } else {
            vec![bsz, ksz, nsz]
        };
        let a_node = self.arg_node(id, ia, scale)?;
        let a_node = self.b.at_most(a_node, scale)?;
        let a_node = self.permute_reshape(a_node, &perm_a, a3)?;
        let b_node = match self.arg(id, ib) {
            Value::Const(c) => {
                let permuted = permute_const(&c, &perm_b, b3);
                self.b.constant(&permuted, sw)?
            }
            Value::Node(x) => {
                let x = self.b.at_most(x, scale)?;
                self.permute_reshape(x, &perm_b, b3)?
            }
        };
        let y = self.b.matmul(a_node, b_node)?;
        // [B?, M, N] -> [batch.., m.., n..] -> output order -> output shape.
        let inter_axes: Vec<usize> = batch
            .iter()
            .map(|t| t.2)
            .chain(m.iter().map(|t| t.1))
            .chain(n.iter().map(|t| t.1))
            .collect();
        let inter_shape: Vec<usize> = inter_axes.iter().map(|&o| out_shape[o]).collect();
        let y = self.reshape_if(y, inter_shape.clone())?;
        let mut order: Vec<usize> = (0..inter_axes.len()).collect();
        order.sort_by_key(|&i| inter_axes[i]);
        let y = if order.iter().enumerate().any(|(i, &p)| i != p) {
            let shape = order.iter().map(|&p| inter_shape[p]).collect();
            self.b.wiring(Op::Transpose { perm: order }, y, shape)?
        } else {
            y
        };
        self.reshape_if(y, out_shape)
    }
}

// ---- bound and error analysis ----

impl Builder {
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
}

// ---- reference evaluation ----

pub(crate) fn eval(node: &Node, inputs: &[&IntTensor]) -> Vec<i64> {
    match &node.op {
        Op::MatMul => {
            let (a, b) = (inputs[0], inputs[1]);
            let (batch, m, k) = match a.shape.len() {
                2 => (1, a.shape[0], a.shape[1]),
                _ => (a.shape[0], a.shape[1], a.shape[2]),
            };
            let n = *b.shape.last().unwrap();
            let b_batched = b.shape.len() == 3;
            let mut out = vec![0i64; batch * m * n];
            for bi in 0..batch {
                let boff = if b_batched { bi * k * n } else { 0 };
                for i in 0..m {
                    let arow = &a.data[(bi * m + i) * k..(bi * m + i + 1) * k];
                    let orow = &mut out[(bi * m + i) * n..(bi * m + i + 1) * n];
                    for (kk, &av) in arow.iter().enumerate() {
                        if av == 0 {
                            continue;
                        }
                        let brow = &b.data[boff + kk * n..boff + (kk + 1) * n];
                        for (o, &bv) in orow.iter_mut().zip(brow) {
                            *o += av * bv;
                        }
                    }
                }
            }
            out
        }
        Op::Conv {
            strides,
            dilations,
            pads_before,
            ..
        } => {
            let (x, w) = (inputs[0], inputs[1]);
            let mut out = vec![0i64; node.len()];
            let win = [*strides, *dilations, *pads_before];
            conv_taps(&x.shape, &w.shape, &node.shape, win, |o, xi, wi| {
                out[o] += x.data[xi] * w.data[wi]
            });
            out
        }
        _ => unreachable!("{} is not a linear op", node.op.name()),
    }
}

/// Applies an axis permutation to a constant on the host, then gives it `shape`.
fn permute_const(c: &FloatConst, perm: &[usize], shape: Vec<usize>) -> FloatConst {
    FloatConst {
        shape,
        values: crate::eval::permute(&c.values, &c.shape, perm),
    }
}

/// The taps of a 2-D convolution (NCHW input, OIHW kernel, groups = 1): calls
/// `f(out_flat, in_flat, kernel_flat)` for every product that is not in the padding, in output
/// order. `window` is `[strides, dilations, pads_before]`.
pub fn conv_taps(
    in_shape: &[usize],
    w_shape: &[usize],
    out_shape: &[usize],
    window: [[usize; 2]; 3],
    mut f: impl FnMut(usize, usize, usize),
) {
    let [strides, dilations, pads_before] = window;
    let (n, c, h, wd) = (in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
    let (o, kh, kw) = (w_shape[0], w_shape[2], w_shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    for b in 0..n {
        for oc in 0..o {
            for y in 0..oh {
                for xx in 0..ow {
                    let out = ((b * o + oc) * oh + y) * ow + xx;
                    for ic in 0..c {
                        for i in 0..kh {
                            let iy = (y * strides[0] + i * dilations[0]) as isize
                                - pads_before[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for j in 0..kw {
                                let ix = (xx * strides[1] + j * dilations[1]) as isize
                                    - pads_before[1] as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                f(
                                    out,
                                    ((b * c + ic) * h + iy as usize) * wd + ix as usize,
                                    ((oc * c + ic) * kh + i) * kw + j,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
