//! Trace generation: gates and cell values → component columns → stwo evaluations, and the
//! LogUp interaction trace.

use stwo::core::fields::m31::BaseField;
use stwo::core::fields::qm31::SecureField;
use stwo::core::poly::circle::CanonicCoset;
use stwo::core::utils::{bit_reverse_index, coset_index_to_circle_domain_index};
use stwo::core::ColumnVec;
use stwo::prover::backend::simd::column::BaseColumn;
use stwo::prover::backend::simd::m31::{PackedM31, LOG_N_LANES};
use stwo::prover::backend::simd::qm31::PackedSecureField;
use stwo::prover::backend::simd::SimdBackend;
use stwo::prover::poly::circle::CircleEvaluation;
use stwo::prover::poly::BitReversedOrder;
use stwo_constraint_framework::{LogupTraceGenerator, Relation};

use crate::air::{
    div, lookup, mac, select, Col, Kind, Lin, Rel, Relations, MAC_LANES, MIN_LOG_SIZE, RANGE_BITS,
};
use crate::field::{m31, P};
use crate::lower::{Circuit, Gate, Operand, LIMB_BITS};

/// The columns of one component, row-major by column, in row order, padded to `2^log_size`.
#[derive(Clone, Debug)]
pub struct ComponentTrace {
    pub kind: Kind,
    pub log_size: u32,
    pub pre: Vec<Vec<i64>>,
    pub main: Vec<Vec<i64>>,
}

impl ComponentTrace {
    fn new(kind: Kind) -> Self {
        ComponentTrace {
            kind,
            log_size: 0,
            pre: vec![Vec::new(); kind.pre_names().len()],
            main: vec![Vec::new(); kind.n_main()],
        }
    }

    fn push(&mut self, pre: &[i64], main: &[i64]) {
        for (c, &v) in self.pre.iter_mut().zip(pre) {
            c.push(v);
        }
        for (c, &v) in self.main.iter_mut().zip(main) {
            c.push(v);
        }
    }

    pub fn rows(&self) -> usize {
        self.pre[0].len()
    }

    /// Pads to a power of two with `pad_pre` / `pad_main` rows.
    fn pad(&mut self, pad_pre: &[i64], pad_main: &[i64]) {
        let log = (self.rows().max(1).next_power_of_two().trailing_zeros()).max(MIN_LOG_SIZE);
        self.log_size = log;
        while self.rows() < 1 << log {
            self.push(pad_pre, pad_main);
        }
    }

    fn value(&self, l: &Lin, row: usize) -> i64 {
        l.terms.iter().fold(l.constant, |acc, (c, col)| {
            let v = match col {
                Col::Pre(i) => self.pre[*i][row],
                Col::Main(i) => self.main[*i][row],
            };
            acc + c * v
        })
    }
}

fn split(v: i64) -> (i64, i64) {
    (v & ((1 << LIMB_BITS) - 1), v >> LIMB_BITS)
}

