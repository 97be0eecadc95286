//! The halo2-KZG backend's soundness (that every fixture proves, verifies and agrees with stwo is
//! the conformance suite's): the verifier rejects tampered statements, proofs and one-cell
//! witness changes (made through `Halo2Backend::prove_tampered`, after the witness is laid out
//! and before the prover commits to it).

mod common;

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ciro_circuits::halo2::columns::{
    Sel, A, ACC, B, C, D, F0, F2, L, SEL_ARITH, SEL_DIV, SEL_MAC, SEL_SELECT,
};
use ciro_circuits::halo2::Layout;
use ciro_model_compiler::eval::IntTensor;
use ciro_prover::{
    Halo2Backend, Halo2ProvingKey, Halo2VerifyingKey, KeyFile, ProofBundle, ProofSystem,
    VerifyError,
};

fn backend() -> &'static Halo2Backend {
    static BACKEND: OnceLock<Halo2Backend> = OnceLock::new();
    BACKEND.get_or_init(|| Halo2Backend::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs")))
}

struct Keys {
    pk: Halo2ProvingKey,
    vk: Halo2VerifyingKey,
    input: Vec<IntTensor>,
}

fn keys(name: &'static str) -> &'static Keys {
    static CACHE: OnceLock<Mutex<Vec<(&'static str, &'static Keys)>>> = OnceLock::new();
    let mut c = CACHE.get_or_init(Default::default).lock().unwrap();
    if let Some((_, k)) = c.iter().find(|(n, _)| *n == name) {
        return k;
    }
    let (model, input) = common::compile_named(name);
    let (pk, vk) = backend().setup(&model).expect("halo2 setup");
    let k: &'static Keys = Box::leak(Box::new(Keys { pk, vk, input }));
    c.push((name, k));
    k
}

fn honest(name: &'static str) -> (&'static Keys, ProofBundle) {
    let k = keys(name);
    let b = backend()
        .prove(&k.pk, &k.input, &mut |_| {})
        .expect("honest proof");
    backend()
        .verify(&k.vk, &b)
        .expect("the honest proof verifies");
    (k, b)
}

fn rejects(vk: &Halo2VerifyingKey, b: &ProofBundle, case: &str) -> VerifyError {
    match backend().verify(vk, b) {
        Ok(_) => panic!("{case}: the verifier ACCEPTED"),
        Err(e) => {
            eprintln!("{case}: rejected: {e}");
            e
        }
    }
}

#[test]
fn tampered_statements_and_proofs_are_rejected() {
    let (k, b) = honest("mlp_small");
    for delta in [1, -1] {
        let mut t = b.clone();
        t.header.outputs[0].values[0] += delta;
        let e = rejects(&k.vk, &t, &format!("output[0] {delta:+}"));
        assert!(matches!(e, VerifyError::Snark(_)), "{e}");
    }
    let mut t = b.clone();
    let (lo, hi) = (k.vk.inputs[0].lo, k.vk.inputs[0].hi);
    let v = &mut t.header.inputs[0].values[0];
    *v = if *v < hi { *v + 1 } else { *v - 1 };
    assert!(matches!(
        rejects(&k.vk, &t, "input[0] ±1"),
        VerifyError::Snark(_)
    ));
    let mut t = b.clone();
    t.header.inputs[0].values[0] = lo - 1;
    assert!(matches!(
        rejects(&k.vk, &t, "input below range"),
        VerifyError::InputRange(_)
    ));

    let n = b.proof.len();
    for at in [0, 1, 31, 32, 100, n / 2, n - 33, n - 1] {
        let mut t = b.clone();
        t.proof[at] ^= 0x01;
        rejects(&k.vk, &t, &format!("proof byte {at}/{n} flipped"));
    }
    for len in [0, 32, n / 2, n - 1] {
        let mut t = b.clone();
        t.proof.truncate(len);
        rejects(&k.vk, &t, &format!("proof cut to {len} bytes"));
    }
    let mut extra = b.clone();
    extra.proof.extend_from_slice(&[0; 32]);
    // Trailing bytes are not read by the transcript: refused by length, not silently accepted.
    let e = backend().verify(&k.vk, &extra);
    eprintln!("proof with 32 trailing bytes: {e:?}");
    assert!(e.is_err(), "trailing bytes were accepted");

    // Another model's key, and this model's key with one weight changed.
    let other = keys("act_mix");
    let e = rejects(&other.vk, &b, "mlp_small proof, act_mix key");
    assert!(matches!(e, VerifyError::WrongModel { .. }), "{e}");
    let mut t = b.clone();
    t.header.model_commitment = other.vk.commitment();
    rejects(&other.vk, &t, "mlp_small proof relabelled for act_mix");
    let model = common::with_changed_weight(&common::compile_fixture("mlp_small"));
    let (_, changed) = backend().setup(&model).expect("setup of the changed model");
    let mut t = b.clone();
    t.header.model_commitment = changed.commitment();
    assert!(matches!(
        rejects(&changed, &t, "changed weight"),
        VerifyError::Snark(_)
    ));
}

/// The `i`-th range-checked value (`r`, `2d-1-r`, `q-q_lo`, `q_hi-q`) of the division at row `r`: its low
/// limb in `L` of row `r + i`, plus the multiplier times its high limb.
fn div_get(l: &Layout, r: usize, i: usize) -> i64 {
    let (h, m) = l.div_high_limb(r, i);
    l.advice[L][r + i] + m * l.advice[L][h]
}

/// Sets a division's checked value as its limbs would hold it (a single limb takes all of it).
fn div_set(l: &mut Layout, r: usize, i: usize, v: i64) {
    let (h, m) = l.div_high_limb(r, i);
    if m == 0 {
        l.advice[L][r + i] = v;
    } else {
        l.advice[L][r + i] = v.rem_euclid(m);
        l.advice[L][h] = v.div_euclid(m);
    }
}

/// The first row where selector `sel` is on.
fn first(l: &Layout, sel: Sel) -> usize {
    l.selectors[sel]
        .iter()
        .position(|&s| s)
        .expect("a gate of that kind")
}

fn tampered(name: &'static str, case: &str, tamper: &dyn Fn(&mut Layout)) {
    let k = keys(name);
    let b = backend()
        .prove_tampered(&k.pk, &k.input, tamper)
        .expect("a tampered proof is still produced");
    rejects(&k.vk, &b, case);
}

#[test]
fn one_wrong_witness_cell_is_rejected() {
    // ReLU of a negative kept negative: the output of a select whose comparison chose 0.
    tampered("mlp_small", "ReLU output = its negative input", &|l| {
        let r = (0..l.rows)
            .find(|&r| l.selectors[SEL_SELECT][r] && l.advice[D][r] == 0 && l.advice[A][r] < 0)
            .expect("a ReLU of a negative");
        l.advice[C][r] = l.advice[A][r];
    });
    // The same, with the selector flipped and the branch values and limbs made consistent.
    tampered(
        "mlp_small",
        "ReLU selector flipped, limbs recomputed",
        &|l| {
            let r = (0..l.rows)
                .find(|&r| l.selectors[SEL_SELECT][r] && l.advice[D][r] == 0 && l.advice[A][r] < 0)
                .expect("a ReLU of a negative");
            let (a, b) = (l.advice[A][r], l.advice[B][r]);
            l.advice[D][r] = 1;
            l.advice[C][r] = l.advice[ACC][r + 1];
            let diff = a - b; // negative: its limbs cannot be in range
            l.advice[L][r] = diff.rem_euclid(1 << l.limb_bits);
            l.advice[L][r + 1] = diff.div_euclid(1 << l.limb_bits);
        },
    );
    // A rescale off by one, with the remainder moved to keep the division equation.
    tampered("mlp_small", "rescale quotient + 1, remainder - 2d", &|l| {
        let r = first(l, SEL_DIV);
        let d = l.advice[B][r];
        l.advice[C][r] += 1;
        div_set(l, r, 0, div_get(l, r, 0) - 2 * d);
        div_set(l, r, 2, div_get(l, r, 2) + 1);
        div_set(l, r, 3, div_get(l, r, 3) - 1);
    });
    // A remainder out of range: quotient - 1 and remainder + 2d (the equation holds).
    tampered("mlp_small", "rescale remainder r + 2d (q - 1)", &|l| {
        let r = first(l, SEL_DIV);
        let d = l.advice[B][r];
        l.advice[C][r] -= 1;
        let rem = div_get(l, r, 0) + 2 * d;
        div_set(l, r, 0, rem);
        div_set(l, r, 1, 2 * d - 1 - rem);
        div_set(l, r, 2, div_get(l, r, 2) - 1);
        div_set(l, r, 3, div_get(l, r, 3) + 1);
    });
    // A value not in its lookup table.
    tampered("act_mix", "lookup output + 1", &|l| {
        let r = (0..l.rows).find(|&r| l.tag[r] > 0).expect("a lookup row");
        l.advice[C][r] += 1;
    });
    // Wire values swapped between two MAC rows, with both sums recomputed.
    tampered(
        "mlp_small",
        "MAC inputs swapped, accumulators recomputed",
        &|l| {
            let r = first(l, SEL_MAC);
            let s = (r + 1..l.rows)
                .find(|&s| l.selectors[SEL_MAC][s] && l.advice[A][s] != l.advice[A][r])
                .expect("another MAC row");
            let (x, y) = (l.advice[A][r], l.advice[A][s]);
            l.advice[A][r] = y;
            l.advice[A][s] = x;
            // Carry each row's change down its MAC chain to the sum, so every MAC equation holds
            // and only the wiring (the copies of the swapped inputs) is wrong.
            for (row, old) in [(r, x), (s, y)] {
                let delta = l.coeff[F0][row] * (l.advice[A][row] - old);
                let sum = *l
                    .mac_sums
                    .iter()
                    .find(|&&q| q > row)
                    .expect("its chain's sum");
                for q in row + 1..=sum {
                    l.advice[ACC][q] += delta;
                }
            }
        },
    );
    // An accumulator off by one.
    tampered("mlp_small", "MAC accumulator + 1", &|l| {
        let r = first(l, SEL_MAC);
        l.advice[ACC][r + 1] += 1;
    });
    // A chain starting from 1 instead of its copy of the zero cell (the gate has no flag for
    // a chain's first row), with the chain's accumulators carried along to its sum: every MAC
    // equation holds, only the wiring (the zero cell's copy, the sum's readers) is wrong.
    tampered("mlp_small", "MAC chain started from 1", &|l| {
        let r = first(l, SEL_MAC);
        let sum = l.mac_sums[0];
        for q in r..=sum {
            l.advice[ACC][q] += 1;
        }
    });
    // A product of two activations (attention's Q·Kᵀ) off by one: `C = F2·D` with `D = A·B`.
    tampered(
        "matmul_activations",
        "a product of two activations + 1",
        &|l| {
            let r = (0..l.rows)
                .find(|&r| {
                    l.selectors[SEL_ARITH][r]
                        && l.coeff[F2][r] == 1
                        && l.advice[A][r] != 0
                        && l.advice[B][r] != 0
                })
                .expect("a product row");
            l.advice[C][r] += 1;
        },
    );
    // A public input's cell differing from the instance (a public input sits in `D`).
    tampered("mlp_small", "input cell + 1", &|l| {
        l.advice[D][0] += 1;
    });
    // A public output's row differing from the instance, and from the output's own cell.
    tampered("mlp_small", "public output row + 1", &|l| {
        let i = l.public.len() - 1;
        l.advice[D][i] += 1;
    });
}

/// A hashed input (only its Poseidon hash is public) and a private one (nothing of it is):
/// same outputs as the public-input proof, the hash is the one `input_hash` computes, and the
/// verifier rejects another input's hash, a bundle that carries the input, and witnesses wrong
/// in one packed digit or one Poseidon state word.
#[test]
fn hashed_and_private_inputs_prove_the_same_outputs_and_bind_the_input() {
    use ciro_circuits::halo2::columns::SEL_POSEIDON;
    use ciro_circuits::halo2::InputVisibility;
    use ciro_prover::halo2_backend::input_hash;

    let (_, public) = honest("mlp_small");
    let model = common::compile_fixture("mlp_small");
    let input = common::sample_input(&model, "mlp_small");
    let flat: Vec<i64> = input.iter().flat_map(|t| t.data.clone()).collect();
    for shown in [InputVisibility::Hashed, InputVisibility::Private] {
        let be = Halo2Backend::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs"))
            .with_inputs(shown);
        let (pk, vk) = be.setup(&model).expect("setup");
        assert_eq!(vk.input_visibility, shown);
        let b = be.prove(&pk, &input, &mut |_| {}).expect("proof");
        be.verify(&vk, &b).expect("the honest proof verifies");
        assert!(
            b.header.inputs.is_empty(),
            "{shown:?}: the bundle shows the input"
        );
        assert_eq!(b.header.outputs, public.header.outputs, "{shown:?}");
        let reject = |t: &ProofBundle, case: &str| match be.verify(&vk, t) {
            Ok(_) => panic!("{shown:?}: {case}: the verifier ACCEPTED"),
            Err(e) => eprintln!("{shown:?}: {case}: rejected: {e}"),
        };
        match shown {
            InputVisibility::Hashed => {
                let h = input_hash(&vk, &flat).unwrap();
                assert_eq!(b.header.input_hash.as_deref(), Some(h.as_str()));
                let mut other = flat.clone();
                other[0] += if other[0] < vk.inputs[0].hi { 1 } else { -1 };
                let mut t = b.clone();
                t.header.input_hash = Some(input_hash(&vk, &other).unwrap());
                reject(&t, "another input's hash");
                let mut t = b.clone();
                t.header.input_hash = None;
                reject(&t, "no hash");
            }
            _ => {
                assert_eq!(b.header.input_hash, None);
                let mut t = b.clone();
                t.header.input_hash = Some(input_hash(&vk, &flat).unwrap());
                reject(&t, "a hash the key does not show");
            }
        }
        let mut t = b.clone();
        t.header.inputs = public.header.inputs.clone();
        reject(&t, "a bundle carrying the input");

        let tampered = |case: &str, tamper: &dyn Fn(&mut Layout)| {
            let t = be
                .prove_tampered(&pk, &input, tamper)
                .expect("a tampered proof is still produced");
            reject(&t, case);
        };
        // Input 0 is range-checked on row 0: its value in `A`, looked up as `L`.
        tampered("range-checked copy of an input + 1", &|l| {
            l.advice[L][0] += 1;
        });
        // The first value past the declared range, in the input and its looked-up copy (the
        // input's own row is the only range check it has).
        tampered("input past its declared range", &|l| {
            let past = vk.inputs[0].hi + 1 - l.advice[A][0];
            l.advice[L][0] += past;
            l.advice[A][0] += past;
        });
        if shown == InputVisibility::Hashed {
            tampered("Poseidon state word + 1", &|l| {
                let r = first(l, SEL_POSEIDON) + 1;
                let v = l.wide[&(A, r)];
                l.wide
                    .insert((A, r), v + halo2_axiom::halo2curves::bn256::Fr::from(1u64));
            });
        }
    }
}

/// Private weights: the key holds a hiding commitment to the weight columns instead of the
/// weights; proofs give the same outputs as with fixed weights, the same opening gives the same
/// key, and the verifier rejects a proof whose weight columns differ from the committed ones in
/// one cell (with every gate still satisfied), a missing or altered weights proof, and a proof
/// checked against another commitment.
#[test]
fn private_weights_prove_the_same_outputs_and_bind_the_committed_weights() {
    use ciro_circuits::halo2::columns::{SEL_MAC_W, W0};
    use ciro_circuits::halo2::WeightVisibility;

    let (_, fixed) = honest("mlp_small");
    let model = common::compile_fixture("mlp_small");
    let input = common::sample_input(&model, "mlp_small");
    let srs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs");
    let be = Halo2Backend::new(&srs).with_private_weights(None);
    let (pk, vk) = be.setup(&model).expect("setup");
    assert_eq!(vk.weight_visibility, WeightVisibility::Private);
    let wc = vk.weight_commitment.clone().expect("a weight commitment");
    let b = be.prove(&pk, &input, &mut |_| {}).expect("proof");
    be.verify(&vk, &b).expect("the honest proof verifies");
    assert_eq!(b.header.outputs, fixed.header.outputs);
    assert!(b.header.weights_proof.is_some());

    // The opening reproduces the key; a fresh one commits differently to the same weights.
    let opening = pk.weight_opening().expect("an opening").clone();
    let (_, again) = Halo2Backend::new(&srs)
        .with_private_weights(Some(opening))
        .setup(&model)
        .expect("setup with the opening");
    assert_eq!(again.commitment(), vk.commitment());
    let (_, fresh) = Halo2Backend::new(&srs)
        .with_private_weights(None)
        .setup(&model)
        .expect("setup with a new opening");
    assert_ne!(fresh.weight_commitment, Some(wc.clone()));
    assert_eq!(
        fresh.key, vk.key,
        "the halo2 key does not depend on the opening"
    );

    let reject = |vk: &Halo2VerifyingKey, t: &ProofBundle, case: &str| -> VerifyError {
        match be.verify(vk, t) {
            Ok(_) => panic!("{case}: the verifier ACCEPTED"),
            Err(e) => {
                eprintln!("private weights: {case}: rejected: {e}");
                e
            }
        }
    };
    let mut t = b.clone();
    t.header.weights_proof = None;
    assert!(matches!(
        reject(&vk, &t, "no weights proof"),
        VerifyError::WeightOpening(_)
    ));
    let wp = b.header.weights_proof.clone().unwrap();
    for at in [0, 64, wp.len() / 2 - 1] {
        let mut bytes = hex::decode(&wp).unwrap();
        bytes[at] ^= 1;
        let mut t = b.clone();
        t.header.weights_proof = Some(hex::encode(bytes));
        reject(&vk, &t, &format!("weights proof byte {at} flipped"));
    }
    // The same proof against another commitment to the same weights (relabelled so the model
    // check passes): the commitment, not the weights' values, is what binds.
    let mut t = b.clone();
    t.header.model_commitment = fresh.commitment();
    assert!(matches!(
        reject(&fresh, &t, "another commitment to the same weights"),
        VerifyError::WeightOpening(_)
    ));
    // A fixed-weights key refuses a bundle that carries a weights proof.
    let (k, _) = honest("mlp_small");
    let mut t = fixed.clone();
    t.header.weights_proof = Some(wp.clone());
    reject(&k.vk, &t, "a weights proof under a fixed-weights key");

    // One weight changed where its input is 0: every gate still holds, so only the weight
    // commitment can tell.
    let changed = be
        .prove_tampered(&pk, &input, &|l| {
            let r = (0..l.rows)
                .find(|&r| l.selectors[SEL_MAC_W][r] && l.advice[A][r] == 0 && l.weight[W0][r] != 0)
                .expect("a MAC row with a zero input");
            l.weight[W0][r] += 1;
        })
        .expect("a tampered proof is still produced");
    assert_eq!(changed.header.outputs, b.header.outputs);
    assert!(matches!(
        reject(&vk, &changed, "one weight + 1 (its input 0)"),
        VerifyError::WeightOpening(_)
    ));
}
