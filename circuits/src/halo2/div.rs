//! The Div chip, one row: `2·F0·A + B = 2·B·C + r`, with `r`, `2B-1-r`, `C-F1` and `F3-C` (`F3`
//! is `q_hi`) in range: their low limbs in the `L` of rows 0..3 of the gate, and their high
//! limbs (times `F2`: `2^b` where an honest value needs two limbs, else 0) in the `L` of rows 6,
//! 7, 4 and 5. Only `L` reaches past the gate's row: the gates placed on the rows after it (MAC
//! and arithmetic rows, which read no `L`) share them. So `0 <= r < 2d` and
//! `q_lo <= q <= q_hi`; with every term far below the modulus the equation then holds over the
//! integers, which makes `q` exactly `round_div(k·n, d)`. One multiplier for all four high
//! limbs is as sound as one each: a value that fits one limb then has a zero high limb, and
//! every check still bounds its value by `2^2b`, far below the modulus.
//!
//! The upper side `q <= q_hi` is what makes a calibrated range ([`crate::lower`]'s rescales and
//! divisions take their ranges from calibration) a checked one: without it an input past the
//! range would still prove here while it has no proof on stwo.

use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::halo2curves::ff::Field;
use halo2_axiom::plonk::{ConstraintSystem, Expression};
use halo2_axiom::poly::Rotation;

use super::arith;
use super::columns::{Coeff, Columns, A, B, C, F0, F1, F2, F3, L, SEL_DIV};
use super::layout::{split, wide, Builder, Layout};
use crate::lower::{Cell, Operand};

/// Where a division's four range-checked values keep their high limbs: the `L` of these rows of
/// the gate (`r`, `2d-1-r`, `q-q_lo`, `q_hi-q`; the low limbs are in rows 0..3). The quotient's
/// come first because they are the ones most often wide (a rescale's divisor is small).
const HIGH_ROWS: [usize; 4] = [6, 7, 4, 5];
/// The coefficient column that multiplies every high limb: `2^b` where an honest value needs
/// two limbs, else 0.
const HIGH_COEFF: Coeff = F2;
/// The coefficient column holding `q_hi`.
const Q_HI: Coeff = F3;

pub(super) fn configure(meta: &mut ConstraintSystem<Fr>, cols: &Columns) {
    let two = || Expression::Constant(Fr::from(2));
    let one = || Expression::Constant(Fr::ONE);
    meta.create_gate("div", |m| {
        let s = cols.selector(m, SEL_DIV);
        let mut l = |i: usize| cols.query(m, L, Rotation(i as i32));
        let low: [Expression<Fr>; 4] = std::array::from_fn(&mut l);
        let high: [Expression<Fr>; 4] = HIGH_ROWS.map(l);
        let row = cols.cur(m);
        let q_hi = row[Q_HI].clone();
        // `r`, `2d-1-r`, `q-q_lo`, `q_hi-q`: low limb + multiplier · high limb.
        let [rem, t, ql, qu]: [Expression<Fr>; 4] =
            std::array::from_fn(|i| low[i].clone() + row[HIGH_COEFF].clone() * high[i].clone());
        let [f0, f1, ..] = row.coeff;
        let [xn, xd, xq, ..] = row.advice;
        vec![
            s.clone()
                * (two() * f0 * xn + xd.clone() - two() * xd.clone() * xq.clone() - rem.clone()),
            s.clone() * (two() * xd - one() - rem - t),
            s.clone() * (xq.clone() - f1 - ql),
            s * (q_hi - xq - qu),
        ]
    });
}

/// A division gate's operands: `out = round_div(k·n, d)`, proven in `[q_lo, q_hi]`.
pub(super) struct Division {
    pub out: Cell,
    pub n: Cell,
    pub k: i64,
    pub d: Operand,
    pub q_lo: i64,
    pub q_hi: i64,
}

/// Lays out a division; `bounds` are the circuit's cell bounds (a divisor cell's upper bound
/// sets how wide `r` may be).
pub(super) fn place(b: &mut Builder, bounds: &[(i64, i64)], div: Division) {
    let Division {
        out,
        n,
        k,
        d,
        q_lo,
        q_hi,
    } = div;
    let limb_bits = b.limb_bits;
    let (dloc, d_hi) = match d {
        Operand::Cell(c) => (Ok(c), bounds[c as usize].1),
        Operand::Const(x) => (Err(arith::constant(b, x)), x),
    };
    // `r` and `2d-1-r` are below `2d`; `q - q_lo` and `q_hi - q` are at most `q_hi - q_lo`.
    let two_limbs = wide(2 * d_hi - 1, limb_bits) || wide(q_hi - q_lo, limb_bits);
    let l_rows = if two_limbs { 8 } else { 4 };
    let r = b.take_l(1, l_rows);
    b.selectors[SEL_DIV][r] = true;
    let nv = b.value(n);
    let dv = match d {
        Operand::Cell(c) => b.value(c),
        Operand::Const(x) => x,
    };
    let qv = b.value(out);
    b.advice[A][r] = nv;
    b.read((A, r), n);
    b.advice[B][r] = dv;
    match dloc {
        Ok(c) => b.read((B, r), c),
        Err(loc) => b.copies.push(((B, r), loc)),
    }
    b.advice[C][r] = qv;
    b.write((C, r), out);
    b.coeff[F0][r] = k;
    b.coeff[F1][r] = q_lo;
    b.coeff[Q_HI][r] = q_hi;
    b.coeff[HIGH_COEFF][r] = if two_limbs { 1 << limb_bits } else { 0 };
    let rem = 2 * k * nv + dv - 2 * dv * qv;
    for (i, x) in [rem, 2 * dv - 1 - rem, qv - q_lo, q_hi - qv]
        .into_iter()
        .enumerate()
    {
        if two_limbs {
            let (lo, hi) = split(x, limb_bits);
            b.advice[L][r + i] = lo;
            b.advice[L][r + HIGH_ROWS[i]] = hi;
        } else {
            b.advice[L][r + i] = x;
        }
    }
}

impl Layout {
    /// Where the division whose gate starts at `row` keeps the high limb of its range-checked
    /// value `check` (0: `r`, 1: `2d-1-r`, 2: `q-q_lo`, 3: `q_hi-q`; the low limb is in `L` of
    /// `row + check`):
    /// the row whose `L` holds it, and the multiplier (`2^b`, or 0 where one limb holds it all).
    pub fn div_high_limb(&self, row: usize, check: usize) -> (usize, i64) {
        (row + HIGH_ROWS[check], self.coeff[HIGH_COEFF][row])
    }
}
