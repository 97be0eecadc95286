//! The gadgets every op family lowers to: a MAC (dot product), two-operand arithmetic, the
//! select gadget with its max / min / clamp uses, rounded division, table lookup, and the
//! max-or-sum reduction of a group. Each checks its worst case against the lowering's
//! [`FieldBudget`](crate::budget::FieldBudget) and folds constant operands.

use ciro_model_compiler::eval::round_div;
use ciro_model_compiler::ir::Node;

use std::collections::HashMap;

use super::{hi_bound_for, unsupported, Cell, Gate, Lowering, Operand};
use crate::error::CircuitError;

impl Lowering<'_> {
    /// One dot product over constant weights.
    pub(super) fn mac(
        &mut self,
        node: &Node,
        terms: Vec<(Operand, i64)>,
        bound: (i64, i64),
    ) -> Result<Operand, CircuitError> {
        let mut out = self.macs(node, vec![terms], bound)?;
        Ok(out.remove(0))
    }

    /// Dot products over constant weights, one per row. Rows that read the same cells in the
    /// same order (a linear layer's outputs at one position) share one MAC block, whose inputs
    /// a backend may read once for several outputs. Constant operands fold into a constant
    /// term, read from the constant-one cell.
    pub(super) fn macs(
        &mut self,
        node: &Node,
        rows: Vec<Vec<(Operand, i64)>>,
        bound: (i64, i64),
    ) -> Result<Vec<Operand>, CircuitError> {
        struct Member {
            row: usize,
            weights: Vec<i64>,
            constant: i64,
        }
        let mut groups: Vec<(Vec<Cell>, Vec<Member>)> = Vec::new();
        let mut index: HashMap<Vec<Cell>, usize> = HashMap::new();
        for (row, terms) in rows.into_iter().enumerate() {
            let mut xs = Vec::with_capacity(terms.len());
            let mut weights = Vec::with_capacity(terms.len());
            let mut constant = 0i64;
            for (x, w) in terms {
                match x {
                    Operand::Const(v) => constant += v * w,
                    Operand::Cell(c) => {
                        xs.push(c);
                        weights.push(w);
                    }
                }
            }
            let member = Member {
                row,
                weights,
                constant,
            };
            match index.get(&xs) {
                Some(&g) => groups[g].1.push(member),
                None => {
                    index.insert(xs.clone(), groups.len());
                    groups.push((xs, vec![member]));
                }
            }
        }
        let n_rows = groups.iter().map(|g| g.1.len()).sum();
        let mut out = vec![Operand::Const(0); n_rows];
        for (mut xs, members) in groups {
            let mut live = Vec::with_capacity(members.len());
            for m in members {
                // Partial sums wrap harmlessly in the field; only the final value must fit, and
                // the compiler proved it does. Still check the worst case of the sum of |x·w|.
                let worst: i128 = xs
                    .iter()
                    .zip(&m.weights)
                    .map(|(&c, &w)| {
                        let (lo, hi) = self.bounds[c as usize];
                        lo.unsigned_abs().max(hi.unsigned_abs()) as i128 * w.unsigned_abs() as i128
                    })
                    .sum();
                if !self.budget.holds(worst + m.constant.unsigned_abs() as i128) {
                    return Err(self.overflow(
                        node,
                        format!(
                            "a dot product can reach {worst}, beyond {}",
                            self.budget.name
                        ),
                    ));
                }
                if m.weights.iter().all(|&w| w == 0) {
                    out[m.row] = Operand::Const(m.constant);
                } else {
                    live.push(m);
                }
            }
            if live.is_empty() {
                continue;
            }
            if live.iter().any(|m| m.constant != 0) {
                xs.push(self.const_cell(1));
                for m in &mut live {
                    m.weights.push(m.constant);
                }
            }
            let mut outs = Vec::with_capacity(live.len());
            let mut weights = Vec::with_capacity(live.len() * xs.len());
            for m in live {
                let c = self.new_cell(bound);
                out[m.row] = Operand::Cell(c);
                outs.push(c);
                weights.extend(m.weights);
            }
            self.gates.push(Gate::Mac { outs, xs, weights });
        }
        Ok(out)
    }

    /// `x·y` of two computed cells, one Arith gate, its bound the product of their bounds
    /// (checked against the budget: the gate's equation must not wrap).
    pub(super) fn product(
        &mut self,
        node: &Node,
        x: Operand,
        y: Operand,
    ) -> Result<Operand, CircuitError> {
        let ((xl, xh), (yl, yh)) = (self.bound_of(x), self.bound_of(y));
        let [xl, xh, yl, yh] = [xl, xh, yl, yh].map(i128::from);
        let corners = [xl * yl, xl * yh, xh * yl, xh * yh];
        let (lo, hi) = (
            corners.iter().min().unwrap_or(&0),
            corners.iter().max().unwrap_or(&0),
        );
        if !self
            .budget
            .holds(lo.unsigned_abs().max(hi.unsigned_abs()) as i128)
        {
            return Err(self.overflow(
                node,
                format!("a product of two computed values can reach [{lo}, {hi}]"),
            ));
        }
        Ok(self.arith(x, y, 0, 0, 1, (*lo as i64, *hi as i64)))
    }

    /// `ca*a + cb*b + cab*a*b + c0` with operand folding.
    pub(super) fn arith(
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
    pub(super) fn select(
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
        if !self.budget.can_range_check(width) {
            return Err(self.overflow(
                node,
                format!(
                    "a comparison spans {width} values, more than the {} a range check covers",
                    self.budget.max_range_width
                ),
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

    pub(super) fn max(
        &mut self,
        node: &Node,
        a: Operand,
        b: Operand,
    ) -> Result<Operand, CircuitError> {
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

    pub(super) fn min(
        &mut self,
        node: &Node,
        a: Operand,
        b: Operand,
    ) -> Result<Operand, CircuitError> {
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

    pub(super) fn clamp(
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
    pub(super) fn div(
        &mut self,
        node: &Node,
        n: Operand,
        k: i64,
        d: Operand,
        bound: (i64, i64),
    ) -> Result<Operand, CircuitError> {
        let (dlo, dhi) = self.bound_of(d);
        if dlo <= 0 {
            return Err(self.overflow(node, format!("divisor may be {dlo}, must be positive")));
        }
        if let (Operand::Const(nv), Operand::Const(dv)) = (n, d) {
            return Ok(Operand::Const(round_div(nv * k, dv)));
        }
        let (nlo, nhi) = self.bound_of(n);
        let (q_lo, q_hi) = bound;
        // 2kn + d = 2d*q + r must hold over the integers: both sides stay within the budget.
        let (r_width, q_width) = (2 * dhi as i128, (q_hi - q_lo) as i128 + 1);
        let r_hi_bound = hi_bound_for(2 * dhi);
        let q_hi_bound = hi_bound_for(q_hi - q_lo + 1);
        // q is range-checked on both sides (q - q_lo and q_hi - q), so q_lo..=q_hi is exact.
        let lhs = 2 * k as i128 * nlo.unsigned_abs().max(nhi.unsigned_abs()) as i128 + dhi as i128;
        let rhs = 2 * dhi as i128 * (q_lo.unsigned_abs().max(q_hi.unsigned_abs()) as i128 + 1);
        let budget = self.budget;
        if !(budget.holds(lhs)
            && budget.holds(rhs)
            && budget.can_range_check(r_width)
            && budget.can_range_check(q_width))
        {
            return Err(self.overflow(
                node,
                format!(
                    "division of values up to {lhs} by up to {dhi} does not fit {} exactly",
                    budget.name
                ),
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

    pub(super) fn lookup(
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

    pub(super) fn reduce(
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
