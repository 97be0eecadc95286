//! The pooling family: MaxPool and SumPool over 2-D NCHW windows (AveragePool and
//! GlobalAveragePool are a SumPool followed by a DivConst by each window's count). The window
//! geometry ([`crate::builder::Window`]) and its parsing from tract's pool spec
//! (`Lowering::window`) are shared with Conv and live with the builder and the import walk.

use tract_onnx::tract_core::ops::cnn::{MaxPool, SumPool};

use crate::builder::{shapes_str, Builder, Window};
use crate::error::{CompileError, Result};
use crate::eval::IntTensor;
use crate::ir::{Node, NodeId, Op};
use crate::onnx::Lowering;

// ---- import (tract's decluttered ops) ----

/// Imports a `MaxPool` or a `SumPool` (AveragePool is a normalised `SumPool`: a sum, then a
/// division by each window's count); `None` for other ops.
pub(crate) fn import(l: &mut Lowering, id: usize) -> Option<Result<NodeId>> {
    let model = l.model;
    let op = &model.node(id).op;
    if let Some(p) = op.downcast_ref::<MaxPool>() {
        return Some(max_pool(l, id, p));
    }
    if let Some(p) = op.downcast_ref::<SumPool>() {
        return Some(sum_pool(l, id, p));
    }
    None
}

fn max_pool(l: &mut Lowering, id: usize, p: &MaxPool) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let x = l.view_as_2d(x)?;
    let win = l.window(id, &p.pool_spec, x)?;
    let y = l.b.max_pool(x, win)?;
    l.restore_1d(id, y)
}

fn sum_pool(l: &mut Lowering, id: usize, p: &SumPool) -> Result<NodeId> {
    let x = l.arg_node(id, 0, l.b.config.scale)?;
    let x = l.view_as_2d(x)?;
    let y = sum_pool_2d(l, id, p, x)?;
    l.restore_1d(id, y)
}

fn sum_pool_2d(l: &mut Lowering, id: usize, p: &SumPool, x: NodeId) -> Result<NodeId> {
    let win = l.window(id, &p.pool_spec, x)?;
    let sum = l.b.sum_pool(x, win)?;
    if !p.normalize {
        return Ok(sum);
    }
    let counts = pool_counts(
        l.b.node(x).shape.as_slice(),
        &l.b.node(sum).shape,
        &win,
        p.count_include_pad,
    );
    let (oh, ow) = (l.b.node(sum).shape[2], l.b.node(sum).shape[3]);
    if counts.iter().all(|&c| c == counts[0]) {
        return l.b.div_counts(sum, vec![counts[0]], vec![1]);
    }
    l.b.div_counts(sum, counts, vec![1, 1, oh, ow])
}

// ---- bound and error analysis ----

impl Builder {
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
        // As for clamp: compare at the activation scale.
        let x = self.at_most(x, self.config.scale)?;
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
        // As for ReduceSum: sum at the activation scale.
        let x = self.at_most(x, self.config.scale)?;
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
}

// ---- reference evaluation ----

pub(crate) fn eval(node: &Node, inputs: &[&IntTensor]) -> Vec<i64> {
    let (Op::MaxPool {
        kernel,
        strides,
        pads_before,
        ..
    }
    | Op::SumPool {
        kernel,
        strides,
        pads_before,
        ..
    }) = &node.op
    else {
        unreachable!("{} is not a pooling op", node.op.name())
    };
    let x = inputs[0];
    let is_max = matches!(node.op, Op::MaxPool { .. });
    let mut out = vec![if is_max { i64::MIN } else { 0 }; node.len()];
    for_each_window(
        &x.shape,
        &node.shape,
        *kernel,
        *strides,
        [1, 1],
        *pads_before,
        |o, i| {
            if let Some(i) = i {
                out[o] = if is_max {
                    out[o].max(x.data[i])
                } else {
                    out[o] + x.data[i]
                };
            }
        },
    );
    out
}

/// Number of elements each average-pool window divides by.
fn pool_counts(
    in_shape: &[usize],
    out_shape: &[usize],
    win: &Window,
    include_pad: bool,
) -> Vec<i64> {
    // One channel of one batch item: every channel has the same windows.
    let (h, w) = (in_shape[2], in_shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let mut counts = vec![0i64; oh * ow];
    for_each_window(
        &[1, 1, h, w],
        &[1, 1, oh, ow],
        win.kernel,
        win.strides,
        win.dilations,
        win.pads_before,
        |o, i| {
            if i.is_some() || include_pad {
                counts[o] += 1;
            }
        },
    );
    counts
}

/// Iterates the windows of a 2-D pooling/conv over an NCHW tensor: calls
/// `f(out_flat, in_flat_or_none_for_padding)` for every window element.
#[allow(clippy::too_many_arguments)]
pub fn for_each_window(
    in_shape: &[usize],
    out_shape: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads_before: [usize; 2],
    mut f: impl FnMut(usize, Option<usize>),
) {
    let (n, c, h, w) = (in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    for b in 0..n {
        for ch in 0..c {
            for y in 0..oh {
                for x in 0..ow {
                    let out = ((b * c + ch) * oh + y) * ow + x;
                    for i in 0..kernel[0] {
                        for j in 0..kernel[1] {
                            let iy = (y * strides[0] + i * dilations[0]) as isize
                                - pads_before[0] as isize;
                            let ix = (x * strides[1] + j * dilations[1]) as isize
                                - pads_before[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                f(out, None);
                            } else {
                                f(
                                    out,
                                    Some(((b * c + ch) * h + iy as usize) * w + ix as usize),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
