//! The reference integer evaluator: runs a [`Graph`] exactly as the semantics on [`Op`] state.
//! It is the witness generator's ground truth.

use crate::error::CompileError;
use crate::ir::{Graph, Node, Op};

/// A row-major integer tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntTensor {
    pub shape: Vec<usize>,
    pub data: Vec<i64>,
}

impl IntTensor {
    pub fn new(shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        IntTensor { shape, data }
    }
}

pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// numpy broadcast of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// For each flat index of `out_shape`, the flat index of the broadcast input of `in_shape`.
pub fn broadcast_map(out_shape: &[usize], in_shape: &[usize]) -> Vec<usize> {
    let rank = out_shape.len();
    let offset = rank - in_shape.len();
    let in_strides = strides(in_shape);
    let n: usize = out_shape.iter().product();
    let mut map = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        let mut flat = 0;
        for (d, &i) in idx.iter().enumerate().skip(offset) {
            if in_shape[d - offset] != 1 {
                flat += i * in_strides[d - offset];
            }
        }
        map.push(flat);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < out_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    map
}

/// `floor((2n + d) / (2d))` for `d > 0`: division rounded half up.
pub fn round_div(n: i64, d: i64) -> i64 {
    debug_assert!(d > 0);
    (2 * n + d).div_euclid(2 * d)
}

/// `floor((x + 2^(bits-1)) / 2^bits)`.
pub fn rescale(x: i64, bits: u32) -> i64 {
    if bits == 0 {
        return x;
    }
    (x + (1i64 << (bits - 1))) >> bits
}

