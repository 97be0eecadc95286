//! ONNX front-end: load with tract-onnx, declutter, and lower every node to IR nodes. The walk,
//! the loading and the window geometry shared by convolutions and pools are here; each family
//! imports its own ops ([`crate::ops`]).

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_core::ops::source::TypedSource;

use crate::builder::{Builder, FloatConst, Window};
use crate::error::{CompileError, Result};
use crate::ir::{Graph, ImageSpec, InputInfo, NodeId, Op, OutputInfo, QuantConfig};
use crate::{ops, proto};

/// An ONNX model loaded and decluttered by tract, with Ciro's metadata.
pub struct LoadedModel {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub model: TypedModel,
    pub input_shapes: Vec<Vec<usize>>,
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
    /// `ciro.input_range` metadata, if present.
    pub input_range: Option<[f64; 2]>,
    pub image: Option<ImageSpec>,
    pub labels: Option<Vec<String>>,
    /// `ciro.one_hot` metadata: each input row along the last axis is one-hot (token ids).
    pub one_hot: bool,
    /// Per input: declared with an integer or bool type, so its values must be integers.
    pub integer_inputs: Vec<bool>,
    /// The symbolic dimensions of the inputs and the sizes they were bound to.
    pub bound_dims: Vec<BoundDim>,
    /// Every ONNX node's name and op type, as the file has them, so errors can speak of the
    /// user's nodes rather than of tract's rewrites of them.
    pub onnx_nodes: std::collections::BTreeMap<String, String>,
    /// MACs and activations of one inference, from the static shapes ([`crate::limits`]).
    pub cost: crate::limits::ModelCost,
}

impl LoadedModel {
    /// Whether input `index` is declared with an integer or bool type.
    pub(crate) fn integer_input(&self, index: usize) -> bool {
        self.integer_inputs.get(index).copied().unwrap_or(false)
    }

    /// The ONNX node (name, op type) a tract node comes from: the node of that name, or the one
    /// whose name prefixes it (tract names the nodes it splits a node into `name.suffix`).
    pub fn onnx_node(&self, tract_name: &str) -> Option<(&str, &str)> {
        let mut name = tract_name;
        loop {
            if let Some((n, op)) = self.onnx_nodes.get_key_value(name) {
                return Some((n.as_str(), op.as_str()));
            }
            name = &name[..name.rfind('.')?];
        }
    }
}

/// Sizes for an ONNX model's symbolic dimensions (`batch_size`, `N`, …), by name. A symbolic
/// dimension without a binding, and an unnamed unknown one, is bound to 1 (one inference).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DimBindings(pub std::collections::BTreeMap<String, usize>);

/// The most a symbolic dimension may be bound to.
pub const MAX_BOUND_DIM: usize = 1 << 16;

impl DimBindings {
    /// Parses `NAME=N`.
    pub fn parse_one(s: &str) -> std::result::Result<(String, usize), String> {
        let (name, n) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=N, got `{s}`"))?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a whole number", n.trim()))?;
        if n == 0 || n > MAX_BOUND_DIM {
            return Err(format!(
                "{} must be between 1 and {MAX_BOUND_DIM}",
                name.trim()
            ));
        }
        Ok((name.trim().to_string(), n))
    }
}

/// A symbolic dimension of an input, as the file names it (`?` when unnamed), and its size.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundDim {
    pub input: String,
    pub axis: usize,
    pub name: String,
    pub size: usize,
}

