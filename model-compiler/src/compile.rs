//! Calibration and the top-level compile / run entry points.

use std::sync::Arc;

use crate::artifact::{CheckedRange, CompileReport, CompiledModel, ScaleTrial};
use crate::error::{CompileError, Result};
use crate::eval::{eval_all_lenient, IntTensor, RangeViolation};
use crate::input::check_inputs;
use crate::ir::{Graph, QuantConfig};
use crate::onnx::{lower, LoadedModel};
use crate::quant::{dequantize, quantize};
use crate::reference::FloatModel;

/// Where the ranges of range-checked nodes (rescales, constant divisions) come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeMode {
    /// From the calibration samples with a margin: bounds stay tight through deep models; an
    /// input that leaves a range has no proof ([`crate::builder`]).
    #[default]
    Calibrated,
    /// Worst-case intervals from the declared input range: every input in it proves, but
    /// bounds grow multiplicatively with depth.
    WorstCase,
}

impl std::str::FromStr for RangeMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "calibrated" => Ok(RangeMode::Calibrated),
            "worst-case" => Ok(RangeMode::WorstCase),
            _ => Err(format!("unknown range mode `{s}` (calibrated, worst-case)")),
        }
    }
}

/// A test a candidate graph must pass for its scales to be chosen: the proof systems' field
/// budgets, which the compiler cannot see (`ciro_prover::compile_options` and `ciro_circuits::fits` build the usual one).
/// `Err` says why, naming the node.
#[derive(Clone)]
pub struct GraphCheck(pub Arc<GraphCheckFn>);

pub type GraphCheckFn = dyn Fn(&Graph) -> std::result::Result<(), String> + Send + Sync;

impl std::fmt::Debug for GraphCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GraphCheck(..)")
    }
}

#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Force this activation and weight scale instead of searching.
    pub scale: Option<u32>,
    /// Weight scale minus activation scale. Weights are small numbers (|w| well below 1) that
    /// every output sums many of, so they get 2 bits more than activations by default: on the
    /// CIFAR CNN that halves the output error at the same accumulator size.
    pub weight_shift: i32,
    /// Declared input range; defaults to the model's `ciro.input_range` metadata, then to the
    /// calibration inputs' min/max.
    pub input_range: Option<[f64; 2]>,
    pub max_bits: u32,
    pub table_bits: u32,
    /// Calibration accepts the smallest scale whose max abs output error is at most
    /// `tolerance * max |float output|` (relative to the outputs' size) and whose label
    /// agreement with the float model is at least `min_label_agreement`.
    pub tolerance: f64,
    pub min_label_agreement: f64,
    /// Keep the most accurate scale even when none meets the tolerance (otherwise compiling
    /// fails with [`CompileError::Inaccurate`]).
    pub accept_inaccurate: bool,
    pub min_scale: u32,
    pub max_scale: u32,
    pub ranges: RangeMode,
    /// A calibrated range is the samples' range widened by this fraction of its largest
    /// magnitude (at least 1.0 in real units) on each side.
    pub range_margin: f64,
    /// Bits of precision kept beyond the smallest scale that meets the tolerance, where the
    /// check passes: calibration sees few inputs, and near-ties between labels on others flip
    /// at the edge (the CIFAR CNN agrees on 98% of held-out inputs at the first scale that meets
    /// 1% on its 16 calibration inputs, 100% two bits up).
    pub headroom_bits: u32,
    /// A scale whose graph fails this check is skipped (trying fewer weight bits first).
    pub check: Option<GraphCheck>,
    /// Caps on the model's size, checked before anything is lowered or run.
    pub limits: crate::limits::Limits,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            scale: None,
            weight_shift: 2,
            input_range: None,
            max_bits: QuantConfig::default().max_bits,
            table_bits: QuantConfig::default().table_bits,
            tolerance: 0.02,
            min_label_agreement: 0.99,
            accept_inaccurate: false,
            min_scale: 4,
            max_scale: 16,
            ranges: RangeMode::Calibrated,
            range_margin: 1.0,
            headroom_bits: 2,
            check: None,
            limits: crate::limits::Limits::default(),
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
            if let Some(p) = x.iter().position(|v| info.integer && v.fract() != 0.0) {
                return Err(CompileError::Input(format!(
                    "input {i} value {} at position {p} is not an integer (the model declares an integer input)",
                    x[p]
                )));
            }
            let data = x.iter().map(|&v| quantize(v as f64, scale)).collect();
            Ok(IntTensor::new(info.shape.clone(), data))
        })
        .collect()
}

