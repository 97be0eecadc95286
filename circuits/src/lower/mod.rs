//! Lowering of the integer IR to gates over cells.
//!
//! A *cell* is one integer value of the computation (an element of a node, or an intermediate of
//! a gadget such as a running maximum). Every cell is written by exactly one gate (or is a public
//! input) and read by any number of gates; the AIR ties reads to writes with a LogUp relation.
//! Data movement (Reshape, Transpose, Slice, Concat, Pad, Gather) creates no gates: it only
//! renames cells. Constants fold into gate coefficients where they can, and become cells written
//! by a constant gate where they cannot.
//!
//! Every cell carries a proven bound; the lowering checks that each gadget's field equations only
//! hold for the exact integer result given those bounds (no wrap-around modulo the backend's
//! field, whose limits come in as a [`FieldBudget`]), and refuses the model with
//! [`CircuitError::Overflow`] where they would not.
//!
//! This file holds the gate list and the walk over the graph; the gadgets every family shares
//! (MAC, arithmetic, select/max/min/clamp, division, lookup) are in [`gadgets`], and each op
//! family's lowering is in its own file, as [`Op::family`] sorts them: [`linear`],
//! [`elementwise`], [`activation`], [`pooling`], [`reduction`], [`softmax`], [`wiring`].

use std::collections::HashMap;

use ciro_model_compiler::eval::round_div;
use ciro_model_compiler::ir::{Graph, Node, NodeId, Op, OpFamily};

use crate::budget::FieldBudget;
use crate::error::CircuitError;

mod activation;
mod elementwise;
mod gadgets;
mod linear;
mod pooling;
mod reduction;
mod softmax;
mod wiring;

/// Index of a cell.
pub type Cell = u32;

/// A gate operand: a cell or a constant folded into the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Cell(Cell),
    Const(i64),
}

/// Range checks split values into 16-bit limbs `lo + 2^16 * hi`; `hi < hi_bound` is checked with
/// a shifted lookup (stwo). The gates' `hi_bound`s are in these units under every
/// [`FieldBudget`]; the budget says how wide a range may be ([`FieldBudget::max_range_width`]).
pub const LIMB_BITS: u32 = 16;

/// The gates. `out` is the cell each writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Dot products that share their inputs (a linear layer's outputs at one position):
    /// `outs[m] = Σ_k weights[m * xs.len() + k] * xs[k]`, weights constants of the model. Each
    /// output reads every input once, whatever its weight.
    Mac {
        outs: Vec<Cell>,
        xs: Vec<Cell>,
        weights: Vec<i64>,
    },
    /// `out = ca*a + cb*b + cab*a*b + c0`; an absent operand reads as 0.
    Arith {
        out: Cell,
        a: Option<Cell>,
        b: Option<Cell>,
        ca: i64,
        cb: i64,
        cab: i64,
        c0: i64,
    },
    /// With `s = [a >= b]`: `out = s*(p·(a,b,1)) + (1-s)*(q·(a,b,1))`. The comparison is proven
    /// by range-checking `a-b` (when `s = 1`) or `b-a-1` (when `s = 0`) below `hi_bound * 2^16`.
    Select {
        out: Cell,
        a: Cell,
        b: Operand,
        p: [i64; 3],
        q: [i64; 3],
        hi_bound: i64,
    },
    /// `out = round_div(k*n, d) = floor((2kn + d) / 2d)`, `d > 0`; the remainder
    /// `r = 2kn + d - 2d*out` is proven in `[0, 2d)` and `out` in `[q_lo, q_hi]`.
    Div {
        out: Cell,
        n: Cell,
        k: i64,
        d: Operand,
        q_lo: i64,
        q_hi: i64,
        q_hi_bound: i64,
        r_hi_bound: i64,
    },
    /// `out = table[x]`, `x` inside the table's domain.
    Lookup { out: Cell, x: Cell, table: u32 },
}

impl Gate {
    /// The cells this gate writes.
    pub fn outs(&self) -> &[Cell] {
        match self {
            Gate::Mac { outs, .. } => outs,
            Gate::Arith { out, .. }
            | Gate::Select { out, .. }
            | Gate::Div { out, .. }
            | Gate::Lookup { out, .. } => std::slice::from_ref(out),
        }
    }

