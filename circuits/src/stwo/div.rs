//! The division component (rescaling, average pooling, division by a constant or a cell):
//! `q = round_div(k·n, d) = floor((2kn + d) / 2d)`, proven by `2kn + d = 2dq + r` with
//! `r ∈ [0, 2d)` (both `r` and `t = 2d - 1 - r` range-checked) and `q ∈ [q_lo, q_hi]` (both
//! `q - q_lo` and `q_hi - q` range-checked). Each checked value is two limbs, the high one also
//! shifted by `2^16 - bound` so that it stays below `bound`.

use stwo::core::fields::m31::BaseField;
use stwo_constraint_framework::EvalAtRow;

#[cfg(feature = "prover")]
use super::trace::{reads, split, ComponentTrace};
use super::{limb, main_col, one, plus, pre_col, range, read, read_main, write, LookupSpec};
#[cfg(feature = "prover")]
use super::{Kind, LIMB_BITS};
#[cfg(feature = "prover")]
use crate::lower::{Circuit, Gate, Operand};

/// Preprocessed columns: `n`'s cell, `k`, `d`'s cell or constant (`d_mult` 0 for a constant),
/// `q_off = -q_lo`, `q_span = q_hi - q_lo`, the output cell, the high limbs' shifts.
pub mod pre {
    columns!(
        N_ID = "n_id",
        N_MULT = "n_mult",
        K = "k",
        D_ID = "d_id",
        D_MULT = "d_mult",
        D_CONST = "d_const",
        Q_OFF = "q_off",
        Q_SPAN = "q_span",
        OUT_ID = "out_id",
        OUT_MULT = "out_mult",
        R_SHIFT = "r_shift",
        Q_SHIFT = "q_shift",
    );
}

/// Main columns: `n`, `d`, the quotient `q`, and the limbs of `r`, `t = 2d - 1 - r`,
/// `q - q_lo` (`Q_LO`, `Q_HI`) and `u = q_hi - q`.
pub mod main {
    columns!(
        N = "n",
        D = "d",
        Q = "q",
        R_LO = "r_lo",
        R_HI = "r_hi",
        T_LO = "t_lo",
        T_HI = "t_hi",
        Q_LO = "q_lo",
        Q_HI = "q_hi",
        U_LO = "u_lo",
        U_HI = "u_hi",
    );
}

/// Reads `n` and `d`, writes `q`, range-checks every limb (the high ones also shifted).
pub(super) fn lookups() -> Vec<LookupSpec> {
    let mut v = vec![
        read(pre::N_ID, pre::N_MULT, main::N),
        read(pre::D_ID, pre::D_MULT, main::D),
        write(pre::OUT_ID, pre::OUT_MULT, main::Q),
    ];
    for (lo, hi, shift) in [
        (main::R_LO, main::R_HI, pre::R_SHIFT),
        (main::T_LO, main::T_HI, pre::R_SHIFT),
        (main::Q_LO, main::Q_HI, pre::Q_SHIFT),
        (main::U_LO, main::U_HI, pre::Q_SHIFT),
    ] {
        v.extend([
            range(main_col(lo)),
            range(main_col(hi)),
            range(plus(main_col(hi), pre_col(shift))),
        ]);
    }
    v
}

/// Reads the main columns and constrains the row.
pub(super) fn evaluate<E: EvalAtRow>(eval: &mut E, pre: &[E::F]) -> Vec<E::F> {
    let main = read_main(eval, main::COUNT);
    let p = |i: usize| pre[i].clone();
    let m = |i: usize| main[i].clone();
    let (n, d, q) = (m(main::N), m(main::D), m(main::Q));
    let r = m(main::R_LO) + m(main::R_HI) * limb::<E>();
    let t = m(main::T_LO) + m(main::T_HI) * limb::<E>();
    let two = || E::F::from(BaseField::from_u32_unchecked(2));
    eval.add_constraint((one::<E>() - p(pre::D_MULT)) * (d.clone() - p(pre::D_CONST)));
    // 2kn + d = 2dq + r
    eval.add_constraint(
        p(pre::K) * n * two() + d.clone() - d.clone() * q.clone() * two() - r.clone(),
    );
    // t = 2d - 1 - r, so r < 2d
    eval.add_constraint(t - (d * two() - one::<E>() - r));
    // q - q_lo and q_hi - q = q_span - (q - q_lo) split into range-checked limbs
    let qv = m(main::Q_LO) + m(main::Q_HI) * limb::<E>();
    eval.add_constraint(q + p(pre::Q_OFF) - qv.clone());
    eval.add_constraint(m(main::U_LO) + m(main::U_HI) * limb::<E>() - (p(pre::Q_SPAN) - qv));
    main
}

/// One row per division gate, in gate order.
#[cfg(feature = "prover")]
pub(super) fn gen_trace(circuit: &Circuit, cells: &[i64]) -> Option<ComponentTrace> {
    let mut t = ComponentTrace::new(Kind::Div);
    let limb = 1i64 << LIMB_BITS;
    for gate in &circuit.gates {
        let Gate::Div {
            out,
            n,
            k,
            d,
            q_lo,
            q_hi,
            q_hi_bound,
            r_hi_bound,
        } = gate
        else {
            continue;
        };
        let mut p = [0i64; pre::COUNT];
        let mut m = [0i64; main::COUNT];
        let dv = match d {
            Operand::Cell(c) => {
                p[pre::D_ID] = *c as i64;
                p[pre::D_MULT] = 1;
                cells[*c as usize]
            }
            Operand::Const(x) => {
                p[pre::D_CONST] = *x;
                *x
            }
        };
        let (nv, qv) = (cells[*n as usize], cells[*out as usize]);
        let r = 2 * k * nv + dv - 2 * dv * qv;
        p[pre::N_ID] = *n as i64;
        p[pre::N_MULT] = 1;
        p[pre::K] = *k;
        p[pre::Q_OFF] = -q_lo;
        p[pre::Q_SPAN] = q_hi - q_lo;
        p[pre::OUT_ID] = *out as i64;
        p[pre::OUT_MULT] = reads(circuit, *out);
        p[pre::R_SHIFT] = limb - r_hi_bound;
        p[pre::Q_SHIFT] = limb - q_hi_bound;
        m[main::N] = nv;
        m[main::D] = dv;
        m[main::Q] = qv;
        (m[main::R_LO], m[main::R_HI]) = split(r);
        (m[main::T_LO], m[main::T_HI]) = split(2 * dv - 1 - r);
        (m[main::Q_LO], m[main::Q_HI]) = split(qv - q_lo);
        (m[main::U_LO], m[main::U_HI]) = split(q_hi - qv);
        t.push(&p, &m);
    }
    // An idle row divides 0 by the constant 1: q = 0, r = 1, t = 0; it reads and writes nothing.
    let mut idle_pre = [0i64; pre::COUNT];
    idle_pre[pre::D_CONST] = 1;
    let mut idle_main = [0i64; main::COUNT];
    idle_main[main::D] = 1;
    idle_main[main::R_LO] = 1;
    t.padded_if_used(&idle_pre, &idle_main)
}
