//! Lowering refuses what the backend's field cannot hold exactly (M31 for stwo, BN254 for halo2),
//! its gates compute what the IR says, and every fixture lowers to the same circuit under both
//! budgets.

use std::path::Path;

use ciro_circuits::{Circuit, CircuitError, FieldBudget, Gate};
use ciro_model_compiler::compile::{CompileOptions, RangeMode};
use ciro_model_compiler::input::read_json;
use ciro_model_compiler::ir::{Bound, Graph, InputInfo, Node, Op, OutputInfo, QuantConfig};
use ciro_model_compiler::{compile, compile_model_dir, onnx, CompileError};

fn node(name: &str, op: Op, inputs: Vec<usize>, shape: Vec<usize>, bound: (i64, i64)) -> Node {
    Node {
        name: name.into(),
        op,
        inputs,
        shape,
        scale: 0,
        bound: Bound::new(bound.0, bound.1),
        error: 0.0,
    }
}

/// x[1,2] · w[2,1], then ReLU.
fn graph(x_bound: i64, w: [i64; 2], mm_bound: (i64, i64)) -> Graph {
    graph_with((-x_bound, x_bound), w, mm_bound)
}

/// x[1,2] · w[2,1], then ReLU, with `x` in `x_bound`.
fn graph_with(x_bound: (i64, i64), w: [i64; 2], mm_bound: (i64, i64)) -> Graph {
    Graph {
        name: "t".into(),
        source_sha256: String::new(),
        config: QuantConfig::default(),
        inputs: vec![InputInfo {
            name: "x".into(),
            shape: vec![1, 2],
            range: [-1.0, 1.0],
            integer: false,
        }],
        outputs: vec![OutputInfo {
            name: "y".into(),
            node: 3,
        }],
        nodes: vec![
            node("x", Op::Input { index: 0 }, vec![], vec![1, 2], x_bound),
            node(
                "w",
                Op::Const { values: w.to_vec() },
                vec![],
                vec![2, 1],
                (w[0].min(w[1]), w[0].max(w[1])),
            ),
            node("mm", Op::MatMul, vec![0, 1], vec![1, 1], mm_bound),
            node(
                "relu",
                Op::Clamp {
                    min: Some(0),
                    max: None,
                },
                vec![2],
                vec![1, 1],
                (0, mm_bound.1),
            ),
        ],
        image: None,
        one_hot: false,
        labels: None,
    }
}

#[test]
fn gates_compute_the_ir() {
    let c = Circuit::from_graph(&graph(100, [3, -5], (-800, 800)), &FieldBudget::M31).unwrap();
    assert!(c.gates.iter().any(|g| matches!(g, Gate::Mac { .. })));
    assert!(c.gates.iter().any(|g| matches!(g, Gate::Select { .. })));
    let v = c.assign(&[10, 2]).unwrap();
    assert_eq!(v[c.outputs[0] as usize], 20);
    let v = c.assign(&[-10, 2]).unwrap();
    assert_eq!(v[c.outputs[0] as usize], 0, "ReLU of -40");
    assert!(
        matches!(c.assign(&[101, 0]), Err(CircuitError::Input(_))),
        "input outside its range"
    );
    assert!(
        matches!(c.assign(&[1]), Err(CircuitError::Input(_))),
        "wrong input length"
    );
}

#[test]
fn a_dot_product_that_can_leave_m31_is_refused() {
    // Each term can reach 2^29 * 2^2: the sum leaves ±(p-1)/2 even though the node claims less.
    let e =
        Circuit::from_graph(&graph(1 << 29, [4, 4], (-1000, 1000)), &FieldBudget::M31).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CircuitError::Overflow { .. }), "{msg}");
    assert!(msg.contains("`mm`") && msg.contains("M31"), "{msg}");
}

#[test]
fn a_bound_beyond_m31_is_refused() {
    let e = Circuit::from_graph(
        &graph(1 << 20, [1, 1], (-(1 << 40), 1 << 40)),
        &FieldBudget::M31,
    )
    .unwrap_err();
    assert!(matches!(e, CircuitError::Overflow { .. }), "{e}");
}

