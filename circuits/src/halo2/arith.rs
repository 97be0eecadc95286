//! The Arith chip, 1 row: `D = A·B`, `C = F0·A + F1·B + F2·D + F3` (`W0..W3` for `F0..F3` with
//! private weights). Its rows also write the constants other gates read (`C = F3`).

use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::plonk::ConstraintSystem;

use super::columns::{Columns, A, B, C, COEFFS, D, F3, SEL_ARITH, SEL_ARITH_W, WEIGHTS};
use super::layout::{Builder, Loc};
use super::WeightVisibility;
use crate::lower::Cell;

/// The Arith gate reading its weights as `weights` says: `F0..F3` under `SEL_ARITH`, or `W0..W3`
/// under `SEL_ARITH_W` (the model's own gates with private weights).
pub(super) fn configure(
    meta: &mut ConstraintSystem<Fr>,
    cols: &Columns,
    weights: WeightVisibility,
) {
    let (name, sel) = match weights {
        WeightVisibility::Fixed => ("arith", SEL_ARITH),
        WeightVisibility::Private => ("arith (private weights)", SEL_ARITH_W),
    };
    meta.create_gate(name, |m| {
        let s = cols.selector(m, sel);
        let row = cols.cur(m);
        let [w0, w1, w2, w3] = cols.weights(m, &row, weights);
        let [xa, xb, xc, xd, ..] = row.advice;
        vec![
            s.clone() * (xd.clone() - xa.clone() * xb.clone()),
            s * (xc - (w0 * xa + w1 * xb + w2 * xd + w3)),
        ]
    });
}

/// Lays out the model's `out = ca·a + cb·b + cab·a·b + c0` (`operands` `[a, b]`, `coeffs`
/// `[ca, cb, cab, c0]`).
pub(super) fn place(b: &mut Builder, out: Cell, operands: [Option<Cell>; 2], coeffs: [i64; 4]) {
    let [a, bb] = operands;
    let [ca, cb, cab, c0] = coeffs;
    let private = b.weights == WeightVisibility::Private;
    let r = b.take(1);
    b.selectors[if private { SEL_ARITH_W } else { SEL_ARITH }][r] = true;
    let av = a.map_or(0, |c| b.value(c));
    let bv = bb.map_or(0, |c| b.value(c));
    // An absent operand reads as 0: its coefficients are dropped, so the free advice in its
    // place cannot matter.
    let coeffs = [
        if a.is_some() { ca } else { 0 },
        if bb.is_some() { cb } else { 0 },
        if a.is_some() && bb.is_some() { cab } else { 0 },
        c0,
    ];
    for (j, k) in coeffs.into_iter().enumerate() {
        if private {
            b.weight[WEIGHTS[j]][r] = k;
        } else {
            b.coeff[COEFFS[j]][r] = k;
        }
    }
    if let Some(c) = a {
        b.advice[A][r] = av;
        b.read((A, r), c);
    }
    if let Some(c) = bb {
        b.advice[B][r] = bv;
        b.read((B, r), c);
    }
    b.advice[D][r] = av * bv;
    b.advice[C][r] = b.value(out);
    b.write((C, r), out);
}

/// The cell holding constant `k`, which other gates read as an operand: one Arith row per
/// distinct value (`C = F3 = k`), written where it is first needed.
pub(super) fn constant(b: &mut Builder, k: i64) -> Loc {
    if let Some(&at) = b.constants.get(&k) {
        return at;
    }
    let r = b.take(1);
    b.selectors[SEL_ARITH][r] = true;
    b.coeff[F3][r] = k;
    b.advice[C][r] = k;
    b.constants.insert(k, (C, r));
    (C, r)
}