/// Builds every component's columns. `values` are the cell values from [`Circuit::assign`]; for
/// key generation (preprocessed columns only) pass `None` and the main columns stay empty.
pub fn build(circuit: &Circuit, values: Option<&[i64]>) -> Vec<ComponentTrace> {
    let zeros;
    let v: &[i64] = match values {
        Some(v) => v,
        None => {
            zeros = vec![0i64; circuit.n_cells as usize];
            &zeros
        }
    };
    let reads = |c: u32| circuit.reads[c as usize] as i64;
    let mut macs = ComponentTrace::new(Kind::Mac);
    let mut ariths = ComponentTrace::new(Kind::Arith);
    let mut selects = ComponentTrace::new(Kind::Select);
    let mut divs = ComponentTrace::new(Kind::Div);
    let mut lookups = ComponentTrace::new(Kind::Lookup);
    let limb = 1i64 << LIMB_BITS;
    for g in &circuit.gates {
        match g {
            Gate::Mac { out, terms } => {
                let chunks: Vec<_> = terms.chunks(MAC_LANES).collect();
                let mut acc = 0i64;
                for (i, chunk) in chunks.iter().enumerate() {
                    let last = i + 1 == chunks.len();
                    let mut pre = vec![0i64; 3 + 3 * MAC_LANES];
                    let mut main = vec![0i64; 1 + MAC_LANES];
                    pre[mac::FIRST] = (i == 0) as i64;
                    if last {
                        pre[mac::OUT_ID] = *out as i64;
                        pre[mac::OUT_MULT] = reads(*out);
                    }
                    for (j, &(x, w)) in chunk.iter().enumerate() {
                        pre[mac::x_id(j)] = x as i64;
                        pre[mac::w(j)] = w;
                        pre[mac::x_mult(j)] = 1;
                        main[mac::x(j)] = v[x as usize];
                        acc += v[x as usize] * w;
                    }
                    main[mac::ACC] = acc;
                    macs.push(&pre, &main);
                }
            }
            Gate::Arith {
                out,
                a,
                b,
                ca,
                cb,
                cab,
                c0,
            } => {
                let (ai, am, av) = a.map_or((0, 0, 0), |c| (c as i64, 1, v[c as usize]));
                let (bi, bm, bv) = b.map_or((0, 0, 0), |c| (c as i64, 1, v[c as usize]));
                ariths.push(
                    &[
                        ai,
                        am,
                        bi,
                        bm,
                        *ca,
                        *cb,
                        *cab,
                        *c0,
                        *out as i64,
                        reads(*out),
                    ],
                    &[av, bv, v[*out as usize]],
                );
            }
            Gate::Select {
                out,
                a,
                b,
                p,
                q,
                hi_bound,
            } => {
                let (bi, bm, bc, bv) = match b {
                    Operand::Cell(c) => (*c as i64, 1, 0, v[*c as usize]),
                    Operand::Const(k) => (0, 0, *k, *k),
                };
                let av = v[*a as usize];
                let s = (av >= bv) as i64;
                let (lo, hi) = split(if s == 1 { av - bv } else { bv - av - 1 });
                selects.push(
                    &[
                        *a as i64,
                        1,
                        bi,
                        bm,
                        bc,
                        p[0],
                        p[1],
                        p[2],
                        q[0],
                        q[1],
                        q[2],
                        *out as i64,
                        reads(*out),
                        limb - hi_bound,
                    ],
                    &[av, bv, s, lo, hi, v[*out as usize]],
                );
            }
            Gate::Div {
                out,
                n,
                k,
                d,
                q_lo,
                q_hi,
                q_hi_bound,
                r_hi_bound,
            } => {
                let (di, dm, dc, dv) = match d {
                    Operand::Cell(c) => (*c as i64, 1, 0, v[*c as usize]),
                    Operand::Const(x) => (0, 0, *x, *x),
                };
                let (nv, qv) = (v[*n as usize], v[*out as usize]);
                let r = 2 * k * nv + dv - 2 * dv * qv;
                let t = 2 * dv - 1 - r;
                let (rl, rh) = split(r);
                let (tl, th) = split(t);
                let (ql, qh) = split(qv - q_lo);
                let (ul, uh) = split(q_hi - qv);
                divs.push(
                    &[
                        *n as i64,
                        1,
                        *k,
                        di,
                        dm,
                        dc,
                        -q_lo,
                        q_hi - q_lo,
                        *out as i64,
                        reads(*out),
                        limb - r_hi_bound,
                        limb - q_hi_bound,
                    ],
                    &[nv, dv, qv, rl, rh, tl, th, ql, qh, ul, uh],
                );
            }
            Gate::Lookup { out, x, table } => {
                lookups.push(
                    &[*x as i64, 1, *table as i64, *out as i64, reads(*out)],
                    &[v[*x as usize], v[*out as usize]],
                );
            }
        }
    }
    let mut comps = Vec::new();
    let mut pad_push = |mut c: ComponentTrace, pad_pre: Vec<i64>, pad_main: Vec<i64>| {
        if c.rows() > 0 {
            c.pad(&pad_pre, &pad_main);
            comps.push(c);
        }
    };
    let mut mac_pad = vec![0i64; 3 + 3 * MAC_LANES];
    mac_pad[mac::FIRST] = 1;
    pad_push(macs, mac_pad, vec![0; 1 + MAC_LANES]);
    pad_push(ariths, vec![0; arith_len()], vec![0; 3]);
    let s_main = select::MAIN.iter().map(|n| (*n == "s") as i64).collect();
    pad_push(selects, vec![0; select::PRE.len()], s_main);
    let d_pre = div::PRE.iter().map(|n| (*n == "d_const") as i64).collect();
    let d_main = div::MAIN
        .iter()
        .map(|n| matches!(*n, "d" | "r_lo") as i64)
        .collect();
    pad_push(divs, d_pre, d_main);
    pad_push(
        lookups,
        vec![0; lookup::PRE.len()],
        vec![0; lookup::MAIN.len()],
    );
    let uses_range = comps
        .iter()
        .any(|c| matches!(c.kind, Kind::Select | Kind::Div));
    for (tag, t) in circuit.tables.iter().enumerate() {
        let mut c = ComponentTrace::new(Kind::Table(tag as u32));
        for (i, &y) in t.values.iter().enumerate() {
            c.push(&[t.x_lo + i as i64, y], &[0]);
        }
        // Padding repeats the first entry, so it adds no new (x, y) pair.
        let first = [t.x_lo, t.values[0]];
        c.pad(&first, &[0]);
        comps.push(c);
    }
    if uses_range {
        let mut c = ComponentTrace::new(Kind::Range);
        for i in 0..1i64 << RANGE_BITS {
            c.push(&[i], &[0]);
        }
        c.pad(&[0], &[0]);
        comps.push(c);
    }
    if comps.is_empty() {
        // Pure data movement: no gate, but stwo needs a component. Idle rows add nothing.
        let mut c = ComponentTrace::new(Kind::Arith);
        c.pad(&vec![0; arith_len()], &[0; 3]);
        comps.push(c);
    }
    if values.is_none() {
        for c in &mut comps {
            c.main.iter_mut().for_each(|m| m.clear());
        }
    } else {
        count_multiplicities(circuit, &mut comps);
    }
    comps
}