/// Runs the integer model on real inputs; returns the dequantized outputs. An input that drives
/// a range-checked node outside its calibrated range fails ([`CompileError::OutOfRange`]): it
/// could not be proven.
pub fn run(graph: &Graph, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f64>>> {
    let (outputs, violations) = run_lenient(graph, inputs)?;
    match violations.into_iter().next() {
        Some(v) => Err(CompileError::OutOfRange(v)),
        None => Ok(outputs),
    }
}

/// As [`run`], but calibrated ranges the input leaves are returned beside the outputs (what
/// `ciro run` warns about) instead of failing.
pub fn run_lenient(
    graph: &Graph,
    inputs: &[Vec<f32>],
) -> Result<(Vec<Vec<f64>>, Vec<RangeViolation>)> {
    let q = quantize_inputs(graph, inputs)?;
    let (values, violations) = eval_all_lenient(graph, &q)?;
    let outputs = graph
        .outputs
        .iter()
        .map(|o| {
            let s = graph.nodes[o.node].scale;
            values[o.node]
                .data
                .iter()
                .map(|&v| dequantize(v, s))
                .collect()
        })
        .collect();
    Ok((outputs, violations))
}

/// The index of the first largest value: a classifier's label.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
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
    /// Samples that leave a calibrated range (none among the calibration samples themselves).
    out_of_range: usize,
}

impl Measured {
    fn relative_error(&self) -> f64 {
        if self.float_max > 0.0 {
            self.max_abs / self.float_max
        } else if self.max_abs > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }

    fn meets(&self, opts: &CompileOptions) -> bool {
        self.out_of_range == 0
            && self.relative_error() <= opts.tolerance
            && self.agreement.is_none_or(|a| a >= opts.min_label_agreement)
    }
}

/// Error statistics, and label agreement over the samples whose float output has a single
/// largest value. Where the largest value repeats, the argmax is no label and is not compared;
/// with no such sample there is no agreement.
fn measure(graph: &Graph, samples: &[Vec<Vec<f32>>], floats: &[Vec<Vec<f32>>]) -> Result<Measured> {
    let (mut max_abs, mut sum_abs, mut count, mut float_max) = (0f64, 0f64, 0usize, 0f64);
    let mut out_of_range = 0usize;
    // Samples with a single float maximum, and those whose label the integer model shares.
    let (mut labelled, mut agree) = (0usize, 0usize);
    // A label is the argmax of one vector of scores: a single output with one axis longer than
    // 1 (an image or a feature map has no label).
    let classifier = graph.outputs.len() == 1
        && graph.nodes[graph.outputs[0].node]
            .shape
            .iter()
            .filter(|&&d| d > 1)
            .count()
            == 1;
    for (x, f) in samples.iter().zip(floats) {
        let (q, violations) = run_lenient(graph, x)?;
        out_of_range += usize::from(!violations.is_empty());
        for (qo, fo) in q.iter().zip(f) {
            for (a, b) in qo.iter().zip(fo) {
                let e = (a - *b as f64).abs();
                max_abs = max_abs.max(e);
                sum_abs += e;
                count += 1;
                float_max = float_max.max((*b as f64).abs());
            }
        }
        if classifier {
            let top = argmax(&f[0]);
            let runner_up = f[0]
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != top)
                .map(|(_, &v)| v as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            if f[0][top] as f64 > runner_up {
                labelled += 1;
                agree += usize::from(argmax(&q[0]) == top);
            }
        }
    }
    let agreement = (labelled > 0).then(|| agree as f64 / labelled as f64);
    Ok(Measured {
        max_abs,
        mean_abs: sum_abs / count.max(1) as f64,
        float_max,
        agreement,
        out_of_range,
    })
}

