//! The Select chip, 2 rows: `D` boolean (`s = [a >= b]`), `ACC' = F0·A + F1·B + F2`,
//! `A' = F3·A + F1'·B + F0'`, `C = D·ACC' + (1-D)·A'`, and
//! `D·(A-B) + (1-D)·(B-A-1) = L + 2^b·L'`.

use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::halo2curves::ff::Field;
use halo2_axiom::plonk::{ConstraintSystem, Expression};
use halo2_axiom::poly::Rotation;

use super::arith;
use super::columns::{Columns, A, ACC, B, C, D, F0, F1, F2, F3, L, SEL_SELECT};
use super::layout::{split, Builder};
use crate::lower::{Cell, Operand};

/// The select gate; `limb_bits` is `b`, the width of the comparison's low limb.
pub(super) fn configure(meta: &mut ConstraintSystem<Fr>, cols: &Columns, limb_bits: u32) {
    let one = || Expression::Constant(Fr::ONE);
    let limb = || Expression::Constant(Fr::from(1u64 << limb_bits));
    meta.create_gate("select", |m| {
        let s = cols.selector(m, SEL_SELECT);
        let x = cols.query(m, ACC, Rotation::next());
        let y = cols.query(m, A, Rotation::next());
        let row = cols.cur(m);
        let [f0, f1, f2, f3] = row.coeff;
        let f4 = cols.query_coeff(m, F1, Rotation::next());
        let f5 = cols.query_coeff(m, F0, Rotation::next());
        let hi = cols.query(m, L, Rotation::next());
        let [xa, xb, xc, sel, _, lo] = row.advice;
        vec![
            s.clone() * sel.clone() * (one() - sel.clone()),
            s.clone() * (x.clone() - (f0 * xa.clone() + f1 * xb.clone() + f2)),
            s.clone() * (y.clone() - (f3 * xa.clone() + f4 * xb.clone() + f5)),
            s.clone() * (xc - sel.clone() * x - (one() - sel.clone()) * y),
            s * (sel.clone() * (xa.clone() - xb.clone()) + (one() - sel) * (xb - xa - one())
                - lo
                - limb() * hi),
        ]
    });
}

/// Lays out `out = s·(p·(a, b, 1)) + (1-s)·(q·(a, b, 1))` with `s = [a >= b]`.
pub(super) fn place(b: &mut Builder, out: Cell, a: Cell, bb: Operand, p: [i64; 3], q: [i64; 3]) {
    let bloc = match bb {
        Operand::Cell(c) => Ok(c),
        Operand::Const(k) => Err(arith::constant(b, k)),
    };
    let r = b.take_l(2, 2);
    b.selectors[SEL_SELECT][r] = true;
    let av = b.value(a);
    let bv = match bb {
        Operand::Cell(c) => b.value(c),
        Operand::Const(k) => k,
    };
    b.advice[A][r] = av;
    b.read((A, r), a);
    b.advice[B][r] = bv;
    match bloc {
        Ok(c) => b.read((B, r), c),
        Err(loc) => b.copies.push(((B, r), loc)),
    }
    let s = (av >= bv) as i64;
    b.advice[D][r] = s;
    b.coeff[F0][r] = p[0];
    b.coeff[F1][r] = p[1];
    b.coeff[F2][r] = p[2];
    b.coeff[F3][r] = q[0];
    // The second row has no coefficients of its own: one column fewer.
    b.coeff[F1][r + 1] = q[1];
    b.coeff[F0][r + 1] = q[2];
    b.advice[ACC][r + 1] = p[0] * av + p[1] * bv + p[2];
    b.advice[A][r + 1] = q[0] * av + q[1] * bv + q[2];
    let (lo, hi) = split(if s == 1 { av - bv } else { bv - av - 1 }, b.limb_bits);
    b.advice[L][r] = lo;
    b.advice[L][r + 1] = hi;
    b.advice[C][r] = b.value(out);
    b.write((C, r), out);
}
