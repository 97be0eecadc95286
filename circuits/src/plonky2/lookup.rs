//! `out = table[x]` on plonky2's lookup tables, which map 16-bit inputs to 16-bit outputs: the
//! index `x - x_lo` is looked up in one table per 16-bit limb of `table[i] - min`, and `out`
//! is the limbs recombined. The lookup argument puts `(x - x_lo, limb)` in each limb's table,
//! so `x` is inside the domain and every limb, hence `out`, is the function's value.
//!
//! Zero-knowledge caveat: plonky2 1.1 does not blind its lookup polynomials, which are opened at
//! `ζ` and at the FRI query points, so with a hashed or private input the openings carry linear
//! combinations of the looked-up values (range checks avoid tables then, `range.rs`).

use std::sync::Arc;

use plonky2::field::types::Field;

use super::{bits_for, felt, Builder, F};
use crate::error::CircuitError;
use crate::lower::Cell;

/// The largest table plonky2's 16-bit lookups index.
pub const MAX_TABLE: usize = 1 << 16;

/// One lowering table as plonky2 lookup tables.
#[derive(Clone, Debug)]
pub(crate) struct Limbs {
    x_lo: i64,
    min: i64,
    luts: Vec<usize>,
}

fn limbs(s: &mut Builder<'_>, table: u32, out: Cell) -> Result<Limbs, CircuitError> {
    if let Some(l) = s.luts.get(&table) {
        return Ok(l.clone());
    }
    let t = s
        .circuit
        .tables
        .get(table as usize)
        .ok_or_else(|| CircuitError::Malformed(format!("table {table} does not exist")))?;
    if t.values.is_empty() || t.values.len() > MAX_TABLE {
        let (node, op) = s.circuit.origin(out).unwrap_or(("?", "Lookup"));
        return Err(CircuitError::Unsupported {
            node: node.into(),
            op: op.into(),
            detail: format!(
                "plonky2's lookups index at most 2^16 entries; this table has {} (compile with --table-bits 16 or less)",
                t.values.len()
            ),
        });
    }
    let min = *t.values.iter().min().unwrap_or(&0);
    let max = *t.values.iter().max().unwrap_or(&0);
    let span = max as i128 - min as i128;
    let n_limbs = bits_for(span + 1).div_ceil(16).max(1);
    let luts = (0..n_limbs)
        .map(|j| {
            let pairs: Vec<(u16, u16)> = t
                .values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let limb = ((v as i128 - min as i128) >> (16 * j)) & 0xffff;
                    (i as u16, limb as u16)
                })
                .collect();
            s.b.add_lookup_table_from_pairs(Arc::new(pairs))
        })
        .collect();
    let l = Limbs {
        x_lo: t.x_lo,
        min,
        luts,
    };
    s.luts.insert(table, l.clone());
    Ok(l)
}

pub(super) fn build(
    s: &mut Builder<'_>,
    out: Cell,
    x: Cell,
    table: u32,
) -> Result<(), CircuitError> {
    let l = limbs(s, table, out)?;
    let tx = s.cell(x)?;
    let index = s.b.add_const(tx, -felt(l.x_lo));
    let one = s.b.one();
    let mut acc = s.b.constant(felt(l.min));
    for (j, &lut) in l.luts.iter().enumerate() {
        let limb = s.b.add_lookup_from_index(index, lut);
        acc =
            s.b.arithmetic(F::from_canonical_u64(1 << (16 * j)), F::ONE, limb, one, acc);
    }
    s.write(out, acc)
}
