//! The quantized integer graph IR: what the circuits prove.
//!
//! Every value is an `i64` integer. A node's real value is `int / 2^scale`. Every node carries a
//! **proven bound** (`lo..=hi`) that holds for every input inside the declared input range whose
//! range-checked nodes ([`Op::is_range_checked`]) stay inside theirs (calibrated ranges: the
//! circuit checks them, and an input that leaves one has no proof), and a
//! **proven error** (in real units) between its dequantized value and the exact real-arithmetic
//! value of the ONNX graph on the same (real) input.
//!
//! Nodes are stored in topological order: a node only reads nodes with a smaller id. The exact
//! integer semantics of each op are stated on [`Op`]; [`crate::eval`] implements them and is the
//! ground truth the circuits must accept.

use serde::{Deserialize, Serialize};

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// An inclusive integer interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub lo: i64,
    pub hi: i64,
}

impl Bound {
    pub fn new(lo: i64, hi: i64) -> Self {
        debug_assert!(lo <= hi, "empty bound {lo}..={hi}");
        Bound { lo, hi }
    }
    pub fn point(v: i64) -> Self {
        Bound { lo: v, hi: v }
    }
    /// Largest absolute value inside the interval.
    pub fn abs_max(&self) -> i64 {
        self.lo.unsigned_abs().max(self.hi.unsigned_abs()) as i64
    }
    pub fn contains(&self, v: i64) -> bool {
        self.lo <= v && v <= self.hi
    }
    pub fn union(&self, other: &Bound) -> Bound {
        Bound::new(self.lo.min(other.lo), self.hi.max(other.hi))
    }
    /// Bits needed for a signed value in this interval, sign excluded (`|v| < 2^bits`).
    pub fn magnitude_bits(&self) -> u32 {
        64 - (self.abs_max() as u64).leading_zeros()
    }
}

/// A non-linear function evaluated by table lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Func {
    Sigmoid,
    Tanh,
    Exp,
    Erf,
    /// `√x` (0 below 0).
    Sqrt,
    /// `1/√x`, with inputs below the smallest positive step taken as that step.
    Rsqrt,
    /// `1/x`, with inputs within one step of 0 taken as ± that step.
    Recip,
    /// `ln x`, with inputs below the smallest positive step taken as that step.
    Ln,
    /// `x·Φ(x)`, GELU without approximation.
    GeluExact,
    /// GELU's tanh approximation, `x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    GeluTanh,
    /// `x·sigmoid(x)`.
    Silu,
    /// `x·min(max(x/6 + 1/2, 0), 1)`.
    HardSwish,
    Cos,
    Sin,
    Tan,
    Acos,
    Asin,
    Atan,
    /// `x^e` for a constant exponent (its `f32` bits); for a fractional `e` a negative input
    /// reads as 0, and for a negative `e` an input within one step of 0 as that step.
    Pow(u32),
}

impl Func {
    /// The function as the reference evaluates it (ONNX's, where it is defined).
    pub fn apply(&self, x: f64) -> f64 {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        match self {
            Func::Sigmoid => sigmoid(x),
            Func::Tanh => x.tanh(),
            Func::Exp => x.exp(),
            Func::Erf => erf(x),
            Func::Sqrt => x.max(0.0).sqrt(),
            Func::Rsqrt => 1.0 / x.sqrt(),
            Func::Recip => 1.0 / x,
            Func::Ln => x.ln(),
            Func::GeluExact => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            Func::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Func::Silu => x * sigmoid(x),
            Func::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Func::Cos => x.cos(),
            Func::Sin => x.sin(),
            Func::Tan => x.tan(),
            Func::Acos => x.clamp(-1.0, 1.0).acos(),
            Func::Asin => x.clamp(-1.0, 1.0).asin(),
            Func::Atan => x.atan(),
            Func::Pow(bits) => x.powf(f32::from_bits(*bits) as f64),
        }
    }

    /// The function as a table holds it for an input on a grid of step `step`: at the
    /// singularities of `1/√x`, `1/x` and `ln x` the input is taken one step away from them.
    pub fn tabulate(&self, x: f64, step: f64) -> f64 {
        match self {
            Func::Rsqrt | Func::Ln => self.apply(x.max(step)),
            Func::Recip if x.abs() < step => self.apply(if x < 0.0 { -step } else { step }),
            Func::Pow(bits) => {
                let e = f32::from_bits(*bits) as f64;
                match (e.fract() != 0.0 && x < 0.0, e < 0.0 && x.abs() < step) {
                    (true, _) => 0.0,
                    (_, true) => self.apply(if x < 0.0 { -step } else { step }),
                    _ => self.apply(x),
                }
            }
            _ => self.apply(x),
        }
    }

