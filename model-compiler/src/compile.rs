//! Calibration and the top-level compile / run entry points.

use crate::artifact::{CompileReport, CompiledModel, ScaleTrial};
use crate::error::{CompileError, Result};
use crate::eval::{eval, IntTensor};
use crate::input::check_inputs;
use crate::ir::{Graph, QuantConfig};
use crate::onnx::{lower, LoadedModel};
use crate::quant::{dequantize, quantize};
use crate::reference::FloatModel;

#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Force this activation and weight scale instead of searching.
    pub scale: Option<u32>,
    /// Declared input range; defaults to the model's `ciro.input_range` metadata, then to the
    /// calibration inputs' min/max.
    pub input_range: Option<[f64; 2]>,
    pub max_bits: u32,
    pub table_bits: u32,
    /// Calibration accepts the smallest scale whose max abs output error is at most
    /// `tolerance * max(1, max |float output|)` and whose labels all agree with the float model.
    pub tolerance: f64,
    pub min_scale: u32,
    pub max_scale: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            scale: None,
            input_range: None,
            max_bits: QuantConfig::default().max_bits,
            table_bits: QuantConfig::default().table_bits,
            tolerance: 0.01,
            min_scale: 4,
            max_scale: 16,
        }
    }
}

/// Real inputs → integer tensors at the graph's input scale, refusing wrong shapes,
/// non-finite values and values outside the declared range.
pub fn quantize_inputs(graph: &Graph, inputs: &[Vec<f32>]) -> Result<Vec<IntTensor>> {
    let shapes: Vec<Vec<usize>> = graph.inputs.iter().map(|i| i.shape.clone()).collect();
    check_inputs(inputs, &shapes)?;
    let scale = graph.config.scale;
    graph
        .inputs
        .iter()
        .zip(inputs)
        .enumerate()
        .map(|(i, (info, x))| {
            let [lo, hi] = info.range;
            if let Some(p) = x.iter().position(|&v| (v as f64) < lo || (v as f64) > hi) {
                return Err(CompileError::Input(format!(
                    "input {i} value {} at position {p} is outside the declared input range [{lo}, {hi}]",
                    x[p]
                )));
            }
            let data = x.iter().map(|&v| quantize(v as f64, scale)).collect();
            Ok(IntTensor::new(info.shape.clone(), data))
        })
        .collect()
}

