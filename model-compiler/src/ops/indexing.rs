//! Data-dependent indexing: Gather with computed indices (a tree ensemble's class lookup, a
//! linear SVC's label), GatherElements, GatherND, ScatterElements and ScatterND. No new gate:
//! each is composed of ops the circuit already proves, from the index's *steps*
//! `ge_k = [i ≥ k] = clamp(i − k + 1, 0, 1)` (exact for an integer `i`):
//! - a gather is `x_0 + Σ_k (x_k − x_{k−1})·ge_k`, a MAC with constant weights when the gathered
//!   tensor is constant, otherwise one product of two activations per candidate;
//! - a scatter is `data + Σ_j eq_jk·(upd_j − data_k)` with the one-hot `eq_jk = ge_k − ge_{k+1}`
//!   of each index `j`.
//!
//! An index outside `0..n` (ONNX leaves it undefined) reads the nearest end; a negative index
//! counts from the end, as in ONNX. An index that carries error (it came from a comparison of
//! approximate values) may pick another element: the error is then the tensor's spread.

use tract_onnx::tract_core::ops::array::{
    Gather, GatherElements, GatherNd, OneHot, ScatterElements, ScatterNd, ScatterReduction,
};

use crate::builder::Builder;
use crate::error::Result;
use crate::ir::{Bound, NodeId, Op};
use crate::onnx::{tensor_to_const, Lowering, Value};
use crate::quant::{quantize, scale_f};

/// Imports GatherElements, GatherND, ScatterElements, ScatterND and a Gather whose indices are
/// not constant; `None` for other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let op = &l.model.node(id).op;
    if let Some(g) = op.downcast_ref::<Gather>() {
        if matches!(l.arg(id, 1), Value::Node(_)) {
            return Some(gather(l, id, g.axis));
        }
        return None;
    }
    if let Some(g) = op.downcast_ref::<GatherElements>() {
        return Some(gather_elements(l, id, g.axis));
    }
    if let Some(g) = op.downcast_ref::<GatherNd>() {
        return Some(gather_nd(l, id, g.batch_dims));
    }
    if let Some(s) = op.downcast_ref::<ScatterElements>() {
        return Some(scatter_elements(l, id, s.axis, &s.reduction));
    }
    if let Some(s) = op.downcast_ref::<ScatterNd>() {
        return Some(scatter_nd(l, id, &s.reduction));
    }
    if let Some(o) = op.downcast_ref::<OneHot>() {
        return Some(one_hot(l, id, o));
    }
    None
}

/// ONNX OneHot: `off + (on − off)·[idx = k]` along a new axis of `depth` positions, with
/// `[idx = k] = [idx ≥ k] − [idx ≥ k + 1]`.
fn one_hot(l: &mut Lowering, id: usize, o: &OneHot) -> Result<NodeId> {
    let idx = l.arg_node(id, 0, 0)?;
    let value = |t: &tract_onnx::prelude::Tensor| {
        tensor_to_const(t)
            .ok()
            .and_then(|c| c.values.first().copied())
    };
    let (Some(off), Some(on)) = (value(&o.off), value(&o.on)) else {
        return Err(l.unsupported(id, ": on and off values must be numbers"));
    };
    let n = o.dim;
    let rank = l.b.node(idx).shape.len() + 1;
    let mut out = l.b.equals(idx, n)?;
    if (on, off) != (1.0, 0.0) {
        let float = |v: f32| crate::builder::FloatConst {
            shape: vec![1],
            values: vec![v],
        };
        out = l.b.mul_const(out, &float(on - off))?;
        let base = l.b.constant(&float(off), l.b.node(out).scale)?;
        out = l.b.add(out, base, false)?;
    }
    // The new axis where ONNX puts it.
    let mut perm: Vec<usize> = (0..rank - 1).collect();
    perm.insert(o.axis, rank - 1);
    l.b.permute(out, perm)
}

