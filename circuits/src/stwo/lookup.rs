//! Table lookups: the lookup component (`y = table_tag[x]`, for activations such as sigmoid and
//! exp) consumes `table(tag, x, y)`, and one table component per table serves it, each entry
//! with the multiplicity of its uses. Tables are preprocessed, so the key fixes them.

#[cfg(feature = "prover")]
use super::trace::{for_each_use, reads, ComponentTrace};
#[cfg(feature = "prover")]
use super::Kind;
use super::{constant, main_col, neg, pre_col, read, write, LookupSpec, Rel};
#[cfg(feature = "prover")]
use crate::lower::{Circuit, Gate};

/// The lookup component's preprocessed columns: `x`'s cell, the table's tag, the output cell.
pub mod pre {
    columns!(
        X_ID = "x_id",
        X_MULT = "x_mult",
        TAG = "tag",
        OUT_ID = "out_id",
        OUT_MULT = "out_mult",
    );
}

/// The lookup component's main columns.
pub mod main {
    columns!(X = "x", Y = "y");
}

/// A table component's preprocessed columns: one `(x, y)` entry per row.
pub mod table_pre {
    columns!(X = "x", Y = "y");
}

/// A table component's main column: how many times each entry is looked up.
pub mod table_main {
    columns!(MULT = "mult");
}

/// Reads `x`, writes `y`, and looks `(tag, x, y)` up once per real row (`x_mult`).
pub(super) fn lookups() -> Vec<LookupSpec> {
    vec![
        read(pre::X_ID, pre::X_MULT, main::X),
        write(pre::OUT_ID, pre::OUT_MULT, main::Y),
        LookupSpec {
            rel: Rel::Table,
            mult: neg(pre_col(pre::X_MULT)),
            values: vec![pre_col(pre::TAG), main_col(main::X), main_col(main::Y)],
        },
    ]
}

/// Table `tag` serves each of its entries as often as it is used.
pub(super) fn table_lookups(tag: u32) -> Vec<LookupSpec> {
    vec![LookupSpec {
        rel: Rel::Table,
        mult: main_col(table_main::MULT),
        values: vec![
            constant(tag as i64),
            pre_col(table_pre::X),
            pre_col(table_pre::Y),
        ],
    }]
}

/// One row per lookup gate, in gate order.
#[cfg(feature = "prover")]
pub(super) fn gen_trace(circuit: &Circuit, cells: &[i64]) -> Option<ComponentTrace> {
    let mut t = ComponentTrace::new(Kind::Lookup);
    for gate in &circuit.gates {
        let Gate::Lookup { out, x, table } = gate else {
            continue;
        };
        let mut p = [0i64; pre::COUNT];
        let mut m = [0i64; main::COUNT];
        p[pre::X_ID] = *x as i64;
        p[pre::X_MULT] = 1;
        p[pre::TAG] = *table as i64;
        p[pre::OUT_ID] = *out as i64;
        p[pre::OUT_MULT] = reads(circuit, *out);
        m[main::X] = cells[*x as usize];
        m[main::Y] = cells[*out as usize];
        t.push(&p, &m);
    }
    // An idle row reads, writes and looks up nothing.
    t.padded_if_used(&[0; pre::COUNT], &[0; main::COUNT])
}

/// One component per table, by tag; the multiplicities are counted later, from every use.
#[cfg(feature = "prover")]
pub(super) fn gen_table_traces(circuit: &Circuit) -> Vec<ComponentTrace> {
    let mut comps = Vec::new();
    for (tag, table) in circuit.tables.iter().enumerate() {
        let mut t = ComponentTrace::new(Kind::Table(tag as u32));
        let entry = |i: usize| {
            let mut p = [0i64; table_pre::COUNT];
            p[table_pre::X] = table.x_lo + i as i64;
            p[table_pre::Y] = table.values[i];
            p
        };
        for i in 0..table.values.len() {
            t.push(&entry(i), &[0; table_main::COUNT]);
        }
        // Padding repeats the first entry, so it adds no new (x, y) pair.
        t.pad(&entry(0), &[0; table_main::COUNT]);
        comps.push(t);
    }
    comps
}

/// How many times each entry of each table is used, by tag then entry.
#[cfg(feature = "prover")]
pub(super) fn table_multiplicities(circuit: &Circuit, comps: &[ComponentTrace]) -> Vec<Vec<i64>> {
    let mut counts: Vec<Vec<i64>> = circuit
        .tables
        .iter()
        .map(|t| vec![0; t.values.len()])
        .collect();
    for_each_use(comps, Rel::Table, |vals, mult| {
        let (tag, x, y) = (vals[0], vals[1], vals[2]);
        if let Some(t) = circuit.tables.get(tag as usize) {
            let i = x - t.x_lo;
            if i >= 0 && (i as usize) < t.values.len() && t.values[i as usize] == y {
                counts[tag as usize][i as usize] += mult;
            }
        }
    });
    counts
}
