//! The soundness suite: every case asserts that the *verifier* rejects.
//!
//! Statement tampering edits an honest bundle. Witness tampering goes through
//! `StwoBackend::prove_tampered`, which corrupts the generated trace before the prover commits to
//! it (the prover then proves whatever it was given, as a cheating prover would).

mod common;

use ciro_circuits::stwo::trace::ComponentTrace;
use ciro_circuits::stwo::{arith, div, lookup, mac, select, Kind, MAC_INPUTS, MAC_OUTPUTS};
use ciro_prover::{KeyFile, ProofBundle, ProofSystem, StwoBackend, VerifyError};

fn backend() -> StwoBackend {
    StwoBackend::default()
}

fn honest(name: &'static str) -> (&'static common::Fixture, ProofBundle) {
    let f = common::fixture(name);
    let b = backend()
        .prove(&f.pk, &f.input, &mut |_| {})
        .expect("honest proof");
    backend()
        .verify(&f.vk, &b)
        .expect("the honest proof verifies");
    (f, b)
}

fn rejects(f: &common::Fixture, b: &ProofBundle, case: &str) -> VerifyError {
    match backend().verify(&f.vk, b) {
        Ok(_) => panic!("{case}: the verifier ACCEPTED"),
        Err(e) => {
            eprintln!("{case}: rejected: {e}");
            e
        }
    }
}

#[test]
fn changed_public_output_is_rejected() {
    let (f, b) = honest("mlp_small");
    for delta in [1, -1] {
        let mut t = b.clone();
        t.header.outputs[0].values[0] += delta;
        let e = rejects(f, &t, &format!("output[0] {delta:+}"));
        assert!(matches!(e, VerifyError::LogupSum), "{e}");
    }
}

#[test]
fn changed_public_input_is_rejected() {
    let (f, b) = honest("mlp_small");
    let mut t = b.clone();
    let v = &mut t.header.inputs[0].values;
    let (lo, hi) = (f.vk.inputs[0].lo, f.vk.inputs[0].hi);
    v[0] = if v[0] < hi { v[0] + 1 } else { v[0] - 1 };
    rejects(f, &t, "input[0] ±1");
    let mut t = b.clone();
    t.header.inputs[0].values[0] = hi + 1;
    assert!(matches!(
        rejects(f, &t, "input above range"),
        VerifyError::InputRange(_)
    ));
    let mut t = b;
    t.header.inputs[0].values[0] = lo - 1;
    assert!(matches!(
        rejects(f, &t, "input below range"),
        VerifyError::InputRange(_)
    ));
}

#[test]
fn another_models_key_is_rejected() {
    let (f_small, b_small) = honest("mlp_small");
    let (f_act, _) = honest("act_mix");
    // Presented as is: the commitments differ.
    let e = rejects(f_act, &b_small, "mlp_small proof, act_mix key");
    assert!(matches!(e, VerifyError::WrongModel { .. }), "{e}");
    // With its commitment rewritten to the other key's, the statement no longer matches.
    let mut t = b_small.clone();
    t.header.model_commitment = f_act.vk.commitment();
    rejects(f_act, &t, "mlp_small proof relabelled for act_mix");
    // A key whose weights differ (same architecture, one weight changed) rejects the proof.
    let model = common::with_changed_weight(&f_small.model);
    let (_, vk2) = backend().setup(&model).expect("setup of the changed model");
    assert_ne!(
        vk2.preprocessed_root, f_small.vk.preprocessed_root,
        "weights are committed"
    );
    let mut t = b_small;
    t.header.model_commitment = vk2.commitment();
    match backend().verify(&vk2, &t) {
        Ok(_) => panic!("a proof for the original weights verified against changed weights"),
        Err(e) => eprintln!("changed weight: rejected: {e}"),
    }
}

#[test]
fn flipped_proof_bytes_are_rejected() {
    let (f, b) = honest("mlp_small");
    let n = b.proof.len();
    for pos in [0, 7, 64, 1000, n / 3, n / 2, 2 * n / 3, n - 100, n - 1] {
        let mut t = b.clone();
        t.proof[pos] ^= 0x01;
        rejects(f, &t, &format!("proof byte {pos}/{n} flipped"));
    }
}

#[test]
fn truncated_bundles_are_errors() {
    let (f, b) = honest("mlp_small");
    let bytes = b.to_bytes();
    for cut in [0, 10, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            ProofBundle::from_bytes(&bytes[..cut]).is_err(),
            "cut at {cut} parsed"
        );
    }
    // A proof payload cut short inside a well-formed bundle.
    for keep in [0, 16, b.proof.len() / 2, b.proof.len() - 1] {
        let mut t = b.clone();
        t.proof.truncate(keep);
        rejects(f, &t, &format!("proof payload cut to {keep} bytes"));
    }
}

// ---- witness tampering ----

fn component(comps: &mut [ComponentTrace], kind: Kind) -> &mut ComponentTrace {
    comps
        .iter_mut()
        .find(|c| c.kind == kind)
        .expect("component present")
}

