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
//! hold for the exact integer result given those bounds (no wrap-around modulo M31), and refuses
//! the model with [`CircuitError::Overflow`] where they would not.

use std::collections::HashMap;

use ciro_model_compiler::eval::{
    broadcast_map, conv_taps, eval_node, for_each_window, reduce_map, round_div, IntTensor,
};
use ciro_model_compiler::ir::{Graph, Node, NodeId, Op};

use crate::error::CircuitError;
use crate::field::P;

/// Index of a cell.
pub type Cell = u32;

/// A gate operand: a cell or a constant folded into the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Cell(Cell),
    Const(i64),
}

/// Range checks split values into 16-bit limbs `lo + 2^16 * hi`; `hi < hi_bound` is checked with
/// a shifted lookup, and `hi_bound` is kept below 2^14 so a limb pair never reaches `p`.
pub const LIMB_BITS: u32 = 16;
pub const MAX_HI_BOUND: i64 = (1 << 14) - 1;

/// The gates. `out` is the cell each writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `out = sum x_i * w_i` (weights are constants of the model).
    Mac { out: Cell, terms: Vec<(Cell, i64)> },
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
    pub fn out(&self) -> Cell {
        match self {
            Gate::Mac { out, .. }
            | Gate::Arith { out, .. }
            | Gate::Select { out, .. }
            | Gate::Div { out, .. }
            | Gate::Lookup { out, .. } => *out,
        }
    }

    /// The cells this gate reads (with repetition).
    pub fn reads(&self) -> Vec<Cell> {
        match self {
            Gate::Mac { terms, .. } => terms.iter().map(|t| t.0).collect(),
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
#[derive(Clone, Debug)]
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
}

struct Lowering<'g> {
    graph: &'g Graph,
    gates: Vec<Gate>,
    bounds: Vec<(i64, i64)>,
    tables: Vec<Table>,
    const_cells: HashMap<i64, Cell>,
    node_operands: Vec<Vec<Operand>>,
}

