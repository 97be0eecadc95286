//! The region's columns as typed indices, the values a layout gives each kind of column
//! ([`Grid`]), and their allocation in the constraint system ([`Columns`]).
//!
//! The order of allocation (and of the first query of each column at each rotation) is part of
//! the verifying key and of the generated Solidity verifier: [`Columns::configure`] and
//! [`Columns::cur`] keep it fixed.

use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use halo2_axiom::circuit::Region;
use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::plonk::{
    self, Column, ConstraintSystem, Error, Expression, Fixed, Instance, Selector, VirtualCells,
};
use halo2_axiom::poly::Rotation;

use super::WeightVisibility;

/// A kind of column whose columns are numbered in allocation order.
pub trait ColumnIndex: Copy + 'static {
    /// Every column of the kind, in allocation order.
    const ALL: &'static [Self];
    /// The column's position among its kind.
    fn index(self) -> usize;
}

/// Declares a kind of column: a newtype over its index, the named columns in allocation order,
/// and their count.
macro_rules! column_kind {
    (@consts $name:ident, $i:expr, $col:ident $(, $rest:ident)*) => {
        pub const $col: $name = $name($i);
        column_kind!(@consts $name, $i + 1, $($rest),*);
    };
    (@consts $name:ident, $i:expr,) => {};
    ($(#[$doc:meta])* $name:ident, $n:ident = $count:literal, [$($col:ident),+]) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(usize);
        pub const $n: usize = $count;
        impl ColumnIndex for $name {
            const ALL: &'static [Self] = &{
                let mut all = [$name(0); $count];
                let mut i = 0;
                while i < $count {
                    all[i] = $name(i);
                    i += 1;
                }
                all
            };
            fn index(self) -> usize {
                self.0
            }
        }
        column_kind!(@consts $name, 0usize, $($col),+);
    };
}

column_kind!(
    /// An advice column: `A B C D` (operands and terms), `ACC` (a MAC chain's accumulator, a
    /// select's branch value) and `L` (the value the lookup reads: range limbs and lookup inputs).
    AdviceCol,
    N_ADVICE = 6,
    [A, B, C, D, ACC, L]
);
column_kind!(
    /// A coefficient column `F0..F3` (fixed: the verifying key commits to it).
    Coeff,
    N_COEFF = 4,
    [F0, F1, F2, F3]
);
column_kind!(
    /// A private weight column `W0..W3`: advice columns after `A..L`, so their commitments are
    /// the proof's advice commitments `N_ADVICE..N_ADVICE + N_WEIGHT`.
    WeightCol,
    N_WEIGHT = 4,
    [W0, W1, W2, W3]
);
column_kind!(
    /// A selector. `SEL_MAC_W` and `SEL_ARITH_W` exist with private weights only: the MAC and
    /// Arith rows of the model's own gates, whose weights come from `W0..W3` instead of
    /// `F0..F3` (see [`WeightVisibility`]).
    Sel,
    N_SEL = 7,
    [SEL_MAC, SEL_ARITH, SEL_SELECT, SEL_DIV, SEL_POSEIDON, SEL_MAC_W, SEL_ARITH_W]
);

/// The columns a MAC row reads its four terms from, in the order of their coefficients
/// (`F0..F3`, or `W0..W3`).
pub const TERMS: [AdviceCol; 4] = [A, B, C, D];
/// The coefficient columns in order: term `j` of a MAC row has weight `COEFFS[j]`.
pub const COEFFS: [Coeff; N_COEFF] = [F0, F1, F2, F3];
/// The weight columns in order, as [`COEFFS`].
pub const WEIGHTS: [WeightCol; N_WEIGHT] = [W0, W1, W2, W3];
/// Columns that take part in copy constraints. Fewer columns, fewer permutation commitments
/// (cheaper on chain): lookup rows take their input in `A` (tied to `L` by the tag gate) and give
/// their output in `C`.
pub const EQUALITY: [AdviceCol; 5] = [A, B, C, D, ACC];
/// Selectors a circuit with fixed weights has (an unused selector would still cost a column).
const N_SEL_FIXED: usize = 5;

/// One kind of column's values over a layout's rows, indexed by the column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid<K, T> {
    cols: Vec<Vec<T>>,
    kind: PhantomData<K>,
}

impl<K: ColumnIndex, T: Clone> Grid<K, T> {
    /// Every column of the kind, empty.
    pub(super) fn new() -> Self {
        Grid {
            cols: vec![Vec::new(); K::ALL.len()],
            kind: PhantomData,
        }
    }

    /// Every column at `n` rows, new rows set to `fill`.
    pub(super) fn resize(&mut self, n: usize, fill: T) {
        self.cols.iter_mut().for_each(|c| c.resize(n, fill.clone()));
    }

    /// The columns with their values, in allocation order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &Vec<T>)> {
        K::ALL.iter().copied().zip(&self.cols)
    }
}

impl<K: ColumnIndex, T> Index<K> for Grid<K, T> {
    type Output = Vec<T>;
    fn index(&self, c: K) -> &Vec<T> {
        &self.cols[c.index()]
    }
}

impl<K: ColumnIndex, T> IndexMut<K> for Grid<K, T> {
    fn index_mut(&mut self, c: K) -> &mut Vec<T> {
        &mut self.cols[c.index()]
    }
}