fn binary(a: &IntTensor, b: &IntTensor, shape: &[usize], f: impl Fn(i64, i64) -> i64) -> Vec<i64> {
    let ma = broadcast_map(shape, &a.shape);
    let mb = broadcast_map(shape, &b.shape);
    ma.iter()
        .zip(&mb)
        .map(|(&i, &j)| f(a.data[i], b.data[j]))
        .collect()
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

/// For reductions: (outer, axis_len, inner) of a shape around a set of contiguous or
/// non-contiguous axes is not needed — we map each input flat index to its output flat index.
pub fn reduce_map(shape: &[usize], axes: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let out_shape: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
        .collect();
    let map = broadcast_map(shape, &out_shape);
    (out_shape, map)
}

/// Evaluates one node given its input tensors.
pub fn eval_node(node: &Node, inputs: &[&IntTensor]) -> IntTensor {
    let shape = node.shape.clone();
    let data = match &node.op {
        Op::Input { .. } => unreachable!("inputs are fed, not evaluated"),
        Op::Const { values } => values.clone(),
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
            let mut out = vec![0i64; shape.iter().product()];
            let win = [*strides, *dilations, *pads_before];
            conv_taps(&x.shape, &w.shape, &shape, win, |o, xi, wi| {
                out[o] += x.data[xi] * w.data[wi]
            });
            out
        }
        Op::Add => binary(inputs[0], inputs[1], &shape, |a, b| a + b),
        Op::Sub => binary(inputs[0], inputs[1], &shape, |a, b| a - b),
        Op::Mul => binary(inputs[0], inputs[1], &shape, |a, b| a * b),
        Op::Max => binary(inputs[0], inputs[1], &shape, |a, b| a.max(b)),
        Op::Min => binary(inputs[0], inputs[1], &shape, |a, b| a.min(b)),
        Op::DivConst => binary(inputs[0], inputs[1], &shape, round_div),
        Op::ScaleUp { bits } => inputs[0].data.iter().map(|&v| v << bits).collect(),
        Op::Rescale { bits } => inputs[0].data.iter().map(|&v| rescale(v, *bits)).collect(),
        Op::Clamp { min, max } => inputs[0]
            .data
            .iter()
            .map(|&v| {
                let v = min.map_or(v, |m| v.max(m));
                max.map_or(v, |m| v.min(m))
            })
            .collect(),
        Op::LeakyRelu { slope, slope_bits } => inputs[0]
            .data
            .iter()
            .map(|&v| if v >= 0 { v << slope_bits } else { v * slope })
            .collect(),
        Op::Lookup { in_lo, table, .. } => inputs[0]
            .data
            .iter()
            .map(|&v| table[(v.clamp(*in_lo, in_lo + table.len() as i64 - 1) - in_lo) as usize])
            .collect(),
        Op::MaxPool {
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
        } => {
            let x = inputs[0];
            let is_max = matches!(node.op, Op::MaxPool { .. });
            let mut out = vec![if is_max { i64::MIN } else { 0 }; node.len()];
            for_each_window(
                &x.shape,
                &shape,
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
        Op::ReduceSum { axes } | Op::ReduceMax { axes } => {
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
        Op::Softmax {
            axis, in_lo, table, ..
        } => {
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
        Op::Reshape => inputs[0].data.clone(),
        Op::Transpose { perm } => permute(&inputs[0].data, &inputs[0].shape, perm),
        Op::Slice {
            axis, start, step, ..
        } => gather_axis(inputs[0], *axis, &shape, |i| start + i * step),
        Op::Gather { axis, indices } => gather_axis(inputs[0], *axis, &shape, |i| indices[i]),
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
                increment(&mut idx, &shape);
            }
            out
        }
    };
    IntTensor::new(shape, data)
}

/// `data` (row-major, `shape`) with its axes permuted: output axis `d` is input axis `perm[d]`.
pub fn permute<T: Copy>(data: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let in_strides = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; out_shape.len()];
    for _ in 0..data.len() {
        let flat: usize = idx
            .iter()
            .enumerate()
            .map(|(d, &i)| i * in_strides[perm[d]])
            .sum();
        out.push(data[flat]);
        increment(&mut idx, &out_shape);
    }
    out
}

fn increment(idx: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        idx[d] += 1;
        if idx[d] < shape[d] {
            return;
        }
        idx[d] = 0;
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

/// Runs the whole graph on already-quantized inputs; returns every node's value.
/// Fails if an input has the wrong shape or lies outside its proven bound.
pub fn eval_all(graph: &Graph, inputs: &[IntTensor]) -> Result<Vec<IntTensor>, CompileError> {
    if inputs.len() != graph.inputs.len() {
        return Err(CompileError::Input(format!(
            "model takes {} input(s), got {}",
            graph.inputs.len(),
            inputs.len()
        )));
    }
    let mut values: Vec<IntTensor> = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let value = match node.op {
            Op::Input { index } => {
                let t = &inputs[index];
                if t.shape != node.shape {
                    return Err(CompileError::Input(format!(
                        "input {index} has shape {:?}, the model expects {:?}",
                        t.shape, node.shape
                    )));
                }
                if let Some(v) = t.data.iter().find(|v| !node.bound.contains(**v)) {
                    return Err(CompileError::Input(format!(
                        "input {index} value {} is outside the declared range {:?}",
                        *v as f64 / (1u64 << node.scale) as f64,
                        graph.inputs[index].range
                    )));
                }
                t.clone()
            }
            _ => {
                let args: Vec<&IntTensor> = node.inputs.iter().map(|&i| &values[i]).collect();
                eval_node(node, &args)
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// Runs the graph and returns its outputs.
pub fn eval(graph: &Graph, inputs: &[IntTensor]) -> Result<Vec<IntTensor>, CompileError> {
    let mut values = eval_all(graph, inputs)?;
    Ok(graph
        .outputs
        .iter()
        .map(|o| std::mem::replace(&mut values[o.node], IntTensor::new(vec![0], vec![])))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_rules() {
        assert_eq!(rescale(5, 1), 3); // 2.5 -> 3 (half up)
        assert_eq!(rescale(-5, 1), -2); // -2.5 -> -2 (half up)
        assert_eq!(rescale(-6, 2), -1); // -1.5 -> -1
        assert_eq!(rescale(7, 2), 2); // 1.75 -> 2
        assert_eq!(round_div(7, 2), 4);
        assert_eq!(round_div(-7, 2), -3);
        assert_eq!(round_div(10, 4), 3);
        assert_eq!(round_div(9, 4), 2);
    }

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast_shape(&[1, 3, 4, 4], &[3, 1, 1]),
            Some(vec![1, 3, 4, 4])
        );
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        assert_eq!(broadcast_map(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_map(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
    }
}