/// `x` in `[0, 2^28]` against weights `[3, -3]`: the output stays within `±3·2^28` (inside
/// M31's `±(p-1)/2`), but the dot product's worst case `2^28·3 + 2^28·3` does not.
fn wide_dot_product() -> Graph {
    let reach = 3 << 28;
    graph_with((0, 1 << 28), [3, -3], (-reach, reach))
}

#[test]
fn a_dot_product_past_m31_is_refused_under_the_m31_budget() {
    let e = Circuit::from_graph(&wide_dot_product(), &FieldBudget::M31).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, CircuitError::Overflow { field: "M31", node, .. } if node == "mm"),
        "{msg}"
    );
    assert!(
        msg.contains("`mm`") && msg.contains("dot product can reach 1610612736, beyond M31"),
        "{msg}"
    );
}

#[test]
fn a_dot_product_past_m31_lowers_under_the_bn254_budget() {
    let c = Circuit::from_graph(&wide_dot_product(), &FieldBudget::BN254).unwrap();
    assert!(c.gates.iter().any(|g| matches!(g, Gate::Mac { .. })));
    let top = 1 << 28;
    let v = c.assign(&[top, 0]).unwrap();
    assert_eq!(v[c.outputs[0] as usize], 3 * top);
    let v = c.assign(&[0, top]).unwrap();
    assert_eq!(v[c.outputs[0] as usize], 0, "ReLU of -3·2^28");
}

