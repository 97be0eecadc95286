//! ONNX front-end: load with tract-onnx, declutter, and lower every node to IR nodes.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tract_onnx::prelude::tract_data::internal::DimLike;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{Gather, Pad, PadMode, Slice, TypedConcat};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::{
    Conv, KernelFormat, MaxPool, PaddingSpec, PoolSpec, SumPool,
};
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::nn::{
    DataFormat, LeakyRelu, Reduce, Reducer, Softmax, SoftmaxKind,
};
use tract_onnx::tract_core::ops::source::TypedSource;

use crate::builder::{Builder, FloatConst, Window};
use crate::error::{CompileError, Result};
use crate::ir::{Func, Graph, ImageSpec, InputInfo, NodeId, Op, OutputInfo, QuantConfig};

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
}

fn onnx_err(path: &str, e: impl std::fmt::Display) -> CompileError {
    CompileError::Onnx {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

fn tract_err(e: TractError) -> String {
    // tract's errors are chains; the root cause is usually the informative part.
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    chain.join(": ")
}

/// tract names constants after their initializers and ops after their nodes, and refuses a model
/// where the two meet (a node `fc` reading an initializer `fc` is valid ONNX). Node names carry
/// no semantics, so colliding ones get a suffix.
fn dedupe_node_names(graph: &mut tract_onnx::pb::GraphProto) {
    let mut taken: std::collections::HashSet<String> = graph
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .chain(graph.input.iter().map(|i| i.name.clone()))
        .collect();
    for node in &mut graph.node {
        if node.name.is_empty() {
            continue;
        }
        if taken.contains(&node.name) {
            let base = node.name.clone();
            node.name = (1..)
                .map(|k| format!("{base}.node{k}"))
                .find(|n| !taken.contains(n))
                .expect("an unused name exists");
        }
        taken.insert(node.name.clone());
    }
}

/// Reads an ONNX file, checks it has static shapes, and declutters it.
pub fn load(path: &Path) -> Result<LoadedModel> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CompileError::Io {
        path: p.clone(),
        source,
    })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let onnx = tract_onnx::onnx();
    let mut proto = onnx
        .proto_model_for_read(&mut bytes.as_slice())
        .map_err(|e| onnx_err(&p, format!("not a valid ONNX protobuf ({})", tract_err(e))))?;
    let Some(graph) = proto.graph.as_mut() else {
        return Err(onnx_err(&p, "the file holds no graph"));
    };
    dedupe_node_names(graph);
    let inference = onnx
        .model_for_proto_model(&proto)
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
    let typed = inference
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| onnx_err(&p, tract_err(e)))?;
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
        if fact.datum_type != f32::datum_type() {
            return Err(onnx_err(
                &p,
                format!(
                    "input {i} is {:?}; only f32 inputs are supported",
                    fact.datum_type
                ),
            ));
        }
        input_shapes.push(shape.to_vec());
        input_names.push(typed.node(outlet.node).name.clone());
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
        labels,
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
enum Value {
    Node(NodeId),
    Const(FloatConst),
}

fn tensor_to_const(t: &Tensor) -> std::result::Result<FloatConst, String> {
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

fn tensor_to_indices(t: &Tensor) -> std::result::Result<Vec<i64>, String> {
    let t = t.cast_to::<i64>().map_err(tract_err)?;
    let v = t
        .to_plain_array_view::<i64>()
        .map_err(tract_err)?
        .iter()
        .copied()
        .collect();
    Ok(v)
}

struct Lowering<'a> {
    model: &'a TypedModel,
    b: Builder,
    values: HashMap<OutletId, Value>,
}