fn arith_len() -> usize {
    crate::air::arith::PRE.len()
}

/// Fills the range and table components' multiplicity columns from every lookup made. A value
/// that is not in its table cannot be counted: the LogUp sum then fails to vanish and the
/// verifier rejects (the prover does not refuse, so tests can check exactly that).
pub fn count_multiplicities(circuit: &Circuit, comps: &mut [ComponentTrace]) {
    let mut range = vec![0i64; 1 << RANGE_BITS];
    let mut tables: Vec<Vec<i64>> = circuit
        .tables
        .iter()
        .map(|t| vec![0; t.values.len()])
        .collect();
    for c in comps.iter() {
        for spec in c.kind.lookups() {
            if !matches!(c.kind, Kind::Select | Kind::Div | Kind::Lookup) || spec.rel == Rel::Wire {
                continue;
            }
            for row in 0..c.rows() {
                let mult = -c.value(&spec.mult, row);
                if mult == 0 {
                    continue;
                }
                let vals: Vec<i64> = spec.values.iter().map(|l| c.value(l, row)).collect();
                match spec.rel {
                    Rel::Range => {
                        let x = vals[0].rem_euclid(P as i64);
                        if x < 1 << RANGE_BITS {
                            range[x as usize] += mult;
                        }
                    }
                    Rel::Table => {
                        let (tag, x, y) = (vals[0], vals[1], vals[2]);
                        if let Some(t) = circuit.tables.get(tag as usize) {
                            let i = x - t.x_lo;
                            if i >= 0 && (i as usize) < t.values.len() && t.values[i as usize] == y
                            {
                                tables[tag as usize][i as usize] += mult;
                            }
                        }
                    }
                    Rel::Wire => {}
                }
            }
        }
    }
    for c in comps.iter_mut() {
        match c.kind {
            Kind::Range => c.main[0] = range.clone(),
            Kind::Table(t) => {
                let counts = &tables[t as usize];
                c.main[0] = (0..c.rows())
                    .map(|i| counts.get(i).copied().unwrap_or(0))
                    .collect();
            }
            _ => {}
        }
    }
}