fn tampered(name: &'static str, case: &str, tamper: &dyn Fn(&mut [ComponentTrace])) {
    let f = common::fixture(name);
    let b = backend()
        .prove_tampered(&f.pk, &f.input, tamper)
        .expect("the prover proves what it is given");
    rejects(f, &b, case);
}

/// A ReLU row whose input is negative (s = 0, output 0).
fn negative_relu_row(c: &ComponentTrace) -> usize {
    use select::{main, pre};
    (0..c.rows())
        .find(|&r| {
            c.pre[pre::B_MULT][r] == 0
                && c.pre[pre::B_CONST][r] == 0
                && c.pre[pre::PA][r] == 1
                && c.pre[pre::OUT_MULT][r] > 0
                && c.main[main::S][r] == 0
                && c.main[main::A][r] < 0
        })
        .expect("a ReLU of a negative value")
}

#[test]
fn relu_of_a_negative_kept_negative_is_rejected() {
    use select::main;
    // Only the output changed.
    tampered("mlp_small", "ReLU output = negative input", &|comps| {
        let c = component(comps, Kind::Select);
        let r = negative_relu_row(c);
        c.main[main::OUT][r] = c.main[main::A][r];
    });
    // The cheat made consistent: selector flipped, comparison limbs recomputed mod p.
    tampered(
        "mlp_small",
        "ReLU selector flipped with recomputed limbs",
        &|comps| {
            let c = component(comps, Kind::Select);
            let r = negative_relu_row(c);
            let a = c.main[main::A][r];
            let v = a.rem_euclid((1 << 31) - 1);
            c.main[main::S][r] = 1;
            c.main[main::OUT][r] = a;
            c.main[main::V_LO][r] = v & 0xffff;
            c.main[main::V_HI][r] = v >> 16;
        },
    );
}

fn rescale_row(c: &ComponentTrace) -> usize {
    use div::pre;
    (0..c.rows())
        .find(|&r| {
            c.pre[pre::D_MULT][r] == 0 && c.pre[pre::D_CONST][r] > 1 && c.pre[pre::OUT_MULT][r] > 0
        })
        .expect("a rescale row")
}

/// Writes `v` into a division row's 16-bit limb columns `(lo, hi)`.
fn set_limbs(c: &mut ComponentTrace, row: usize, (lo, hi): (usize, usize), v: i64) {
    c.main[lo][row] = v & 0xffff;
    c.main[hi][row] = v >> 16;
}

const R: (usize, usize) = (div::main::R_LO, div::main::R_HI);
const T: (usize, usize) = (div::main::T_LO, div::main::T_HI);
const U: (usize, usize) = (div::main::U_LO, div::main::U_HI);

/// Keeps `q_hi - q` consistent after moving `q` by `-delta`.
fn shift_u(c: &mut ComponentTrace, row: usize, delta: i64) {
    let u = (c.main[U.0][row] + (c.main[U.1][row] << 16) + delta).rem_euclid((1 << 31) - 1);
    set_limbs(c, row, U, u);
}

#[test]
fn rescale_off_by_one_is_rejected() {
    use div::{main, pre};
    tampered("mlp_small", "rescale quotient + 1", &|comps| {
        let c = component(comps, Kind::Div);
        let r = rescale_row(c);
        c.main[main::Q][r] += 1;
        c.main[main::Q_LO][r] += 1;
    });
    // Made consistent: r - 2d keeps 2kn + d = 2dq + r, so only the range checks can catch it.
    tampered("mlp_small", "rescale quotient + 1 with r - 2d", &|comps| {
        let c = component(comps, Kind::Div);
        let row = rescale_row(c);
        let d = c.pre[pre::D_CONST][row];
        let r = (c.main[R.0][row] + (c.main[R.1][row] << 16) - 2 * d).rem_euclid((1 << 31) - 1);
        let t = 2 * d - 1 - (r - ((1 << 31) - 1));
        c.main[main::Q][row] += 1;
        c.main[main::Q_LO][row] += 1;
        shift_u(c, row, -1);
        set_limbs(c, row, R, r);
        set_limbs(c, row, T, t);
    });
}

#[test]
fn remainder_out_of_range_is_rejected() {
    use div::{main, pre};
    // q - 1 with r + 2d keeps 2kn + d = 2dq + r; r >= 2d must then fail the range checks.
    tampered("mlp_small", "rescale remainder r + 2d (q - 1)", &|comps| {
        let c = component(comps, Kind::Div);
        let row = rescale_row(c);
        let d = c.pre[pre::D_CONST][row];
        let q = c.main[main::Q][row] - 1;
        let r = c.main[R.0][row] + (c.main[R.1][row] << 16) + 2 * d;
        let t = (2 * d - 1 - r).rem_euclid((1 << 31) - 1);
        c.main[main::Q][row] = q;
        c.main[main::Q_LO][row] -= 1;
        shift_u(c, row, 1);
        set_limbs(c, row, R, r);
        set_limbs(c, row, T, t);
    });
}

