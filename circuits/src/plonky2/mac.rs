//! A block of dot products `outs[m] = Σ_k w[m][k]·xs[k]`: each a chain of `acc' = w·x + acc` on
//! plonky2's arithmetic gate (20 operations a row), the weights gate constants.

use plonky2::field::types::Field;

use super::{felt, Builder, F};
use crate::error::CircuitError;
use crate::lower::{Cell, Gate};

pub(super) fn build(
    s: &mut Builder<'_>,
    outs: &[Cell],
    xs: &[Cell],
    weights: &[i64],
) -> Result<(), CircuitError> {
    let one = s.b.one();
    let xs_t = xs
        .iter()
        .map(|&x| s.cell(x))
        .collect::<Result<Vec<_>, _>>()?;
    let index: std::collections::HashMap<Cell, usize> =
        xs.iter().enumerate().map(|(i, &x)| (x, i)).collect();
    for (out, terms) in Gate::dot_products(outs, xs, weights) {
        let mut acc = s.b.zero();
        for (x, w) in terms {
            acc = s.b.arithmetic(felt(w), F::ONE, xs_t[index[&x]], one, acc);
        }
        s.write(out, acc)?;
    }
    Ok(())
}