/// ONNX Gather with computed indices: `out = data[.., idx, ..]` along `axis`, shaped
/// `data[..axis] + idx + data[axis+1..]`.
fn gather(l: &mut Lowering, id: usize, axis: usize) -> Result<NodeId> {
    let Value::Node(idx) = l.arg(id, 1) else {
        unreachable!("constant indices are wiring's Gather");
    };
    let out_shape = l.out_shape(id);
    match l.arg(id, 0) {
        Value::Const(c) => {
            let shape = c.shape.clone();
            let (p, n) = (shape[..axis].iter().product(), shape[axis]);
            let q: usize = shape[axis + 1..].iter().product();
            // Rows of the table: the gathered axis first, the others flattened after it.
            let rows: Vec<f32> = (0..n)
                .flat_map(|k| {
                    let c = &c;
                    (0..p * q).map(move |pq| c.values[((pq / q) * n + k) * q + pq % q])
                })
                .collect();
            let picked = l.b.gather_table(idx, &rows, n)?; // [m, p·q]
            let m = l.b.node(idx).len();
            let picked = l.b.wiring(Op::Reshape, picked, vec![m, p, q])?;
            let picked = l.b.permute(picked, vec![1, 0, 2])?;
            l.b.wiring(Op::Reshape, picked, out_shape)
        }
        Value::Node(x) => {
            let x = l.b.at_most(x, l.b.config.scale)?;
            let shape = l.b.node(x).shape.clone();
            let (p, n) = (shape[..axis].iter().product(), shape[axis]);
            let q: usize = shape[axis + 1..].iter().product();
            let m = l.b.node(idx).len();
            // [p, n, q] → [p·q, 1, n]: one candidate row per output column.
            let x = l.b.wiring(Op::Reshape, x, vec![p, n, q])?;
            let x = l.b.permute(x, vec![0, 2, 1])?;
            let x = l.b.wiring(Op::Reshape, x, vec![p * q, 1, n])?;
            let idx = l.b.wiring(Op::Reshape, idx, vec![1, m])?;
            let picked = l.b.select_rows(x, idx)?; // [p·q, m]
            let picked = l.b.wiring(Op::Reshape, picked, vec![p, q, m])?;
            let picked = l.b.permute(picked, vec![0, 2, 1])?;
            l.b.wiring(Op::Reshape, picked, out_shape)
        }
    }
}

/// ONNX GatherElements: `out[t] = data[t with t_axis = idx[t]]`, `out` shaped as `idx`.
fn gather_elements(l: &mut Lowering, id: usize, axis: usize) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let idx = l.arg_node(id, 1, 0)?;
    let x = l.b.at_most(x, l.b.config.scale)?;
    let t = l.b.node(idx).shape.clone();
    let x = fit_to(l, id, x, &t, axis)?;
    // The axis last: [R, n] candidates against [R, m] indices.
    let (rows, x_perm) = l.b.axis_last(x, axis)?;
    let (_, idx_perm) = l.b.axis_last(idx, axis)?;
    let (n, m) = (l.b.node(x).shape[axis], t[axis]);
    let x = l.b.wiring(Op::Reshape, x_perm, vec![rows, 1, n])?;
    let idx = l.b.wiring(Op::Reshape, idx_perm, vec![rows, m])?;
    let picked = l.b.select_rows(x, idx)?;
    l.b.axis_back(picked, &t, axis)
}

