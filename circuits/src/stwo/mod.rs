//! The stwo AIR: one component per gate kind, one per lookup table, and the 16-bit range table.
//!
//! Three LogUp relations tie the components together:
//! - `wire(id, value)`: a gate that writes cell `id` adds `reads(id) / (wire(id, value))`, every
//!   read subtracts `1 / wire(id, value)`; public inputs and outputs are added by the verifier.
//!   Cell ids and read counts are preprocessed, so the verification key fixes the graph.
//! - `range(v)`: `v ∈ [0, 2^16)`, served by the range component.
//! - `table(tag, x, y)`: `y = table_tag[x]`, served by one component per table.
//!
//! Weights, constants, cell ids and tables are preprocessed columns: the verification key commits
//! to the model. Every constraint has degree ≤ 3 and every LogUp denominator is linear, so
//! `finalize_logup_in_pairs` keeps the composition within `log_size + 1`.
//!
//! Each gate kind's file holds its column layout, its constraints and relation entries, and (with
//! the `prover` feature) the generation of its trace. This module holds what they share and the
//! dispatch from a [`Kind`] to its component; `trace` turns a circuit into every component's
//! columns, in AIR order, and computes the LogUp interaction trace.

use num_traits::One;
use stwo::core::fields::m31::BaseField;
use stwo_constraint_framework::preprocessed_columns::PreProcessedColumnId;
use stwo_constraint_framework::{relation, EvalAtRow, FrameworkEval, RelationEntry};

use crate::field::m31;

/// Defines a component's column indices, in commitment order, with `COUNT` (how many) and `NAMES`
/// (preprocessed column ids are `{component}_{name}`), so an index and its name cannot drift.
macro_rules! columns {
    ($($col:ident = $name:literal),+ $(,)?) => {
        columns!(@index 0usize; $($col)+);
        /// How many columns.
        pub const COUNT: usize = [$($name),+].len();
        /// The columns' names, in order.
        pub const NAMES: [&str; COUNT] = [$($name),+];
    };
    (@index $i:expr; $col:ident $($rest:ident)*) => {
        pub const $col: usize = $i;
        columns!(@index $i + 1; $($rest)*);
    };
    (@index $i:expr;) => {};
}

pub mod arith;
pub mod div;
pub mod lookup;
pub mod mac;
pub mod range;
pub mod select;
#[cfg(feature = "prover")]
pub mod trace;

relation!(WireRelation, 2);
relation!(RangeRelation, 1);
relation!(TableRelation, 3);

/// The relations' random elements, drawn after the main trace is committed.
#[derive(Clone, Debug, PartialEq)]
pub struct Relations {
    pub wire: WireRelation,
    pub range: RangeRelation,
    pub table: TableRelation,
}

impl Relations {
    pub fn draw(channel: &mut impl stwo::core::channel::Channel) -> Self {
        Relations {
            wire: WireRelation::draw(channel),
            range: RangeRelation::draw(channel),
            table: TableRelation::draw(channel),
        }
    }
}

/// Inputs a MAC row reads.
pub const MAC_INPUTS: usize = 8;
/// Accumulators per MAC row: the outputs that share the row's inputs.
pub const MAC_OUTPUTS: usize = 4;
const _: () = assert!(
    MAC_INPUTS.is_multiple_of(MAC_OUTPUTS),
    "single outputs split the lanes evenly"
);
/// The range table covers `[0, 2^RANGE_BITS)`.
pub const RANGE_BITS: u32 = 16;
/// Smallest component (SIMD packs 16 rows).
pub const MIN_LOG_SIZE: u32 = 5;
/// Comparisons and remainders are split into limbs that the range table checks whole.
pub const LIMB_BITS: u32 = RANGE_BITS;
const LIMB: u32 = 1 << LIMB_BITS;

/// The components, in the order `trace::build` emits them (tables by tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Mac,
    Arith,
    Select,
    Div,
    Lookup,
    Table(u32),
    Range,
}

#[derive(Clone, Copy, Debug)]
pub enum Col {
    Pre(usize),
    Main(usize),
}

/// `sum coeff * column + constant`.
#[derive(Clone, Debug)]
pub struct Lin {
    pub terms: Vec<(i64, Col)>,
    pub constant: i64,
}

