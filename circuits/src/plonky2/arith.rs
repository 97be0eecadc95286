//! `out = ca·a + cb·b + cab·a·b + c0` on plonky2's arithmetic gate (`k0·x·y + k1·z`), two
//! operations; a constant cell is a plonky2 constant.

use plonky2::field::types::Field;

use super::{felt, Builder, F};
use crate::error::CircuitError;
use crate::lower::Cell;

pub(super) fn build(
    s: &mut Builder<'_>,
    out: Cell,
    a: Option<Cell>,
    b: Option<Cell>,
    [ca, cb, cab, c0]: [i64; 4],
) -> Result<(), CircuitError> {
    let zero = s.b.zero();
    let one = s.b.one();
    let ta = a.map(|c| s.cell(c)).transpose()?.unwrap_or(zero);
    let tb = b.map(|c| s.cell(c)).transpose()?.unwrap_or(zero);
    // cab·a·b + ca·a, then + cb·b, then + c0.
    let t = s.b.arithmetic(felt(cab), felt(ca), ta, tb, ta);
    let t = s.b.arithmetic(felt(cb), F::ONE, tb, one, t);
    let t = s.b.add_const(t, felt(c0));
    s.write(out, t)
}