/// ONNX GatherND (`batch_dims` 0): the last index axis of length `k` addresses the first `k`
/// axes of `data`, flattened to one (a constant linear combination of the index columns).
fn gather_nd(l: &mut Lowering, id: usize, batch_dims: usize) -> Result<NodeId> {
    if batch_dims != 0 {
        return Err(l.unsupported(id, ": batch_dims other than 0"));
    }
    let idx = l.arg_node(id, 1, 0)?;
    let it = l.b.node(idx).shape.clone();
    let k = *it.last().unwrap_or(&0);
    let m: usize = it[..it.len().saturating_sub(1)].iter().product();
    let data_shape = match l.arg(id, 0) {
        Value::Const(c) => c.shape.clone(),
        Value::Node(x) => l.b.node(x).shape.clone(),
    };
    if k == 0 || k > data_shape.len() {
        return Err(l.unsupported(id, ": the index tuple length must be 1 to the data's rank"));
    }
    let strides: Vec<usize> = (0..k)
        .map(|j| data_shape[j + 1..k].iter().product())
        .collect();
    let flat_index = l.b.flat_index(idx, &data_shape[..k], &strides, m)?;
    let n: usize = data_shape[..k].iter().product();
    let rest: Vec<usize> = data_shape[k..].to_vec();
    let q: usize = rest.iter().product();
    let picked = match l.arg(id, 0) {
        Value::Const(c) => l.b.gather_table(flat_index, &c.values, n)?, // [m, q]
        Value::Node(x) => {
            let x = l.b.at_most(x, l.b.config.scale)?;
            let x = l.b.wiring(Op::Reshape, x, vec![n, q])?;
            let x = l.b.permute(x, vec![1, 0])?;
            let x = l.b.wiring(Op::Reshape, x, vec![q, 1, n])?;
            let fi = l.b.wiring(Op::Reshape, flat_index, vec![1, m])?;
            let picked = l.b.select_rows(x, fi)?; // [q, m]
            l.b.permute(picked, vec![1, 0])?
        }
    };
    l.b.wiring(Op::Reshape, picked, l.out_shape(id))
}

/// A scatter's data, indices and updates; only reduction `none` is supported.
fn scatter_args(
    l: &mut Lowering,
    id: usize,
    reduction: &ScatterReduction,
) -> Result<(NodeId, NodeId, NodeId)> {
    if *reduction != ScatterReduction::None {
        return Err(l.unsupported(id, ": only reduction 'none' is supported"));
    }
    let s = l.b.config.scale;
    Ok((
        l.arg_node(id, 0, s)?,
        l.arg_node(id, 1, 0)?,
        l.arg_node(id, 2, s)?,
    ))
}

/// ONNX ScatterElements (no reduction): `data` with `data[t with t_axis = idx[t]] = upd[t]`.
fn scatter_elements(
    l: &mut Lowering,
    id: usize,
    axis: usize,
    reduction: &ScatterReduction,
) -> Result<NodeId> {
    let (data, idx, upd) = scatter_args(l, id, reduction)?;
    let shape = l.b.node(data).shape.clone();
    let t = l.b.node(idx).shape.clone();
    if (0..shape.len()).any(|d| d != axis && t[d] != shape[d]) {
        return Err(l.unsupported(
            id,
            ": the indices must span the data on every axis but the scattered one",
        ));
    }
    let (rows, data_perm) = l.b.axis_last(data, axis)?;
    let (_, idx_perm) = l.b.axis_last(idx, axis)?;
    let (_, upd_perm) = l.b.axis_last(upd, axis)?;
    let (n, m) = (shape[axis], t[axis]);
    let data_rows = l.b.wiring(Op::Reshape, data_perm, vec![rows, n, 1])?;
    let idx_rows = l.b.wiring(Op::Reshape, idx_perm, vec![rows, m])?;
    let upd_rows = l.b.wiring(Op::Reshape, upd_perm, vec![rows, m, 1])?;
    let out = l.b.scatter_rows(data_rows, idx_rows, upd_rows)?; // [rows, n, 1]
    l.b.axis_back(out, &shape, axis)
}

