//! The select component (max, ReLU, clamps, comparisons): with `s = [a >= b]`,
//! `out = s·(pa·a + pb·b + p0) + (1 - s)·(qa·a + qb·b + q0)`. The comparison is proven by
//! range-checking `v = a - b` (when `s = 1`) or `b - a - 1` (when `s = 0`) as two limbs, the high
//! one also shifted by `v_shift = 2^16 - hi_bound`, so that `v < hi_bound · 2^16`.

use stwo_constraint_framework::EvalAtRow;

#[cfg(feature = "prover")]
use super::trace::{reads, split, ComponentTrace};
use super::{limb, main_col, one, plus, pre_col, range, read, read_main, write, LookupSpec};
#[cfg(feature = "prover")]
use super::{Kind, LIMB_BITS};
#[cfg(feature = "prover")]
use crate::lower::{Circuit, Gate, Operand};

/// Preprocessed columns: `a`'s cell, `b`'s cell or constant (`b_mult` 0 for a constant), the two
/// branches' coefficients, the output cell, the high limb's shift.
pub mod pre {
    columns!(
        A_ID = "a_id",
        A_MULT = "a_mult",
        B_ID = "b_id",
        B_MULT = "b_mult",
        B_CONST = "b_const",
        PA = "pa",
        PB = "pb",
        P0 = "p0",
        QA = "qa",
        QB = "qb",
        Q0 = "q0",
        OUT_ID = "out_id",
        OUT_MULT = "out_mult",
        V_SHIFT = "v_shift",
    );
}

/// Main columns: the operands, the selector, the comparison's limbs, the output.
pub mod main {
    columns!(
        A = "a",
        B = "b",
        S = "s",
        V_LO = "v_lo",
        V_HI = "v_hi",
        OUT = "out",
    );
}

/// Reads `a` and `b`, writes `out`, range-checks the comparison's limbs.
pub(super) fn lookups() -> Vec<LookupSpec> {
    vec![
        read(pre::A_ID, pre::A_MULT, main::A),
        read(pre::B_ID, pre::B_MULT, main::B),
        write(pre::OUT_ID, pre::OUT_MULT, main::OUT),
        range(main_col(main::V_LO)),
        range(main_col(main::V_HI)),
        range(plus(main_col(main::V_HI), pre_col(pre::V_SHIFT))),
    ]
}

/// Reads the main columns and constrains the row.
pub(super) fn evaluate<E: EvalAtRow>(eval: &mut E, pre: &[E::F]) -> Vec<E::F> {
    let main = read_main(eval, main::COUNT);
    let p = |i: usize| pre[i].clone();
    let m = |i: usize| main[i].clone();
    let (a, b, s) = (m(main::A), m(main::B), m(main::S));
    eval.add_constraint((one::<E>() - p(pre::B_MULT)) * (b.clone() - p(pre::B_CONST)));
    eval.add_constraint(s.clone() * (s.clone() - one::<E>()));
    let c = a.clone() - b.clone();
    let v = s.clone() * c.clone() + (one::<E>() - s.clone()) * (-c - one::<E>());
    eval.add_constraint(m(main::V_LO) + m(main::V_HI) * limb::<E>() - v);
    let when_ge = p(pre::PA) * a.clone() + p(pre::PB) * b.clone() + p(pre::P0);
    let when_lt = p(pre::QA) * a + p(pre::QB) * b + p(pre::Q0);
    eval.add_constraint(m(main::OUT) - s.clone() * when_ge - (one::<E>() - s) * when_lt);
    main
}

/// One row per select gate, in gate order.
#[cfg(feature = "prover")]
pub(super) fn gen_trace(circuit: &Circuit, cells: &[i64]) -> Option<ComponentTrace> {
    let mut t = ComponentTrace::new(Kind::Select);
    for gate in &circuit.gates {
        let Gate::Select {
            out,
            a,
            b,
            p: when_ge,
            q: when_lt,
            hi_bound,
        } = gate
        else {
            continue;
        };
        let mut p = [0i64; pre::COUNT];
        let mut m = [0i64; main::COUNT];
        let av = cells[*a as usize];
        let bv = match b {
            Operand::Cell(c) => {
                p[pre::B_ID] = *c as i64;
                p[pre::B_MULT] = 1;
                cells[*c as usize]
            }
            Operand::Const(k) => {
                p[pre::B_CONST] = *k;
                *k
            }
        };
        let s = (av >= bv) as i64;
        let (lo, hi) = split(if s == 1 { av - bv } else { bv - av - 1 });
        p[pre::A_ID] = *a as i64;
        p[pre::A_MULT] = 1;
        [p[pre::PA], p[pre::PB], p[pre::P0]] = *when_ge;
        [p[pre::QA], p[pre::QB], p[pre::Q0]] = *when_lt;
        p[pre::OUT_ID] = *out as i64;
        p[pre::OUT_MULT] = reads(circuit, *out);
        p[pre::V_SHIFT] = (1 << LIMB_BITS) - hi_bound;
        m[main::A] = av;
        m[main::B] = bv;
        m[main::S] = s;
        m[main::V_LO] = lo;
        m[main::V_HI] = hi;
        m[main::OUT] = cells[*out as usize];
        t.push(&p, &m);
    }
    // An idle row compares 0 with 0 (s = 1, v = 0) and reads and writes nothing.
    let mut idle_main = [0i64; main::COUNT];
    idle_main[main::S] = 1;
    t.padded_if_used(&[0; pre::COUNT], &idle_main)
}