    /// Whether inputs in `[lo, hi]` (real units) can reach where the table differs from the
    /// function (see [`Func::tabulate`]): below one step for `1/√x` and `ln x`, within one
    /// step of 0 for `1/x`.
    pub fn reaches_singularity(&self, lo: f64, hi: f64, step: f64) -> bool {
        match self {
            Func::Rsqrt | Func::Ln => lo < step,
            Func::Recip => lo < step && hi > -step,
            Func::Pow(bits) => {
                let e = f32::from_bits(*bits) as f64;
                (e.fract() != 0.0 && lo < 0.0) || (e < 0.0 && lo < step && hi > -step)
            }
            _ => false,
        }
    }

    /// Lipschitz constant of the function on `[lo, hi]` (real units); for the singular ones on
    /// the part of it the table is exact on, from `step` away from the singularity.
    pub fn lipschitz(&self, lo: f64, hi: f64, step: f64) -> f64 {
        let m = lo.abs().max(hi.abs());
        // The smallest |x| on [lo, hi], at least one step.
        let near = if lo <= 0.0 && hi >= 0.0 {
            step
        } else {
            lo.abs().min(hi.abs()).max(step)
        };
        let pos = lo.max(step);
        match self {
            Func::Sigmoid => 0.25,
            Func::Tanh => 1.0,
            Func::Exp => hi.exp(),
            Func::Erf => 2.0 / std::f64::consts::PI.sqrt(),
            // √ is not Lipschitz at 0; [`Func::propagate`] uses its Hölder bound there.
            Func::Sqrt if lo > 0.0 => 0.5 / lo.sqrt(),
            Func::Sqrt => f64::INFINITY,
            Func::Rsqrt => 0.5 * pos.powf(-1.5),
            Func::Recip => 1.0 / (near * near),
            Func::Ln => 1.0 / pos,
            // |d/dx x·Φ(x)| = |Φ(x) + x·φ(x)| <= 1.13; the tanh form and SiLU stay below 1.13
            // and 1.1.
            Func::GeluExact | Func::GeluTanh => 1.13,
            Func::Silu => 1.1,
            Func::HardSwish => (m / 3.0 + 0.5).clamp(1.0, 1.5),
            Func::Cos | Func::Sin => 1.0,
            Func::Atan => 1.0,
            Func::Tan if m < std::f64::consts::FRAC_PI_2 => 1.0 / m.cos().powi(2),
            Func::Asin | Func::Acos if m < 1.0 => 1.0 / (1.0 - m * m).sqrt(),
            Func::Tan | Func::Asin | Func::Acos => f64::INFINITY,
            Func::Pow(bits) => {
                let e = f32::from_bits(*bits) as f64;
                // |d/dx x^e| = |e|·|x|^(e-1): largest at the largest |x| when e >= 1, at the
                // smallest (at least one step) when e < 1.
                let at = if e >= 1.0 { m } else { near };
                e.abs() * at.powf(e - 1.0)
            }
        }
    }

    /// How far the function's value can move when its input moves by up to `err` inside
    /// `[lo, hi]` (real units, the table's grid `step`).
    pub fn propagate(&self, lo: f64, hi: f64, err: f64, step: f64) -> f64 {
        if err == 0.0 {
            return 0.0;
        }
        let lip = self.lipschitz(lo - err, hi + err, step) * err;
        match self {
            // |√a - √b| <= √|a - b|.
            Func::Sqrt => lip.min(err.sqrt()),
            _ => lip,
        }
    }

    /// Real input magnitude beyond which the function is saturated for lookup purposes
    /// (its distance to the asymptote is below 2^-24); `None` if it never saturates.
    pub fn saturation(&self) -> Option<f64> {
        match self {
            Func::Sigmoid => Some(17.0),
            Func::Tanh => Some(9.0),
            Func::Erf => Some(4.0),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Func::Sigmoid => "sigmoid",
            Func::Tanh => "tanh",
            Func::Exp => "exp",
            Func::Erf => "erf",
            Func::Sqrt => "sqrt",
            Func::Rsqrt => "rsqrt",
            Func::Recip => "reciprocal",
            Func::Ln => "ln",
            Func::GeluExact => "gelu",
            Func::GeluTanh => "gelu (tanh)",
            Func::Silu => "silu",
            Func::HardSwish => "hardswish",
            Func::Cos => "cos",
            Func::Sin => "sin",
            Func::Tan => "tan",
            Func::Acos => "acos",
            Func::Asin => "asin",
            Func::Atan => "atan",
            Func::Pow(_) => "pow",
        }
    }
}

