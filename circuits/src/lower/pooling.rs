//! Lowering of the pooling family: MaxPool (a running maximum of selects per window) and SumPool
//! (one MAC of unit weights per window; average pooling is a SumPool followed by a DivConst).
//! Padded positions are left out of every window.

use ciro_model_compiler::ir::{Node, Op};
use ciro_model_compiler::ops::pooling::for_each_window;

use super::{unsupported, Lowering, Operand};
use crate::error::CircuitError;

pub(super) fn lower(l: &mut Lowering, node: &Node) -> Result<Vec<Operand>, CircuitError> {
    let bound = (node.bound.lo, node.bound.hi);
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
        return Err(unsupported(node, "not a pooling op"));
    };
    let x = l.input_operands(node, 0);
    let mut windows: Vec<Vec<Operand>> = vec![Vec::new(); node.len()];
    for_each_window(
        &l.input(node, 0).shape,
        &node.shape,
        *kernel,
        *strides,
        [1, 1],
        *pads_before,
        |o, i| {
            if let Some(i) = i {
                windows[o].push(x[i]);
            }
        },
    );
    l.reduce(node, windows, matches!(node.op, Op::MaxPool { .. }), bound)
}
