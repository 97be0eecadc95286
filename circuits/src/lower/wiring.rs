//! Lowering of the wiring family: Input, Const and pure data movement (Reshape, Transpose,
//! Slice, Concat, Pad, Gather). None of them creates a gate: constants become constant operands
//! (folded into the gates that read them), and data movement only renames cells. Inputs are
//! assigned their public cells before the walk ([`Circuit::from_graph`](super::Circuit)).

use ciro_model_compiler::eval::{eval_node, IntTensor};
use ciro_model_compiler::ir::{Node, Op};

use super::{unsupported, Lowering, Operand};
use crate::error::CircuitError;

pub(super) fn lower(l: &mut Lowering, node: &Node) -> Result<Vec<Operand>, CircuitError> {
    match &node.op {
        Op::Const { values } => Ok(values.iter().map(|&v| Operand::Const(v)).collect()),
        Op::Input { .. } => Err(unsupported(node, "inputs are assigned before lowering")),
        _ => Ok(moved(l, node)),
    }
}

/// Data movement: run the evaluator on operand indices to learn where each element comes from.
fn moved(l: &Lowering, node: &Node) -> Vec<Operand> {
    let mut all: Vec<Operand> = Vec::new();
    let mut args = Vec::new();
    for &i in &node.inputs {
        let ops = l.operands(i);
        let base = all.len() as i64;
        args.push(IntTensor::new(
            l.graph.nodes[i].shape.clone(),
            (0..ops.len() as i64).map(|j| base + j).collect(),
        ));
        all.extend_from_slice(ops);
    }
    let mut probe = node.clone();
    let pad = match &mut probe.op {
        Op::Pad { value, .. } => Some(std::mem::replace(value, -1)),
        _ => None,
    };
    let refs: Vec<&IntTensor> = args.iter().collect();
    let idx = eval_node(&probe, &refs);
    idx.data
        .iter()
        .map(|&j| {
            if j < 0 {
                Operand::Const(pad.unwrap_or(0))
            } else {
                all[j as usize]
            }
        })
        .collect()
}
