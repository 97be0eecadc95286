//! Rewrites and checks of the ONNX protobuf before tract reads it: node names made distinct
//! from initializer names, tensor sizes capped, non-f32 inputs made f32 with a Cast, and
//! recurrent layers (LSTM, GRU) written out over their static sequence length.

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    TensorProto,
};

/// tract names constants after their initializers and ops after their nodes, and refuses a model
/// where the two meet (a node `fc` reading an initializer `fc` is valid ONNX). Node names carry
/// no semantics, so colliding ones get a suffix.
pub(crate) fn dedupe_node_names(graph: &mut GraphProto) {
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

/// Runs a call into tract, turning a panic inside it (tract indexes some malformed graphs
/// without checking) into an error: a hostile file must never crash the caller.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| format!("tract cannot read this graph ({})", crate::panic_message(p)))
}

/// Every graph output must name a tensor the graph defines (tract indexes it unchecked).
pub(crate) fn check_references(graph: &GraphProto) -> std::result::Result<(), String> {
    let defined: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .chain(graph.input.iter().map(|i| i.name.as_str()))
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    for out in &graph.output {
        if !defined.contains(out.name.as_str()) {
            return Err(format!(
                "graph output `{}` is produced by no node, input or initializer",
                out.name
            ));
        }
    }
    Ok(())
}

/// The most elements Ciro accepts in one tensor (1 GiB of f32): a model past it could not be
/// proven on one worker anyway, and a hostile file declaring `[1, 10^12]` must be refused before
/// anything is allocated for it.
pub(crate) const MAX_TENSOR_ELEMENTS: u64 = 1 << 28;

/// Refuses a tensor of more than [`MAX_TENSOR_ELEMENTS`] elements (checked arithmetic).
pub(crate) fn check_elements(
    what: &str,
    dims: impl Iterator<Item = u64>,
) -> std::result::Result<(), String> {
    let n = dims.fold(1u64, |n, d| n.saturating_mul(d));
    if n > MAX_TENSOR_ELEMENTS {
        return Err(format!(
            "{what} has {n} elements, more than the {MAX_TENSOR_ELEMENTS} Ciro accepts per tensor"
        ));
    }
    Ok(())
}

/// The declared (and bound) input shapes, checked before tract sees them.
pub(crate) fn check_input_sizes(graph: &GraphProto) -> std::result::Result<(), String> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    for input in &graph.input {
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            continue;
        };
        let Some(shape) = &t.shape else { continue };
        let dims = shape.dim.iter().map(|d| match d.value {
            Some(Value::DimValue(v)) => v.max(0) as u64,
            _ => 1,
        });
        check_elements(&format!("input `{}`", input.name), dims)?;
    }
    // Shapes given as constants to ops that tract folds into tensors while loading.
    for node in &graph.node {
        if !matches!(node.op_type.as_str(), "ConstantOfShape" | "Expand") {
            continue;
        }
        let slot = usize::from(node.op_type == "Expand");
        let Some(shape) = node
            .input
            .get(slot)
            .and_then(|name| graph.initializer.iter().find(|t| &t.name == name))
        else {
            continue;
        };
        let dims = shape.int64_data.iter().map(|&v| v.max(0) as u64);
        let raw = shape
            .raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")).max(0) as u64);
        let what = format!("the shape given to {} node `{}`", node.op_type, node.name);
        check_elements(&what, dims.chain(raw))?;
    }
    Ok(())
}