/// Abramowitz–Stegun 7.1.26 is too coarse for tables; use a series / continued fraction with
/// full double precision instead.
fn erf(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return x.signum();
    }
    if x.abs() < 2.5 {
        // Maclaurin series: erf x = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut sum = 0.0f64;
        let mut term = x;
        let x2 = x * x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x2 / n;
        }
        return 2.0 / std::f64::consts::PI.sqrt() * sum;
    }
    // erfc continued fraction for |x| >= 2.5 (Lentz), then erf = 1 - erfc.
    let ax = x.abs();
    let mut f = ax;
    let mut c = ax;
    let mut d = 0.0;
    for k in 1..200 {
        let a = k as f64 / 2.0;
        d = ax + a * d;
        d = 1.0 / d;
        c = ax + a / c;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    let erfc = (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt());
    (1.0 - erfc) * x.signum()
}

/// The operations of the IR. Shapes are row-major; broadcasting follows numpy rules.
/// `round_div(n, d)` below means `floor((2n + d) / (2d))` for `d > 0` (round half up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A model input, as quantized by [`crate::quant::quantize`]; its values are checked against
    /// the declared input range before evaluation.
    Input { index: usize },
    /// A constant tensor (weights, biases, constants); `values` has the node's shape.
    Const { values: Vec<i64> },
    /// `out[b, m, n] = sum_k a[b, m, k] * b[b, k, n]`; inputs `[a, b]`, `a` of rank 2 `[M, K]` or
    /// rank 3 `[B, M, K]`, `b` of rank 2 `[K, N]` (shared by every batch) or rank 3 `[B, K, N]`.
    /// Output scale = scale(a) + scale(b).
    MatMul,
    /// 2-D convolution, NCHW input and OIHW kernel (inputs `[x, w]`), group 1, zero padding.
    /// `out[n,o,y,x] = sum_{c,i,j} in[n,c,y*sh+i*dh-ph, x*sw+j*dw-pw] * w[o,c,i,j]`.
    /// Output scale = scale(x) + scale(w).
    Conv {
        strides: [usize; 2],
        dilations: [usize; 2],
        pads_before: [usize; 2],
        pads_after: [usize; 2],
    },
    /// Element-wise with broadcast; both inputs have the node's scale.
    Add,
    /// Element-wise with broadcast; both inputs have the node's scale.
    Sub,
    /// Element-wise with broadcast; output scale = sum of input scales.
    Mul,
    /// `x * 2^bits` (scale increases by `bits`).
    ScaleUp { bits: u32 },
    /// `floor((x + 2^(bits-1)) / 2^bits)`: division by 2^bits, round half up; the remainder
    /// `x + 2^(bits-1) - out * 2^bits` lies in `[0, 2^bits)`. Scale decreases by `bits`.
    Rescale { bits: u32 },
    /// `min(max(x, min), max)` with constants at the node's scale (ReLU is `min = 0`).
    Clamp { min: Option<i64>, max: Option<i64> },
    /// Element-wise maximum of two inputs with broadcast (same scale).
    Max,
    /// Element-wise minimum of two inputs with broadcast (same scale).
    Min,
    /// `x >= 0 ? x * 2^slope_bits : x * slope` — LeakyReLU with slope `slope / 2^slope_bits`.
    /// Output scale = input scale + `slope_bits`.
    LeakyRelu { slope: i64, slope_bits: u32 },
    /// `table[clamp(x, in_lo, in_lo + len - 1) - in_lo]`: a function tabulated on a bounded
    /// domain, `table[i] = round(f((in_lo + i) / 2^in_scale) * 2^scale)`. Inputs beyond the
    /// domain saturate (the domain covers the input bound unless `f` is saturated there).
    Lookup {
        func: Func,
        in_lo: i64,
        in_scale: u32,
        table: Vec<i64>,
    },
    /// Max over each window; padded positions are ignored (every window has an in-bounds element).
    MaxPool {
        kernel: [usize; 2],
        strides: [usize; 2],
        pads_before: [usize; 2],
        pads_after: [usize; 2],
    },
    /// Sum over each window; padded positions count as 0. Same scale as the input.
    SumPool {
        kernel: [usize; 2],
        strides: [usize; 2],
        pads_before: [usize; 2],
        pads_after: [usize; 2],
    },
    /// Sum over `axes` (kept with size 1). Same scale.
    ReduceSum { axes: Vec<usize> },
    /// Max over `axes` (kept with size 1). Same scale.
    ReduceMax { axes: Vec<usize> },
    /// `round_div(num, den)` element-wise with broadcast; inputs `[num, den]`, `den` positive:
    /// constant counts (scale 0), or a computed tensor whose proven bound is positive (an exact
    /// division of two activations). Output scale = scale(num) − scale(den). The name predates
    /// computed divisors; it stays for compiled models' sake.
    DivConst,
    /// Softmax along `axis`: `m = max(x)`, `d = max(x - m, in_lo)`,
    /// `e = table[d - in_lo]` (exp tabulated on `[in_lo, 0]` at scale `exp_bits`, so
    /// `e(0) = 2^exp_bits`), `s = sum(e)`, `out = round_div(e * 2^scale, s)`; `s >= 2^exp_bits`.
    Softmax {
        axis: usize,
        in_lo: i64,
        exp_bits: u32,
        table: Vec<i64>,
    },
    /// Same data, new shape (Flatten, Squeeze, Unsqueeze, Reshape).
    Reshape,
    /// Axis permutation: `out` axis `i` is input axis `perm[i]`.
    Transpose { perm: Vec<usize> },
    /// `start, start+step, ...` while `< end` along `axis`.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
        step: usize,
    },
    /// Concatenation along `axis`; all inputs share the node's scale.
    Concat { axis: usize },
    /// Constant padding with `value` (at the node's scale).
    Pad {
        before: Vec<usize>,
        after: Vec<usize>,
        value: i64,
    },
    /// `out = take(x, indices, axis)` with constant, in-range indices.
    Gather { axis: usize, indices: Vec<usize> },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Const { .. } => "Const",
            Op::MatMul => "MatMul",
            Op::Conv { .. } => "Conv",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::ScaleUp { .. } => "ScaleUp",
            Op::Rescale { .. } => "Rescale",
            Op::Clamp { .. } => "Clamp",
            Op::Max => "Max",
            Op::Min => "Min",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Lookup { .. } => "Lookup",
            Op::MaxPool { .. } => "MaxPool",
            Op::SumPool { .. } => "SumPool",
            Op::ReduceSum { .. } => "ReduceSum",
            Op::ReduceMax { .. } => "ReduceMax",
            Op::DivConst => "DivConst",
            Op::Softmax { .. } => "Softmax",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Slice { .. } => "Slice",
            Op::Concat { .. } => "Concat",
            Op::Pad { .. } => "Pad",
            Op::Gather { .. } => "Gather",
        }
    }

    /// Whether the circuit proves this op's output inside its node's bound from both sides
    /// (the division gadget checks `q - q_lo` and `q_hi - q`), so that the bound may be a
    /// calibrated range rather than a worst case ([`crate::builder`]). A rescale by 0 bits is
    /// the identity and has no gadget.
    pub fn is_range_checked(&self) -> bool {
        match self {
            Op::Rescale { bits } => *bits > 0,
            Op::DivConst => true,
            _ => false,
        }
    }

    /// The family whose files implement this op in every layer ([`crate::ops`], and the
    /// circuits crate's lowering).
    pub fn family(&self) -> OpFamily {
        match self {
            Op::MatMul | Op::Conv { .. } => OpFamily::Linear,
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Max
            | Op::Min
            | Op::DivConst
            | Op::ScaleUp { .. }
            | Op::Rescale { .. } => OpFamily::Elementwise,
            Op::Clamp { .. } | Op::LeakyRelu { .. } | Op::Lookup { .. } => OpFamily::Activation,
            Op::MaxPool { .. } | Op::SumPool { .. } => OpFamily::Pooling,
            Op::ReduceSum { .. } | Op::ReduceMax { .. } => OpFamily::Reduction,
            Op::Softmax { .. } => OpFamily::Softmax,
            Op::Input { .. }
            | Op::Const { .. }
            | Op::Reshape
            | Op::Transpose { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Pad { .. }
            | Op::Gather { .. } => OpFamily::Wiring,
        }
    }
}