fn pre_col(i: usize) -> Lin {
    Lin {
        terms: vec![(1, Col::Pre(i))],
        constant: 0,
    }
}
fn main_col(i: usize) -> Lin {
    Lin {
        terms: vec![(1, Col::Main(i))],
        constant: 0,
    }
}
fn neg(l: Lin) -> Lin {
    Lin {
        terms: l.terms.into_iter().map(|(c, x)| (-c, x)).collect(),
        constant: -l.constant,
    }
}
fn constant(c: i64) -> Lin {
    Lin {
        terms: vec![],
        constant: c,
    }
}
fn plus(mut a: Lin, b: Lin) -> Lin {
    a.terms.extend(b.terms);
    a.constant += b.constant;
    a
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rel {
    Wire,
    Range,
    Table,
}

/// One LogUp entry: `mult / rel(values)`.
#[derive(Clone, Debug)]
pub struct LookupSpec {
    pub rel: Rel,
    pub mult: Lin,
    pub values: Vec<Lin>,
}

/// Reads cell `pre[id]` with value `main[value]`, `pre[mult]` times (0 or 1).
fn read(id: usize, mult: usize, value: usize) -> LookupSpec {
    LookupSpec {
        rel: Rel::Wire,
        mult: neg(pre_col(mult)),
        values: vec![pre_col(id), main_col(value)],
    }
}
/// Writes cell `pre[id]` with value `main[value]`, once per read of it (`pre[mult]`).
fn write(id: usize, mult: usize, value: usize) -> LookupSpec {
    LookupSpec {
        rel: Rel::Wire,
        mult: pre_col(mult),
        values: vec![pre_col(id), main_col(value)],
    }
}
/// Checks `v ∈ [0, 2^RANGE_BITS)`.
fn range(v: Lin) -> LookupSpec {
    LookupSpec {
        rel: Rel::Range,
        mult: constant(-1),
        values: vec![v],
    }
}

impl Kind {
    pub fn name(&self) -> String {
        match self {
            Kind::Mac => "mac".into(),
            Kind::Arith => "arith".into(),
            Kind::Select => "select".into(),
            Kind::Div => "div".into(),
            Kind::Lookup => "lookup".into(),
            Kind::Table(t) => format!("table{t}"),
            Kind::Range => "range".into(),
        }
    }

    pub fn pre_names(&self) -> Vec<String> {
        let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        match self {
            Kind::Mac => mac::pre::names(),
            Kind::Arith => owned(&arith::pre::NAMES),
            Kind::Select => owned(&select::pre::NAMES),
            Kind::Div => owned(&div::pre::NAMES),
            Kind::Lookup => owned(&lookup::pre::NAMES),
            Kind::Table(_) => owned(&lookup::table_pre::NAMES),
            Kind::Range => owned(&range::pre::NAMES),
        }
    }

    pub fn n_main(&self) -> usize {
        match self {
            Kind::Mac => mac::main::COUNT,
            Kind::Arith => arith::main::COUNT,
            Kind::Select => select::main::COUNT,
            Kind::Div => div::main::COUNT,
            Kind::Lookup => lookup::main::COUNT,
            Kind::Table(_) => lookup::table_main::COUNT,
            Kind::Range => range::main::COUNT,
        }
    }

    /// Preprocessed column ids, unique across components.
    pub fn pre_ids(&self) -> Vec<PreProcessedColumnId> {
        self.pre_names()
            .into_iter()
            .map(|n| PreProcessedColumnId {
                id: format!("{}_{n}", self.name()),
            })
            .collect()
    }

    /// The LogUp entries of one row, in the order they are paired.
    pub fn lookups(&self) -> Vec<LookupSpec> {
        match self {
            Kind::Mac => mac::lookups(),
            Kind::Arith => arith::lookups(),
            Kind::Select => select::lookups(),
            Kind::Div => div::lookups(),
            Kind::Lookup => lookup::lookups(),
            Kind::Table(tag) => lookup::table_lookups(*tag),
            Kind::Range => range::lookups(),
        }
    }
}

/// A component of the AIR: its kind and size.
#[derive(Clone, Debug)]
pub struct CiroEval {
    pub kind: Kind,
    pub log_size: u32,
    pub relations: Relations,
}

fn lin<E: EvalAtRow>(l: &Lin, pre: &[E::F], main: &[E::F]) -> E::F {
    let mut acc = E::F::from(m31(l.constant));
    for (c, col) in &l.terms {
        let v = match col {
            Col::Pre(i) => pre[*i].clone(),
            Col::Main(i) => main[*i].clone(),
        };
        acc += if *c == 1 { v } else { v * m31(*c) };
    }
    acc
}

/// The next `n` main columns at the current row.
fn read_main<E: EvalAtRow>(eval: &mut E, n: usize) -> Vec<E::F> {
    (0..n).map(|_| eval.next_trace_mask()).collect()
}

fn one<E: EvalAtRow>() -> E::F {
    E::F::one()
}

fn limb<E: EvalAtRow>() -> E::F {
    E::F::from(BaseField::from_u32_unchecked(LIMB))
}

impl FrameworkEval for CiroEval {
    fn log_size(&self) -> u32 {
        self.log_size
    }

    fn max_constraint_log_degree_bound(&self) -> u32 {
        self.log_size + 1
    }

    fn evaluate<E: EvalAtRow>(&self, mut eval: E) -> E {
        let pre: Vec<E::F> = self
            .kind
            .pre_ids()
            .into_iter()
            .map(|id| eval.get_preprocessed_column(id))
            .collect();
        // Each component reads its main columns and adds its constraints; tables and the range
        // component only serve their relation.
        let main = match self.kind {
            Kind::Mac => mac::evaluate(&mut eval, &pre),
            Kind::Arith => arith::evaluate(&mut eval, &pre),
            Kind::Select => select::evaluate(&mut eval, &pre),
            Kind::Div => div::evaluate(&mut eval, &pre),
            Kind::Lookup | Kind::Table(_) | Kind::Range => read_main(&mut eval, self.kind.n_main()),
        };
        for spec in self.kind.lookups() {
            let mult = lin::<E>(&spec.mult, &pre, &main);
            let values: Vec<E::F> = spec
                .values
                .iter()
                .map(|l| lin::<E>(l, &pre, &main))
                .collect();
            match spec.rel {
                Rel::Wire => eval.add_to_relation(RelationEntry::new(
                    &self.relations.wire,
                    mult.into(),
                    &values,
                )),
                Rel::Range => eval.add_to_relation(RelationEntry::new(
                    &self.relations.range,
                    mult.into(),
                    &values,
                )),
                Rel::Table => eval.add_to_relation(RelationEntry::new(
                    &self.relations.table,
                    mult.into(),
                    &values,
                )),
            }
        }
        eval.finalize_logup_in_pairs();
        eval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column ids are part of how the verifier maps preprocessed columns; they must stay unique.
    #[test]
    fn preprocessed_ids_are_unique_and_named_by_component() {
        let kinds = [
            Kind::Mac,
            Kind::Arith,
            Kind::Select,
            Kind::Div,
            Kind::Lookup,
            Kind::Table(0),
            Kind::Table(1),
            Kind::Range,
        ];
        let ids: Vec<String> = kinds
            .iter()
            .flat_map(|k| k.pre_ids().into_iter().map(|c| c.id))
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        assert_eq!(mac::pre::names().len(), mac::pre::COUNT);
        assert_eq!(Kind::Mac.pre_ids()[0].id, "mac_first");
        assert_eq!(Kind::Mac.pre_ids()[mac::pre::x_mult(0)].id, "mac_x_mult0");
        assert_eq!(Kind::Mac.pre_ids()[mac::pre::w(1, 2)].id, "mac_w1_2");
        assert_eq!(
            Kind::Select.pre_ids()[select::pre::V_SHIFT].id,
            "select_v_shift"
        );
        assert_eq!(Kind::Table(1).pre_ids()[1].id, "table1_y");
    }

    /// Every entry of every component reads columns it has.
    #[test]
    fn lookups_stay_inside_their_columns() {
        for kind in [
            Kind::Mac,
            Kind::Arith,
            Kind::Select,
            Kind::Div,
            Kind::Lookup,
            Kind::Table(3),
            Kind::Range,
        ] {
            let (n_pre, n_main) = (kind.pre_names().len(), kind.n_main());
            for spec in kind.lookups() {
                for l in std::iter::once(&spec.mult).chain(&spec.values) {
                    for (_, col) in &l.terms {
                        match *col {
                            Col::Pre(i) => assert!(i < n_pre, "{kind:?}: pre {i}"),
                            Col::Main(i) => assert!(i < n_main, "{kind:?}: main {i}"),
                        }
                    }
                }
            }
        }
    }
}