/// Column in row (coset) order → SIMD column in the bit-reversed circle-domain order stwo
/// commits, so that the row before row `i` is the mask offset `-1`.
fn to_column(values: &[i64], log_size: u32) -> BaseColumn {
    let n = 1usize << log_size;
    let mut out = vec![BaseField::from_u32_unchecked(0); n];
    for (i, &v) in values.iter().enumerate() {
        out[bit_reverse_index(coset_index_to_circle_domain_index(i, log_size), log_size)] = m31(v);
    }
    BaseColumn::from_iter(out)
}

pub type Evals = ColumnVec<CircleEvaluation<SimdBackend, BaseField, BitReversedOrder>>;

fn evals(cols: &[BaseColumn], log_size: u32) -> Evals {
    let domain = CanonicCoset::new(log_size).circle_domain();
    cols.iter()
        .map(|c| CircleEvaluation::new(domain, c.clone()))
        .collect()
}

/// A component's columns as committed.
pub struct Columns {
    pub kind: Kind,
    pub log_size: u32,
    pub pre: Vec<BaseColumn>,
    pub main: Vec<BaseColumn>,
}

impl Columns {
    pub fn from_trace(t: &ComponentTrace) -> Self {
        Columns {
            kind: t.kind,
            log_size: t.log_size,
            pre: t.pre.iter().map(|c| to_column(c, t.log_size)).collect(),
            main: t.main.iter().map(|c| to_column(c, t.log_size)).collect(),
        }
    }
    pub fn pre_evals(&self) -> Evals {
        evals(&self.pre, self.log_size)
    }
    pub fn main_evals(&self) -> Evals {
        evals(&self.main, self.log_size)
    }

    fn packed(&self, l: &Lin, vec_row: usize) -> PackedM31 {
        let mut acc = PackedM31::broadcast(m31(l.constant));
        for (c, col) in &l.terms {
            let v = match col {
                Col::Pre(i) => self.pre[*i].data[vec_row],
                Col::Main(i) => self.main[*i].data[vec_row],
            };
            acc += if *c == 1 {
                v
            } else {
                v * PackedM31::broadcast(m31(*c))
            };
        }
        acc
    }

    /// The interaction trace and this component's claimed LogUp sum.
    pub fn interaction(&self, rel: &Relations) -> (Evals, SecureField) {
        let specs = self.kind.lookups();
        let mut gen = LogupTraceGenerator::new(self.log_size);
        for pair in specs.chunks(2) {
            let mut col = gen.new_col();
            for vec_row in 0..1 << (self.log_size - LOG_N_LANES) {
                let frac = |s: &crate::air::LookupSpec| -> (PackedSecureField, PackedSecureField) {
                    let mult: PackedSecureField = self.packed(&s.mult, vec_row).into();
                    let vals: Vec<PackedM31> =
                        s.values.iter().map(|l| self.packed(l, vec_row)).collect();
                    let denom: PackedSecureField = match s.rel {
                        Rel::Wire => rel.wire.combine(&vals),
                        Rel::Range => rel.range.combine(&vals),
                        Rel::Table => rel.table.combine(&vals),
                    };
                    (mult, denom)
                };
                let (n0, d0) = frac(&pair[0]);
                if let Some(second) = pair.get(1) {
                    let (n1, d1) = frac(second);
                    col.write_frac(vec_row, n0 * d1 + n1 * d0, d0 * d1);
                } else {
                    col.write_frac(vec_row, n0, d0);
                }
            }
            col.finalize_col();
        }
        gen.finalize_last()
    }
}