/// The families of [`Op`]: each has one file per layer (import, bounds and evaluation in
/// `model-compiler/src/ops/<family>.rs`, lowering in `circuits/src/lower/<family>.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpFamily {
    /// MatMul, Conv.
    Linear,
    /// Add, Sub, Mul, Max, Min, DivConst, ScaleUp, Rescale.
    Elementwise,
    /// Clamp, LeakyRelu, Lookup.
    Activation,
    /// MaxPool, SumPool.
    Pooling,
    /// ReduceSum, ReduceMax.
    Reduction,
    /// Softmax.
    Softmax,
    /// Input, Const and pure data movement: Reshape, Transpose, Slice, Concat, Pad, Gather.
    Wiring,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The ONNX/tract node this was lowered from (several IR nodes may share one).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Vec<usize>,
    /// Fixed-point scale: real value = int / 2^scale.
    pub scale: u32,
    /// Proven bound on every integer of this node for inputs inside the declared range (for a
    /// range-checked op: the checked, calibrated range).
    pub bound: Bound,
    /// Proven bound on |dequantized value - exact real value| (real units).
    pub error: f64,
}

impl Node {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a user image becomes the model's input tensor (ONNX metadata `ciro.image`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub height: usize,
    pub width: usize,
    /// 1 (grayscale) or 3 (RGB, channel-major in NCHW inputs).
    pub channels: usize,
    /// Pixel 0 maps to `range[0]`, pixel 255 to `range[1]`.
    pub range: [f64; 2],
}