#[test]
fn value_not_in_its_lookup_table_is_rejected() {
    use lookup::{main, pre};
    tampered("act_mix", "lookup output + 1", &|comps| {
        let c = component(comps, Kind::Lookup);
        let r = (0..c.rows())
            .find(|&r| c.pre[pre::OUT_MULT][r] > 0)
            .expect("a lookup row");
        c.main[main::Y][r] += 1;
    });
}

#[test]
fn wire_value_swapped_between_two_ops_is_rejected() {
    use mac::{main, pre};
    // Two MAC rows read different cells; swap the values they read.
    tampered("mlp_small", "MAC inputs swapped between rows", &|comps| {
        let c = component(comps, Kind::Mac);
        let (x, id) = (main::x(0), pre::x_id(0));
        let a = 0;
        let b = (1..c.rows())
            .find(|&r| {
                c.pre[pre::x_mult(0)][r] > 0
                    && c.pre[id][r] != c.pre[id][a]
                    && c.main[x][r] != c.main[x][a]
            })
            .expect("a row reading another value");
        let (va, vb) = (c.main[x][a], c.main[x][b]);
        c.main[x][a] = vb;
        c.main[x][b] = va;
    });
    // The same swap with every accumulator recomputed, so only the wiring can catch it.
    tampered(
        "mlp_small",
        "MAC inputs swapped, accumulators recomputed",
        &|comps| {
            let c = component(comps, Kind::Mac);
            let (x, id) = (main::x(0), pre::x_id(0));
            let a = 0;
            let b = (1..c.rows())
                .find(|&r| {
                    c.pre[pre::x_mult(0)][r] > 0
                        && c.pre[id][r] != c.pre[id][a]
                        && c.main[x][r] != c.main[x][a]
                })
                .expect("a row reading another value");
            let (va, vb) = (c.main[x][a], c.main[x][b]);
            c.main[x][a] = vb;
            c.main[x][b] = va;
            let mut acc = [0; MAC_OUTPUTS];
            for r in 0..c.rows() {
                for (m, acc) in acc.iter_mut().enumerate() {
                    if c.pre[pre::FIRST][r] == 1 {
                        *acc = 0;
                    }
                    for k in 0..MAC_INPUTS {
                        *acc += c.main[main::x(k)][r] * c.pre[pre::w(m, k)][r];
                    }
                    c.main[main::acc(m)][r] = *acc;
                }
            }
        },
    );
    // An accumulator off by one in the middle of a dot product.
    tampered("mlp_small", "MAC accumulator + 1", &|comps| {
        let c = component(comps, Kind::Mac);
        c.main[main::acc(0)][0] += 1;
    });
    // The last accumulator of a row, on the row that writes it: the others stay right.
    tampered(
        "mlp_small",
        "MAC output of the last accumulator + 1",
        &|comps| {
            let c = component(comps, Kind::Mac);
            let m = MAC_OUTPUTS - 1;
            let r = (0..c.rows())
                .find(|&r| c.pre[pre::out_mult(m)][r] > 0)
                .expect("a row writing its last accumulator");
            c.main[main::acc(m)][r] += 1;
        },
    );
}

#[test]
fn product_of_two_activations_off_by_one_is_rejected() {
    use arith::{main, pre};
    // Attention's Q·Kᵀ: each product of two computed values is an Arith row read by a MAC.
    tampered(
        "matmul_activations",
        "a product of two activations + 1",
        &|comps| {
            let c = component(comps, Kind::Arith);
            let r = (0..c.rows())
                .find(|&r| {
                    c.pre[pre::CAB][r] == 1
                        && c.pre[pre::A_MULT][r] > 0
                        && c.pre[pre::B_MULT][r] > 0
                })
                .expect("a product row");
            c.main[main::OUT][r] += 1;
        },
    );
}

#[test]
fn gathered_index_step_flipped_is_rejected() {
    use select::main;
    // A computed index picks its element through steps [i ≥ k] (clamps): one flipped from 0 to
    // 1 would read a neighbouring element.
    tampered(
        "gather_elements",
        "an index step flipped from 0 to 1",
        &|comps| {
            let c = component(comps, Kind::Select);
            let r = (0..c.rows())
                .find(|&r| c.main[main::OUT][r] == 0 && c.main[main::A][r] < 0)
                .expect("a step that is 0");
            c.main[main::OUT][r] = 1;
        },
    );
}

#[test]
fn division_by_a_computed_divisor_off_by_one_is_rejected() {
    use div::{main, pre};
    // `x / (x² + 1)`: a division row whose divisor is a cell (read through the wiring), not a
    // constant; a quotient + 1 must fail its identity.
    tampered(
        "div_tensor",
        "quotient by a computed divisor + 1",
        &|comps| {
            let c = component(comps, Kind::Div);
            let r = (0..c.rows())
                .find(|&r| c.pre[pre::D_MULT][r] > 0 && c.pre[pre::OUT_MULT][r] > 0)
                .expect("a division by a cell");
            c.main[main::Q][r] += 1;
            c.main[main::Q_LO][r] += 1;
        },
    );
}
