//! The halo2 layout of every fixture: how many rows it takes (the prover's cost is set by the
//! power of two above it), and that an honest witness satisfies every constraint
//! (`MockProver`, which names the failing gate and row where the verifier would only say no).

use ciro_circuits::halo2::{Halo2Circuit, InputVisibility, Layout};
use ciro_circuits::{Circuit, FieldBudget};
use ciro_test_support as support;
use halo2_axiom::dev::MockProver;
use halo2_axiom::halo2curves::bn256::Fr;

/// A fixture's circuit and its cell values on the fixture's sample input.
fn fixture_witness(name: &str) -> (Circuit, Vec<i64>) {
    let model = support::compile_fixture(name);
    let circuit = Circuit::from_graph(&model.graph, &FieldBudget::BN254).expect("lowers");
    let flat: Vec<i64> = support::sample_input(&model, name)
        .into_iter()
        .flat_map(|t| t.data)
        .collect();
    let values = circuit.assign(&flat).expect("assigns");
    (circuit, values)
}

/// `layout` (its fixed part and its witness) through the mock prover.
fn mock(layout: &Layout) -> MockProver<Fr> {
    MockProver::run(
        layout.k,
        &Halo2Circuit {
            layout,
            witness: true,
            fixed: true,
        },
        vec![layout.instance_fr()],
    )
    .expect("the mock prover runs")
}

#[test]
fn every_fixture_fits_and_its_honest_witness_satisfies_the_constraints() {
    for name in support::MODELS {
        let (circuit, values) = fixture_witness(name);
        for inputs in [InputVisibility::Public, InputVisibility::Hashed] {
            let layout = Layout::with_inputs(&circuit, Some(&values), inputs);
            eprintln!(
                "{name} ({inputs:?} input): {} rows, {} table rows ({}-bit limbs, widest check {} bits), k = {}",
                layout.rows,
                layout.table.len(),
                layout.limb_bits,
                ciro_circuits::halo2::check_bits(&circuit),
                layout.k
            );
            // The LeNet passed 2^16 rows when divisions gained their fourth checked value
            // (`q_hi - q`, what makes calibrated ranges checked): one more `L` row each.
            if inputs == InputVisibility::Public {
                assert!(layout.k <= 17, "{name} needs 2^{} rows", layout.k);
            }
            // The small ones: plain, lookups, and one whose divisions need no second limb.
            if ["mlp_small", "act_mix", "image_recognition_v1"].contains(&name) {
                mock(&layout).assert_satisfied();
            }
        }
    }
}

/// With private weights (and a hashed input) the honest witness satisfies every constraint, the
/// weights sit in `W0..W3` only (no MAC or Arith coefficient of the model is fixed), and a weight
/// changed where its input is not zero breaks a MAC equation.
#[test]
fn private_weights_layout_is_satisfied_and_weights_are_advice() {
    use ciro_circuits::halo2::columns::{A, COEFFS, F1, F2, SEL_MAC, SEL_MAC_W, W0};
    use ciro_circuits::halo2::WeightVisibility;
    let (circuit, values) = fixture_witness("mlp_small");
    let layout = Layout::with_settings(
        &circuit,
        Some(&values),
        InputVisibility::Hashed,
        WeightVisibility::Private,
    );
    let mac_w: Vec<usize> = (0..layout.rows)
        .filter(|&r| layout.selectors[SEL_MAC_W][r])
        .collect();
    assert!(!mac_w.is_empty());
    for &r in &mac_w {
        assert!(
            COEFFS.iter().all(|&f| layout.coeff[f][r] == 0),
            "row {r}: a fixed weight"
        );
    }
    // Only the input packing (its digit weights) and the Poseidon absorb rows keep the
    // fixed-coefficient MAC gate.
    assert!((0..layout.rows)
        .filter(|&r| layout.selectors[SEL_MAC][r])
        .all(|r| {
            let packing = COEFFS.iter().all(|&f| layout.coeff[f][r] == 0);
            let absorb = layout.coeff[F1][r] == 1 && layout.coeff[F2][r] == 1;
            packing || absorb
        }));
    mock(&layout).assert_satisfied();
    let mut bad = layout.clone();
    let r = *mac_w
        .iter()
        .find(|&&r| bad.advice[A][r] != 0)
        .expect("a MAC row with a non-zero input");
    bad.weight[W0][r] += 1;
    assert!(
        mock(&bad).verify().is_err(),
        "a changed weight was accepted"
    );
}

/// The constraint system has the degree the module documents (halo2-axiom caps it at its
/// `MAX_DEGREE` environment variable, 5 unless set), so the lookup's `TAG·C` is not cut down.
#[test]
fn the_constraint_system_has_the_documented_degree() {
    use ciro_circuits::halo2::{Shape, WeightVisibility, DEGREE};
    use halo2_axiom::plonk::{Circuit as _, ConstraintSystem};
    assert_eq!(ciro_circuits::halo2::degree_cap_error(), None);
    for weights in [WeightVisibility::Fixed, WeightVisibility::Private] {
        let mut cs = ConstraintSystem::<Fr>::default();
        Halo2Circuit::configure_with_params(
            &mut cs,
            Shape {
                limb_bits: 12,
                weights,
            },
        );
        assert_eq!(cs.degree(), DEGREE, "{weights:?}");
        assert_eq!(cs.lookups().len(), 1, "{weights:?}");
    }
}