/// Makes every non-f32 model input an f32 one followed by a Cast to its declared type, so that
/// tract (the float reference) and the importer see one kind of input; returns, per input,
/// whether its values must be integers (integer and bool types). The importer treats the Cast
/// of an integer input as the identity, and quantizing an input checks that it is integral.
pub(crate) fn float_inputs(graph: &mut GraphProto) -> Vec<bool> {
    let initializers: std::collections::HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut integer = Vec::new();
    let mut casts = Vec::new();
    for input in &mut graph.input {
        if initializers.contains(&input.name) {
            continue;
        }
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            integer.push(false);
            continue;
        };
        let declared = t.elem_type;
        let float = [
            DataType::Float,
            DataType::Double,
            DataType::Float16,
            DataType::Bfloat16,
        ]
        .map(|d| d as i32);
        integer.push(!float.contains(&declared));
        if declared == DataType::Float as i32 {
            continue;
        }
        t.elem_type = DataType::Float as i32;
        let typed = format!("{}.ciro_typed", input.name);
        casts.push(NodeProto {
            input: vec![input.name.clone()],
            output: vec![typed.clone()],
            name: typed.clone(),
            op_type: "Cast".into(),
            attribute: vec![AttributeProto {
                name: "to".into(),
                r#type: AttributeType::Int as i32,
                i: declared as i64,
                ..Default::default()
            }],
            ..Default::default()
        });
        let original = input.name.clone();
        for node in &mut graph.node {
            for i in &mut node.input {
                if *i == original {
                    *i = typed.clone();
                }
            }
        }
        for o in &mut graph.output {
            if o.name == original {
                // An input returned as it is: the Cast's output is the model's output.
                o.name = typed.clone();
            }
        }
    }
    graph.node.splice(0..0, casts);
    integer
}

/// The recurrent ops tract runs as a loop (LSTM, GRU), written out as their static number of
/// steps in plain ONNX ops (Gather, MatMul, Add, Mul, Sigmoid, Tanh, Reshape, Concat), which the
/// compiler proves like any other layer. The sequence length comes from tract's shape analysis
/// of the unchanged model. Errors name the node and what is not supported.
pub(crate) fn unroll_recurrent(
    onnx: &tract_onnx::Onnx,
    proto: &mut ModelProto,
) -> std::result::Result<(), String> {
    use tract_onnx::prelude::{Framework, InferenceModelExt};
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    let recurrent: Vec<usize> = (0..graph.node.len())
        .filter(|&i| matches!(graph.node[i].op_type.as_str(), "LSTM" | "GRU"))
        .collect();
    if recurrent.is_empty() {
        return Ok(());
    }
    // The sequence lengths, from the model as it stands.
    let mut model = guarded(|| onnx.model_for_proto_model(proto))?.map_err(|e| format!("{e:#}"))?;
    guarded(|| model.analyse(false))?.map_err(|e| format!("{e:#}"))?;
    let mut steps = Vec::new();
    for &i in &recurrent {
        let node = &graph.node[i];
        let x = node.input.first().cloned().unwrap_or_default();
        // A node's output by its label; a model input by its source node's name.
        let outlet = model.find_outlet_label(&x).or_else(|| {
            model
                .node_by_name(&x)
                .ok()
                .map(|n| tract_onnx::prelude::OutletId::new(n.id, 0))
        });
        let seq = outlet
            .and_then(|o| model.outlet_fact(o).ok())
            .and_then(|f| f.shape.as_concrete_finite().ok().flatten())
            .and_then(|s| s.first().copied())
            .ok_or_else(|| {
                format!(
                    "{} node `{}`: the length of its input sequence `{x}` is not static",
                    node.op_type,
                    display_name(node)
                )
            })?;
        steps.push(seq);
    }
    let graph = proto.graph.as_mut().expect("checked above");
    for (&i, &seq) in recurrent.iter().zip(&steps).rev() {
        let node = graph.node[i].clone();
        let mut u = Unroll::new(&node)?;
        u.unroll(seq)?;
        graph.node.splice(i..=i, u.nodes);
        graph.initializer.extend(u.initializers);
    }
    Ok(())
}

/// A node's name, or its first output's where it has none (names are optional in ONNX).
fn display_name(node: &NodeProto) -> String {
    match node.name.is_empty() {
        true => node.output.first().cloned().unwrap_or_default(),
        false => node.name.clone(),
    }
}

/// One LSTM or GRU node being written out: the nodes and constants that replace it.
struct Unroll {
    node: NodeProto,
    prefix: String,
    hidden: i64,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    count: usize,
}

