//! The tagged lookup and its table. One lookup runs on every usable row: `(TAG, L, TAG·C)` into
//! the tagged table `(tag, x, tag·y)`. Tag 0 is the range table `(0, v, 0)` for `v < 2^b`, where
//! `C` is free; tag `t >= 1` is an activation table `(x, f(x))`, an input range `(x, 0)` (see
//! [`super::input`]), or the public rows' `(0, 0)`, where `C` is the output (`t` is invertible).
//!
//! The Lookup chip, 1 row: `TAG = 1 + table`, `A = L = x`, `C = f(x)` (the tag gate ties `A` to
//! `L`, so only `A B C D ACC` take part in copy constraints).

use halo2_axiom::circuit::Region;
use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::plonk::{Column, ConstraintSystem, Fixed};
use halo2_axiom::poly::Rotation;

use super::columns::{Columns, A, C, D, L};
use super::fr;
use super::layout::Builder;
use crate::lower::{Cell, Circuit};

/// The table's fixed columns `(tag, x, tag·y)`.
#[derive(Clone, Debug)]
pub struct TableColumns {
    tag: Column<Fixed>,
    x: Column<Fixed>,
    y: Column<Fixed>,
}

impl TableColumns {
    pub(super) fn configure(meta: &mut ConstraintSystem<Fr>) -> TableColumns {
        let [tag, x, y] = std::array::from_fn(|_| meta.fixed_column());
        TableColumns { tag, x, y }
    }

    /// Writes the table `(tag, x, y)` (the third column as `tag·y`).
    pub(super) fn assign(&self, region: &mut Region<'_, Fr>, table: &[(i64, i64, i64)]) {
        for (r, &(t, x, y)) in table.iter().enumerate() {
            region.assign_fixed(self.tag, r, fr(t));
            region.assign_fixed(self.x, r, fr(x));
            region.assign_fixed(self.y, r, fr(t) * fr(y));
        }
    }
}

/// On tagged rows (lookups, inputs, public values; tag >= 1, 0 elsewhere): the value `A` is what
/// `L` looks up, and `D` is the instance (the public values on the first rows, zero after them).
pub(super) fn configure_tag_gate(meta: &mut ConstraintSystem<Fr>, cols: &Columns) {
    meta.create_gate("tagged rows", |m| {
        let t = m.query_fixed(cols.tag, Rotation::cur());
        let shown = m.query_instance(cols.instance, Rotation::cur());
        let row = cols.cur(m);
        vec![
            t.clone() * (row[A].clone() - row[L].clone()),
            t * (row[D].clone() - shown),
        ]
    });
}

/// `TAG·C`: the output on lookup rows (`tag·f(x)` in the table), and 0 on range rows, where `C`
/// is free. The product makes this lookup (and so the circuit) degree 5.
pub(super) fn configure_table(
    meta: &mut ConstraintSystem<Fr>,
    cols: &Columns,
    table: &TableColumns,
) {
    meta.lookup_any("tagged table", |m| {
        let t = m.query_fixed(cols.tag, Rotation::cur());
        vec![
            (t.clone(), m.query_fixed(table.tag, Rotation::cur())),
            (
                cols.query(m, L, Rotation::cur()),
                m.query_fixed(table.x, Rotation::cur()),
            ),
            (
                t * cols.query(m, C, Rotation::cur()),
                m.query_fixed(table.y, Rotation::cur()),
            ),
        ]
    });
}

/// Lays out `out = table[x]`.
pub(super) fn place(b: &mut Builder, out: Cell, x: Cell, table: u32) {
    let r = b.take_l(1, 1);
    b.tag[r] = 1 + table as i64;
    b.advice[A][r] = b.value(x);
    b.read((A, r), x);
    b.advice[L][r] = b.value(x);
    b.advice[C][r] = b.value(out);
    b.write((C, r), out);
}

/// The range table (tag 0, `2^limb_bits` rows) and the activation tables (tags `1..`); the input
/// ranges and the public rows' entry follow them (`super::input`).
pub(super) fn table(circuit: &Circuit, limb_bits: u32) -> Vec<(i64, i64, i64)> {
    let mut table: Vec<(i64, i64, i64)> = (0..1 << limb_bits).map(|x| (0, x, 0)).collect();
    for (t, tab) in circuit.tables.iter().enumerate() {
        for (i, &y) in tab.values.iter().enumerate() {
            table.push((1 + t as i64, tab.x_lo + i as i64, y));
        }
    }
    table
}
