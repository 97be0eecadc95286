//! `out = s·(p·(a,b,1)) + (1-s)·(q·(a,b,1))` with `s = [a >= b]`: `s` is a prover value pinned
//! boolean, and the comparison `s·(a-b) + (1-s)·(b-a-1)` is range-checked below the gate's
//! width. For the wrong `s` that value is negative, a field element within `2^63` of `p`,
//! which no range check of at most 62 bits admits.

use plonky2::field::types::Field;
use plonky2::iop::target::BoolTarget;

use super::{Aux, Builder, F};
use crate::error::CircuitError;
use crate::lower::{Cell, Operand};

pub(super) fn build(
    s: &mut Builder<'_>,
    out: Cell,
    a: Cell,
    b: Operand,
    p: [i64; 3],
    q: [i64; 3],
    hi_bound: i64,
) -> Result<(), CircuitError> {
    let ta = s.cell(a)?;
    let tb = s.operand(b)?;
    let bit = s.prover_value(Aux::Bit { a, b });
    s.b.assert_bool(BoolTarget::new_unsafe(bit));
    // s·(a-b) + (1-s)·(b-a-1) = 2·s·(a-b) - (a-b) + s - 1.
    let diff = s.b.sub(ta, tb);
    let t = s.b.arithmetic(F::TWO, -F::ONE, bit, diff, diff);
    let t = s.b.add(t, bit);
    let check = s.b.add_const(t, -F::ONE);
    s.range_check(check, hi_bound)?;
    // out = Q + s·(P - Q).
    let q_val = s.linear(&[(q[0], ta), (q[1], tb)], q[2]);
    let pq = s.linear(&[(p[0] - q[0], ta), (p[1] - q[1], tb)], p[2] - q[2]);
    let t = s.b.arithmetic(F::ONE, F::ONE, bit, pq, q_val);
    s.write(out, t)
}
