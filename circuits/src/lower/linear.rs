//! Lowering of the linear family: MatMul (Gemm and Flatten·Gemm arrive as MatMul) and Conv.
//! Each output element is a dot product over constant weights; the outputs that read the same
//! inputs (a row of a MatMul, a position of a Conv) form one MAC block. A MatMul of two computed
//! tensors (attention's `Q·Kᵀ` and `A·V`) proves each product with an Arith gate and sums them
//! in a MAC with unit weights.

use ciro_model_compiler::ir::{Node, Op};
use ciro_model_compiler::ops::linear::conv_taps;

use super::{unsupported, Lowering, Operand};
use crate::error::CircuitError;

pub(super) fn lower(l: &mut Lowering, node: &Node) -> Result<Vec<Operand>, CircuitError> {
    let bound = (node.bound.lo, node.bound.hi);
    match &node.op {
        Op::MatMul => {
            let (a, b) = (l.input_operands(node, 0), l.input_operands(node, 1));
            let (ash, bsh) = (&l.input(node, 0).shape, &l.input(node, 1).shape);
            let (batch, m, k) = match ash.len() {
                2 => (1, ash[0], ash[1]),
                _ => (ash[0], ash[1], ash[2]),
            };
            let n = *bsh.last().unwrap_or(&1);
            let b_batched = bsh.len() == 3;
            let mut rows = Vec::with_capacity(batch * m * n);
            for bi in 0..batch {
                let boff = if b_batched { bi * k * n } else { 0 };
                for i in 0..m {
                    for j in 0..n {
                        let mut terms = Vec::with_capacity(k);
                        for kk in 0..k {
                            let (x, y) = (a[(bi * m + i) * k + kk], b[boff + kk * n + j]);
                            terms.push(match (x, y) {
                                (x, Operand::Const(w)) => (x, w),
                                (Operand::Const(w), y) => (y, w),
                                (x, y) => (l.product(node, x, y)?, 1),
                            });
                        }
                        rows.push(terms);
                    }
                }
            }
            l.macs(node, rows, bound)
        }
        Op::Conv {
            strides,
            dilations,
            pads_before,
            ..
        } => {
            let (x, w) = (l.input_operands(node, 0), l.input_operands(node, 1));
            let w: Vec<i64> = w
                .iter()
                .map(|o| match o {
                    Operand::Const(v) => Ok(*v),
                    Operand::Cell(_) => Err(unsupported(node, "a computed convolution kernel")),
                })
                .collect::<Result<_, _>>()?;
            let mut terms = vec![Vec::new(); node.len()];
            let win = [*strides, *dilations, *pads_before];
            conv_taps(
                &l.input(node, 0).shape,
                &l.input(node, 1).shape,
                &node.shape,
                win,
                |o, xi, wi| terms[o].push((x[xi], w[wi])),
            );
            l.macs(node, terms, bound)
        }
        _ => Err(unsupported(node, "not a linear op")),
    }
}
