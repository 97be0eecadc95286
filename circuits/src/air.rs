//! The stwo AIR: one component per gate kind, one per lookup table, and the 16-bit range table.
//!
//! Three LogUp relations tie the components together:
//! - `wire(id, value)`: a gate that writes cell `id` adds `reads(id) / (wire(id, value))`, every
//!   read subtracts `1 / wire(id, value)`; public inputs and outputs are added by the verifier.
//!   Cell ids and read counts are preprocessed, so the verification key fixes the graph.
//! - `range(v)`: `v ∈ [0, 2^16)`, served by the range component.
//! - `table(tag, x, y)`: `y = table_tag[x]`, served by one component per table.
//!
//! Weights, constants, cell ids and tables are preprocessed columns: the verification key commits
//! to the model. Every constraint has degree ≤ 3 and every LogUp denominator is linear, so
//! `finalize_logup_in_pairs` keeps the composition within `log_size + 1`.

use num_traits::One;
use stwo::core::fields::m31::BaseField;
use stwo_constraint_framework::preprocessed_columns::PreProcessedColumnId;
use stwo_constraint_framework::{
    relation, EvalAtRow, FrameworkEval, RelationEntry, ORIGINAL_TRACE_IDX,
};

use crate::field::m31;

relation!(WireRelation, 2);
relation!(RangeRelation, 1);
relation!(TableRelation, 3);

/// The relations' random elements, drawn after the main trace is committed.
#[derive(Clone, Debug, PartialEq)]
pub struct Relations {
    pub wire: WireRelation,
    pub range: RangeRelation,
    pub table: TableRelation,
}

impl Relations {
    pub fn draw(channel: &mut impl stwo::core::channel::Channel) -> Self {
        Relations {
            wire: WireRelation::draw(channel),
            range: RangeRelation::draw(channel),
            table: TableRelation::draw(channel),
        }
    }
}

/// Products per MAC row.
pub const MAC_LANES: usize = 4;
/// The range table covers `[0, 2^RANGE_BITS)`.
pub const RANGE_BITS: u32 = 16;
/// Smallest component (SIMD packs 16 rows).
pub const MIN_LOG_SIZE: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Mac,
    Arith,
    Select,
    Div,
    Lookup,
    Table(u32),
    Range,
}

#[derive(Clone, Copy, Debug)]
pub enum Col {
    Pre(usize),
    Main(usize),
}

/// `sum coeff * column + constant`.
#[derive(Clone, Debug)]
pub struct Lin {
    pub terms: Vec<(i64, Col)>,
    pub constant: i64,
}