    /// A MAC block's dot products as `(out, terms)`, zero weights left out.
    pub fn dot_products(
        outs: &[Cell],
        xs: &[Cell],
        weights: &[i64],
    ) -> Vec<(Cell, Vec<(Cell, i64)>)> {
        outs.iter()
            .zip(weights.chunks(xs.len().max(1)))
            .map(|(&out, w)| {
                let terms = xs
                    .iter()
                    .zip(w)
                    .filter(|(_, &w)| w != 0)
                    .map(|(&x, &w)| (x, w))
                    .collect();
                (out, terms)
            })
            .collect()
    }

    /// The cells this gate reads (with repetition).
    pub fn reads(&self) -> Vec<Cell> {
        match self {
            Gate::Mac { outs, xs, .. } => xs
                .iter()
                .cycle()
                .take(xs.len() * outs.len())
                .copied()
                .collect(),
            Gate::Arith { a, b, .. } => a.iter().chain(b.iter()).copied().collect(),
            Gate::Select { a, b, .. } => {
                let mut r = vec![*a];
                if let Operand::Cell(b) = b {
                    r.push(*b);
                }
                r
            }
            Gate::Div { n, d, .. } => {
                let mut r = vec![*n];
                if let Operand::Cell(d) = d {
                    r.push(*d);
                }
                r
            }
            Gate::Lookup { x, .. } => vec![*x],
        }
    }
}

/// A function tabulated on `[x_lo, x_lo + values.len())`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub x_lo: i64,
    pub values: Vec<i64>,
}

/// The circuit of a model: public input cells `0..n_inputs`, then gate-written cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Circuit {
    pub n_cells: u32,
    /// Number of public input cells (all model inputs, flattened in order).
    pub n_inputs: u32,
    /// Proven bound of every cell.
    pub bounds: Vec<(i64, i64)>,
    pub gates: Vec<Gate>,
    pub tables: Vec<Table>,
    /// The cell of each output element (all outputs, flattened in order).
    pub outputs: Vec<Cell>,
    /// How many times each cell is read (gates and public outputs).
    pub reads: Vec<u32>,
    /// The graph node each run of cells came from: `(first cell, node name, op)`, by first cell,
    /// so that a witness error names the node as the user's model has it.
    pub origins: Vec<(Cell, String, &'static str)>,
}

/// The lowering's state: the gates and cells so far, and each lowered node's operands.
struct Lowering<'g> {
    graph: &'g Graph,
    budget: &'g FieldBudget,
    gates: Vec<Gate>,
    bounds: Vec<(i64, i64)>,
    tables: Vec<Table>,
    const_cells: HashMap<i64, Cell>,
    node_operands: Vec<Vec<Operand>>,
}

fn unsupported(node: &Node, what: &str) -> CircuitError {
    CircuitError::Unsupported {
        node: node.name.clone(),
        op: node.op.name().into(),
        detail: what.into(),
    }
}

/// Values a limb-split range check over `[0, width)` needs: the bound on the high limb.
fn hi_bound_for(width: i64) -> i64 {
    ((width.max(1) + (1 << LIMB_BITS) - 1) >> LIMB_BITS).max(1)
}

impl<'g> Lowering<'g> {
    fn new_cell(&mut self, bound: (i64, i64)) -> Cell {
        self.bounds.push(bound);
        (self.bounds.len() - 1) as Cell
    }

    fn bound_of(&self, o: Operand) -> (i64, i64) {
        match o {
            Operand::Cell(c) => self.bounds[c as usize],
            Operand::Const(v) => (v, v),
        }
    }

    /// A cell holding constant `v`, written once by a constant gate.
    fn const_cell(&mut self, v: i64) -> Cell {
        if let Some(&c) = self.const_cells.get(&v) {
            return c;
        }
        let out = self.new_cell((v, v));
        self.gates.push(Gate::Arith {
            out,
            a: None,
            b: None,
            ca: 0,
            cb: 0,
            cab: 0,
            c0: v,
        });
        self.const_cells.insert(v, out);
        out
    }

    fn cell(&mut self, o: Operand) -> Cell {
        match o {
            Operand::Cell(c) => c,
            Operand::Const(v) => self.const_cell(v),
        }
    }

