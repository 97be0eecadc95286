//! Lowering of the elementwise family: the broadcasting binary ops (Add, Sub, Mul, Max, Min,
//! DivConst) and the scale changes (ScaleUp, Rescale). Add, Sub, Mul and ScaleUp are one Arith
//! gate each (or fold away on constants), Max and Min a select, DivConst and Rescale a rounded
//! division.

use ciro_model_compiler::eval::broadcast_map;
use ciro_model_compiler::ir::{Node, Op};

use super::{unsupported, Lowering, Operand};
use crate::error::CircuitError;

pub(super) fn lower(l: &mut Lowering, node: &Node) -> Result<Vec<Operand>, CircuitError> {
    let bound = (node.bound.lo, node.bound.hi);
    match &node.op {
        Op::Add | Op::Sub | Op::Mul | Op::Max | Op::Min | Op::DivConst => {
            let (a, b) = (l.input_operands(node, 0), l.input_operands(node, 1));
            let ma = broadcast_map(&node.shape, &l.input(node, 0).shape);
            let mb = broadcast_map(&node.shape, &l.input(node, 1).shape);
            let mut out = Vec::with_capacity(node.len());
            for (&i, &j) in ma.iter().zip(&mb) {
                let (x, y) = (a[i], b[j]);
                out.push(match node.op {
                    Op::Add => l.arith(x, y, 1, 1, 0, bound),
                    Op::Sub => l.arith(x, y, 1, -1, 0, bound),
                    Op::Mul => l.arith(x, y, 0, 0, 1, bound),
                    Op::Max => l.max(node, x, y)?,
                    Op::Min => l.min(node, x, y)?,
                    _ => l.div(node, x, 1, y, bound)?,
                });
            }
            Ok(out)
        }
        Op::ScaleUp { bits } => {
            let f = 1i64 << bits;
            Ok(l.input_operands(node, 0)
                .into_iter()
                .map(|x| l.arith(x, Operand::Const(0), f, 0, 0, bound))
                .collect())
        }
        Op::Rescale { bits } => {
            let x = l.input_operands(node, 0);
            if *bits == 0 {
                Ok(x)
            } else {
                x.into_iter()
                    .map(|x| l.div(node, x, 1, Operand::Const(1 << bits), bound))
                    .collect()
            }
        }
        _ => Err(unsupported(node, "not an elementwise op")),
    }
}