/// The constraint system's columns the gates share (the lookup table's own columns are
/// [`super::lookup::TableColumns`]).
#[derive(Clone, Debug)]
pub struct Columns {
    advice: [Column<plonk::Advice>; N_ADVICE],
    /// `W0..W3` with private weights, else empty.
    weight: Vec<Column<plonk::Advice>>,
    coeff: [Column<Fixed>; N_COEFF],
    /// The lookup tag (see [`super::lookup`]).
    pub tag: Column<Fixed>,
    /// `N_SEL_FIXED` selectors, or `N_SEL` with private weights.
    selectors: Vec<Selector>,
    /// The public values; not in the permutation: tagged rows read it (see the tagged-row gate).
    pub instance: Column<Instance>,
}

/// The current row's advice and coefficient cells, as a gate reads them.
pub struct CurRow {
    pub advice: [Expression<Fr>; N_ADVICE],
    pub coeff: [Expression<Fr>; N_COEFF],
}

impl Index<AdviceCol> for CurRow {
    type Output = Expression<Fr>;
    fn index(&self, c: AdviceCol) -> &Expression<Fr> {
        &self.advice[c.index()]
    }
}

impl Index<Coeff> for CurRow {
    type Output = Expression<Fr>;
    fn index(&self, c: Coeff) -> &Expression<Fr> {
        &self.coeff[c.index()]
    }
}

impl Columns {
    /// Allocates the shared columns: advice `A..L`, then `W0..W3` (private weights), the
    /// equality set, coefficients `F0..F3`, the tag, and (through `table`, called in between so
    /// the table's fixed columns follow the tag) the lookup table's columns; then the selectors
    /// and the instance column.
    pub fn configure<T>(
        meta: &mut ConstraintSystem<Fr>,
        weights: WeightVisibility,
        table: impl FnOnce(&mut ConstraintSystem<Fr>) -> T,
    ) -> (Columns, T) {
        let private = weights == WeightVisibility::Private;
        let advice: [Column<plonk::Advice>; N_ADVICE] =
            std::array::from_fn(|_| meta.advice_column());
        // Allocated right after `A..L`: the proof's advice commitments N_ADVICE.. are theirs.
        let weight: Vec<Column<plonk::Advice>> = (0..if private { N_WEIGHT } else { 0 })
            .map(|_| meta.advice_column())
            .collect();
        for c in EQUALITY {
            meta.enable_equality(advice[c.index()]);
        }
        let coeff: [Column<Fixed>; N_COEFF] = std::array::from_fn(|_| meta.fixed_column());
        let tag = meta.fixed_column();
        let table = table(meta);
        let selectors: Vec<Selector> = (0..if private { N_SEL } else { N_SEL_FIXED })
            .map(|_| meta.selector())
            .collect();
        let instance = meta.instance_column();
        let columns = Columns {
            advice,
            weight,
            coeff,
            tag,
            selectors,
            instance,
        };
        (columns, table)
    }

    pub fn advice(&self, c: AdviceCol) -> Column<plonk::Advice> {
        self.advice[c.index()]
    }

    /// `W0..W3` (empty with fixed weights).
    pub fn weight(&self) -> &[Column<plonk::Advice>] {
        &self.weight
    }

    pub fn coeff(&self, c: Coeff) -> Column<Fixed> {
        self.coeff[c.index()]
    }

    pub fn query(
        &self,
        m: &mut VirtualCells<'_, Fr>,
        c: AdviceCol,
        at: Rotation,
    ) -> Expression<Fr> {
        m.query_advice(self.advice(c), at)
    }

    pub fn query_coeff(
        &self,
        m: &mut VirtualCells<'_, Fr>,
        c: Coeff,
        at: Rotation,
    ) -> Expression<Fr> {
        m.query_fixed(self.coeff(c), at)
    }

    pub fn selector(&self, m: &mut VirtualCells<'_, Fr>, s: Sel) -> Expression<Fr> {
        m.query_selector(self.selectors[s.index()])
    }

    /// Turns selector `s` on at `row`.
    pub fn enable(&self, region: &mut Region<'_, Fr>, s: Sel, row: usize) -> Result<(), Error> {
        self.selectors[s.index()].enable(region, row)
    }

    /// Every gate reads the current row's advice and coefficients (queried in this order).
    pub fn cur(&self, m: &mut VirtualCells<'_, Fr>) -> CurRow {
        let advice: [Expression<Fr>; N_ADVICE] =
            std::array::from_fn(|c| m.query_advice(self.advice[c], Rotation::cur()));
        let coeff: [Expression<Fr>; N_COEFF] =
            std::array::from_fn(|c| m.query_fixed(self.coeff[c], Rotation::cur()));
        CurRow { advice, coeff }
    }

    /// The weights of a MAC or Arith row: its coefficients `F0..F3`, or, for the model's own
    /// gates with private weights, `W0..W3` (so structural rows, such as the Poseidon absorb,
    /// keep fixed coefficients the key pins).
    pub fn weights(
        &self,
        m: &mut VirtualCells<'_, Fr>,
        row: &CurRow,
        from: WeightVisibility,
    ) -> [Expression<Fr>; N_WEIGHT] {
        std::array::from_fn(|j| match from {
            WeightVisibility::Private => m.query_advice(self.weight[j], Rotation::cur()),
            WeightVisibility::Fixed => row.coeff[j].clone(),
        })
    }
}