    fn table(&mut self, x_lo: i64, values: &[i64]) -> u32 {
        let t = Table {
            x_lo,
            values: values.to_vec(),
        };
        if let Some(i) = self.tables.iter().position(|x| *x == t) {
            return i as u32;
        }
        self.tables.push(t);
        (self.tables.len() - 1) as u32
    }

    fn operands(&self, id: NodeId) -> &[Operand] {
        &self.node_operands[id]
    }

    /// A node's input operands (input `k` of the node).
    fn input_operands(&self, node: &Node, k: usize) -> Vec<Operand> {
        self.operands(node.inputs[k]).to_vec()
    }

    /// The node that is input `k` of `node`.
    fn input(&self, node: &Node, k: usize) -> &'g Node {
        &self.graph.nodes[node.inputs[k]]
    }

    /// `node` leaves the budget: `what` says how.
    fn overflow(&self, node: &Node, what: String) -> CircuitError {
        CircuitError::Overflow {
            field: self.budget.name,
            node: node.name.clone(),
            op: node.op.name().into(),
            detail: what,
        }
    }

    /// Lowers one node (not an input) by its family.
    fn lower_node(&mut self, id: NodeId) -> Result<Vec<Operand>, CircuitError> {
        let graph = self.graph;
        let node = &graph.nodes[id];
        match node.op.family() {
            OpFamily::Linear => linear::lower(self, node),
            OpFamily::Elementwise => elementwise::lower(self, node),
            OpFamily::Activation => activation::lower(self, node),
            OpFamily::Pooling => pooling::lower(self, node),
            OpFamily::Reduction => reduction::lower(self, node),
            OpFamily::Softmax => softmax::lower(self, node),
            OpFamily::Wiring => wiring::lower(self, node),
        }
    }
}