/// Deterministic inputs inside the declared range: what calibration uses when no calibration data
/// is given, and the held-out inputs the benchmarks measure accuracy on. For an image model
/// (`image` set, inputs `[1, C, H, W]`) they look like images: a random 8×8 picture per channel
/// blown up to full size plus ±5% noise, since white noise drives activations where real
/// pictures never go. For a `one_hot` model (token ids) each row along the last axis is one-hot
/// at a random position: random prompts. Otherwise uniform.
pub fn synthetic_inputs(
    shapes: &[Vec<usize>],
    range: [f64; 2],
    image: Option<&crate::ir::ImageSpec>,
    one_hot: bool,
    n: usize,
    seed: u64,
) -> Vec<Vec<Vec<f32>>> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: enough for spreading inputs.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    let [lo, hi] = range;
    let clamp = |v: f64| v.clamp(lo, hi) as f32;
    (0..n)
        .map(|_| {
            shapes
                .iter()
                .map(|s| match (image, s.as_slice()) {
                    _ if one_hot => {
                        let width = *s.last().unwrap_or(&1);
                        let len: usize = s.iter().product();
                        let mut out = vec![0.0f32; len];
                        for row in out.chunks_mut(width.max(1)) {
                            let hot = ((next() * row.len() as f64) as usize).min(row.len() - 1);
                            row[hot] = 1.0;
                        }
                        out
                    }
                    (Some(_), &[1, c, h, w]) => {
                        const CELLS: usize = 8;
                        let base: Vec<f64> = (0..c * CELLS * CELLS)
                            .map(|_| lo + (hi - lo) * next())
                            .collect();
                        let mut out = Vec::with_capacity(c * h * w);
                        for ch in 0..c {
                            for y in 0..h {
                                for x in 0..w {
                                    let cell = (y * CELLS / h) * CELLS + x * CELLS / w;
                                    let noise = (hi - lo) * 0.05 * (2.0 * next() - 1.0);
                                    out.push(clamp(base[ch * CELLS * CELLS + cell] + noise));
                                }
                            }
                        }
                        out
                    }
                    _ => {
                        let len: usize = s.iter().product();
                        (0..len).map(|_| clamp(lo + (hi - lo) * next())).collect()
                    }
                })
                .collect()
        })
        .collect()
}

/// Rounds the values of the inputs flagged integer (synthetic samples for integer inputs).
pub fn round_integer_inputs(samples: &mut [Vec<Vec<f32>>], integer: &[bool]) {
    for sample in samples {
        for (x, _) in sample.iter_mut().zip(integer).filter(|(_, &i)| i) {
            x.iter_mut().for_each(|v| *v = v.round());
        }
    }
}