fn overflow(node: &Node, what: String) -> CircuitError {
    CircuitError::Overflow {
        node: node.name.clone(),
        op: node.op.name().into(),
        detail: what,
    }
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

const HALF_P: i128 = (P as i128 - 1) / 2;

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

    fn mac(
        &mut self,
        node: &Node,
        terms: Vec<(Operand, i64)>,
        bound: (i64, i64),
    ) -> Result<Operand, CircuitError> {
        // Partial sums wrap harmlessly in the field; only the final value must fit, and the
        // compiler proved it does. Still check the worst case of the sum of |x·w|.
        let mut worst: i128 = 0;
        let mut constant: i64 = 0;
        let mut cell_terms = Vec::with_capacity(terms.len());
        for (x, w) in terms {
            if w == 0 {
                continue;
            }
            match x {
                Operand::Const(v) => constant += v * w,
                Operand::Cell(c) => {
                    let (lo, hi) = self.bounds[c as usize];
                    worst +=
                        lo.unsigned_abs().max(hi.unsigned_abs()) as i128 * w.unsigned_abs() as i128;
                    cell_terms.push((c, w));
                }
            }
        }
        if worst + constant.unsigned_abs() as i128 > HALF_P {
            return Err(overflow(
                node,
                format!("a dot product can reach {worst}, beyond M31"),
            ));
        }
        if cell_terms.is_empty() {
            return Ok(Operand::Const(constant));
        }
        if constant != 0 {
            let one = self.const_cell(1);
            cell_terms.push((one, constant));
        }
        let out = self.new_cell(bound);
        self.gates.push(Gate::Mac {
            out,
            terms: cell_terms,
        });
        Ok(Operand::Cell(out))
    }

    /// `ca*a + cb*b + cab*a*b + c0` with operand folding.
    fn arith(
        &mut self,
        a: Operand,
        b: Operand,
        ca: i64,
        cb: i64,
        cab: i64,
        bound: (i64, i64),
    ) -> Operand {
        let (mut ca, mut cb, mut cab, mut c0) = (ca as i128, cb as i128, cab as i128, 0i128);
        let (mut ac, mut bc) = (None, None);
        match (a, b) {
            (Operand::Const(x), Operand::Const(y)) => {
                return Operand::Const(
                    (ca * x as i128 + cb * y as i128 + cab * x as i128 * y as i128) as i64,
                )
            }
            (Operand::Const(x), Operand::Cell(y)) => {
                c0 += ca * x as i128;
                cb += cab * x as i128;
                cab = 0;
                ca = 0;
                bc = Some(y);
            }
            (Operand::Cell(x), Operand::Const(y)) => {
                c0 += cb * y as i128;
                ca += cab * y as i128;
                cab = 0;
                cb = 0;
                ac = Some(x);
            }
            (Operand::Cell(x), Operand::Cell(y)) => {
                ac = Some(x);
                bc = Some(y);
            }
        }
        if ac.is_none() && cab == 0 {
            // Only b is live.
            ac = bc.take();
            ca = cb;
            cb = 0;
        }
        let out = self.new_cell(bound);
        self.gates.push(Gate::Arith {
            out,
            a: ac,
            b: bc,
            ca: ca as i64,
            cb: cb as i64,
            cab: cab as i64,
            c0: c0 as i64,
        });
        Operand::Cell(out)
    }

    /// The select gadget; `a` must be a cell (or both constants, folded by the caller).
    #[allow(clippy::too_many_arguments)]
    fn select(
        &mut self,
        node: &Node,
        a: Operand,
        b: Operand,
        p: [i64; 3],
        q: [i64; 3],
        bound: (i64, i64),
    ) -> Result<Operand, CircuitError> {
        let eval = |a: i64, b: i64| {
            let c = if a >= b { p } else { q };
            c[0] * a + c[1] * b + c[2]
        };
        let (a, b, p, q) = match (a, b) {
            (Operand::Const(x), Operand::Const(y)) => return Ok(Operand::Const(eval(x, y))),
            // Keep the cell in `a`: [c >= b] with constant c is [b <= c] = [b < c+1] = 1 - [b >= c+1].
            (Operand::Const(x), Operand::Cell(_)) => {
                let swap = |t: [i64; 3]| [t[1], t[0], t[2]];
                (b, Operand::Const(x + 1), swap(q), swap(p))
            }
            _ => (a, b, p, q),
        };
        let (alo, ahi) = self.bound_of(a);
        let (blo, bhi) = self.bound_of(b);
        let width = (ahi as i128 - blo as i128 + 1).max(bhi as i128 - alo as i128);
        if width > (MAX_HI_BOUND as i128) << LIMB_BITS {
            return Err(overflow(
                node,
                format!("a comparison spans {width} values, beyond 2^30"),
            ));
        }
        let Operand::Cell(a) = a else { unreachable!() };
        let out = self.new_cell(bound);
        self.gates.push(Gate::Select {
            out,
            a,
            b,
            p,
            q,
            hi_bound: hi_bound_for(width as i64),
        });
        Ok(Operand::Cell(out))
    }

    fn max(&mut self, node: &Node, a: Operand, b: Operand) -> Result<Operand, CircuitError> {
        let (alo, ahi) = self.bound_of(a);
        let (blo, bhi) = self.bound_of(b);
        if alo >= bhi {
            return Ok(a);
        }
        if blo >= ahi {
            return Ok(b);
        }
        self.select(
            node,
            a,
            b,
            [1, 0, 0],
            [0, 1, 0],
            (alo.max(blo), ahi.max(bhi)),
        )
    }

    fn min(&mut self, node: &Node, a: Operand, b: Operand) -> Result<Operand, CircuitError> {
        let (alo, ahi) = self.bound_of(a);
        let (blo, bhi) = self.bound_of(b);
        if ahi <= blo {
            return Ok(a);
        }
        if bhi <= alo {
            return Ok(b);
        }
        self.select(
            node,
            a,
            b,
            [0, 1, 0],
            [1, 0, 0],
            (alo.min(blo), ahi.min(bhi)),
        )
    }

    fn clamp(
        &mut self,
        node: &Node,
        x: Operand,
        lo: Option<i64>,
        hi: Option<i64>,
    ) -> Result<Operand, CircuitError> {
        let mut v = x;
        if let Some(lo) = lo {
            v = self.max(node, v, Operand::Const(lo))?;
        }
        if let Some(hi) = hi {
            v = self.min(node, v, Operand::Const(hi))?;
        }
        Ok(v)
    }

    #[allow(clippy::too_many_arguments)]
    fn div(
        &mut self,
        node: &Node,
        n: Operand,
        k: i64,
        d: Operand,
        bound: (i64, i64),
    ) -> Result<Operand, CircuitError> {
        let (dlo, dhi) = self.bound_of(d);
        if dlo <= 0 {
            return Err(overflow(
                node,
                format!("divisor may be {dlo}, must be positive"),
            ));
        }
        if let (Operand::Const(nv), Operand::Const(dv)) = (n, d) {
            return Ok(Operand::Const(round_div(nv * k, dv)));
        }
        let (nlo, nhi) = self.bound_of(n);
        let (q_lo, q_hi) = bound;
        // 2kn + d = 2d*q + r must hold over the integers: both sides stay within ±(p-1)/2.
        let r_hi_bound = hi_bound_for(2 * dhi);
        let q_hi_bound = hi_bound_for(q_hi - q_lo + 1);
        // q is range-checked on both sides (q - q_lo and q_hi - q), so q_lo..=q_hi is exact.
        let lhs = 2 * k as i128 * nlo.unsigned_abs().max(nhi.unsigned_abs()) as i128 + dhi as i128;
        let rhs = 2 * dhi as i128 * (q_lo.unsigned_abs().max(q_hi.unsigned_abs()) as i128 + 1);
        if lhs > HALF_P || rhs > HALF_P || r_hi_bound > MAX_HI_BOUND || q_hi_bound > MAX_HI_BOUND {
            return Err(overflow(
                node,
                format!("division of values up to {lhs} by up to {dhi} does not fit M31 exactly"),
            ));
        }
        let n = self.cell(n);
        let out = self.new_cell(bound);
        self.gates.push(Gate::Div {
            out,
            n,
            k,
            d,
            q_lo,
            q_hi,
            q_hi_bound,
            r_hi_bound,
        });
        Ok(Operand::Cell(out))
    }

    fn lookup(
        &mut self,
        node: &Node,
        x: Operand,
        x_lo: i64,
        values: &[i64],
    ) -> Result<Operand, CircuitError> {
        let x_hi = x_lo + values.len() as i64 - 1;
        let x = self.clamp(node, x, Some(x_lo), Some(x_hi))?;
        if let Operand::Const(v) = x {
            return Ok(Operand::Const(values[(v - x_lo) as usize]));
        }
        let (lo, hi) = values
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let table = self.table(x_lo, values);
        let x = self.cell(x);
        let out = self.new_cell((lo, hi));
        self.gates.push(Gate::Lookup { out, x, table });
        Ok(Operand::Cell(out))
    }

    fn operands(&self, id: NodeId) -> &[Operand] {
        &self.node_operands[id]
    }

    /// Data movement: run the evaluator on operand indices to learn where each element comes from.
    fn wiring(&self, node: &Node) -> Vec<Operand> {
        let mut all: Vec<Operand> = Vec::new();
        let mut args = Vec::new();
        for &i in &node.inputs {
            let ops = self.operands(i);
            let base = all.len() as i64;
            args.push(IntTensor::new(
                self.graph.nodes[i].shape.clone(),
                (0..ops.len() as i64).map(|j| base + j).collect(),
            ));
            all.extend_from_slice(ops);
        }
        let mut probe = node.clone();
        let pad = match &mut probe.op {
            Op::Pad { value, .. } => Some(std::mem::replace(value, -1)),
            _ => None,
        };
        let refs: Vec<&IntTensor> = args.iter().collect();
        let idx = eval_node(&probe, &refs);
        idx.data
            .iter()
            .map(|&j| {
                if j < 0 {
                    Operand::Const(pad.unwrap_or(0))
                } else {
                    all[j as usize]
                }
            })
            .collect()
    }

    fn lower_node(&mut self, id: NodeId) -> Result<Vec<Operand>, CircuitError> {
        let graph = self.graph;
        let node = &graph.nodes[id];
        let bound = (node.bound.lo, node.bound.hi);
        let input = |k: usize| &graph.nodes[node.inputs[k]];
        let ops = |this: &Self, k: usize| this.operands(node.inputs[k]).to_vec();
        Ok(match &node.op {
            Op::Input { .. } => unreachable!("inputs are assigned before lowering"),
            Op::Const { values } => values.iter().map(|&v| Operand::Const(v)).collect(),
            op if op.is_wiring() => self.wiring(node),
            Op::MatMul => {
                let (a, b) = (ops(self, 0), ops(self, 1));
                let (ash, bsh) = (&input(0).shape, &input(1).shape);
                let (batch, m, k) = match ash.len() {
                    2 => (1, ash[0], ash[1]),
                    _ => (ash[0], ash[1], ash[2]),
                };
                let n = *bsh.last().unwrap_or(&1);
                let b_batched = bsh.len() == 3;
                let mut out = Vec::with_capacity(batch * m * n);
                for bi in 0..batch {
                    let boff = if b_batched { bi * k * n } else { 0 };
                    for i in 0..m {
                        for j in 0..n {
                            let mut terms = Vec::with_capacity(k);
                            for kk in 0..k {
                                let (x, y) = (a[(bi * m + i) * k + kk], b[boff + kk * n + j]);
                                terms.push(match (x, y) {
                                    (x, Operand::Const(w)) => (x, w),
                                    (Operand::Const(w), y) => (y, w),
                                    _ => {
                                        return Err(unsupported(
                                            node,
                                            "a product of two computed tensors",
                                        ))
                                    }
                                });
                            }
                            out.push(self.mac(node, terms, bound)?);
                        }
                    }
                }
                out
            }
            Op::Conv {
                strides,
                dilations,
                pads_before,
                ..
            } => {
                let (x, w) = (ops(self, 0), ops(self, 1));
                let w: Vec<i64> = w
                    .iter()
                    .map(|o| match o {
                        Operand::Const(v) => Ok(*v),
                        Operand::Cell(_) => Err(unsupported(node, "a computed convolution kernel")),
                    })
                    .collect::<Result<_, _>>()?;
                let mut terms = vec![Vec::new(); node.len()];
                let win = [*strides, *dilations, *pads_before];
                conv_taps(
                    &input(0).shape,
                    &input(1).shape,
                    &node.shape,
                    win,
                    |o, xi, wi| terms[o].push((x[xi], w[wi])),
                );
                terms
                    .into_iter()
                    .map(|t| self.mac(node, t, bound))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Op::Add | Op::Sub | Op::Mul | Op::Max | Op::Min | Op::DivConst => {
                let (a, b) = (ops(self, 0), ops(self, 1));
                let ma = broadcast_map(&node.shape, &input(0).shape);
                let mb = broadcast_map(&node.shape, &input(1).shape);
                let mut out = Vec::with_capacity(node.len());
                for (&i, &j) in ma.iter().zip(&mb) {
                    let (x, y) = (a[i], b[j]);
                    out.push(match node.op {
                        Op::Add => self.arith(x, y, 1, 1, 0, bound),
                        Op::Sub => self.arith(x, y, 1, -1, 0, bound),
                        Op::Mul => self.arith(x, y, 0, 0, 1, bound),
                        Op::Max => self.max(node, x, y)?,
                        Op::Min => self.min(node, x, y)?,
                        _ => self.div(node, x, 1, y, bound)?,
                    });
                }
                out
            }
            Op::ScaleUp { bits } => {
                let f = 1i64 << bits;
                ops(self, 0)
                    .into_iter()
                    .map(|x| self.arith(x, Operand::Const(0), f, 0, 0, bound))
                    .collect()
            }
            Op::Rescale { bits } => {
                let x = ops(self, 0);
                if *bits == 0 {
                    x
                } else {
                    x.into_iter()
                        .map(|x| self.div(node, x, 1, Operand::Const(1 << bits), bound))
                        .collect::<Result<_, _>>()?
                }
            }
            Op::Clamp { min, max } => ops(self, 0)
                .into_iter()
                .map(|x| self.clamp(node, x, *min, *max))
                .collect::<Result<_, _>>()?,
            Op::LeakyRelu { slope, slope_bits } => ops(self, 0)
                .into_iter()
                .map(|x| {
                    self.select(
                        node,
                        x,
                        Operand::Const(0),
                        [1 << slope_bits, 0, 0],
                        [*slope, 0, 0],
                        bound,
                    )
                })
                .collect::<Result<_, _>>()?,
            Op::Lookup { in_lo, table, .. } => ops(self, 0)
                .into_iter()
                .map(|x| self.lookup(node, x, *in_lo, table))
                .collect::<Result<_, _>>()?,
            Op::MaxPool {
                kernel,
                strides,
                pads_before,
                ..
            }
            | Op::SumPool {
                kernel,
                strides,
                pads_before,
                ..
            } => {
                let x = ops(self, 0);
                let mut windows: Vec<Vec<Operand>> = vec![Vec::new(); node.len()];
                for_each_window(
                    &input(0).shape,
                    &node.shape,
                    *kernel,
                    *strides,
                    [1, 1],
                    *pads_before,
                    |o, i| {
                        if let Some(i) = i {
                            windows[o].push(x[i]);
                        }
                    },
                );
                self.reduce(node, windows, matches!(node.op, Op::MaxPool { .. }), bound)?
            }
            Op::ReduceSum { axes } | Op::ReduceMax { axes } => {
                let x = ops(self, 0);
                let (_, map) = reduce_map(&input(0).shape, axes);
                let mut groups: Vec<Vec<Operand>> = vec![Vec::new(); node.len()];
                for (i, &o) in map.iter().enumerate() {
                    groups[o].push(x[i]);
                }
                self.reduce(node, groups, matches!(node.op, Op::ReduceMax { .. }), bound)?
            }
            Op::Softmax {
                axis, in_lo, table, ..
            } => {
                let x = ops(self, 0);
                let (_, map) = reduce_map(&input(0).shape, &[*axis]);
                let n_groups = x.len() / input(0).shape[*axis];
                let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
                for (i, &g) in map.iter().enumerate() {
                    members[g].push(i);
                }
                let (xlo, xhi) = (input(0).bound.lo, input(0).bound.hi);
                let (tlo, thi) = table
                    .iter()
                    .fold((i64::MAX, i64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let one = 1i64 << node.scale;
                let mut out = vec![Operand::Const(0); x.len()];
                for group in members {
                    let mut m = x[group[0]];
                    for &i in &group[1..] {
                        m = self.max(node, m, x[i])?;
                    }
                    let len = group.len() as i64;
                    let mut es = Vec::with_capacity(group.len());
                    for &i in &group {
                        let d = self.arith(x[i], m, 1, -1, 0, (xlo - xhi, 0));
                        es.push(self.lookup(node, d, *in_lo, table)?);
                    }
                    let s_bound = ((len * tlo).max(1), len * thi);
                    let s = self.mac(node, es.iter().map(|&e| (e, 1)).collect(), s_bound)?;
                    for (&i, &e) in group.iter().zip(&es) {
                        out[i] = self.div(node, e, one, s, bound)?;
                    }
                }
                out
            }
            _ => return Err(unsupported(node, "no gadget for this op")),
        })
    }

    fn reduce(
        &mut self,
        node: &Node,
        groups: Vec<Vec<Operand>>,
        is_max: bool,
        bound: (i64, i64),
    ) -> Result<Vec<Operand>, CircuitError> {
        groups
            .into_iter()
            .map(|g| {
                if g.is_empty() {
                    return Err(unsupported(node, "an empty window"));
                }
                if is_max {
                    let mut m = g[0];
                    for &x in &g[1..] {
                        m = self.max(node, m, x)?;
                    }
                    Ok(m)
                } else {
                    self.mac(node, g.into_iter().map(|x| (x, 1)).collect(), bound)
                }
            })
            .collect()
    }
}

impl Circuit {
    /// Lowers a compiled graph to gates.
    pub fn from_graph(graph: &Graph) -> Result<Circuit, CircuitError> {
        let mut l = Lowering {
            graph,
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
        for (id, node) in graph.nodes.iter().enumerate() {
            if node
                .bound
                .lo
                .unsigned_abs()
                .max(node.bound.hi.unsigned_abs()) as i128
                > HALF_P
            {
                return Err(overflow(
                    node,
                    format!("bound {:?} exceeds M31", node.bound),
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
        })
    }

    /// Computes every cell from the public inputs (quantized, flattened in input order).
    pub fn assign(&self, inputs: &[i64]) -> Result<Vec<i64>, CircuitError> {
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
        for g in &self.gates {
            let out = match g {
                Gate::Mac { terms, .. } => terms.iter().map(|&(c, w)| v[c as usize] * w).sum(),
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
                    ca * a + cb * b + cab * a * b + c0
                }
                Gate::Select { a, b, p, q, .. } => {
                    let (a, b) = (v[*a as usize], op(&v, *b));
                    let c = if a >= b { p } else { q };
                    c[0] * a + c[1] * b + c[2]
                }
                Gate::Div { n, k, d, .. } => round_div(k * v[*n as usize], op(&v, *d)),
                Gate::Lookup { x, table, .. } => {
                    let t = &self.tables[*table as usize];
                    let i = v[*x as usize] - t.x_lo;
                    if i < 0 || i >= t.values.len() as i64 {
                        return Err(CircuitError::Witness(format!(
                            "lookup input {} outside its table",
                            v[*x as usize]
                        )));
                    }
                    t.values[i as usize]
                }
            };
            let c = g.out() as usize;
            let (lo, hi) = self.bounds[c];
            if out < lo || out > hi {
                return Err(CircuitError::Witness(format!(
                    "cell {c} = {out} escapes its proven bound [{lo}, {hi}]"
                )));
            }
            v[c] = out;
        }
        Ok(v)
    }
}
