//! Trace generation: gates and cell values → component columns (each component fills its own) →
//! stwo evaluations, and the LogUp interaction trace. Proving only (`prover` feature).

use stwo::core::fields::m31::BaseField;
use stwo::core::fields::qm31::SecureField;
use stwo::core::poly::circle::CanonicCoset;
use stwo::core::utils::{bit_reverse_index, coset_index_to_circle_domain_index};
use stwo::core::ColumnVec;
use stwo::prover::backend::simd::column::BaseColumn;
use stwo::prover::backend::simd::m31::{PackedM31, LOG_N_LANES};
use stwo::prover::backend::simd::qm31::PackedSecureField;
use stwo::prover::backend::simd::SimdBackend;
use stwo::prover::poly::circle::CircleEvaluation;
use stwo::prover::poly::BitReversedOrder;
use stwo_constraint_framework::{LogupTraceGenerator, Relation};

use super::{
    arith, div, lookup, mac, range, select, Col, Kind, Lin, LookupSpec, Rel, Relations, LIMB_BITS,
    MIN_LOG_SIZE,
};
use crate::field::m31;
use crate::lower::{Cell, Circuit};

/// The columns of one component, row-major by column, in row order, padded to `2^log_size`.
#[derive(Clone, Debug)]
pub struct ComponentTrace {
    pub kind: Kind,
    pub log_size: u32,
    pub pre: Vec<Vec<i64>>,
    pub main: Vec<Vec<i64>>,
}

impl ComponentTrace {
    pub(super) fn new(kind: Kind) -> Self {
        ComponentTrace {
            kind,
            log_size: 0,
            pre: vec![Vec::new(); kind.pre_names().len()],
            main: vec![Vec::new(); kind.n_main()],
        }
    }

    pub(super) fn push(&mut self, pre: &[i64], main: &[i64]) {
        for (c, &v) in self.pre.iter_mut().zip(pre) {
            c.push(v);
        }
        for (c, &v) in self.main.iter_mut().zip(main) {
            c.push(v);
        }
    }

    pub fn rows(&self) -> usize {
        self.pre[0].len()
    }

    /// Pads to a power of two with `pad_pre` / `pad_main` rows.
    pub(super) fn pad(&mut self, pad_pre: &[i64], pad_main: &[i64]) {
        let log = (self.rows().max(1).next_power_of_two().trailing_zeros()).max(MIN_LOG_SIZE);
        self.log_size = log;
        while self.rows() < 1 << log {
            self.push(pad_pre, pad_main);
        }
    }

    /// A gate component padded with idle rows (rows that satisfy its constraints and add nothing
    /// to the wire relation), or `None` when no gate uses it: it is then left out of the AIR.
    pub(super) fn padded_if_used(mut self, idle_pre: &[i64], idle_main: &[i64]) -> Option<Self> {
        if self.rows() == 0 {
            return None;
        }
        self.pad(idle_pre, idle_main);
        Some(self)
    }

    fn value(&self, l: &Lin, row: usize) -> i64 {
        l.terms.iter().fold(l.constant, |acc, (c, col)| {
            let v = match col {
                Col::Pre(i) => self.pre[*i][row],
                Col::Main(i) => self.main[*i][row],
            };
            acc + c * v
        })
    }
}

/// `v` as (low limb, high part).
pub(super) fn split(v: i64) -> (i64, i64) {
    (v & ((1 << LIMB_BITS) - 1), v >> LIMB_BITS)
}

/// How many times `cell` is read: the multiplicity its writer adds to the wire relation.
pub(super) fn reads(circuit: &Circuit, cell: Cell) -> i64 {
    circuit.reads[cell as usize] as i64
}

/// Builds every component's columns, in AIR order: the gate components that have rows, one
/// component per table, the range table when a comparison or division needs it. `values` are the
/// cell values from [`Circuit::assign`]; for key generation (preprocessed columns only) pass
/// `None` and the main columns stay empty.
pub fn build(circuit: &Circuit, values: Option<&[i64]>) -> Vec<ComponentTrace> {
    let zeros;
    let cells: &[i64] = match values {
        Some(v) => v,
        None => {
            zeros = vec![0i64; circuit.n_cells as usize];
            &zeros
        }
    };
    let mut comps: Vec<ComponentTrace> = [
        mac::gen_trace(circuit, cells),
        arith::gen_trace(circuit, cells),
        select::gen_trace(circuit, cells),
        div::gen_trace(circuit, cells),
        lookup::gen_trace(circuit, cells),
    ]
    .into_iter()
    .flatten()
    .collect();
    let uses_range = comps
        .iter()
        .any(|c| matches!(c.kind, Kind::Select | Kind::Div));
    comps.extend(lookup::gen_table_traces(circuit));
    if uses_range {
        comps.push(range::gen_trace());
    }
    if comps.is_empty() {
        // Pure data movement: no gate, but stwo needs a component. Idle rows add nothing.
        comps.push(arith::idle_trace());
    }
    if values.is_none() {
        for c in &mut comps {
            c.main.iter_mut().for_each(|m| m.clear());
        }
    } else {
        count_multiplicities(circuit, &mut comps);
    }
    comps
}