impl Unroll {
    fn new(node: &NodeProto) -> std::result::Result<Self, String> {
        let what = format!("{} node `{}`", node.op_type, display_name(node));
        let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
        let hidden = attr("hidden_size")
            .map(|a| a.i)
            .filter(|&h| h > 0)
            .ok_or_else(|| format!("{what}: no hidden_size"))?;
        let refuse = |why: &str| Err(format!("{what}: {why} is not supported"));
        if attr("layout").is_some_and(|a| a.i != 0) {
            return refuse("the batch-first layout");
        }
        if attr("clip").is_some() {
            return refuse("a cell clip");
        }
        if attr("input_forget").is_some_and(|a| a.i != 0) {
            return refuse("input_forget");
        }
        if let Some(a) = attr("activations") {
            let names: Vec<String> = a
                .strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_lowercase())
                .collect();
            let default = names
                .chunks(if node.op_type == "LSTM" { 3 } else { 2 })
                .all(|c| c[0] == "sigmoid" && c[1..].iter().all(|n| n == "tanh"));
            if !default {
                return refuse(&format!("activations {names:?} (only Sigmoid and Tanh)"));
            }
        }
        let present = |k: usize| node.input.get(k).is_some_and(|s| !s.is_empty());
        if present(4) {
            return refuse("sequence_lens");
        }
        if node.op_type == "LSTM" && present(7) {
            return refuse("peepholes");
        }
        Ok(Unroll {
            node: node.clone(),
            prefix: format!("{}.ciro", display_name(node)),
            hidden,
            nodes: Vec::new(),
            initializers: Vec::new(),
            count: 0,
        })
    }

    fn name(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{}.{what}{}", self.prefix, self.count)
    }

    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.name(&op.to_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn int_attr(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i: v,
            ..Default::default()
        }
    }

    /// An int64 constant (`dims` empty for a scalar).
    fn ints(&mut self, dims: Vec<i64>, values: Vec<i64>) -> String {
        let name = self.name("const");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims,
            data_type: DataType::Int64 as i32,
            int64_data: values,
            ..Default::default()
        });
        name
    }

    /// `x[.., range, ..]` along `axis`.
    fn take(&mut self, x: &str, axis: i64, range: std::ops::Range<i64>) -> String {
        let idx = self.ints(vec![range.end - range.start], range.collect());
        self.op("Gather", &[x, &idx], vec![Self::int_attr("axis", axis)])
    }

    /// `x[i]` along axis 0, the axis dropped.
    fn at(&mut self, x: &str, i: i64) -> String {
        let idx = self.ints(vec![], vec![i]);
        self.op("Gather", &[x, &idx], vec![Self::int_attr("axis", 0)])
    }

    fn reshape(&mut self, x: &str, shape: Vec<i64>) -> String {
        let s = self.ints(vec![shape.len() as i64], shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    fn transpose(&mut self, x: &str) -> String {
        let perm = AttributeProto {
            name: "perm".into(),
            r#type: AttributeType::Ints as i32,
            ints: vec![1, 0],
            ..Default::default()
        };
        self.op("Transpose", &[x], vec![perm])
    }

    fn binary(&mut self, op: &str, a: &str, b: &str) -> String {
        self.op(op, &[a, b], vec![])
    }

    fn unary(&mut self, op: &str, a: &str) -> String {
        self.op(op, &[a], vec![])
    }

    /// `x·wᵀ (+ b)` with `b` optional.
    fn affine(&mut self, x: &str, w_t: &str, b: Option<&str>) -> String {
        let y = self.binary("MatMul", x, w_t);
        match b {
            Some(b) => self.binary("Add", &y, b),
            None => y,
        }
    }

    fn unroll(&mut self, seq: usize) -> std::result::Result<(), String> {
        let node = self.node.clone();
        let input = |k: usize| node.input.get(k).filter(|s| !s.is_empty()).cloned();
        let direction = node
            .attribute
            .iter()
            .find(|a| a.name == "direction")
            .map(|a| String::from_utf8_lossy(&a.s).to_string())
            .unwrap_or_else(|| "forward".into());
        let directions: &[bool] = match direction.as_str() {
            "forward" => &[false],
            "reverse" => &[true],
            "bidirectional" => &[false, true],
            other => {
                let name = display_name(&node);
                return Err(format!(
                    "{} node `{name}`: direction `{other}`",
                    node.op_type
                ));
            }
        };
        let lstm = node.op_type == "LSTM";
        let h = self.hidden;
        let gates = if lstm { 4 } else { 3 };
        let x = input(0).expect("X is required");
        let (mut ys, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
        for (d, &reverse) in directions.iter().enumerate() {
            let d = d as i64;
            let w = input(1).ok_or("W is required")?;
            let r = input(2).ok_or("R is required")?;
            let w = self.at(&w, d);
            let w_t = self.transpose(&w); // [I, gates·H]
            let r = self.at(&r, d);
            let r_t = self.transpose(&r); // [H, gates·H]
                                          // The biases Wb and Rb, [gates·H] each.
            let bias = match input(3) {
                Some(b) => {
                    let b = self.at(&b, d);
                    let wb = self.take(&b, 0, 0..gates * h);
                    let rb = self.take(&b, 0, gates * h..2 * gates * h);
                    Some((wb, rb))
                }
                None => None,
            };
            // An LSTM adds both biases to every gate.
            let lstm_bias = match (&bias, lstm) {
                (Some((wb, rb)), true) => Some(self.binary("Add", wb, rb)),
                _ => None,
            };
            let mut state_h = input(5).map(|s| self.at(&s, d));
            let mut state_c = input(6).map(|s| self.at(&s, d));
            let mut outputs = vec![String::new(); seq];
            let order: Vec<usize> = match reverse {
                false => (0..seq).collect(),
                true => (0..seq).rev().collect(),
            };
            for t in order {
                let xt = self.at(&x, t as i64); // [B, I]
                if lstm {
                    let mut g = self.affine(&xt, &w_t, lstm_bias.as_deref());
                    if let Some(hp) = &state_h {
                        let rec = self.binary("MatMul", hp, &r_t);
                        g = self.binary("Add", &g, &rec);
                    }
                    // Gate order i, o, f, c.
                    let gate = |u: &mut Self, k: i64| u.take(&g, 1, k * h..(k + 1) * h);
                    let (gi, go, gf, gc) =
                        (gate(self, 0), gate(self, 1), gate(self, 2), gate(self, 3));
                    let i = self.unary("Sigmoid", &gi);
                    let o = self.unary("Sigmoid", &go);
                    let cand = self.unary("Tanh", &gc);
                    let mut c = self.binary("Mul", &i, &cand);
                    if let Some(cp) = &state_c {
                        let f = self.unary("Sigmoid", &gf);
                        let kept = self.binary("Mul", &f, cp);
                        c = self.binary("Add", &c, &kept);
                    }
                    let tc = self.unary("Tanh", &c);
                    let ht = self.binary("Mul", &o, &tc);
                    state_c = Some(c);
                    state_h = Some(ht);
                } else {
                    let (wb, rb) = bias.clone().unzip();
                    let gx = self.affine(&xt, &w_t, wb.as_deref()); // [B, 3H]
                    let linear_before_reset = node
                        .attribute
                        .iter()
                        .any(|a| a.name == "linear_before_reset" && a.i != 0);
                    let part = |u: &mut Self, v: &str, k: i64| u.take(v, 1, k * h..(k + 1) * h);
                    let part0 = |u: &mut Self, v: &str, k: i64| u.take(v, 0, k * h..(k + 1) * h);
                    let (xz, xr, xh) = (part(self, &gx, 0), part(self, &gx, 1), part(self, &gx, 2));
                    // Gate order z, r, h; a missing state is zero.
                    let (z, cand) = match &state_h {
                        Some(hp) => {
                            let rz_t = self.take(&r_t, 1, 0..2 * h);
                            let rh_t = self.take(&r_t, 1, 2 * h..3 * h);
                            let rzb = rb.as_ref().map(|rb| self.take(rb, 0, 0..2 * h));
                            let rhb = rb.as_ref().map(|rb| part0(self, rb, 2));
                            let rec = self.affine(hp, &rz_t, rzb.as_deref()); // [B, 2H]
                            let (rz, rr) = (part(self, &rec, 0), part(self, &rec, 1));
                            let z = self.binary("Add", &xz, &rz);
                            let z = self.unary("Sigmoid", &z);
                            let r = self.binary("Add", &xr, &rr);
                            let r = self.unary("Sigmoid", &r);
                            let inner = match linear_before_reset {
                                true => {
                                    let lin = self.affine(hp, &rh_t, rhb.as_deref());
                                    self.binary("Mul", &r, &lin)
                                }
                                false => {
                                    let reset = self.binary("Mul", &r, hp);
                                    self.affine(&reset, &rh_t, rhb.as_deref())
                                }
                            };
                            let pre = self.binary("Add", &xh, &inner);
                            (z, self.unary("Tanh", &pre))
                        }
                        None => {
                            let with_rb = |u: &mut Self, v: &str, k: i64| match &rb {
                                Some(rb) => {
                                    let b = part0(u, rb, k);
                                    u.binary("Add", v, &b)
                                }
                                None => v.to_string(),
                            };
                            let z = with_rb(self, &xz, 0);
                            let z = self.unary("Sigmoid", &z);
                            let pre = match (linear_before_reset, &rb) {
                                (true, Some(rb)) => {
                                    let r = with_rb(self, &xr, 1);
                                    let r = self.unary("Sigmoid", &r);
                                    let rhb = part0(self, rb, 2);
                                    let gated = self.binary("Mul", &r, &rhb);
                                    self.binary("Add", &xh, &gated)
                                }
                                (true, None) => xh.clone(),
                                (false, _) => with_rb(self, &xh, 2),
                            };
                            (z, self.unary("Tanh", &pre))
                        }
                    };
                    // h = h~ + z·(h_prev − h~)
                    let ht = match &state_h {
                        Some(hp) => {
                            let diff = self.binary("Sub", hp, &cand);
                            let gated = self.binary("Mul", &z, &diff);
                            self.binary("Add", &cand, &gated)
                        }
                        None => {
                            let gated = self.binary("Mul", &z, &cand);
                            self.binary("Sub", &cand, &gated)
                        }
                    };
                    state_h = Some(ht);
                }
                outputs[t] = self.reshape(state_h.as_deref().expect("set"), vec![1, 1, -1, h]);
            }
            let y = match outputs.len() {
                1 => outputs[0].clone(),
                _ => {
                    let refs: Vec<&str> = outputs.iter().map(|s| s.as_str()).collect();
                    self.op("Concat", &refs, vec![Self::int_attr("axis", 0)])
                }
            };
            ys.push(y);
            hs.push(self.reshape(state_h.as_deref().expect("seq > 0"), vec![1, -1, h]));
            if let Some(c) = &state_c {
                cs.push(self.reshape(c, vec![1, -1, h]));
            }
        }
        // The node's outputs Y [seq, dirs, B, H], Y_h [dirs, B, H] and (LSTM) Y_c, by name.
        let finish = |u: &mut Self, parts: Vec<String>, axis: i64, slot: usize| {
            let Some(name) = node.output.get(slot).filter(|s| !s.is_empty()) else {
                return;
            };
            u.nodes.push(NodeProto {
                input: parts,
                output: vec![name.clone()],
                name: format!("{}.out{slot}", u.prefix),
                op_type: "Concat".into(),
                attribute: vec![Self::int_attr("axis", axis)],
                ..Default::default()
            });
        };
        if seq == 0 {
            let name = display_name(&node);
            return Err(format!("{} node `{name}`: an empty sequence", node.op_type));
        }
        finish(self, ys, 1, 0);
        finish(self, hs, 0, 1);
        if lstm {
            finish(self, cs, 0, 2);
        }
        Ok(())
    }
}