/// Replaces every symbolic or unknown dimension of the graph's inputs with its bound size, and
/// refuses a binding that names no dimension of the file (a typo would otherwise pass silently).
fn bind_dims(
    graph: &mut tract_onnx::pb::GraphProto,
    dims: &DimBindings,
) -> std::result::Result<Vec<BoundDim>, String> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut bound = Vec::new();
    for input in &mut graph.input {
        if initializers.contains(input.name.as_str()) {
            continue;
        }
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            continue;
        };
        let Some(shape) = t.shape.as_mut() else {
            continue;
        };
        for (axis, d) in shape.dim.iter_mut().enumerate() {
            let name = match &d.value {
                Some(Value::DimValue(v)) if *v > 0 => continue,
                Some(Value::DimParam(p)) if !p.is_empty() => p.clone(),
                _ => "?".to_string(),
            };
            let size = dims.0.get(&name).copied().unwrap_or(1);
            d.value = Some(Value::DimValue(size as i64));
            bound.push(BoundDim {
                input: input.name.clone(),
                axis,
                name,
                size,
            });
        }
    }
    // Declared output and intermediate shapes are only hints; a symbolic one (EZKL's
    // large_mlp declares `[batch_size, 100]` for a `[10·batch_size, 100]` result) would contradict
    // the inputs' binding, so tract infers those from the inputs instead.
    for info in graph.output.iter_mut().chain(graph.value_info.iter_mut()) {
        if let Some(type_proto::Value::TensorType(t)) =
            info.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            let symbolic = t.shape.as_ref().is_some_and(|s| {
                s.dim
                    .iter()
                    .any(|d| !matches!(d.value, Some(Value::DimValue(v)) if v > 0))
            });
            if symbolic {
                t.shape = None;
            }
        }
    }
    for name in dims.0.keys() {
        if !bound.iter().any(|b| &b.name == name) {
            let have: Vec<&str> = bound.iter().map(|b| b.name.as_str()).collect();
            return Err(format!(
                "--dim {name}=…: the model's inputs have no symbolic dimension `{name}` (they have {})",
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            ));
        }
    }
    Ok(bound)
}