/// ONNX ScatterND (no reduction) with index tuples of length 1: rows of `data` replaced.
fn scatter_nd(l: &mut Lowering, id: usize, reduction: &ScatterReduction) -> Result<NodeId> {
    let (data, idx, upd) = scatter_args(l, id, reduction)?;
    let shape = l.b.node(data).shape.clone();
    let it = l.b.node(idx).shape.clone();
    if it.last() != Some(&1) {
        return Err(l.unsupported(id, ": only index tuples of length 1 are supported"));
    }
    let m: usize = it.iter().product();
    let n = shape[0];
    let q: usize = shape[1..].iter().product();
    let data_rows = l.b.wiring(Op::Reshape, data, vec![1, n, q])?;
    let idx_rows = l.b.wiring(Op::Reshape, idx, vec![1, m])?;
    let upd_rows = l.b.wiring(Op::Reshape, upd, vec![1, m, q])?;
    let out = l.b.scatter_rows(data_rows, idx_rows, upd_rows)?;
    l.b.wiring(Op::Reshape, out, shape)
}

/// `x` cut to `t`'s extent on every axis but `axis` (GatherElements' indices may be smaller).
fn fit_to(l: &mut Lowering, id: usize, mut x: NodeId, t: &[usize], axis: usize) -> Result<NodeId> {
    let shape = l.b.node(x).shape.clone();
    if shape.len() != t.len() {
        return Err(l.unsupported(id, ": data and indices must have the same rank"));
    }
    for d in 0..t.len() {
        if d == axis || t[d] == shape[d] {
            continue;
        }
        if t[d] > shape[d] {
            return Err(l.unsupported(id, ": indices larger than the data"));
        }
        let mut s = l.b.node(x).shape.clone();
        s[d] = t[d];
        let op = Op::Gather {
            axis: d,
            indices: (0..t[d]).collect(),
        };
        x = l.b.wiring(op, x, s)?;
    }
    Ok(x)
}

impl Builder {
    /// `x` with `axis` moved last; also the product of the other axes.
    pub(crate) fn axis_last(&mut self, x: NodeId, axis: usize) -> Result<(usize, NodeId)> {
        let shape = self.nodes[x].shape.clone();
        let mut perm: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
        perm.push(axis);
        let rows = perm[..perm.len() - 1].iter().map(|&d| shape[d]).product();
        Ok((rows, self.permute(x, perm)?))
    }

    /// The inverse of [`Self::axis_last`]: `x` (any shape holding the elements in axis-last
    /// order) back to `shape`.
    pub(crate) fn axis_back(&mut self, x: NodeId, shape: &[usize], axis: usize) -> Result<NodeId> {
        let mut moved: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
        moved.push(axis);
        let moved_shape: Vec<usize> = moved.iter().map(|&d| shape[d]).collect();
        let x = self.wiring(Op::Reshape, x, moved_shape)?;
        let mut inverse = vec![0; moved.len()];
        for (i, &d) in moved.iter().enumerate() {
            inverse[d] = i;
        }
        self.permute(x, inverse)
    }

