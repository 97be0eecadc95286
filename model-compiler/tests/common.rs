//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ciro_model_compiler::compile::CompileOptions;
use ciro_model_compiler::eval::{eval_all, RangeViolation};
use ciro_model_compiler::onnx::{self, LoadedModel};
use ciro_model_compiler::reference::FloatModel;
use ciro_model_compiler::{compile, quantize_inputs, CompileError, CompiledModel, Graph};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn load(path: &Path) -> LoadedModel {
    onnx::load(path).unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

pub fn compile_with(loaded: &LoadedModel, samples: &[Vec<Vec<f32>>]) -> CompiledModel {
    compile_opts(loaded, samples, &CompileOptions::default())
}

pub fn compile_opts(
    loaded: &LoadedModel,
    samples: &[Vec<Vec<f32>>],
    opts: &CompileOptions,
) -> CompiledModel {
    compile(loaded, samples, opts).unwrap_or_else(|e| panic!("compile {}: {e}", loaded.path))
}

/// Seeded inputs inside the graph's declared range: uniform ones plus the corners
/// (all low, all high, alternating) where worst cases live.
pub fn random_inputs(graph: &Graph, n: usize, seed: u64) -> Vec<Vec<Vec<f32>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for k in 0..n {
        out.push(
            graph
                .inputs
                .iter()
                .map(|i| {
                    let len: usize = i.shape.iter().product();
                    let [lo, hi] = i.range;
                    (0..len)
                        .map(|j| {
                            let v = match k {
                                0 => lo,
                                1 => hi,
                                2 => {
                                    if j % 2 == 0 {
                                        lo
                                    } else {
                                        hi
                                    }
                                }
                                _ => rng.gen_range(lo..=hi),
                            };
                            let v = if i.integer { v.round() } else { v };
                            // Keep f32 rounding inside the range.
                            (v as f32).clamp(lo as f32, hi as f32)
                        })
                        .map(|v| {
                            if (v as f64) < lo {
                                v.next_up()
                            } else if (v as f64) > hi {
                                v.next_down()
                            } else {
                                v
                            }
                        })
                        .collect()
                })
                .collect(),
        );
    }
    out
}

/// Runs the integer graph and the float model on `inputs`; asserts that every IR value stays in
/// its proven bound and that every output is within its proven error of the float result.
/// Returns the largest |int - float| seen and the largest stated error.
pub fn check_bounds_and_error(
    graph: &Graph,
    float: &FloatModel,
    inputs: &[Vec<f32>],
) -> (f64, f64) {
    check_bounds_unless_out_of_range(graph, float, inputs)
        .unwrap_or_else(|v| panic!("input leaves a calibrated range: {v}"))
}

/// As [`check_bounds_and_error`], except that an input which drives a range-checked node out of
/// its calibrated range returns that violation (it has no proof) instead of failing.
pub fn check_bounds_unless_out_of_range(
    graph: &Graph,
    float: &FloatModel,
    inputs: &[Vec<f32>],
) -> Result<(f64, f64), RangeViolation> {
    let q = quantize_inputs(graph, inputs).expect("inputs in range");
    let values = match eval_all(graph, &q) {
        Ok(v) => v,
        Err(CompileError::OutOfRange(v)) => return Err(v),
        Err(e) => panic!("evaluates: {e}"),
    };
    for (id, (node, v)) in graph.nodes.iter().zip(&values).enumerate() {
        assert_eq!(v.shape, node.shape, "node {id} ({}) shape", node.op.name());
        if let Some(x) = v.data.iter().find(|x| !node.bound.contains(**x)) {
            panic!(
                "node {id} {} `{}` value {x} escapes its proven bound [{}, {}]",
                node.op.name(),
                node.name,
                node.bound.lo,
                node.bound.hi
            );
        }
    }
    let floats = float.run(inputs).expect("float reference runs");
    let (mut worst, mut stated) = (0f64, 0f64);
    for (o, f) in graph.outputs.iter().zip(&floats) {
        let node = &graph.nodes[o.node];
        let scale = (1u64 << node.scale) as f64;
        for (i, (&qv, &fv)) in values[o.node].data.iter().zip(f).enumerate() {
            let diff = (qv as f64 / scale - fv as f64).abs();
            // tract computes in f32: allow its own rounding on top of the proven bound.
            let slack = 1e-5 * (1.0 + fv.abs() as f64) * 16.0;
            assert!(
                diff <= node.error + slack,
                "output {} [{i}]: integer {} vs float {fv}: |diff| {diff} > proven error {}",
                o.name,
                qv as f64 / scale,
                node.error
            );
            worst = worst.max(diff);
        }
        stated = stated.max(node.error);
    }
    Ok((worst, stated))
}

pub fn read_samples(dir: &Path) -> Vec<Vec<Vec<f32>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| ciro_model_compiler::input::read_json(f).unwrap())
        .collect()
}