/// Quantization settings the compiler chose (or was given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantConfig {
    /// Scale of inputs and activations (bits after the binary point).
    pub scale: u32,
    /// Scale of weights and other constants that multiply activations.
    pub weight_scale: u32,
    /// Every proven bound must satisfy |v| < 2^max_bits. 62 is what `i64` evaluation allows;
    /// each proof system's own limits are checked when the graph is lowered to its circuit
    /// (`ciro_circuits::FieldBudget`: M31 holds 30 bits, BN254 all 62).
    pub max_bits: u32,
    /// Largest lookup table is 2^table_bits entries.
    pub table_bits: u32,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            scale: 8,
            weight_scale: 8,
            max_bits: 62,
            table_bits: 16,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputInfo {
    pub name: String,
    pub shape: Vec<usize>,
    /// Declared real range of every value of this input.
    pub range: [f64; 2],
    /// Declared with an integer or bool type: its values must be integers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub integer: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub name: String,
    pub node: NodeId,
}

/// A compiled model: the integer graph and what is needed to feed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    /// sha256 of the source ONNX file.
    pub source_sha256: String,
    pub config: QuantConfig,
    pub inputs: Vec<InputInfo>,
    pub outputs: Vec<OutputInfo>,
    pub nodes: Vec<Node>,
    pub image: Option<ImageSpec>,
    pub labels: Option<Vec<String>>,
    /// Inputs are one-hot rows along their last axis (token ids, ONNX metadata `ciro.one_hot`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_hot: bool,
}

/// Size summary of a graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphStats {
    pub nodes: usize,
    pub parameters: usize,
    pub macs: u64,
    pub lookups: u64,
    pub largest_table: usize,
    pub max_magnitude_bits: u32,
    pub op_counts: Vec<(String, usize)>,
}

impl Graph {
    pub fn stats(&self) -> GraphStats {
        let mut s = GraphStats {
            nodes: self.nodes.len(),
            ..Default::default()
        };
        let mut counts: Vec<(String, usize)> = Vec::new();
        for node in &self.nodes {
            let name = node.op.name().to_string();
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
            s.max_magnitude_bits = s.max_magnitude_bits.max(node.bound.magnitude_bits());
            match &node.op {
                Op::Const { values } => s.parameters += values.len(),
                Op::MatMul => {
                    let a = &self.nodes[node.inputs[0]];
                    let k = *a.shape.last().unwrap_or(&1) as u64;
                    s.macs += node.len() as u64 * k;
                }
                Op::Conv { .. } => {
                    let w = &self.nodes[node.inputs[1]];
                    let per_out: usize = w.shape[1..].iter().product();
                    s.macs += (node.len() * per_out) as u64;
                }
                Op::Lookup { table, .. } => {
                    s.lookups += node.len() as u64;
                    s.largest_table = s.largest_table.max(table.len());
                }
                Op::Softmax { table, .. } => {
                    s.lookups += node.len() as u64;
                    s.largest_table = s.largest_table.max(table.len());
                }
                _ => {}
            }
        }
        s.op_counts = counts;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Reference values of erf to 15 digits.
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_047),
            (1.0, 0.842_700_792_949_715),
            (2.0, 0.995_322_265_018_953),
            (3.0, 0.999_977_909_503_001),
            (-1.5, -0.966_105_146_475_311),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() < 1e-13,
                "erf({x}) = {} != {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn bound_magnitude_bits() {
        assert_eq!(Bound::new(-1, 0).magnitude_bits(), 1);
        assert_eq!(Bound::new(0, 255).magnitude_bits(), 8);
        assert_eq!(Bound::new(-256, 3).magnitude_bits(), 9);
    }
}