fn pre(i: usize) -> Lin {
    Lin {
        terms: vec![(1, Col::Pre(i))],
        constant: 0,
    }
}
fn main_(i: usize) -> Lin {
    Lin {
        terms: vec![(1, Col::Main(i))],
        constant: 0,
    }
}
fn neg(l: Lin) -> Lin {
    Lin {
        terms: l.terms.into_iter().map(|(c, x)| (-c, x)).collect(),
        constant: -l.constant,
    }
}
fn constant(c: i64) -> Lin {
    Lin {
        terms: vec![],
        constant: c,
    }
}
fn plus(mut a: Lin, b: Lin) -> Lin {
    a.terms.extend(b.terms);
    a.constant += b.constant;
    a
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rel {
    Wire,
    Range,
    Table,
}

/// One LogUp entry: `mult / rel(values)`.
#[derive(Clone, Debug)]
pub struct LookupSpec {
    pub rel: Rel,
    pub mult: Lin,
    pub values: Vec<Lin>,
}

fn read(id: usize, mult: usize, value: usize) -> LookupSpec {
    LookupSpec {
        rel: Rel::Wire,
        mult: neg(pre(mult)),
        values: vec![pre(id), main_(value)],
    }
}
fn write(id: usize, mult: usize, value: usize) -> LookupSpec {
    LookupSpec {
        rel: Rel::Wire,
        mult: pre(mult),
        values: vec![pre(id), main_(value)],
    }
}
fn range(v: Lin) -> LookupSpec {
    LookupSpec {
        rel: Rel::Range,
        mult: constant(-1),
        values: vec![v],
    }
}

// Column layouts. Mac: pre [first, out_id, out_mult, (x_id, w, x_mult) per lane], main [acc, x per lane].
pub mod mac {
    pub const FIRST: usize = 0;
    pub const OUT_ID: usize = 1;
    pub const OUT_MULT: usize = 2;
    pub const fn x_id(j: usize) -> usize {
        3 + 3 * j
    }
    pub const fn w(j: usize) -> usize {
        4 + 3 * j
    }
    pub const fn x_mult(j: usize) -> usize {
        5 + 3 * j
    }
    pub const ACC: usize = 0;
    pub const fn x(j: usize) -> usize {
        1 + j
    }
}
pub mod arith {
    pub const PRE: [&str; 10] = [
        "a_id", "a_mult", "b_id", "b_mult", "ca", "cb", "cab", "c0", "out_id", "out_mult",
    ];
    pub const MAIN: [&str; 3] = ["a", "b", "out"];
}
pub mod select {
    pub const PRE: [&str; 14] = [
        "a_id", "a_mult", "b_id", "b_mult", "b_const", "pa", "pb", "p0", "qa", "qb", "q0",
        "out_id", "out_mult", "v_shift",
    ];
    pub const MAIN: [&str; 6] = ["a", "b", "s", "v_lo", "v_hi", "out"];
}
pub mod div {
    pub const PRE: [&str; 12] = [
        "n_id", "n_mult", "k", "d_id", "d_mult", "d_const", "q_off", "q_span", "out_id",
        "out_mult", "r_shift", "q_shift",
    ];
    pub const MAIN: [&str; 11] = [
        "n", "d", "q", "r_lo", "r_hi", "t_lo", "t_hi", "q_lo", "q_hi", "u_lo", "u_hi",
    ];
}
pub mod lookup {
    pub const PRE: [&str; 5] = ["x_id", "x_mult", "tag", "out_id", "out_mult"];
    pub const MAIN: [&str; 2] = ["x", "y"];
}

fn idx(names: &[&str], name: &str) -> usize {
    names.iter().position(|n| *n == name).expect("known column")
}

impl Kind {
    pub fn name(&self) -> String {
        match self {
            Kind::Mac => "mac".into(),
            Kind::Arith => "arith".into(),
            Kind::Select => "select".into(),
            Kind::Div => "div".into(),
            Kind::Lookup => "lookup".into(),
            Kind::Table(t) => format!("table{t}"),
            Kind::Range => "range".into(),
        }
    }

    pub fn pre_names(&self) -> Vec<String> {
        match self {
            Kind::Mac => {
                let mut v = vec!["first".to_string(), "out_id".into(), "out_mult".into()];
                for j in 0..MAC_LANES {
                    v.extend([format!("x_id{j}"), format!("w{j}"), format!("x_mult{j}")]);
                }
                v
            }
            Kind::Arith => arith::PRE.iter().map(|s| s.to_string()).collect(),
            Kind::Select => select::PRE.iter().map(|s| s.to_string()).collect(),
            Kind::Div => div::PRE.iter().map(|s| s.to_string()).collect(),
            Kind::Lookup => lookup::PRE.iter().map(|s| s.to_string()).collect(),
            Kind::Table(_) => vec!["x".into(), "y".into()],
            Kind::Range => vec!["value".into()],
        }
    }

    pub fn n_main(&self) -> usize {
        match self {
            Kind::Mac => 1 + MAC_LANES,
            Kind::Arith => arith::MAIN.len(),
            Kind::Select => select::MAIN.len(),
            Kind::Div => div::MAIN.len(),
            Kind::Lookup => lookup::MAIN.len(),
            Kind::Table(_) | Kind::Range => 1,
        }
    }

    /// Preprocessed column ids, unique across components.
    pub fn pre_ids(&self) -> Vec<PreProcessedColumnId> {
        self.pre_names()
            .into_iter()
            .map(|n| PreProcessedColumnId {
                id: format!("{}_{n}", self.name()),
            })
            .collect()
    }

    /// The LogUp entries of one row, in the order they are paired.
    pub fn lookups(&self) -> Vec<LookupSpec> {
        match self {
            Kind::Mac => {
                let mut v = vec![write(mac::OUT_ID, mac::OUT_MULT, mac::ACC)];
                for j in 0..MAC_LANES {
                    v.push(read(mac::x_id(j), mac::x_mult(j), mac::x(j)));
                }
                v
            }
            Kind::Arith => {
                let (p, m) = (&arith::PRE[..], &arith::MAIN[..]);
                vec![
                    read(idx(p, "a_id"), idx(p, "a_mult"), idx(m, "a")),
                    read(idx(p, "b_id"), idx(p, "b_mult"), idx(m, "b")),
                    write(idx(p, "out_id"), idx(p, "out_mult"), idx(m, "out")),
                ]
            }
            Kind::Select => {
                let (p, m) = (&select::PRE[..], &select::MAIN[..]);
                vec![
                    read(idx(p, "a_id"), idx(p, "a_mult"), idx(m, "a")),
                    read(idx(p, "b_id"), idx(p, "b_mult"), idx(m, "b")),
                    write(idx(p, "out_id"), idx(p, "out_mult"), idx(m, "out")),
                    range(main_(idx(m, "v_lo"))),
                    range(main_(idx(m, "v_hi"))),
                    range(plus(main_(idx(m, "v_hi")), pre(idx(p, "v_shift")))),
                ]
            }
            Kind::Div => {
                let (p, m) = (&div::PRE[..], &div::MAIN[..]);
                vec![
                    read(idx(p, "n_id"), idx(p, "n_mult"), idx(m, "n")),
                    read(idx(p, "d_id"), idx(p, "d_mult"), idx(m, "d")),
                    write(idx(p, "out_id"), idx(p, "out_mult"), idx(m, "q")),
                    range(main_(idx(m, "r_lo"))),
                    range(main_(idx(m, "r_hi"))),
                    range(plus(main_(idx(m, "r_hi")), pre(idx(p, "r_shift")))),
                    range(main_(idx(m, "t_lo"))),
                    range(main_(idx(m, "t_hi"))),
                    range(plus(main_(idx(m, "t_hi")), pre(idx(p, "r_shift")))),
                    range(main_(idx(m, "q_lo"))),
                    range(main_(idx(m, "q_hi"))),
                    range(plus(main_(idx(m, "q_hi")), pre(idx(p, "q_shift")))),
                    range(main_(idx(m, "u_lo"))),
                    range(main_(idx(m, "u_hi"))),
                    range(plus(main_(idx(m, "u_hi")), pre(idx(p, "q_shift")))),
                ]
            }
            Kind::Lookup => {
                let (p, m) = (&lookup::PRE[..], &lookup::MAIN[..]);
                vec![
                    read(idx(p, "x_id"), idx(p, "x_mult"), idx(m, "x")),
                    write(idx(p, "out_id"), idx(p, "out_mult"), idx(m, "y")),
                    LookupSpec {
                        rel: Rel::Table,
                        mult: neg(pre(idx(p, "x_mult"))),
                        values: vec![pre(idx(p, "tag")), main_(idx(m, "x")), main_(idx(m, "y"))],
                    },
                ]
            }
            Kind::Table(tag) => vec![LookupSpec {
                rel: Rel::Table,
                mult: main_(0),
                values: vec![constant(*tag as i64), pre(0), pre(1)],
            }],
            Kind::Range => vec![LookupSpec {
                rel: Rel::Range,
                mult: main_(0),
                values: vec![pre(0)],
            }],
        }
    }
}

/// A component of the AIR: its kind and size.
#[derive(Clone, Debug)]
pub struct CiroEval {
    pub kind: Kind,
    pub log_size: u32,
    pub relations: Relations,
}

fn lin<E: EvalAtRow>(l: &Lin, pre: &[E::F], main: &[E::F]) -> E::F {
    let mut acc = E::F::from(m31(l.constant));
    for (c, col) in &l.terms {
        let v = match col {
            Col::Pre(i) => pre[*i].clone(),
            Col::Main(i) => main[*i].clone(),
        };
        acc += if *c == 1 { v } else { v * m31(*c) };
    }
    acc
}

const LIMB: u32 = 1 << 16;

impl FrameworkEval for CiroEval {
    fn log_size(&self) -> u32 {
        self.log_size
    }

    fn max_constraint_log_degree_bound(&self) -> u32 {
        self.log_size + 1
    }

    fn evaluate<E: EvalAtRow>(&self, mut eval: E) -> E {
        let pre: Vec<E::F> = self
            .kind
            .pre_ids()
            .into_iter()
            .map(|id| eval.get_preprocessed_column(id))
            .collect();
        let mut acc_prev = None;
        let main: Vec<E::F> = (0..self.kind.n_main())
            .map(|i| {
                if self.kind == Kind::Mac && i == mac::ACC {
                    let [prev, cur] = eval.next_interaction_mask(ORIGINAL_TRACE_IDX, [-1, 0]);
                    acc_prev = Some(prev);
                    cur
                } else {
                    eval.next_trace_mask()
                }
            })
            .collect();
        let one = || E::F::one();
        let limb = || E::F::from(BaseField::from_u32_unchecked(LIMB));
        match self.kind {
            Kind::Mac => {
                // acc = (1 - first) * acc_prev + sum x_j * w_j
                let mut sum = acc_prev.expect("mac reads acc") * (one() - pre[mac::FIRST].clone());
                for j in 0..MAC_LANES {
                    sum += main[mac::x(j)].clone() * pre[mac::w(j)].clone();
                }
                eval.add_constraint(main[mac::ACC].clone() - sum);
            }
            Kind::Arith => {
                let [a, b, out] = [0, 1, 2].map(|i| main[i].clone());
                let [ca, cb, cab, c0] = [4, 5, 6, 7].map(|i| pre[i].clone());
                eval.add_constraint(out - (ca * a.clone() + cb * b.clone() + cab * a * b + c0));
            }
            Kind::Select => {
                let p = |n| pre[idx(&select::PRE, n)].clone();
                let m = |n| main[idx(&select::MAIN, n)].clone();
                let (a, b, s) = (m("a"), m("b"), m("s"));
                eval.add_constraint((one() - p("b_mult")) * (b.clone() - p("b_const")));
                eval.add_constraint(s.clone() * (s.clone() - one()));
                let c = a.clone() - b.clone();
                let v = s.clone() * c.clone() + (one() - s.clone()) * (-c - one());
                eval.add_constraint(m("v_lo") + m("v_hi") * limb() - v);
                let when_ge = p("pa") * a.clone() + p("pb") * b.clone() + p("p0");
                let when_lt = p("qa") * a + p("qb") * b + p("q0");
                eval.add_constraint(m("out") - s.clone() * when_ge - (one() - s) * when_lt);
            }
            Kind::Div => {
                let p = |n| pre[idx(&div::PRE, n)].clone();
                let m = |n| main[idx(&div::MAIN, n)].clone();
                let (n, d, q) = (m("n"), m("d"), m("q"));
                let r = m("r_lo") + m("r_hi") * limb();
                let t = m("t_lo") + m("t_hi") * limb();
                let two = || E::F::from(BaseField::from_u32_unchecked(2));
                eval.add_constraint((one() - p("d_mult")) * (d.clone() - p("d_const")));
                // 2kn + d = 2dq + r
                eval.add_constraint(
                    p("k") * n * two() + d.clone() - d.clone() * q.clone() * two() - r.clone(),
                );
                // t = 2d - 1 - r, so r < 2d
                eval.add_constraint(t - (d * two() - one() - r));
                // q - q_lo and q_hi - q = q_span - (q - q_lo) split into range-checked limbs
                let qv = m("q_lo") + m("q_hi") * limb();
                eval.add_constraint(q + p("q_off") - qv.clone());
                eval.add_constraint(m("u_lo") + m("u_hi") * limb() - (p("q_span") - qv));
            }
            Kind::Lookup | Kind::Table(_) | Kind::Range => {}
        }
        for spec in self.kind.lookups() {
            let mult = lin::<E>(&spec.mult, &pre, &main);
            let values: Vec<E::F> = spec
                .values
                .iter()
                .map(|l| lin::<E>(l, &pre, &main))
                .collect();
            match spec.rel {
                Rel::Wire => eval.add_to_relation(RelationEntry::new(
                    &self.relations.wire,
                    mult.into(),
                    &values,
                )),
                Rel::Range => eval.add_to_relation(RelationEntry::new(
                    &self.relations.range,
                    mult.into(),
                    &values,
                )),
                Rel::Table => eval.add_to_relation(RelationEntry::new(
                    &self.relations.table,
                    mult.into(),
                    &values,
                )),
            }
        }
        eval.finalize_logup_in_pairs();
        eval
    }
}
