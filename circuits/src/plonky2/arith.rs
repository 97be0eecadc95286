//! `out = ca·a + cb·b + cab·a·b + c0` on plonky2's arithmetic gate (`k0·x·y + k1·z`), two
//! operations; a constant cell is a plonky2 constant. Private weights: the four coefficients
//! are prover-set targets, in the order `ca, cb, cab, c0`.

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
    if let Some(wa) = s.private_weight(ca) {
        // Private coefficients are targets: products instead of gate constants.
        let [wb, wab, w0] = [cb, cab, c0].map(|c| s.private_weight(c).expect("private"));
        let ab = s.b.mul(ta, tb);
        let t = s.b.mul(wab, ab);
        let t = s.b.mul_add(wa, ta, t);
        let t = s.b.mul_add(wb, tb, t);
        let t = s.b.add(t, w0);
        return s.write(out, t);
    }
    // cab·a·b + ca·a, then + cb·b, then + c0.
    let t = s.b.arithmetic(felt(cab), felt(ca), ta, tb, ta);
    let t = s.b.arithmetic(felt(cb), F::ONE, tb, one, t);
    let t = s.b.add_const(t, felt(c0));
    s.write(out, t)
}