    /// `x` with its axes permuted (`perm[i]` is the input axis of output axis `i`); `x` itself
    /// when `perm` is the identity.
    pub fn permute(&mut self, x: NodeId, perm: Vec<usize>) -> Result<NodeId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        let shape = perm.iter().map(|&d| self.nodes[x].shape[d]).collect();
        self.wiring(Op::Transpose { perm }, x, shape)
    }

    /// An index tensor as exact integers at scale 0 in `0..n` for the steps: rounded down to
    /// an integer (a comparison's or an argmax's value is one already), negative indices
    /// counted from the end.
    fn index(&mut self, idx: NodeId, n: usize) -> Result<NodeId> {
        let idx = self.floor(idx)?;
        if self.nodes[idx].bound.lo >= 0 {
            return Ok(idx);
        }
        // i + n·[i < 0], with [i < 0] = clamp(−i, 0, 1) for an integer i.
        let zero = self.scalar(0.0, 0)?;
        let neg = self.add(zero, idx, true)?;
        let neg = self.clamp(neg, Some(0.0), Some(1.0))?;
        let wrap = self.scalar(n as f32, 0)?;
        let wrap = self.mul(neg, wrap)?;
        self.add(idx, wrap, false)
    }

    /// The steps `[i ≥ k]` for `k` in `0..count` of every index into an axis of `n`
    /// (negative ones counted from its end): shape `idx.shape + [count]`, exact.
    fn steps(&mut self, idx: NodeId, n: usize, count: usize) -> Result<NodeId> {
        let idx = self.index(idx, n)?;
        let mut shape = self.nodes[idx].shape.clone();
        shape.push(1);
        let idx = self.wiring(Op::Reshape, idx, shape)?;
        let offsets = crate::builder::FloatConst {
            shape: vec![count],
            values: (0..count).map(|k| 1.0 - k as f32).collect(),
        };
        let offsets = self.constant(&offsets, 0)?;
        let shifted = self.add(idx, offsets, false)?;
        self.clamp(shifted, Some(0.0), Some(1.0))
    }

    /// The one-hot `[i = k] = [i ≥ k] − [i ≥ k + 1]` for `k` in `0..n` of every index into an
    /// axis of `n`: shape `idx.shape + [n]`, exact.
    fn equals(&mut self, idx: NodeId, n: usize) -> Result<NodeId> {
        let steps = self.steps(idx, n, n + 1)?;
        let mut shape = self.nodes[steps].shape.clone();
        let last = shape.len() - 1;
        shape[last] = n;
        let from = |start: usize| Op::Gather {
            axis: last,
            indices: (start..start + n).collect(),
        };
        let ge = self.wiring(from(0), steps, shape.clone())?;
        let next = self.wiring(from(1), steps, shape)?;
        self.add(ge, next, true)
    }

    /// `table[idx]` for a constant `table` of `n` rows (row-major, `table.len() / n` columns)
    /// and computed indices: the steps `[m, n]` times the rows' constant differences, quantized
    /// first so that the result is exactly a quantized row. Shape `[m, columns]`.
    pub fn gather_table(&mut self, idx: NodeId, table: &[f32], n: usize) -> Result<NodeId> {
        let m = self.nodes[idx].len();
        let cols = table.len() / n;
        let steps = self.steps(idx, n, n)?;
        let steps = self.wiring(Op::Reshape, steps, vec![m, n])?;
        let ws = self.config.weight_scale;
        let q: Vec<i64> = table.iter().map(|&v| quantize(v as f64, ws)).collect();
        let diffs: Vec<i64> = (0..n * cols)
            .map(|i| q[i] - if i >= cols { q[i - cols] } else { 0 })
            .collect();
        let (lo, hi) = (
            *diffs.iter().min().unwrap_or(&0),
            *diffs.iter().max().unwrap_or(&0),
        );
        let quant_error = table
            .iter()
            .zip(&q)
            .map(|(&v, &qv)| (v as f64 - qv as f64 / scale_f(ws)).abs())
            .fold(0.0, f64::max);
        let diffs = self.push(
            Op::Const { values: diffs },
            vec![],
            vec![n, cols],
            ws,
            Bound::new(lo, hi),
            0.0,
        )?;
        let out = self.matmul(steps, diffs)?;
        let spread = (q.iter().max().unwrap_or(&0) - q.iter().min().unwrap_or(&0)) as f64;
        let index_error = self.nodes[steps].error > 0.0;
        self.nodes[out].error = match index_error {
            true => spread / scale_f(ws) + quant_error,
            false => quant_error,
        };
        Ok(out)
    }

    /// `out[r, j] = x[r, idx[r, j]]` for candidate rows `x` `[R, 1, n]` (or `[1, 1, n]`) and
    /// computed indices `[R, m]` (or `[1, m]`): `x_0 + Σ_k (x_k − x_{k−1})·[idx ≥ k]`, one
    /// product of two activations per candidate. Shape `[R, m]`.
    pub fn select_rows(&mut self, x: NodeId, idx: NodeId) -> Result<NodeId> {
        let n = *self.nodes[x].shape.last().unwrap_or(&0);
        let steps = self.steps(idx, n, n)?; // [R, m, n]
        let diffs = self.differences(x)?;
        let terms = self.mul(diffs, steps)?;
        let sum = self.reduce(terms, vec![2], false)?;
        let shape = self.nodes[sum].shape[..2].to_vec();
        let out = self.wiring(Op::Reshape, sum, shape)?;
        if self.nodes[steps].error > 0.0 {
            self.nodes[out].error = 2.0 * self.real_max(x) + self.nodes[x].error;
        }
        Ok(out)
    }

    /// `x_k − x_{k−1}` along the last axis (`x_0` first), exactly.
    fn differences(&mut self, x: NodeId) -> Result<NodeId> {
        let shape = self.nodes[x].shape.clone();
        let (rank, n) = (shape.len(), shape[shape.len() - 1]);
        let mut cut = shape.clone();
        cut[rank - 1] = n - 1;
        let head = Op::Gather {
            axis: rank - 1,
            indices: (0..n - 1).collect(),
        };
        let head = self.wiring(head, x, cut)?;
        let mut before = vec![0; rank];
        before[rank - 1] = 1;
        let pad = Op::Pad {
            before,
            after: vec![0; rank],
            value: 0,
        };
        let previous = self.wiring(pad, head, shape)?;
        self.add(x, previous, true)
    }

    /// `data` `[R, n, Q]` with row `idx[r, j]` replaced by `upd[r, j]` (`idx` `[R, m]`, `upd`
    /// `[R, m, Q]`): `data + Σ_j eq_j·upd_j − (Σ_j eq_j)·data`, with the one-hot
    /// `eq_jk = [idx_j ≥ k] − [idx_j ≥ k+1]`. Indices that repeat (ONNX leaves the result
    /// undefined) add up.
    pub fn scatter_rows(&mut self, data: NodeId, idx: NodeId, upd: NodeId) -> Result<NodeId> {
        let [r, n, q] = self.nodes[data].shape[..] else {
            unreachable!("scatter rows are [R, n, Q]");
        };
        let m = self.nodes[idx].shape[1];
        let eq = self.equals(idx, n)?; // [R, m, n]
        let eq4 = self.wiring(Op::Reshape, eq, vec![r, m, n, 1])?;
        let upd4 = self.wiring(Op::Reshape, upd, vec![r, m, 1, q])?;
        let placed = self.mul(eq4, upd4)?;
        let placed = self.reduce(placed, vec![1], false)?;
        let placed = self.wiring(Op::Reshape, placed, vec![r, n, q])?;
        let hits = self.reduce(eq, vec![1], false)?;
        let hits = self.wiring(Op::Reshape, hits, vec![r, n, 1])?;
        let cleared = self.mul(hits, data)?;
        let kept = self.add(data, cleared, true)?;
        let out = self.add(kept, placed, false)?;
        if self.nodes[eq].error > 0.0 {
            self.nodes[out].error =
                self.real_max(data) + self.real_max(upd) + self.nodes[data].error;
        }
        Ok(out)
    }

    /// The flat position `Σ_j idx[.., j]·stride_j` of index tuples `[.., k]` into axes of
    /// `dims`, each index first brought into `0..dims[j]`: shape `[m]`, exact.
    fn flat_index(
        &mut self,
        idx: NodeId,
        dims: &[usize],
        strides: &[usize],
        m: usize,
    ) -> Result<NodeId> {
        let k = dims.len();
        let idx = self.wiring(Op::Reshape, idx, vec![m, k])?;
        let mut flat: Option<NodeId> = None;
        for j in 0..k {
            let col = Op::Gather {
                axis: 1,
                indices: vec![j],
            };
            let col = self.wiring(col, idx, vec![m, 1])?;
            let col = self.index(col, dims[j])?;
            let stride = self.scalar(strides[j] as f32, 0)?;
            let term = self.mul(col, stride)?;
            flat = Some(match flat {
                None => term,
                Some(f) => self.add(f, term, false)?,
            });
        }
        let flat = flat.expect("k >= 1");
        self.wiring(Op::Reshape, flat, vec![m])
    }
}
