//! The halo2 layout of every fixture: how many rows it takes (the prover's cost is set by the
//! power of two above it), and that an honest witness satisfies every constraint
//! (`MockProver`, which names the failing gate and row where the verifier would only say no).

use std::path::Path;

use ciro_circuits::halo2::{fr, Halo2Circuit, Layout};
use ciro_circuits::Circuit;
use ciro_model_compiler::input::read_json;
use ciro_model_compiler::{compile_model_dir, quantize_inputs, CompileOptions};
use halo2_axiom::dev::MockProver;

#[test]
fn every_fixture_fits_and_its_honest_witness_satisfies_the_constraints() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
    for name in [
        "mlp_small",
        "mlp_mnist",
        "cnn_lenet",
        "act_mix",
        "image_recognition_v1",
    ] {
        let dir = fixtures.join(name);
        let model = compile_model_dir(&dir, &CompileOptions::default()).expect("compiles");
        let circuit = Circuit::from_graph(&model.graph).expect("lowers");
        let x = read_json(&dir.join("input.json")).expect("input");
        let flat: Vec<i64> = quantize_inputs(&model.graph, &x)
            .expect("quantizes")
            .into_iter()
            .flat_map(|t| t.data)
            .collect();
        let values = circuit.assign(&flat).expect("assigns");
        let layout = Layout::new(&circuit, Some(&values));
        eprintln!(
            "{name}: {} rows, {} table rows, k = {}",
            layout.rows,
            layout.table.len(),
            layout.k
        );
        assert!(layout.k <= 16, "{name} needs 2^{} rows", layout.k);
        if name == "mlp_small" {
            let instance = layout.instance().into_iter().map(fr).collect();
            let prover = MockProver::run(
                layout.k,
                &Halo2Circuit {
                    layout: &layout,
                    witness: true,
                    fixed: true,
                },
                vec![instance],
            )
            .expect("the mock prover runs");
            prover.assert_satisfied();
        }
    }
}
