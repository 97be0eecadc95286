//! `q = round_div(k·n, d)`: the prover sets `q` and `r`; the gate proves `2kn + d = 2dq + r`,
//! `r` and `2d - 1 - r` in range (so `0 <= r < 2d`), and `q - q_lo` and `q_hi - q` in range (so
//! `q_lo <= q <= q_hi`). Both sides then stay within the budget's `2^62`, far from `p`, so the
//! equation holds over the integers and `q` is the exact rounded quotient.

use plonky2::field::types::Field;

use super::{felt, Aux, Builder, F};
use crate::error::CircuitError;
use crate::lower::{Cell, Operand};

pub(super) struct Division {
    pub out: Cell,
    pub n: Cell,
    pub k: i64,
    pub d: Operand,
    pub q_lo: i64,
    pub q_hi: i64,
    pub q_hi_bound: i64,
    pub r_hi_bound: i64,
}

pub(super) fn build(s: &mut Builder<'_>, g: Division) -> Result<(), CircuitError> {
    let one = s.b.one();
    let tn = s.cell(g.n)?;
    let td = s.operand(g.d)?;
    let q = s.prover_value(Aux::Cell(g.out));
    let r = s.prover_value(Aux::Remainder {
        n: g.n,
        k: g.k,
        d: g.d,
        q: g.out,
    });
    let two_k = felt(g.k).double();
    let lhs = s.b.arithmetic(two_k, F::ONE, tn, one, td);
    let rhs = s.b.arithmetic(F::TWO, F::ONE, td, q, r);
    s.b.connect(lhs, rhs);
    s.range_check(r, g.r_hi_bound)?;
    // 2d - 1 - r
    let r_rest = match g.d {
        Operand::Const(d) => s.affine(-1, r, 2 * d - 1),
        Operand::Cell(_) => {
            let t = s.b.arithmetic(F::TWO, -F::ONE, td, one, r);
            s.b.add_const(t, -F::ONE)
        }
    };
    s.range_check(r_rest, g.r_hi_bound)?;
    let above = s.affine(1, q, -g.q_lo);
    s.range_check(above, g.q_hi_bound)?;
    let below = s.affine(-1, q, g.q_hi);
    s.range_check(below, g.q_hi_bound)?;
    s.write(g.out, q)
}