/// Runs the integer model on real inputs; returns the dequantized outputs.
pub fn run(graph: &Graph, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f64>>> {
    let q = quantize_inputs(graph, inputs)?;
    let outs = eval(graph, &q)?;
    Ok(outs
        .iter()
        .zip(&graph.outputs)
        .map(|(t, o)| {
            let s = graph.nodes[o.node].scale;
            t.data.iter().map(|&v| dequantize(v, s)).collect()
        })
        .collect())
}

fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Error statistics of the integer model against the float model on samples.
struct Measured {
    max_abs: f64,
    mean_abs: f64,
    float_max: f64,
    agreement: Option<f64>,
}

fn measure(graph: &Graph, samples: &[Vec<Vec<f32>>], floats: &[Vec<Vec<f32>>]) -> Result<Measured> {
    let (mut max_abs, mut sum_abs, mut count, mut float_max) = (0f64, 0f64, 0usize, 0f64);
    let mut agree = 0usize;
    let classifier = graph.outputs.len() == 1 && graph.nodes[graph.outputs[0].node].len() > 1;
    for (x, f) in samples.iter().zip(floats) {
        let q = run(graph, x)?;
        for (qo, fo) in q.iter().zip(f) {
            for (a, b) in qo.iter().zip(fo) {
                let e = (a - *b as f64).abs();
                max_abs = max_abs.max(e);
                sum_abs += e;
                count += 1;
                float_max = float_max.max((*b as f64).abs());
            }
        }
        if classifier && argmax(&q[0]) == argmax(&f[0]) {
            agree += 1;
        }
    }
    Ok(Measured {
        max_abs,
        mean_abs: sum_abs / count.max(1) as f64,
        float_max,
        agreement: classifier.then(|| agree as f64 / samples.len().max(1) as f64),
    })
}

/// Deterministic inputs spread over the declared range, when no calibration data is given.
fn synthetic_samples(loaded: &LoadedModel, range: [f64; 2], n: usize) -> Vec<Vec<Vec<f32>>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64*: enough for spreading calibration points.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            loaded
                .input_shapes
                .iter()
                .map(|s| {
                    let len: usize = s.iter().product();
                    (0..len)
                        .map(|_| (range[0] + (range[1] - range[0]) * next()) as f32)
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Compiles a loaded ONNX model: picks the input range and scale, lowers, measures.
pub fn compile(
    loaded: &LoadedModel,
    calibration: &[Vec<Vec<f32>>],
    opts: &CompileOptions,
) -> Result<CompiledModel> {
    for (i, sample) in calibration.iter().enumerate() {
        check_inputs(sample, &loaded.input_shapes)
            .map_err(|e| CompileError::Input(format!("calibration sample {i}: {e}")))?;
    }
    let range = match (opts.input_range, loaded.input_range) {
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) if !calibration.is_empty() => {
            let all = calibration.iter().flatten().flatten().map(|&v| v as f64);
            let lo = all.clone().fold(f64::INFINITY, f64::min);
            let hi = all.fold(f64::NEG_INFINITY, f64::max);
            if lo < hi { [lo, hi] } else { [lo - 1.0, hi + 1.0] }
        }
        (None, None) => {
            return Err(CompileError::Input(
                "no input range: the model has no `ciro.input_range` metadata; pass --input-range LO,HI or calibration inputs".into(),
            ))
        }
    };
    let synthetic = calibration.is_empty();
    let samples = if synthetic {
        synthetic_samples(loaded, range, 8)
    } else {
        calibration.to_vec()
    };
    let float_model = FloatModel::new(loaded)?;
    let floats = samples
        .iter()
        .map(|x| float_model.run(x))
        .collect::<Result<Vec<_>>>()?;
    let scales: Vec<u32> = match opts.scale {
        Some(s) => vec![s],
        None => (opts.min_scale..=opts.max_scale).collect(),
    };
    let mut trials = Vec::new();
    let mut best: Option<(Graph, Measured)> = None;
    let mut last_err = None;
    for scale in scales {
        let config = QuantConfig {
            scale,
            weight_scale: scale,
            max_bits: opts.max_bits,
            table_bits: opts.table_bits,
        };
        let graph = match lower(loaded, config, range) {
            Ok(g) => g,
            Err(e @ CompileError::Bound { .. }) => {
                trials.push(ScaleTrial {
                    scale,
                    outcome: e.to_string(),
                    max_abs_error: None,
                    label_agreement: None,
                });
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let m = measure(&graph, &samples, &floats)?;
        trials.push(ScaleTrial {
            scale,
            outcome: "ok".into(),
            max_abs_error: Some(m.max_abs),
            label_agreement: m.agreement,
        });
        let good = m.max_abs <= opts.tolerance * m.float_max.max(1.0)
            && m.agreement.is_none_or(|a| a == 1.0);
        let better = best.as_ref().is_none_or(|(_, b)| m.max_abs < b.max_abs);
        if good || better {
            best = Some((graph, m));
        }
        if good {
            break;
        }
    }
    let Some((graph, m)) = best else {
        return Err(last_err.unwrap_or_else(|| CompileError::Input("no scale to try".into())));
    };
    let report = CompileReport {
        calibration_samples: samples.len(),
        synthetic_calibration: synthetic,
        max_abs_error: m.max_abs,
        mean_abs_error: m.mean_abs,
        float_output_max: m.float_max,
        label_agreement: m.agreement,
        proven_output_error: graph
            .outputs
            .iter()
            .map(|o| graph.nodes[o.node].error)
            .collect(),
        trials,
    };
    Ok(CompiledModel::new(graph, report))
}

/// Compiles a model folder laid out like the fixtures: `model.onnx` and a `calibration/` folder
/// of JSON inputs.
pub fn compile_model_dir(dir: &std::path::Path, opts: &CompileOptions) -> Result<CompiledModel> {
    let loaded = crate::onnx::load(&dir.join("model.onnx"))?;
    let cal_dir = dir.join("calibration");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&cal_dir)
        .map_err(|source| CompileError::Io {
            path: cal_dir.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let samples = files
        .iter()
        .map(|p| crate::input::read_json(p))
        .collect::<Result<Vec<_>>>()?;
    compile(&loaded, &samples, opts)
}