fn onnx_err(path: &str, e: impl std::fmt::Display) -> CompileError {
    CompileError::Onnx {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

pub(crate) fn tract_err(e: TractError) -> String {
    // tract's errors are chains; the root cause is usually the informative part.
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    chain.join(": ")
}

/// Reads an ONNX file, binds its symbolic dimensions to 1, and declutters it.
pub fn load(path: &Path) -> Result<LoadedModel> {
    load_with(path, &DimBindings::default())
}

/// Reads an ONNX file, binds its symbolic dimensions as `dims` says (1 where it is silent), and
/// declutters it.
pub fn load_with(path: &Path, dims: &DimBindings) -> Result<LoadedModel> {
    let bytes = std::fs::read(path).map_err(|source| CompileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_bytes(&bytes, path, dims)
}

/// [`load_with`] for a file already in memory; `path` names it (and the model, by its stem).
pub fn load_bytes(bytes: &[u8], path: &Path, dims: &DimBindings) -> Result<LoadedModel> {
    let p = path.display().to_string();
    let sha256 = hex::encode(Sha256::digest(bytes));
    let onnx = tract_onnx::onnx();
    let mut proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| onnx_err(&p, format!("not a valid ONNX protobuf ({})", tract_err(e))))?;
    let Some(graph) = proto.graph.as_mut() else {
        return Err(onnx_err(&p, "the file holds no graph"));
    };
    proto::dedupe_node_names(graph);
    let bound_dims = bind_dims(graph, dims).map_err(|e| onnx_err(&p, e))?;
    proto::check_input_sizes(graph).map_err(|e| onnx_err(&p, e))?;
    proto::check_references(graph).map_err(|e| onnx_err(&p, e))?;
    let integer_inputs = proto::float_inputs(graph);
    // The user's nodes, before unrolling: a refusal inside an unrolled LSTM names the LSTM.
    let onnx_nodes = graph
        .node
        .iter()
        .filter(|n| !n.name.is_empty())
        .map(|n| (n.name.clone(), n.op_type.clone()))
        .collect();
    proto::unroll_recurrent(&onnx, &mut proto).map_err(|e| onnx_err(&p, e))?;
    let inference = proto::guarded(|| onnx.model_for_proto_model(&proto))
        .map_err(|e| onnx_err(&p, e))?
        .map_err(|e| onnx_err(&p, tract_err(e)))?;
    let meta = |key: &str| -> Option<String> {
        proto
            .metadata_props
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    };
    let input_range = match meta("ciro.input_range") {
        Some(s) => Some(
            parse_range(&s).map_err(|e| onnx_err(&p, format!("metadata ciro.input_range: {e}")))?,
        ),
        None => None,
    };
    let image = match meta("ciro.image") {
        Some(s) => Some(
            serde_json::from_str::<ImageSpec>(&s)
                .map_err(|e| onnx_err(&p, format!("metadata ciro.image: {e}")))?,
        ),
        None => None,
    };
    let labels = match meta("ciro.labels") {
        Some(s) => Some(
            serde_json::from_str::<Vec<String>>(&s)
                .map_err(|e| onnx_err(&p, format!("metadata ciro.labels: {e}")))?,
        ),
        None => None,
    };
    let one_hot = meta("ciro.one_hot").is_some_and(|v| v == "true");
    let typed = proto::guarded(|| inference.into_typed().and_then(|m| m.into_decluttered()))
        .map_err(|e| onnx_err(&p, e))?
        .map_err(|e| onnx_err(&p, tract_err(e)))?;
    // Every tensor's size, before anything is allocated for it.
    for node in typed.nodes() {
        for (slot, out) in node.outputs.iter().enumerate() {
            let what = format!("output {slot} of node `{}`", node.name);
            // A shape known only when the model runs (a TopK whose k is data, a NonZero) could
            // ask for any amount of memory; circuits need static shapes anyway.
            let shape = out.fact.shape.as_concrete().ok_or_else(|| {
                onnx_err(
                    &p,
                    format!(
                        "{what} has a shape known only at run time ({:?}); Ciro proves models whose shapes are static",
                        out.fact.shape
                    ),
                )
            })?;
            proto::check_elements(&what, shape.iter().map(|&d| d as u64))
                .map_err(|e| onnx_err(&p, e))?;
        }
        // tract's TopK allocates its output from k's value when it runs, whatever the typed
        // shape says: k must be a constant within the axis (found by fuzzing).
        if let Some(t) = node.op_as::<tract_onnx::tract_core::ops::array::Topk>() {
            let fact = |slot: usize| {
                node.inputs
                    .get(slot)
                    .and_then(|o| typed.outlet_fact(*o).ok())
            };
            let n = fact(0)
                .and_then(|f| f.shape.as_concrete().and_then(|s| s.get(t.axis).copied()))
                .unwrap_or(0);
            let k = fact(1)
                .and_then(|f| f.konst.clone())
                .and_then(|k| k.cast_to_scalar::<i64>().ok());
            if !k.is_some_and(|k| k >= 1 && k as u64 <= n as u64) {
                return Err(onnx_err(
                    &p,
                    format!(
                        "TopK node `{}`: k ({k:?}) must be a constant between 1 and the axis length {n}",
                        node.name
                    ),
                ));
            }
        }
    }
    let cost = proto::guarded(|| crate::limits::model_cost(&typed))
        .and_then(|c| c)
        .map_err(|e| onnx_err(&p, e))?;
    let mut input_shapes = Vec::new();
    let mut input_names = Vec::new();
    for (i, outlet) in typed
        .input_outlets()
        .map_err(|e| onnx_err(&p, tract_err(e)))?
        .iter()
        .enumerate()
    {
        let fact = typed
            .outlet_fact(*outlet)
            .map_err(|e| onnx_err(&p, tract_err(e)))?;
        let shape = fact.shape.as_concrete().ok_or_else(|| {
            onnx_err(
                &p,
                format!(
                    "input {i} has a symbolic shape {:?}; Ciro needs static shapes",
                    fact.shape
                ),
            )
        })?;
        input_shapes.push(shape.to_vec());
        input_names.push(typed.node(outlet.node).name.clone());
    }
    if let Some(spec) = &image {
        crate::input::check_image_spec(spec, &input_shapes)
            .map_err(|e| onnx_err(&p, format!("metadata ciro.image: {e}")))?;
    }
    let output_names = typed
        .output_outlets()
        .map_err(|e| onnx_err(&p, tract_err(e)))?
        .iter()
        .map(|o| typed.node(o.node).name.clone())
        .collect();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    // fixtures/models/NAME/model.onnx is named after its folder.
    let name = if name == "model" {
        path.parent()
            .and_then(|d| d.file_name())
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or(name)
    } else {
        name
    };
    Ok(LoadedModel {
        name,
        path: p,
        sha256,
        model: typed,
        input_shapes,
        input_names,
        output_names,
        input_range,
        image,
        one_hot,
        integer_inputs,
        labels,
        bound_dims,
        onnx_nodes,
        cost,
    })
}

/// Parses `"lo,hi"`.
pub fn parse_range(s: &str) -> std::result::Result<[f64; 2], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 2 {
        return Err(format!("expected `lo,hi`, got `{s}`"));
    }
    let lo: f64 = parts[0]
        .parse()
        .map_err(|_| format!("`{}` is not a number", parts[0]))?;
    let hi: f64 = parts[1]
        .parse()
        .map_err(|_| format!("`{}` is not a number", parts[1]))?;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(format!("empty or non-finite range `{s}`"));
    }
    Ok([lo, hi])
}

