//! The MAC chip, `ceil(terms/4)` rows: `ACC' = ACC + F0·A + F1·B + F2·C + F3·D` (`W0..W3` for
//! `F0..F3` with private weights); the sum lands in `ACC` of the row after the last, which the
//! next gate may also use (no other gate reads `ACC` on its first row). A chain starts from `ACC`
//! copied from a zero cell, or, on the previous chain's sum row, takes that sum back out with one
//! more term (copied from it, weight -1).

use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::plonk::ConstraintSystem;
use halo2_axiom::poly::Rotation;

use super::arith;
use super::columns::{Columns, A, ACC, B, C, COEFFS, D, SEL_MAC, SEL_MAC_W, TERMS, WEIGHTS};
use super::layout::{Builder, Loc};
use super::WeightVisibility;
use crate::lower::Cell;

/// The MAC gate reading its weights as `weights` says: `F0..F3` under `SEL_MAC`, or `W0..W3`
/// under `SEL_MAC_W` (the model's own MACs with private weights).
pub(super) fn configure(
    meta: &mut ConstraintSystem<Fr>,
    cols: &Columns,
    weights: WeightVisibility,
) {
    let (name, sel) = match weights {
        WeightVisibility::Fixed => ("mac", SEL_MAC),
        WeightVisibility::Private => ("mac (private weights)", SEL_MAC_W),
    };
    meta.create_gate(name, |m| {
        let s = cols.selector(m, sel);
        let next = cols.query(m, ACC, Rotation::next());
        let row = cols.cur(m);
        let [w0, w1, w2, w3] = cols.weights(m, &row, weights);
        let sum = row[ACC].clone()
            + w0 * row[A].clone()
            + w1 * row[B].clone()
            + w2 * row[C].clone()
            + w3 * row[D].clone();
        vec![s * (next - sum)]
    });
}

/// Lays out the model's MAC `out = Σ x·w` over `terms`.
pub(super) fn place(b: &mut Builder, out: Cell, terms: &[(Cell, i64)]) {
    let private = b.weights == WeightVisibility::Private;
    let zero = arith::constant(b, 0);
    let (r0, cancel) = chain_start(b, terms.len(), zero);
    let n = (terms.len() + cancel.is_some() as usize).div_ceil(4).max(1);
    b.take(n);
    let mut acc = b.advice[ACC][r0];
    for i in 0..n {
        let r = r0 + i;
        b.selectors[if private { SEL_MAC_W } else { SEL_MAC }][r] = true;
        b.advice[ACC][r] = acc;
        for (j, col) in TERMS.into_iter().enumerate() {
            let k = 4 * i + j;
            let (x, w) = match (terms.get(k), cancel) {
                (Some(&(x, w)), _) => {
                    b.read((col, r), x);
                    (b.value(x), w)
                }
                (None, Some(sum)) if k == terms.len() => {
                    b.copies.push(((col, r), sum));
                    (b.advice[ACC][r0], -1)
                }
                _ => continue,
            };
            if private {
                b.weight[WEIGHTS[j]][r] = w;
            } else {
                b.coeff[COEFFS[j]][r] = w;
            }
            b.advice[col][r] = x;
            acc += w * x;
        }
    }
    chain_end(b, r0 + n);
    b.advice[ACC][r0 + n] = acc;
    b.write((ACC, r0 + n), out);
}

/// Where a MAC chain of `n_terms` terms starts. Its gate adds each row's terms to `ACC`, so the
/// chain must start from a known `ACC`: on the previous chain's sum row, one more term takes that
/// sum back out (returned: read it with weight -1), unless that term would cost a row; elsewhere
/// (on a fresh row) `ACC` is a copy of the cell `zero`. The caller takes the rows from the
/// returned one on.
pub(super) fn chain_start(b: &mut Builder, n_terms: usize, zero: Loc) -> (usize, Option<Loc>) {
    let on_sum = b.mac_sums.last() == Some(&b.row);
    if on_sum && !n_terms.is_multiple_of(4) {
        return (b.row, Some((ACC, b.row)));
    }
    if on_sum {
        b.row += 1;
    }
    b.grow(b.row + 1);
    b.copies.push(((ACC, b.row), zero));
    (b.row, None)
}

/// A MAC chain ends with its sum in `ACC` of row `sum`, where the next gate may start.
pub(super) fn chain_end(b: &mut Builder, sum: usize) {
    b.mac_sums.push(sum);
    b.row = sum;
    b.grow(sum + 1);
}
