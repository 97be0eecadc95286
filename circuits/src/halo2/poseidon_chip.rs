//! The in-circuit Poseidon (the native permutation and input hash it reproduces are
//! [`crate::poseidon`]): the round chip and the sponge's rows.
//!
//! One round per row on the state `(A, B)` (degree 4 with its selector `SEL_POSEIDON`): round
//! constants in `F0, F1`, `F2` = 1 on full rounds (0 on partial ones), `C = (A+F0)^2`, and
//! `D = (B+F1)^2` on full rounds, 1 on partial ones: one gate for both kinds. The next row holds
//! the state after the round.

use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::halo2curves::ff::Field;
use halo2_axiom::plonk::{ConstraintSystem, Expression};
use halo2_axiom::poly::Rotation;

use super::columns::{Columns, A, ACC, B, C, D, F0, F1, F2, SEL_MAC, SEL_POSEIDON};
use super::layout::{Builder, Loc};

pub(super) fn configure(meta: &mut ConstraintSystem<Fr>, cols: &Columns) {
    let one = || Expression::Constant(Fr::ONE);
    let mds = crate::poseidon::constants().mds;
    // y0 = x0^5 = C²·x0; y1 = D²·x1, which is x1^5 on full rounds and x1 on partial ones.
    meta.create_gate("poseidon round", |m| {
        let s = cols.selector(m, SEL_POSEIDON);
        let a_next = cols.query(m, A, Rotation::next());
        let b_next = cols.query(m, B, Rotation::next());
        let row = cols.cur(m);
        let [f0, f1, full, ..] = row.coeff.clone();
        let x0 = row[A].clone() + f0;
        let x1 = row[B].clone() + f1;
        let y0 = row[C].clone() * row[C].clone() * x0.clone();
        let y1 = row[D].clone() * row[D].clone() * x1.clone();
        vec![
            s.clone() * (row[C].clone() - x0.clone() * x0),
            s.clone() * full.clone() * (row[D].clone() - x1.clone() * x1),
            s.clone() * (one() - full) * (row[D].clone() - one()),
            s.clone() * (a_next - (y0.clone() * mds[0][0] + y1.clone() * mds[0][1])),
            s * (b_next - (y0 * mds[1][0] + y1 * mds[1][1])),
        ]
    });
}

/// Lays out the Poseidon sponge over `elements`, starting from `[n, 0]` (`cap` holds `n`);
/// returns the cell of the hash.
pub(super) fn sponge(b: &mut Builder, cap: Loc, zero: Loc, n: usize, elements: &[Loc]) -> Loc {
    use crate::poseidon::{constants, is_full, round, ROUNDS};
    let rc = &constants().round;
    let mut state = [Fr::from(n as u64), Fr::ZERO];
    let mut out_row: Option<usize> = None;
    for &e in elements {
        let value = b.value_at(e);
        let r1 = match out_row {
            None => {
                b.take(1);
                let r1 = b.take(ROUNDS + 1);
                b.copies.push(((A, r1), cap));
                b.copies.push(((B, r1), e));
                r1
            }
            Some(ro) => {
                // Absorb on the previous output row with a MAC: ACC' = 0 + B + C, C = the
                // element.
                b.selectors[SEL_MAC][ro] = true;
                b.copies.push(((ACC, ro), zero));
                b.coeff[F1][ro] = 1;
                b.coeff[F2][ro] = 1;
                b.wide.insert((C, ro), value);
                b.copies.push(((C, ro), e));
                let r1 = b.take(ROUNDS + 1);
                debug_assert_eq!(r1, ro + 1);
                b.wide.insert((ACC, r1), state[1] + value);
                b.copies.push(((B, r1), (ACC, r1)));
                b.copies.push(((A, r1), (A, ro)));
                r1
            }
        };
        state[1] += value;
        for (r, consts) in rc.iter().enumerate().take(ROUNDS) {
            let row = r1 + r;
            let full = is_full(r);
            b.selectors[SEL_POSEIDON][row] = true;
            b.wide_coeff.insert((F0, row), consts[0]);
            b.wide_coeff.insert((F1, row), consts[1]);
            b.coeff[F2][row] = full as i64;
            b.wide.insert((A, row), state[0]);
            b.wide.insert((B, row), state[1]);
            let x0 = state[0] + consts[0];
            b.wide.insert((C, row), x0.square());
            let x1 = state[1] + consts[1];
            b.wide
                .insert((D, row), if full { x1.square() } else { Fr::ONE });
            round(&mut state, r);
        }
        let ro = r1 + ROUNDS;
        b.wide.insert((A, ro), state[0]);
        b.wide.insert((B, ro), state[1]);
        out_row = Some(ro);
    }
    (B, out_row.expect("a model has inputs"))
}