/// A lowered value: an IR node, or a constant not yet placed (its scale depends on its use).
#[derive(Clone)]
pub(crate) enum Value {
    Node(NodeId),
    Const(FloatConst),
}

pub(crate) fn tensor_to_const(t: &Tensor) -> std::result::Result<FloatConst, String> {
    let t = t.cast_to::<f32>().map_err(tract_err)?;
    let values = t
        .to_plain_array_view::<f32>()
        .map_err(tract_err)?
        .iter()
        .copied()
        .collect();
    Ok(FloatConst {
        shape: t.shape().to_vec(),
        values,
    })
}

pub(crate) fn tensor_to_indices(t: &Tensor) -> std::result::Result<Vec<i64>, String> {
    let t = t.cast_to::<i64>().map_err(tract_err)?;
    let v = t
        .to_plain_array_view::<i64>()
        .map_err(tract_err)?
        .iter()
        .copied()
        .collect();
    Ok(v)
}

/// The walk over a tract model: the builder of the IR so far, and what each tract outlet became.
pub(crate) struct Lowering<'a> {
    pub(crate) model: &'a TypedModel,
    loaded: &'a LoadedModel,
    pub(crate) b: Builder,
    pub(crate) values: HashMap<OutletId, Value>,
}

/// A family's import: the IR of tract node `id`, or `None` if the family has no such op.
type Import = fn(&mut Lowering, usize) -> Option<Result<NodeId>>;

/// Lowers a loaded model at the given quantization settings and declared input range. With
/// `calibration` (real input samples and a margin), range-checked nodes take their ranges from
/// the samples ([`crate::builder`]); without, every bound is a worst case.
pub fn lower(
    loaded: &LoadedModel,
    config: QuantConfig,
    input_range: [f64; 2],
    calibration: Option<(&[Vec<Vec<f32>>], f64)>,
) -> Result<Graph> {
    let model = &loaded.model;
    let b = match calibration {
        Some((samples, margin)) => Builder::calibrated(config, samples.to_vec(), margin),
        None => Builder::new(config),
    };
    let mut l = Lowering {
        model,
        loaded,
        b,
        values: HashMap::new(),
    };
    let order = model
        .eval_order()
        .map_err(|e| onnx_err(&loaded.path, tract_err(e)))?;
    let inputs = model
        .input_outlets()
        .map_err(|e| onnx_err(&loaded.path, tract_err(e)))?
        .to_vec();
    for id in order {
        let node = model.node(id);
        l.b.current = node.name.clone();
        let fact = model
            .outlet_fact(OutletId::new(id, 0))
            .map_err(|e| onnx_err(&loaded.path, tract_err(e)))?;
        if let Some(k) = &fact.konst {
            let c =
                tensor_to_const(k).map_err(|e| l.unsupported(id, &format!(": constant {e}")))?;
            l.values.insert(OutletId::new(id, 0), Value::Const(c));
            continue;
        }
        if node.op_as::<TypedSource>().is_some() {
            let index = inputs
                .iter()
                .position(|o| o.node == id)
                .expect("source is an input");
            let nid =
                l.b.input(index, loaded.input_shapes[index].clone(), input_range)?;
            if loaded.integer_input(index) {
                // Integers (checked when quantizing) are exact at any scale.
                l.b.exact(nid);
            }
            l.values.insert(OutletId::new(id, 0), Value::Node(nid));
            continue;
        }
        if let Some(t) = node.op_as::<tract_onnx::tract_core::ops::array::Topk>() {
            // Two outputs: the values and their indices.
            let (values, indices) = ops::reduction::top_k(&mut l, id, t)?;
            l.values.insert(OutletId::new(id, 0), Value::Node(values));
            l.values.insert(OutletId::new(id, 1), Value::Node(indices));
            continue;
        }
        if node.outputs.len() != 1 {
            return Err(l.unsupported(id, ": nodes with several outputs are not supported"));
        }
        let out = l.lower_node(id)?;
        l.values.insert(OutletId::new(id, 0), Value::Node(out));
    }
    let mut outputs = Vec::new();
    for (i, o) in model
        .output_outlets()
        .map_err(|e| onnx_err(&loaded.path, tract_err(e)))?
        .iter()
        .enumerate()
    {
        l.b.current = format!("output {i}");
        let v = l.values.get(o).cloned().expect("outputs are lowered");
        let id = match v {
            Value::Node(n) => n,
            // A constant output (EZKL's `arange`) is a constant of the circuit.
            Value::Const(c) => l.b.constant(&c, config.scale)?,
        };
        // An output much smaller than 1 (a division by 10⁴) keeps as many more bits as it has
        // leading zeros, so that its relative precision does not depend on its size; its
        // integers stay below the activation scale's 2^scale.
        let n = l.b.node(id);
        let real_max = n.bound.lo.unsigned_abs().max(n.bound.hi.unsigned_abs()) as f64
            / crate::quant::scale_f(n.scale);
        let extra = match real_max > 0.0 && real_max < 1.0 {
            true => (-real_max.log2().floor()).min(16.0) as u32,
            false => 0,
        };
        let id = l.b.at_most(id, config.scale + extra)?;
        outputs.push(OutputInfo {
            name: loaded.output_names[i].clone(),
            node: id,
        });
    }
    let (nodes, outputs) = prune(l.b.nodes, outputs);
    Ok(Graph {
        name: loaded.name.clone(),
        source_sha256: loaded.sha256.clone(),
        config,
        inputs: loaded
            .input_shapes
            .iter()
            .zip(&loaded.input_names)
            .enumerate()
            .map(|(i, (s, n))| InputInfo {
                name: n.clone(),
                shape: s.clone(),
                range: input_range,
                integer: loaded.integer_input(i),
            })
            .collect(),
        outputs,
        nodes,
        image: loaded.image.clone(),
        labels: loaded.labels.clone(),
        one_hot: loaded.one_hot,
    })
}

