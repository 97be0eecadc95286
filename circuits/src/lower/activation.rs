//! Lowering of the activation family: Clamp (ReLU and friends) as one or two selects against
//! constants, LeakyRelu as one select, and the tabulated functions (Lookup: sigmoid, tanh, exp,
//! erf) as a clamp into the table's domain followed by a lookup.

use ciro_model_compiler::ir::{Node, Op};

use super::{unsupported, Lowering, Operand};
use crate::error::CircuitError;

pub(super) fn lower(l: &mut Lowering, node: &Node) -> Result<Vec<Operand>, CircuitError> {
    let bound = (node.bound.lo, node.bound.hi);
    let x = l.input_operands(node, 0);
    match &node.op {
        Op::Clamp { min, max } => x
            .into_iter()
            .map(|x| l.clamp(node, x, *min, *max))
            .collect(),
        Op::LeakyRelu { slope, slope_bits } => x
            .into_iter()
            .map(|x| {
                l.select(
                    node,
                    x,
                    Operand::Const(0),
                    [1 << slope_bits, 0, 0],
                    [*slope, 0, 0],
                    bound,
                )
            })
            .collect(),
        Op::Lookup { in_lo, table, .. } => x
            .into_iter()
            .map(|x| l.lookup(node, x, *in_lo, table))
            .collect(),
        _ => Err(unsupported(node, "not an activation")),
    }
}
