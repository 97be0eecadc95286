//! Lowering of the reduction family: ReduceSum (one MAC of unit weights per group) and ReduceMax
//! (a running maximum of selects per group).

use ciro_model_compiler::eval::reduce_map;
use ciro_model_compiler::ir::{Node, Op};

use super::{unsupported, Lowering, Operand};
use crate::error::CircuitError;

pub(super) fn lower(l: &mut Lowering, node: &Node) -> Result<Vec<Operand>, CircuitError> {
    let bound = (node.bound.lo, node.bound.hi);
    let (Op::ReduceSum { axes } | Op::ReduceMax { axes }) = &node.op else {
        return Err(unsupported(node, "not a reduction"));
    };
    let x = l.input_operands(node, 0);
    let (_, map) = reduce_map(&l.input(node, 0).shape, axes);
    let mut groups: Vec<Vec<Operand>> = vec![Vec::new(); node.len()];
    for (i, &o) in map.iter().enumerate() {
        groups[o].push(x[i]);
    }
    l.reduce(node, groups, matches!(node.op, Op::ReduceMax { .. }), bound)
}