/// Compiles a loaded ONNX model: picks the input range and scale, lowers, measures.
pub fn compile(
    loaded: &LoadedModel,
    calibration: &[Vec<Vec<f32>>],
    opts: &CompileOptions,
) -> Result<CompiledModel> {
    opts.limits
        .check(&loaded.cost)
        .map_err(|reason| CompileError::TooLarge {
            model: loaded.name.clone(),
            reason,
        })?;
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
        let mut s = synthetic_inputs(
            &loaded.input_shapes,
            range,
            loaded.image.as_ref(),
            loaded.one_hot,
            8,
            0,
        );
        round_integer_inputs(&mut s, &loaded.integer_inputs);
        s
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
    // From the requested weight shift toward 0: fewer weight bits if the check refuses.
    let ws = opts.weight_shift;
    let shifts: Vec<i32> = if ws >= 0 {
        (0..=ws).rev().collect()
    } else {
        (ws..=0).collect()
    };
    let mut first_good: Option<u32> = None;
    for scale in scales {
        let mut passed = false;
        for &shift in &shifts {
            let config = QuantConfig {
                scale,
                weight_scale: (scale as i32 + shift).max(1) as u32,
                max_bits: opts.max_bits,
                table_bits: opts.table_bits,
            };
            let refused = |outcome: String| ScaleTrial {
                scale,
                weight_scale: config.weight_scale,
                outcome,
                max_abs_error: None,
                label_agreement: None,
            };
            let calibration =
                (opts.ranges == RangeMode::Calibrated).then_some((&samples[..], opts.range_margin));
            let graph = match lower(loaded, config, range, calibration) {
                Ok(g) => g,
                Err(e @ CompileError::Bound { .. }) => {
                    trials.push(refused(e.to_string()));
                    last_err = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(check) = &opts.check {
                if let Err(why) = (check.0)(&graph) {
                    let e = CompileError::Bound {
                        node: graph.name.clone(),
                        reason: why,
                    };
                    trials.push(refused(e.to_string()));
                    last_err = Some(e);
                    continue;
                }
            }
            let m = measure(&graph, &samples, &floats)?;
            trials.push(ScaleTrial {
                scale,
                weight_scale: config.weight_scale,
                outcome: "ok".into(),
                max_abs_error: Some(m.max_abs),
                label_agreement: m.agreement,
            });
            let good = m.meets(opts);
            let better = best
                .as_ref()
                .is_none_or(|(_, b)| m.relative_error() < b.relative_error());
            if good || better {
                best = Some((graph, m));
            }
            if good {
                first_good.get_or_insert(scale);
            }
            // This scale's most precise weights that pass; then the next scale.
            passed = true;
            break;
        }
        // Past the headroom, or past what the check lets through once a scale was good enough.
        if first_good.is_some_and(|g| !passed || scale >= g + opts.headroom_bits) {
            break;
        }
    }

    let Some((graph, m)) = best else {
        return Err(last_err.unwrap_or_else(|| CompileError::Input("no scale to try".into())));
    };
    if !m.meets(opts) && !opts.accept_inaccurate {
        let agreement = m
            .agreement
            .map(|a| {
                format!(
                    "label agreement {:.1}% (need {:.1}%), ",
                    100.0 * a,
                    100.0 * opts.min_label_agreement
                )
            })
            .unwrap_or_default();
        return Err(CompileError::Inaccurate {
            measured: format!(
                "at its most accurate scale 2^{} over {} calibration sample(s): {agreement}largest \
                 output error {:.4} = {:.1}% of the largest output {:.4} (tolerance {:.1}%)",
                graph.config.scale,
                samples.len(),
                m.max_abs,
                100.0 * m.relative_error(),
                m.float_max,
                100.0 * opts.tolerance
            ),
            hint: if opts.scale.is_some() {
                "try a larger --scale (more bits after the point)".into()
            } else {
                format!(
                    "scales 2^{}..2^{} were tried; try calibration inputs that represent real \
                     use, a larger --max-scale, or a looser --tolerance",
                    opts.min_scale, opts.max_scale
                )
            },
        });
    }
    let report = CompileReport {
        calibration_samples: samples.len(),
        synthetic_calibration: synthetic,
        max_abs_error: m.max_abs,
        mean_abs_error: m.mean_abs,
        float_output_max: m.float_max,
        label_agreement: m.agreement,
        accepted_inaccurate: !m.meets(opts),
        ranges: opts.ranges,
        range_margin: opts.range_margin,
        checked_ranges: checked_ranges(&graph),
        bound_dims: loaded.bound_dims.clone(),
        proven_output_error: graph
            .outputs
            .iter()
            .map(|o| graph.nodes[o.node].error)
            .collect(),
        trials,
    };
    Ok(CompiledModel::new(graph, report))
}

/// The range-checked nodes and their (calibrated or worst-case) ranges, in real units.
fn checked_ranges(graph: &Graph) -> Vec<CheckedRange> {
    graph
        .nodes
        .iter()
        .filter(|n| n.op.is_range_checked())
        .map(|n| CheckedRange {
            node: n.name.clone(),
            op: n.op.name().into(),
            scale: n.scale,
            lo: dequantize(n.bound.lo, n.scale),
            hi: dequantize(n.bound.hi, n.scale),
        })
        .collect()
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