/// Lowers a loaded model at the given quantization settings and declared input range.
pub fn lower(loaded: &LoadedModel, config: QuantConfig, input_range: [f64; 2]) -> Result<Graph> {
    let model = &loaded.model;
    let mut l = Lowering {
        model,
        b: Builder::new(config),
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
            l.values.insert(OutletId::new(id, 0), Value::Node(nid));
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
            Value::Const(_) => {
                return Err(CompileError::Unsupported {
                    op: "Const".into(),
                    node: model.node(o.node).name.clone(),
                    shapes: String::new(),
                    detail: ": the model output is a constant".into(),
                })
            }
        };
        let id = l.b.at_most(id, config.scale)?;
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
            .map(|(s, n)| InputInfo {
                name: n.clone(),
                shape: s.clone(),
                range: input_range,
            })
            .collect(),
        outputs,
        nodes,
        image: loaded.image.clone(),
        labels: loaded.labels.clone(),
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

    fn unsupported(&self, id: usize, detail: &str) -> CompileError {
        let node = self.model.node(id);
        CompileError::Unsupported {
            op: op_label(node),
            node: node.name.clone(),
            shapes: self.input_shapes(id),
            detail: detail.to_string(),
        }
    }

    fn out_shape(&self, id: usize) -> Vec<usize> {
        self.model
            .outlet_fact(OutletId::new(id, 0))
            .ok()
            .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
            .unwrap_or_default()
    }

    fn arg(&self, id: usize, slot: usize) -> Value {
        let outlet = self.model.node(id).inputs[slot];
        self.values
            .get(&outlet)
            .cloned()
            .expect("inputs are lowered first")
    }

    /// The argument as a node, placing a constant at `scale` if needed.
    fn arg_node(&mut self, id: usize, slot: usize, scale: u32) -> Result<NodeId> {
        match self.arg(id, slot) {
            Value::Node(n) => Ok(n),
            Value::Const(c) => self.b.constant(&c, scale),
        }
    }

    fn lower_node(&mut self, id: usize) -> Result<NodeId> {
        let node = self.model.node(id);
        let op = &node.op;
        if let Some(e) = op.downcast_ref::<EinSum>() {
            return self.einsum(id, e);
        }
        if let Some(conv) = op.downcast_ref::<Conv>() {
            return self.conv(id, conv);
        }
        if let Some(p) = op.downcast_ref::<MaxPool>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            let win = self.window(id, &p.pool_spec, x)?;
            return self.b.max_pool(x, win);
        }
        if let Some(p) = op.downcast_ref::<SumPool>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            let win = self.window(id, &p.pool_spec, x)?;
            let sum = self.b.sum_pool(x, win)?;
            if !p.normalize {
                return Ok(sum);
            }
            let counts = pool_counts(
                self.b.node(x).shape.as_slice(),
                &self.b.node(sum).shape,
                &win,
                p.count_include_pad,
            );
            let (oh, ow) = (self.b.node(sum).shape[2], self.b.node(sum).shape[3]);
            if counts.iter().all(|&c| c == counts[0]) {
                return self.b.div_counts(sum, vec![counts[0]], vec![1]);
            }
            return self.b.div_counts(sum, counts, vec![1, 1, oh, ow]);
        }
        if let Some(bin) = op.downcast_ref::<TypedBinOp>() {
            return self.binary(id, bin.0.name().as_ref());
        }
        if let Some(ew) = op.downcast_ref::<ElementWiseOp>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            if let Some(l) = ew.0.downcast_ref::<LeakyRelu>() {
                let y = self.b.leaky_relu(x, l.alpha as f64)?;
                return Ok(y);
            }
            let func = match ew.0.name().as_str() {
                "Sigmoid" => Func::Sigmoid,
                "Tanh" => Func::Tanh,
                "Exp" => Func::Exp,
                "Erf" => Func::Erf,
                _ => return Err(self.unsupported(id, "")),
            };
            return self.b.lookup(x, func);
        }
        if let Some(a) = op.downcast_ref::<AxisOp>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            let shape = self.out_shape(id);
            return match a {
                AxisOp::Move(from, to) => {
                    let mut perm: Vec<usize> = (0..shape.len()).collect();
                    let axis = perm.remove(*from);
                    perm.insert(*to, axis);
                    self.b.wiring(Op::Transpose { perm }, x, shape)
                }
                _ => self.b.wiring(Op::Reshape, x, shape),
            };
        }
        if let Some(s) = op.downcast_ref::<Slice>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            let (start, end) = match (s.start.as_usize(), s.end.as_usize()) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(self.unsupported(id, ": symbolic slice bounds")),
            };
            let op = Op::Slice {
                axis: s.axis,
                start,
                end,
                step: 1,
            };
            return self.b.wiring(op, x, self.out_shape(id));
        }
        if let Some(d) = op.downcast_ref::<Downsample>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            if d.stride <= 0 {
                return Err(self.unsupported(id, ": negative slice steps are not supported"));
            }
            let n_in = self.b.node(x).shape[d.axis];
            let op = Op::Slice {
                axis: d.axis,
                start: d.modulo,
                end: n_in,
                step: d.stride as usize,
            };
            return self.b.wiring(op, x, self.out_shape(id));
        }
        if let Some(c) = op.downcast_ref::<TypedConcat>() {
            let scale = self.b.config.scale;
            let parts = (0..node.inputs.len())
                .map(|i| self.arg_node(id, i, scale))
                .collect::<Result<Vec<_>>>()?;
            return self.b.concat(parts, c.axis);
        }
        if let Some(p) = op.downcast_ref::<Pad>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            let PadMode::Constant(v) = &p.mode else {
                return Err(self.unsupported(id, ": only constant padding is supported"));
            };
            let v = tensor_to_const(v)
                .map_err(|e| self.unsupported(id, &format!(": pad value {e}")))?;
            let value = crate::quant::quantize(v.values[0] as f64, self.b.node(x).scale);
            let op = Op::Pad {
                before: p.pads.iter().map(|p| p.0).collect(),
                after: p.pads.iter().map(|p| p.1).collect(),
                value,
            };
            return self.b.wiring(op, x, self.out_shape(id));
        }
        if let Some(s) = op.downcast_ref::<Softmax>() {
            if s.kind != SoftmaxKind::Softmax || s.axes.len() != 1 || s.quant_output_dt.is_some() {
                return Err(self.unsupported(id, ": only float softmax over one axis is supported"));
            }
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            return self.b.softmax(x, s.axes[0]);
        }
        if let Some(r) = op.downcast_ref::<Reduce>() {
            let is_max = match r.reducer {
                Reducer::Sum => false,
                Reducer::Max => true,
                _ => {
                    return Err(self
                        .unsupported(id, &format!(": reducer {:?} is not supported", r.reducer)))
                }
            };
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            return self.b.reduce(x, r.axes.to_vec(), is_max);
        }
        if let Some(g) = op.downcast_ref::<Gather>() {
            let x = self.arg_node(id, 0, self.b.config.scale)?;
            let idx_outlet = node.inputs[1];
            let fact = self
                .model
                .outlet_fact(idx_outlet)
                .map_err(|e| self.unsupported(id, &tract_err(e)))?;
            let Some(k) = &fact.konst else {
                return Err(self.unsupported(id, ": gather indices must be constant"));
            };
            let n = self.b.node(x).shape[g.axis] as i64;
            let raw = tensor_to_indices(k).map_err(|e| self.unsupported(id, &format!(": {e}")))?;
            let mut indices = Vec::with_capacity(raw.len());
            for i in raw {
                let i = if i < 0 { i + n } else { i };
                if !(0..n).contains(&i) {
                    return Err(
                        self.unsupported(id, &format!(": gather index {i} out of range 0..{n}"))
                    );
                }
                indices.push(i as usize);
            }
            if k.rank() > 1 {
                return Err(self.unsupported(id, ": gather indices must be a scalar or a vector"));
            }
            let x_rank = self.b.node(x).shape.len();
            let mut shape = self.b.node(x).shape.clone();
            shape[g.axis] = indices.len();
            let gathered = self.b.wiring(
                Op::Gather {
                    axis: g.axis,
                    indices,
                },
                x,
                shape.clone(),
            )?;
            let out = self.out_shape(id);
            return if out.len() != x_rank || out != shape {
                self.b.wiring(Op::Reshape, gathered, out)
            } else {
                Ok(gathered)
            };
        }
        Err(self.unsupported(id, ""))
    }

    fn window(&self, id: usize, spec: &PoolSpec, x: NodeId) -> Result<Window> {
        if spec.data_format != DataFormat::NCHW || spec.kernel_shape.len() != 2 {
            return Err(self.unsupported(id, ": only 2-D NCHW windows are supported"));
        }
        let shape = &self.b.node(x).shape;
        let k = [spec.kernel_shape[0], spec.kernel_shape[1]];
        let strides = spec
            .strides
            .as_ref()
            .map(|s| [s[0], s[1]])
            .unwrap_or([1, 1]);
        let dil = spec
            .dilations
            .as_ref()
            .map(|s| [s[0], s[1]])
            .unwrap_or([1, 1]);
        let computed = spec.padding.compute(&shape[2..4], &k, &dil, &strides);
        let pb = [computed[0].pad_before, computed[1].pad_before];
        let pa = [computed[0].pad_after, computed[1].pad_after];
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

    fn conv(&mut self, id: usize, conv: &Conv) -> Result<NodeId> {
        if conv.group != 1 || conv.q_params.is_some() || conv.kernel_fmt != KernelFormat::OIHW {
            return Err(self.unsupported(
                id,
                ": only float OIHW convolutions with group 1 are supported",
            ));
        }
        let sw = self.b.config.weight_scale;
        let x = self.arg_node(id, 0, self.b.config.scale)?;
        let x = self.b.at_most(x, self.b.config.scale)?;
        let Value::Const(kernel) = self.arg(id, 1) else {
            return Err(self.unsupported(id, ": the kernel must be a constant"));
        };
        let w = self.b.constant(&kernel, sw)?;
        let win = self.window(id, &conv.pool_spec, x)?;
        let y = self.b.conv(x, w, win)?;
        if self.model.node(id).inputs.len() > 2 {
            if let Value::Const(bias) = self.arg(id, 2) {
                if bias.values.iter().any(|&v| v != 0.0) {
                    let o = kernel.shape[0];
                    let bias = if bias.values.len() == 1 {
                        FloatConst {
                            shape: vec![1, o, 1, 1],
                            values: vec![bias.values[0]; o],
                        }
                    } else {
                        FloatConst {
                            shape: vec![1, o, 1, 1],
                            values: bias.values,
                        }
                    };
                    let scale = self.b.node(y).scale;
                    let bn = self.b.constant(&bias, scale)?;
                    return self.b.add(y, bn, false);
                }
            } else {
                return Err(self.unsupported(id, ": the bias must be a constant"));
            }
        }
        Ok(y)
    }

    fn binary(&mut self, id: usize, name: &str) -> Result<NodeId> {
        let (a, b) = (self.arg(id, 0), self.arg(id, 1));
        let scale = self.b.config.scale;
        let sw = self.b.config.weight_scale;
        match (name, a, b) {
            ("Add" | "Sub", Value::Node(x), Value::Const(c)) => {
                let s = self.b.node(x).scale;
                let c = self.b.constant(&c, s)?;
                self.b.add(x, c, name == "Sub")
            }
            ("Add" | "Sub", Value::Const(c), Value::Node(x)) => {
                let s = self.b.node(x).scale;
                let c = self.b.constant(&c, s)?;
                self.b.add(c, x, name == "Sub")
            }
            ("Add" | "Sub", Value::Node(x), Value::Node(y)) => self.b.add(x, y, name == "Sub"),
            ("Mul", Value::Node(x), Value::Const(c)) | ("Mul", Value::Const(c), Value::Node(x)) => {
                let x = self.b.at_most(x, scale)?;
                let c = self.b.constant(&c, sw)?;
                self.b.mul(x, c)
            }
            ("Mul", Value::Node(x), Value::Node(y)) => {
                let x = self.b.at_most(x, scale)?;
                let y = self.b.at_most(y, scale)?;
                self.b.mul(x, y)
            }
            ("Div", Value::Node(x), Value::Const(c)) => {
                if c.values.iter().any(|&v| v == 0.0 || !v.is_finite()) {
                    return Err(self.unsupported(id, ": division by zero"));
                }
                let recip = FloatConst {
                    shape: c.shape.clone(),
                    values: c.values.iter().map(|&v| 1.0 / v).collect(),
                };
                let x = self.b.at_most(x, scale)?;
                let c = self.b.constant(&recip, sw)?;
                self.b.mul(x, c)
            }
            ("Max" | "Min", Value::Node(x), Value::Const(c))
            | ("Max" | "Min", Value::Const(c), Value::Node(x)) => {
                let is_max = name == "Max";
                if let Some(v) = c.scalar() {
                    let v = v as f64;
                    return if is_max {
                        self.b.clamp(x, Some(v), None)
                    } else {
                        self.b.clamp(x, None, Some(v))
                    };
                }
                let s = self.b.node(x).scale;
                let c = self.b.constant(&c, s)?;
                self.b.max_min(x, c, is_max)
            }
            ("Max" | "Min", Value::Node(x), Value::Node(y)) => self.b.max_min(x, y, name == "Max"),
            _ => Err(self.unsupported(id, "")),
        }
    }

    fn einsum(&mut self, id: usize, e: &EinSum) -> Result<NodeId> {
        if e.q_params.is_some() || self.model.node(id).inputs.len() != 2 {
            return Err(self.unsupported(id, ": only float two-operand einsums are supported"));
        }
        let scale = self.b.config.scale;
        let sw = self.b.config.weight_scale;
        // The variable operand plays `a`; a constant operand (weights) plays `b`.
        let (ia, ib) = match (self.arg(id, 0), self.arg(id, 1)) {
            (Value::Const(_), Value::Node(_)) => (1, 0),
            _ => (0, 1),
        };
        let shape_of = |l: &Self, slot: usize| -> Vec<usize> {
            match l.arg(id, slot) {
                Value::Node(n) => l.b.node(n).shape.clone(),
                Value::Const(c) => c.shape.clone(),
            }
        };
        let (sa, sb) = (shape_of(self, ia), shape_of(self, ib));
        let out_shape = self.out_shape(id);
        // Classify each axis: batch (a, b, out), m (a, out), n (b, out), k (a, b).
        let (mut batch, mut m, mut n, mut k) = (vec![], vec![], vec![], vec![]);
        let (mut a_extra, mut b_extra) = (vec![], vec![]);
        for axis in e.axes.iter_all_axes() {
            let pa = axis.inputs[ia].first().copied();
            let pb = axis.inputs[ib].first().copied();
            let po = axis.outputs[0].first().copied();
            if axis.inputs[ia].len() > 1 || axis.inputs[ib].len() > 1 {
                return Err(
                    self.unsupported(id, ": repeated einsum axes (diagonals) are not supported")
                );
            }
            match (pa, pb, po) {
                (Some(pa), Some(pb), Some(po)) => batch.push((pa, pb, po)),
                (Some(pa), None, Some(po)) => m.push((pa, po)),
                (None, Some(pb), Some(po)) => n.push((pb, po)),
                (Some(pa), Some(pb), None) => k.push((pa, pb)),
                (Some(pa), None, None) if sa[pa] == 1 => a_extra.push(pa),
                (None, Some(pb), None) if sb[pb] == 1 => b_extra.push(pb),
                (None, None, Some(_)) => {}
                _ => {
                    return Err(self.unsupported(
                        id,
                        &format!(": einsum {} sums over an axis of one operand only", e.axes),
                    ))
                }
            }
        }
        let prod =
            |dims: &[usize], shape: &[usize]| dims.iter().map(|&d| shape[d]).product::<usize>();
        let bsz = prod(&batch.iter().map(|t| t.0).collect::<Vec<_>>(), &sa);
        let msz = prod(&m.iter().map(|t| t.0).collect::<Vec<_>>(), &sa);
        let ksz = prod(&k.iter().map(|t| t.0).collect::<Vec<_>>(), &sa);
        let nsz = prod(&n.iter().map(|t| t.0).collect::<Vec<_>>(), &sb);
        // a: [batch, m, k, extra] -> [B?, M, K]
        let perm_a: Vec<usize> = batch
            .iter()
            .map(|t| t.0)
            .chain(m.iter().map(|t| t.0))
            .chain(k.iter().map(|t| t.0))
            .chain(a_extra.iter().copied())
            .collect();
        let perm_b: Vec<usize> = batch
            .iter()
            .map(|t| t.1)
            .chain(k.iter().map(|t| t.1))
            .chain(n.iter().map(|t| t.0))
            .chain(b_extra.iter().copied())
            .collect();
        let a3 = if batch.is_empty() {
            vec![msz, ksz]
        } else {
            vec![bsz, msz, ksz]
        };
        let b3 = if batch.is_empty() {
            vec![ksz, nsz]
        } else {
            vec![bsz, ksz, nsz]
        };
        let a_node = self.arg_node(id, ia, scale)?;
        let a_node = self.b.at_most(a_node, scale)?;
        let a_node = self.permute_reshape(a_node, &perm_a, a3)?;
        let b_node = match self.arg(id, ib) {
            Value::Const(c) => {
                let permuted = permute_const(&c, &perm_b, b3);
                self.b.constant(&permuted, sw)?
            }
            Value::Node(x) => {
                let x = self.b.at_most(x, scale)?;
                self.permute_reshape(x, &perm_b, b3)?
            }
        };
        let y = self.b.matmul(a_node, b_node)?;
        // [B?, M, N] -> [batch.., m.., n..] -> output order -> output shape.
        let inter_axes: Vec<usize> = batch
            .iter()
            .map(|t| t.2)
            .chain(m.iter().map(|t| t.1))
            .chain(n.iter().map(|t| t.1))
            .collect();
        let inter_shape: Vec<usize> = inter_axes.iter().map(|&o| out_shape[o]).collect();
        let y = self.reshape_if(y, inter_shape.clone())?;
        let mut order: Vec<usize> = (0..inter_axes.len()).collect();
        order.sort_by_key(|&i| inter_axes[i]);
        let y = if order.iter().enumerate().any(|(i, &p)| i != p) {
            let shape = order.iter().map(|&p| inter_shape[p]).collect();
            self.b.wiring(Op::Transpose { perm: order }, y, shape)?
        } else {
            y
        };
        self.reshape_if(y, out_shape)
    }

    fn reshape_if(&mut self, x: NodeId, shape: Vec<usize>) -> Result<NodeId> {
        let n = self.b.node(x);
        if n.shape == shape {
            return Ok(x);
        }
        // Reshape of a reshape reads the original data directly.
        let src = if n.op == Op::Reshape { n.inputs[0] } else { x };
        if self.b.node(src).shape == shape {
            return Ok(src);
        }
        self.b.wiring(Op::Reshape, src, shape)
    }

    fn permute_reshape(&mut self, x: NodeId, perm: &[usize], shape: Vec<usize>) -> Result<NodeId> {
        let s = &self.b.node(x).shape;
        // Moving only size-1 axes leaves the data order unchanged: a reshape is enough.
        let moved: Vec<usize> = perm.iter().copied().filter(|&p| s[p] != 1).collect();
        let x = if moved.windows(2).any(|w| w[0] > w[1]) {
            let s = &self.b.node(x).shape;
            let tshape = perm.iter().map(|&p| s[p]).collect();
            self.b.wiring(
                Op::Transpose {
                    perm: perm.to_vec(),
                },
                x,
                tshape,
            )?
        } else {
            x
        };
        self.reshape_if(x, shape)
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

/// Applies an axis permutation to a constant on the host, then gives it `shape`.
fn permute_const(c: &FloatConst, perm: &[usize], shape: Vec<usize>) -> FloatConst {
    FloatConst {
        shape,
        values: crate::eval::permute(&c.values, &c.shape, perm),
    }
}

/// Number of elements each average-pool window divides by.
fn pool_counts(
    in_shape: &[usize],
    out_shape: &[usize],
    win: &Window,
    include_pad: bool,
) -> Vec<i64> {
    // One channel of one batch item: every channel has the same windows.
    let (h, w) = (in_shape[2], in_shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let mut counts = vec![0i64; oh * ow];
    crate::eval::for_each_window(
        &[1, 1, h, w],
        &[1, 1, oh, ow],
        win.kernel,
        win.strides,
        win.dilations,
        win.pads_before,
        |o, i| {
            if i.is_some() || include_pad {
                counts[o] += 1;
            }
        },
    );
    counts
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
