//! The arithmetic component: `out = ca·a + cb·b + cab·a·b + c0` with preprocessed coefficients;
//! an absent operand reads as 0 (and is not read from the wire relation).

use stwo_constraint_framework::EvalAtRow;

#[cfg(feature = "prover")]
use super::trace::{reads, ComponentTrace};
#[cfg(feature = "prover")]
use super::Kind;
use super::{read, read_main, write, LookupSpec};
#[cfg(feature = "prover")]
use crate::lower::{Circuit, Gate};

/// Preprocessed columns: the operands' cells (multiplicity 0 when absent), the coefficients, the
/// output cell.
pub mod pre {
    columns!(
        A_ID = "a_id",
        A_MULT = "a_mult",
        B_ID = "b_id",
        B_MULT = "b_mult",
        CA = "ca",
        CB = "cb",
        CAB = "cab",
        C0 = "c0",
        OUT_ID = "out_id",
        OUT_MULT = "out_mult",
    );
}

/// Main columns: the operands' and the output's values.
pub mod main {
    columns!(A = "a", B = "b", OUT = "out");
}

/// Reads `a` and `b`, writes `out`.
pub(super) fn lookups() -> Vec<LookupSpec> {
    vec![
        read(pre::A_ID, pre::A_MULT, main::A),
        read(pre::B_ID, pre::B_MULT, main::B),
        write(pre::OUT_ID, pre::OUT_MULT, main::OUT),
    ]
}

/// Reads the main columns and constrains the row.
pub(super) fn evaluate<E: EvalAtRow>(eval: &mut E, pre: &[E::F]) -> Vec<E::F> {
    let main = read_main(eval, main::COUNT);
    let [a, b, out] = [main::A, main::B, main::OUT].map(|i| main[i].clone());
    let [ca, cb, cab, c0] = [pre::CA, pre::CB, pre::CAB, pre::C0].map(|i| pre[i].clone());
    eval.add_constraint(out - (ca * a.clone() + cb * b.clone() + cab * a * b + c0));
    main
}

/// One row per arithmetic gate, in gate order.
#[cfg(feature = "prover")]
pub(super) fn gen_trace(circuit: &Circuit, cells: &[i64]) -> Option<ComponentTrace> {
    let mut t = ComponentTrace::new(Kind::Arith);
    for gate in &circuit.gates {
        let Gate::Arith {
            out,
            a,
            b,
            ca,
            cb,
            cab,
            c0,
        } = gate
        else {
            continue;
        };
        let mut p = [0i64; pre::COUNT];
        let mut m = [0i64; main::COUNT];
        for (cell, id, mult, value) in [
            (a, pre::A_ID, pre::A_MULT, main::A),
            (b, pre::B_ID, pre::B_MULT, main::B),
        ] {
            if let Some(c) = cell {
                p[id] = *c as i64;
                p[mult] = 1;
                m[value] = cells[*c as usize];
            }
        }
        p[pre::CA] = *ca;
        p[pre::CB] = *cb;
        p[pre::CAB] = *cab;
        p[pre::C0] = *c0;
        p[pre::OUT_ID] = *out as i64;
        p[pre::OUT_MULT] = reads(circuit, *out);
        m[main::OUT] = cells[*out as usize];
        t.push(&p, &m);
    }
    t.padded_if_used(&IDLE_PRE, &IDLE_MAIN)
}

/// An idle row: every coefficient 0, nothing read or written.
#[cfg(feature = "prover")]
const IDLE_PRE: [i64; pre::COUNT] = [0; pre::COUNT];
#[cfg(feature = "prover")]
const IDLE_MAIN: [i64; main::COUNT] = [0; main::COUNT];

/// A component of idle rows only, for a circuit with no gate at all (stwo needs a component).
#[cfg(feature = "prover")]
pub(super) fn idle_trace() -> ComponentTrace {
    let mut t = ComponentTrace::new(Kind::Arith);
    t.pad(&IDLE_PRE, &IDLE_MAIN);
    t
}
