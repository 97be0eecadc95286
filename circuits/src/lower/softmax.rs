//! Lowering of the softmax family: per group along the axis, a running maximum `m` (selects),
//! `d = x - m` (Arith), `e = exp(d)` by lookup (clamped into the table), `s = sum(e)` (a MAC),
//! and each output `round_div(e·2^scale, s)` (a division by a computed divisor).

use ciro_model_compiler::eval::reduce_map;
use ciro_model_compiler::ir::{Node, Op};

use super::{unsupported, Lowering, Operand};
use crate::error::CircuitError;

pub(super) fn lower(l: &mut Lowering, node: &Node) -> Result<Vec<Operand>, CircuitError> {
    let bound = (node.bound.lo, node.bound.hi);
    let Op::Softmax {
        axis, in_lo, table, ..
    } = &node.op
    else {
        return Err(unsupported(node, "not a softmax"));
    };
    let x = l.input_operands(node, 0);
    let input = l.input(node, 0);
    let (_, map) = reduce_map(&input.shape, &[*axis]);
    let n_groups = x.len() / input.shape[*axis];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for (i, &g) in map.iter().enumerate() {
        members[g].push(i);
    }
    let (xlo, xhi) = (input.bound.lo, input.bound.hi);
    let (tlo, thi) = table
        .iter()
        .fold((i64::MAX, i64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let one = 1i64 << node.scale;
    let mut out = vec![Operand::Const(0); x.len()];
    for group in members {
        let mut m = x[group[0]];
        for &i in &group[1..] {
            m = l.max(node, m, x[i])?;
        }
        let len = group.len() as i64;
        let mut es = Vec::with_capacity(group.len());
        for &i in &group {
            let d = l.arith(x[i], m, 1, -1, 0, (xlo - xhi, 0));
            es.push(l.lookup(node, d, *in_lo, table)?);
        }
        let s_bound = ((len * tlo).max(1), len * thi);
        let s = l.mac(node, es.iter().map(|&e| (e, 1)).collect(), s_bound)?;
        for (&i, &e) in group.iter().zip(&es) {
            out[i] = l.div(node, e, one, s, bound)?;
        }
    }
    Ok(out)
}