/// Fills the range and table components' multiplicity columns from every lookup made. A value
/// that is not in its table cannot be counted: the LogUp sum then fails to vanish and the
/// verifier rejects (the prover does not refuse, so tests can check exactly that).
pub fn count_multiplicities(circuit: &Circuit, comps: &mut [ComponentTrace]) {
    let range_counts = range::multiplicities(comps);
    let table_counts = lookup::table_multiplicities(circuit, comps);
    for c in comps.iter_mut() {
        match c.kind {
            Kind::Range => c.main[range::main::MULT] = range_counts.clone(),
            Kind::Table(t) => {
                let counts = &table_counts[t as usize];
                c.main[lookup::table_main::MULT] = (0..c.rows())
                    .map(|i| counts.get(i).copied().unwrap_or(0))
                    .collect();
            }
            _ => {}
        }
    }
}

/// Calls `f(values, multiplicity)` for every non-zero use of `rel` in a gate component's row.
/// The tables and the range component serve lookups and are not counted.
pub(super) fn for_each_use(comps: &[ComponentTrace], rel: Rel, mut f: impl FnMut(&[i64], i64)) {
    for c in comps {
        if matches!(c.kind, Kind::Table(_) | Kind::Range) {
            continue;
        }
        for spec in c.kind.lookups().iter().filter(|s| s.rel == rel) {
            for row in 0..c.rows() {
                let mult = -c.value(&spec.mult, row);
                if mult == 0 {
                    continue;
                }
                let vals: Vec<i64> = spec.values.iter().map(|l| c.value(l, row)).collect();
                f(&vals, mult);
            }
        }
    }
}

/// Column in row (coset) order → SIMD column in the bit-reversed circle-domain order stwo
/// commits, so that the row before row `i` is the mask offset `-1`.
fn to_column(values: &[i64], log_size: u32) -> BaseColumn {
    let n = 1usize << log_size;
    let mut out = vec![BaseField::from_u32_unchecked(0); n];
    for (i, &v) in values.iter().enumerate() {
        out[bit_reverse_index(coset_index_to_circle_domain_index(i, log_size), log_size)] = m31(v);
    }
    BaseColumn::from_iter(out)
}

pub type Evals = ColumnVec<CircleEvaluation<SimdBackend, BaseField, BitReversedOrder>>;

fn evals(cols: &[BaseColumn], log_size: u32) -> Evals {
    let domain = CanonicCoset::new(log_size).circle_domain();
    cols.iter()
        .map(|c| CircleEvaluation::new(domain, c.clone()))
        .collect()
}

/// A component's columns as committed.
pub struct Columns {
    pub kind: Kind,
    pub log_size: u32,
    pub pre: Vec<BaseColumn>,
    pub main: Vec<BaseColumn>,
}

impl Columns {
    pub fn from_trace(t: &ComponentTrace) -> Self {
        Columns {
            kind: t.kind,
            log_size: t.log_size,
            pre: t.pre.iter().map(|c| to_column(c, t.log_size)).collect(),
            main: t.main.iter().map(|c| to_column(c, t.log_size)).collect(),
        }
    }
    pub fn pre_evals(&self) -> Evals {
        evals(&self.pre, self.log_size)
    }
    pub fn main_evals(&self) -> Evals {
        evals(&self.main, self.log_size)
    }

    fn packed(&self, l: &Lin, vec_row: usize) -> PackedM31 {
        let mut acc = PackedM31::broadcast(m31(l.constant));
        for (c, col) in &l.terms {
            let v = match col {
                Col::Pre(i) => self.pre[*i].data[vec_row],
                Col::Main(i) => self.main[*i].data[vec_row],
            };
            acc += if *c == 1 {
                v
            } else {
                v * PackedM31::broadcast(m31(*c))
            };
        }
        acc
    }

    /// The interaction trace and this component's claimed LogUp sum.
    pub fn interaction(&self, rel: &Relations) -> (Evals, SecureField) {
        let specs = self.kind.lookups();
        let mut gen = LogupTraceGenerator::new(self.log_size);
        for pair in specs.chunks(2) {
            let mut col = gen.new_col();
            for vec_row in 0..1 << (self.log_size - LOG_N_LANES) {
                let frac = |s: &LookupSpec| -> (PackedSecureField, PackedSecureField) {
                    let mult: PackedSecureField = self.packed(&s.mult, vec_row).into();
                    let vals: Vec<PackedM31> =
                        s.values.iter().map(|l| self.packed(l, vec_row)).collect();
                    let denom: PackedSecureField = match s.rel {
                        Rel::Wire => rel.wire.combine(&vals),
                        Rel::Range => rel.range.combine(&vals),
                        Rel::Table => rel.table.combine(&vals),
                    };
                    (mult, denom)
                };
                let (n0, d0) = frac(&pair[0]);
                if let Some(second) = pair.get(1) {
                    let (n1, d1) = frac(second);
                    col.write_frac(vec_row, n0 * d1 + n1 * d0, d0 * d1);
                } else {
                    col.write_frac(vec_row, n0, d0);
                }
            }
            col.finalize_col();
        }
        gen.finalize_last()
    }
}
