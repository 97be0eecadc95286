//! Lowering refuses what M31 cannot hold exactly, and its gates compute what the IR says.

use ciro_circuits::{Circuit, CircuitError, Gate};
use ciro_model_compiler::ir::{Bound, Graph, InputInfo, Node, Op, OutputInfo, QuantConfig};

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
    Graph {
        name: "t".into(),
        source_sha256: String::new(),
        config: QuantConfig::default(),
        inputs: vec![InputInfo {
            name: "x".into(),
            shape: vec![1, 2],
            range: [-1.0, 1.0],
        }],
        outputs: vec![OutputInfo {
            name: "y".into(),
            node: 3,
        }],
        nodes: vec![
            node(
                "x",
                Op::Input { index: 0 },
                vec![],
                vec![1, 2],
                (-x_bound, x_bound),
            ),
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
        labels: None,
    }
}

#[test]
fn gates_compute_the_ir() {
    let c = Circuit::from_graph(&graph(100, [3, -5], (-800, 800))).unwrap();
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
    let e = Circuit::from_graph(&graph(1 << 29, [4, 4], (-1000, 1000))).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CircuitError::Overflow { .. }), "{msg}");
    assert!(msg.contains("`mm`") && msg.contains("M31"), "{msg}");
}

#[test]
fn a_bound_beyond_m31_is_refused() {
    let e = Circuit::from_graph(&graph(1 << 20, [1, 1], (-(1 << 40), 1 << 40))).unwrap_err();
    assert!(matches!(e, CircuitError::Overflow { .. }), "{e}");
}