impl Lowering<'_> {
    fn input_shapes(&self, id: usize) -> String {
        self.model
            .node(id)
            .inputs
            .iter()
            .map(|i| match self.model.outlet_fact(*i) {
                Ok(f) => format!(
                    "{:?}",
                    f.shape
                        .as_concrete()
                        .map(|s| s.to_vec())
                        .unwrap_or_default()
                ),
                Err(_) => "?".into(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A 1-D NCL input viewed as `[N, C, 1, L]` for the 2-D window ops (unchanged if it is
    /// not rank 3).
    pub(crate) fn view_as_2d(&mut self, x: NodeId) -> Result<NodeId> {
        let shape = self.b.node(x).shape.clone();
        if shape.len() != 3 {
            return Ok(x);
        }
        self.b
            .wiring(Op::Reshape, x, vec![shape[0], shape[1], 1, shape[2]])
    }

    /// The 2-D result `y` of a window op back in the node's own (1-D) shape, if it differs.
    pub(crate) fn restore_1d(&mut self, id: usize, y: NodeId) -> Result<NodeId> {
        let out = self.out_shape(id);
        if out.len() == 3 && self.b.node(y).shape.len() == 4 {
            return self.b.wiring(Op::Reshape, y, out);
        }
        Ok(y)
    }

    /// Whether IR node `x` is a model input declared integer (so a cast to an integer type is
    /// the identity on it).
    pub(crate) fn loaded_integer_input(&self, x: NodeId) -> bool {
        matches!(self.b.node(x).op, Op::Input { index } if self.loaded.integer_input(index))
    }

    /// An op Ciro cannot prove, named as the user's file has it (ONNX op type and node), with
    /// tract's rewrite of it where that differs.
    pub(crate) fn unsupported(&self, id: usize, detail: &str) -> CompileError {
        let node = self.model.node(id);
        let label = op_label(node);
        let (op, name, detail) = match self.loaded.onnx_node(&node.name) {
            Some((name, op)) if op != label || name != node.name => (
                op.to_string(),
                name.to_string(),
                format!(" [tract's `{label}` at `{}`]{detail}", node.name),
            ),
            Some((name, op)) => (op.to_string(), name.to_string(), detail.to_string()),
            None => (label, node.name.clone(), detail.to_string()),
        };
        CompileError::Unsupported {
            op,
            node: name,
            shapes: self.input_shapes(id),
            detail,
        }
    }

    pub(crate) fn out_shape(&self, id: usize) -> Vec<usize> {
        self.model
            .outlet_fact(OutletId::new(id, 0))
            .ok()
            .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
            .unwrap_or_default()
    }

    pub(crate) fn arg(&self, id: usize, slot: usize) -> Value {
        let outlet = self.model.node(id).inputs[slot];
        self.values
            .get(&outlet)
            .cloned()
            .expect("inputs are lowered first")
    }

    /// The argument as a node, placing a constant at `scale` if needed.
    pub(crate) fn arg_node(&mut self, id: usize, slot: usize, scale: u32) -> Result<NodeId> {
        match self.arg(id, slot) {
            Value::Node(n) => Ok(n),
            Value::Const(c) => self.b.constant(&c, scale),
        }
    }

    /// Imports one tract node by its family ([`crate::ops`]): each family's `import` claims the
    /// tract ops it knows.
    fn lower_node(&mut self, id: usize) -> Result<NodeId> {
        let imports: [Import; 8] = [
            ops::indexing::import,
            ops::linear::import,
            ops::elementwise::import,
            ops::activation::import,
            ops::pooling::import,
            ops::reduction::import,
            ops::softmax::import,
            ops::wiring::import,
        ];
        for import in imports {
            if let Some(lowered) = import(self, id) {
                return lowered;
            }
        }
        Err(self.unsupported(id, ""))
    }

    /// The window of a 2-D NCHW op, or of a 1-D NCL one on an input already viewed as
    /// `[N, C, 1, L]` ([`Self::view_as_2d`]): its first axis is then trivial.
    pub(crate) fn window(&self, id: usize, spec: &PoolSpec, x: NodeId) -> Result<Window> {
        let rank = spec.kernel_shape.len();
        if spec.data_format != DataFormat::NCHW || !(rank == 1 || rank == 2) {
            return Err(self.unsupported(id, ": only 1-D and 2-D NCHW windows are supported"));
        }
        let shape = &self.b.node(x).shape;
        let spatial = &shape[shape.len() - rank..];
        let k = spec.kernel_shape.to_vec();
        let strides = spec.strides.as_ref().map_or(vec![1; rank], |s| s.to_vec());
        let dil = spec
            .dilations
            .as_ref()
            .map_or(vec![1; rank], |s| s.to_vec());
        let computed = spec.padding.compute(spatial, &k, &dil, &strides);
        // Two axes, the first trivial for a 1-D window.
        let two = |v: Vec<usize>, trivial: usize| -> [usize; 2] {
            if rank == 1 {
                [trivial, v[0]]
            } else {
                [v[0], v[1]]
            }
        };
        let pb = two(computed.iter().map(|c| c.pad_before).collect(), 0);
        let pa = two(computed.iter().map(|c| c.pad_after).collect(), 0);
        let (k, strides, dil) = (two(k, 1), two(strides, 1), two(dil, 1));
        if let PaddingSpec::ExplicitOnnxPool(_, _, true) = spec.padding {
            return Err(self.unsupported(id, ": ceil_mode pooling is not supported"));
        }
        Ok(Window {
            kernel: k,
            strides,
            dilations: dil,
            pads_before: pb,
            pads_after: pa,
        })
    }
}

/// Drops nodes no output depends on (e.g. reshapes bypassed by a later reshape) and renumbers.
fn prune(
    nodes: Vec<crate::ir::Node>,
    outputs: Vec<OutputInfo>,
) -> (Vec<crate::ir::Node>, Vec<OutputInfo>) {
    let mut live = vec![false; nodes.len()];
    for o in &outputs {
        live[o.node] = true;
    }
    for i in (0..nodes.len()).rev() {
        if live[i] || matches!(nodes[i].op, Op::Input { .. }) {
            live[i] = true;
            for &j in &nodes[i].inputs {
                live[j] = true;
            }
        }
    }
    let mut new_id = vec![usize::MAX; nodes.len()];
    let mut kept = Vec::new();
    for (i, mut n) in nodes.into_iter().enumerate() {
        if live[i] {
            n.inputs = n.inputs.iter().map(|&j| new_id[j]).collect();
            new_id[i] = kept.len();
            kept.push(n);
        }
    }
    let outputs = outputs
        .into_iter()
        .map(|o| OutputInfo {
            node: new_id[o.node],
            ..o
        })
        .collect();
    (kept, outputs)
}

/// The op's ONNX-ish name for messages (tract names the decluttered op types).
fn op_label(node: &TypedNode) -> String {
    if let Some(ew) = node.op.downcast_ref::<ElementWiseOp>() {
        return ew.0.name();
    }
    if let Some(b) = node.op.downcast_ref::<TypedBinOp>() {
        return b.0.name().to_string();
    }
    node.op.name().to_string()
}
