//! A block of dot products `outs[m] = Σ_k w[m][k]·xs[k]`: each a chain of `acc' = w·x + acc` on
//! plonky2's arithmetic gate (20 operations a row), the weights gate constants (private
//! weights: prover-set targets, every one, in order).

use plonky2::field::types::Field;

use super::{felt, Builder, F};
use crate::error::CircuitError;
use crate::lower::Cell;

pub(super) fn build(
    s: &mut Builder<'_>,
    outs: &[Cell],
    xs: &[Cell],
    weights: &[i64],
) -> Result<(), CircuitError> {
    let one = s.b.one();
    let xs = xs
        .iter()
        .map(|&x| s.cell(x))
        .collect::<Result<Vec<_>, _>>()?;
    for (&out, row) in outs.iter().zip(weights.chunks(xs.len().max(1))) {
        let mut acc = s.b.zero();
        for (&x, &w) in xs.iter().zip(row) {
            if let Some(tw) = s.private_weight(w) {
                acc = s.b.mul_add(tw, x, acc);
            } else if w != 0 {
                acc = s.b.arithmetic(felt(w), F::ONE, x, one, acc);
            }
        }
        s.write(out, acc)?;
    }
    Ok(())
}