#[test]
fn bn254_refuses_what_i64_evaluation_cannot_hold() {
    // Each term can reach 2^29 · 2^34 = 2^63: past the 2^62 the witness generators evaluate.
    let w = 1 << 34;
    let g = graph_with((0, 1 << 29), [w, -w], (-(1 << 61), 1 << 61));
    let e = Circuit::from_graph(&g, &FieldBudget::BN254).unwrap_err();
    assert!(
        matches!(e, CircuitError::Overflow { field: "BN254", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("`mm`"), "{e}");
}

/// A clamp of `x` to at least `-2^29`: its comparison spans `x`'s `2^30 - 2^15` values, which two
/// 15-bit halo2 limbs hold but stwo's 16-bit limbs with a high limb below `2^14 - 1` do not.
#[test]
fn a_comparison_wider_than_stwo_range_checks_lowers_only_under_bn254() {
    let x = (-(1 << 29), (1 << 29) - (1 << 15));
    let mut g = graph_with(x, [1, 1], (0, 0));
    g.nodes.truncate(1);
    g.nodes.push(node(
        "clip",
        Op::Clamp {
            min: Some(-(1 << 29) + 1),
            max: None,
        },
        vec![0],
        vec![1, 2],
        (-(1 << 29) + 1, x.1),
    ));
    g.outputs[0].node = 1;
    let e = Circuit::from_graph(&g, &FieldBudget::M31).unwrap_err();
    assert!(
        matches!(&e, CircuitError::Overflow { field: "M31", node, .. } if node == "clip"),
        "{e}"
    );
    let c = Circuit::from_graph(&g, &FieldBudget::BN254).unwrap();
    let v = c.assign(&[-(1 << 29), 7]).unwrap();
    let out: Vec<i64> = c.outputs.iter().map(|&o| v[o as usize]).collect();
    assert_eq!(out, vec![-(1 << 29) + 1, 7]);
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Lowers `graph` under both budgets and asserts the circuits are the same (so the stwo and
/// halo2 keys of every model both accept do not depend on the budget).
fn same_under_both_budgets(name: &str, graph: &Graph) {
    let m31 = Circuit::from_graph(graph, &FieldBudget::M31)
        .unwrap_or_else(|e| panic!("{name}: M31: {e}"));
    let bn254 = Circuit::from_graph(graph, &FieldBudget::BN254)
        .unwrap_or_else(|e| panic!("{name}: BN254: {e}"));
    assert!(m31 == bn254, "{name}: the circuit depends on the budget");
}

/// Compiles a fixture model at a fixed scale with the given range mode, as the CLI does (weights
/// at the most bits both budgets hold).
fn fixture_at(name: &str, scale: u32, ranges: RangeMode) -> Graph {
    let dir = fixtures().join("models").join(name);
    let opts = CompileOptions {
        scale: Some(scale),
        ranges,
        accept_inaccurate: true,
        ..ciro_test_support::compile_options()
    };
    compile_model_dir(&dir, &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .graph
}

/// Each backend has its own budget: with worst-case ranges the 784→1024→1024→10 MLP's dot
/// products pass 2^30, which M31 (stwo) refuses and BN254 (halo2) holds; with calibrated ranges
/// both hold it.
#[test]
fn the_budget_is_the_backends_own() {
    // As the issue measured it: one scale for activations and weights, no budget check.
    let opts = CompileOptions {
        scale: Some(9),
        weight_shift: 0,
        ranges: RangeMode::WorstCase,
        accept_inaccurate: true,
        ..CompileOptions::default()
    };
    let worst = compile_model_dir(&fixtures().join("models/mlp_1024"), &opts)
        .expect("mlp_1024 compiles with worst-case ranges")
        .graph;
    match Circuit::from_graph(&worst, &FieldBudget::M31) {
        Err(CircuitError::Overflow { field, detail, .. }) => {
            assert_eq!(field, "M31");
            assert!(detail.contains("dot product"), "{detail}");
        }
        other => panic!("M31 should refuse the worst-case mlp_1024: {other:?}"),
    }
    Circuit::from_graph(&worst, &FieldBudget::BN254).expect("BN254 holds it");
    let calibrated = fixture_at("mlp_1024", 9, RangeMode::Calibrated);
    same_under_both_budgets("mlp_1024 (calibrated)", &calibrated);
}

/// Worst-case intervals through three conv layers explode past M31 (or past `i64`, and the
/// compiler refuses); calibrated ranges keep the CIFAR CNN inside M31 at the same scale.
#[test]
fn calibrated_ranges_keep_a_deep_cnn_in_m31() {
    let dir = fixtures().join("models/cifar_cnn");
    let opts = CompileOptions {
        scale: Some(11),
        ranges: RangeMode::WorstCase,
        accept_inaccurate: true,
        ..ciro_test_support::compile_options()
    };
    // The budget check refuses every weight scale (a `Bound` error), or it compiles and M31
    // refuses it.
    match compile_model_dir(&dir, &opts) {
        Err(CompileError::Bound { .. }) => {}
        Ok(m) => assert!(Circuit::from_graph(&m.graph, &FieldBudget::M31).is_err()),
        Err(e) => panic!("cifar_cnn worst case: {e}"),
    }
    let calibrated = fixture_at("cifar_cnn", 11, RangeMode::Calibrated);
    same_under_both_budgets("cifar_cnn (calibrated)", &calibrated);
    let largest = calibrated.nodes.iter().map(|n| n.bound.abs_max()).max();
    assert!(largest < Some(1 << 30), "largest bound {largest:?}");
}

#[test]
fn every_fixture_lowers_to_the_same_circuit_under_both_budgets() {
    let models = fixtures().join("models");
    let mut n = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.display().to_string();
        let model = compile_model_dir(&dir, &ciro_test_support::compile_options())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        same_under_both_budgets(&name, &model.graph);
        n += 1;
    }
    let ops = fixtures().join("ops");
    for entry in std::fs::read_dir(&ops).unwrap() {
        let path = entry.unwrap().path();
        let x = path.with_extension("json");
        // `malformed` and `unsupported_op` exist to test the compiler's refusals.
        if path.extension().is_none_or(|e| e != "onnx") || !x.exists() {
            continue;
        }
        let name = path.display().to_string();
        if name.contains("unsupported_op") {
            continue;
        }
        let loaded = onnx::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = read_json(&x).unwrap();
        let model = compile(&loaded, &[x], &ciro_test_support::compile_options())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        same_under_both_budgets(&name, &model.graph);
        n += 1;
    }
    assert!(n >= 25, "fixtures missing: {n} lowered");
}