impl Circuit {
    /// Lowers a compiled graph to gates, refusing what `budget`'s backend cannot prove exactly.
    pub fn from_graph(graph: &Graph, budget: &FieldBudget) -> Result<Circuit, CircuitError> {
        let mut l = Lowering {
            graph,
            budget,
            gates: Vec::new(),
            bounds: Vec::new(),
            tables: Vec::new(),
            const_cells: HashMap::new(),
            node_operands: Vec::with_capacity(graph.nodes.len()),
        };
        // Public input cells first, in input order.
        let mut input_base = Vec::new();
        for (index, info) in graph.inputs.iter().enumerate() {
            let node = graph
                .nodes
                .iter()
                .find(|n| n.op == Op::Input { index })
                .ok_or_else(|| CircuitError::Malformed(format!("input {index} has no node")))?;
            input_base.push(l.bounds.len() as Cell);
            let len: usize = info.shape.iter().product();
            for _ in 0..len {
                l.new_cell((node.bound.lo, node.bound.hi));
            }
        }
        let n_inputs = l.bounds.len() as u32;
        let mut origins = Vec::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            if !matches!(node.op, Op::Input { .. } | Op::Const { .. }) {
                origins.push((l.bounds.len() as Cell, node.name.clone(), node.op.name()));
            }
            let magnitude = node
                .bound
                .lo
                .unsigned_abs()
                .max(node.bound.hi.unsigned_abs());
            if !budget.holds(magnitude as i128) {
                return Err(l.overflow(
                    node,
                    format!("bound {:?} exceeds {}", node.bound, budget.name),
                ));
            }
            let operands = match node.op {
                Op::Input { index } => {
                    let base = input_base[index];
                    (0..node.len() as u32)
                        .map(|i| Operand::Cell(base + i))
                        .collect()
                }
                _ => l.lower_node(id)?,
            };
            l.node_operands.push(operands);
        }
        let mut outputs = Vec::new();
        for o in &graph.outputs {
            for op in l.node_operands[o.node].clone() {
                let c = l.cell(op);
                outputs.push(c);
            }
        }
        let n_cells = l.bounds.len() as u32;
        let mut reads = vec![0u32; n_cells as usize];
        for g in &l.gates {
            for c in g.reads() {
                reads[c as usize] += 1;
            }
        }
        for &c in &outputs {
            reads[c as usize] += 1;
        }
        Ok(Circuit {
            n_cells,
            n_inputs,
            bounds: l.bounds,
            gates: l.gates,
            tables: l.tables,
            outputs,
            reads,
            origins,
        })
    }

    /// The node (name, op) whose lowering wrote `cell`, if any.
    pub fn origin(&self, cell: Cell) -> Option<(&str, &'static str)> {
        let i = self
            .origins
            .partition_point(|o| o.0 <= cell)
            .checked_sub(1)?;
        let (_, name, op) = &self.origins[i];
        Some((name, op))
    }

    /// Computes every cell from the public inputs (quantized, flattened in input order), refusing
    /// a value outside its cell's bound (for a division: its checked, calibrated range).
    pub fn assign(&self, inputs: &[i64]) -> Result<Vec<i64>, CircuitError> {
        self.evaluate(inputs, true)
    }

    /// The cells as a cheating prover computes them: the true values even where they leave
    /// their bounds. Only the soundness tests use it, to show that the verifier rejects such a
    /// witness.
    pub fn assign_unchecked(&self, inputs: &[i64]) -> Result<Vec<i64>, CircuitError> {
        self.evaluate(inputs, false)
    }

    fn evaluate(&self, inputs: &[i64], check: bool) -> Result<Vec<i64>, CircuitError> {
        if inputs.len() != self.n_inputs as usize {
            return Err(CircuitError::Input(format!(
                "expected {} input values, got {}",
                self.n_inputs,
                inputs.len()
            )));
        }
        let mut v = vec![0i64; self.n_cells as usize];
        for (i, &x) in inputs.iter().enumerate() {
            let (lo, hi) = self.bounds[i];
            if x < lo || x > hi {
                return Err(CircuitError::Input(format!(
                    "input value {x} at position {i} is outside the declared range [{lo}, {hi}]"
                )));
            }
            v[i] = x;
        }
        let op = |v: &[i64], o: Operand| match o {
            Operand::Cell(c) => v[c as usize],
            Operand::Const(x) => x,
        };
        let mut outs = Vec::new();
        for g in &self.gates {
            outs.clear();
            let one = match g {
                Gate::Mac { xs, weights, .. } => {
                    for w in weights.chunks(xs.len().max(1)) {
                        outs.push(xs.iter().zip(w).map(|(&c, &w)| v[c as usize] * w).sum());
                    }
                    None
                }
                Gate::Arith {
                    a,
                    b,
                    ca,
                    cb,
                    cab,
                    c0,
                    ..
                } => {
                    let a = a.map_or(0, |c| v[c as usize]);
                    let b = b.map_or(0, |c| v[c as usize]);
                    Some(ca * a + cb * b + cab * a * b + c0)
                }
                Gate::Select { a, b, p, q, .. } => {
                    let (a, b) = (v[*a as usize], op(&v, *b));
                    let c = if a >= b { p } else { q };
                    Some(c[0] * a + c[1] * b + c[2])
                }
                Gate::Div { n, k, d, .. } => Some(round_div(k * v[*n as usize], op(&v, *d))),
                Gate::Lookup { x, table, .. } => {
                    let t = &self.tables[*table as usize];
                    let i = v[*x as usize] - t.x_lo;
                    if i < 0 || i >= t.values.len() as i64 {
                        return Err(CircuitError::Witness(format!(
                            "lookup input {} outside its table",
                            v[*x as usize]
                        )));
                    }
                    Some(t.values[i as usize])
                }
            };
            outs.extend(one);
            for (&c, &out) in g.outs().iter().zip(&outs) {
                let c = c as usize;
                let (lo, hi) = self.bounds[c];
                if check && (out < lo || out > hi) {
                    let (node, op) = self.origin(c as Cell).unwrap_or(("?", "?"));
                    let what = if matches!(g, Gate::Div { .. }) {
                        "its calibrated range (the circuit checks it): the input leaves the \
                     range the model was calibrated on; recompile with calibration inputs like \
                     it, a larger --range-margin, or --ranges worst-case"
                    } else {
                        "its proven bound"
                    };
                    return Err(CircuitError::Witness(format!(
                    "node `{node}` ({op}) computes {out} (cell {c}), outside {what} [{lo}, {hi}]"
                )));
                }
                v[c] = out;
            }
        }
        Ok(v)
    }
}
