//! The halo2 (PLONKish, BN254 scalar field) arithmetisation of the same gate list the stwo AIR
//! proves.
//!
//! One region of rows over eight advice columns `A B C D ACC L R Y`, five coefficient columns
//! `F0..F4`, a lookup tag column, six selectors and one instance column (public inputs, then
//! public outputs). Every cell has one canonical place (where its gate writes it); every read is
//! a copy constraint to that place, so the permutation argument plays the role of stwo's LogUp
//! wiring. Weights and gate coefficients are fixed columns, which the verifying key commits to;
//! with private weights ([`WeightVisibility::Private`]) the model's MAC and Arith coefficients
//! move to four advice columns `W0..W3` under two more selectors instead.
//!
//! Two lookups run on every usable row: `(TAG, L, Y)` into the tagged table (tag 0: `(v, 0)` for
//! `v < 2^b`, the range table; tag `t >= 1`: activation table `t - 1` as `(x, f(x))`), and `R`
//! as `(0, R, 0)`, the same table's range rows. A value proven in `[0, 2^2b)` is written as
//! `L + 2^b·R` on one row. The limb width `b` (at most 15) is the narrowest the circuit's checks
//! allow ([`limb_bits`]), so a small model's table, and with it the circuit, stays small.
//!
//! Gates (degree 3 with their selector; the Poseidon round, degree 4):
//! - MAC, `ceil(terms/4)` rows: `ACC' = F4·ACC + F0·A + F1·B + F2·C + F3·D` (`W0..W3` for
//!   `F0..F3` with private weights; `F4` = 0 on the first row); the sum lands in `ACC` of the
//!   row after the last, which the next gate may also use (no other gate reads `ACC` on its
//!   first row).
//! - Arith, 1 row: `D = A·B`, `C = F0·A + F1·B + F2·D + F3` (likewise).
//! - Select, 2 rows: `D` boolean (`s = [a >= b]`), `ACC' = F0·A + F1·B + F2`,
//!   `A' = F3·A + F4·B + F0'`, `C = D·ACC' + (1-D)·A'`, and `D·(A-B) + (1-D)·(B-A-1) = L + 2^b·R`.
//! - Div, 3 rows: with `r = L + 2^b·R` on the first: `2·F0·A + B = 2·B·C + r`, and `2B-1-r`
//!   and `C-F1` in `[0, 2^2b)` on the next two. So `0 <= r < 2d` and `q >= q_lo` is an integer
//!   below `q_lo + 2^2b`; with every term far below the modulus the equation then holds over
//!   the integers, which makes `q` exactly `round_div(k·n, d)` (the upper bound M31 needs
//!   against wrap-around is implied here).
//! - Lookup, 1 row: `TAG = 1 + table`, `A = L = x`, `C = Y = f(x)` (the tag gate ties `A` to
//!   `L` and `C` to `Y`, so only `A B C D ACC` take part in copy constraints).
//!
//! Over a 254-bit field nothing wraps: the lowering's proven bounds (checked against the far
//! smaller M31) keep every equation far from the modulus.

use std::collections::HashMap;

use halo2_axiom::circuit::{Cell as H2Cell, Layouter, SimpleFloorPlanner, Value};
use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::halo2curves::ff::Field;
use halo2_axiom::plonk::{
    Advice, Any, Circuit as H2Circuit, Column, ConstraintSystem, Error, Expression, Fixed,
    Instance, Selector, VirtualCells,
};
use halo2_axiom::poly::Rotation;

use crate::lower::{Cell, Circuit, Gate, Operand};

/// Advice columns.
pub const A: usize = 0;
pub const B: usize = 1;
pub const C: usize = 2;
pub const D: usize = 3;
pub const ACC: usize = 4;
pub const L: usize = 5;
pub const R: usize = 6;
pub const Y: usize = 7;
pub const N_ADVICE: usize = 8;
pub const N_COEFF: usize = 5;
/// Columns that take part in copy constraints. Fewer columns, fewer permutation commitments
/// (cheaper on chain): lookup rows take their input in `A` and give their output in `C`, tied
/// to `L` and `Y` by the tag gate.
const EQUALITY: [usize; 5] = [A, B, C, D, ACC];

pub const SEL_MAC: usize = 0;
pub const SEL_ARITH: usize = 1;
pub const SEL_SELECT: usize = 2;
pub const SEL_DIV: usize = 3;
/// Input packing (hashed or private inputs): `ACC' = F1·ACC + 2^15·L + R`, `A = L + F0`,
/// `B = R + F2`, so each input's digit `x - lo` is range-checked by the lookups on `L` and `R`.
pub const SEL_PACK: usize = 4;
/// Poseidon rounds on the state `(A, B)`, round constants in `F0, F1`, `F2` = 1 on full rounds
/// (0 on partial ones), `C = (A+F0)^2`, and `D = (B+F1)^2` on full rounds, 1 on partial ones: one
/// gate (one selector column) for both kinds.
pub const SEL_POSEIDON: usize = 5;
/// With private weights only: MAC and Arith rows of the model's own gates, whose weights come
/// from the advice columns `W0..W3` instead of the fixed `F0..F3` (see [`WeightVisibility`]).
pub const SEL_MAC_W: usize = 6;
pub const SEL_ARITH_W: usize = 7;
pub const N_SEL: usize = 8;
/// Selectors a circuit with fixed weights has (an unused selector would still cost a column).
const N_SEL_FIXED: usize = 6;
/// The private weight columns `W0..W3`: advice columns after `A..Y`, so their commitments are
/// the proof's advice commitments `N_ADVICE..N_ADVICE + N_WEIGHT`.
pub const N_WEIGHT: usize = 4;

/// What a proof shows of the model input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputVisibility {
    /// Every input value is a public value of the proof.
    #[default]
    Public,
    /// Only the Poseidon hash of the input is public (`crate::poseidon::hash_input`).
    Hashed,
    /// Nothing of the input is public; the circuit still proves every value is in range.
    Private,
}

/// How a proof treats the model's weights (the coefficients of its MAC and Arith gates: matrix
/// and convolution weights, biases, folded batch norms, non-foldable constants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightVisibility {
    /// Fixed columns: the verifying key commits to them (binding, not hiding).
    #[default]
    Fixed,
    /// Advice columns `W0..W3`, blinded in every proof; the key holds a hiding commitment to
    /// them, and each proof shows that its `W` columns hold the committed values.
    Private,
}

/// What the constraint system depends on besides the fixed column values: halo2's circuit
/// parameters, recorded in the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub limb_bits: u32,
    pub weights: WeightVisibility,
}

/// The widest limb: two prove a value in `[0, 2^30)`, which covers every range check the
/// lowering emits (its hi-limb bounds stay below 2^14 in units of 2^16). Each circuit uses the
/// narrowest limb its checks allow ([`limb_bits`]): the range table has `2^bits` rows, so a
/// narrow limb lets a small model fit in fewer rows, and the prover's cost is set by the rows.
pub const MAX_LIMB_BITS: u32 = 15;
/// Rows halo2 reserves at the end for blinding (plus one), with a margin.
const RESERVED_ROWS: usize = 16;

/// A place in the region: (advice column, row).
pub type Loc = (usize, usize);

/// The rows of a circuit: fixed parts (coefficients, selectors, tags, copies, tables) from the
/// gate list, advice values from the cell values.
#[derive(Clone, Debug)]
pub struct Layout {
    pub k: u32,
    pub weights: WeightVisibility,
    /// The private weight columns `W0..W3` (all zero with fixed weights).
    pub weight: Vec<Vec<i64>>,
    /// The range-check limb width ([`limb_bits`]): a checked value is `L + 2^bits·R`.
    pub limb_bits: u32,
    pub rows: usize,
    pub advice: Vec<Vec<i64>>,
    pub coeff: Vec<Vec<i64>>,
    pub tag: Vec<i64>,
    pub selectors: Vec<Vec<bool>>,
    pub copies: Vec<(Loc, Loc)>,
    /// Instance order: the public inputs (or their hash, or nothing), then the public outputs.
    pub public: Vec<Loc>,
    pub n_outputs: usize,
    /// The tagged lookup table `(tag, x, y)`.
    pub table: Vec<(i64, i64, i64)>,
    /// Advice cells whose values do not fit an `i64` (packed inputs, Poseidon states).
    pub wide: HashMap<Loc, Fr>,
    /// Coefficient cells likewise (Poseidon round constants): `(coefficient column, row)`.
    pub wide_coeff: HashMap<(usize, usize), Fr>,
}

/// `v = lo + 2^bits·hi`.
fn split(v: i64, bits: u32) -> (i64, i64) {
    (v.rem_euclid(1 << bits), v.div_euclid(1 << bits))
}

/// Bits of the widest value `circuit`'s comparisons and divisions range-check (for an honest
/// witness): `a - b` or `b - a - 1` of a comparison, `r` and `2d - 1 - r` (below `2d`) and
/// `q - q_lo` of a division.
pub fn check_bits(circuit: &Circuit) -> u32 {
    let bound = |o: &Operand| match *o {
        Operand::Cell(c) => circuit.bounds[c as usize],
        Operand::Const(k) => (k, k),
    };
    let widest = circuit.gates.iter().map(|g| match g {
        Gate::Select { a, b, .. } => {
            let (alo, ahi) = circuit.bounds[*a as usize];
            let (blo, bhi) = bound(b);
            ahi.saturating_sub(blo)
                .max(bhi.saturating_sub(alo).saturating_sub(1))
        }
        Gate::Div { d, q_lo, q_hi, .. } => (2 * bound(d).1 - 1).max(q_hi - q_lo),
        _ => 0,
    });
    widest.map(bits).max().unwrap_or(0)
}

fn bits(v: i64) -> u32 {
    64 - v.max(0).leading_zeros()
}

/// The narrowest limb width (bits) for `circuit`'s range checks: two limbs must hold every value
/// [`check_bits`] counts (so honest witnesses fit), and with a hashed or private input one limb
/// must hold each input digit `x - lo`. Narrower limbs never weaken a check: the gate equations
/// pin the exact integer result for any limb width (the values stay far below the 254-bit
/// modulus); the limbs only bound what an honest prover can express.
pub fn limb_bits(circuit: &Circuit, inputs: InputVisibility) -> u32 {
    let digit = if inputs == InputVisibility::Public {
        0
    } else {
        circuit.bounds[..circuit.n_inputs as usize]
            .iter()
            .map(|&(lo, hi)| bits(hi - lo))
            .max()
            .unwrap_or(0)
    };
    check_bits(circuit)
        .div_ceil(2)
        .max(digit)
        .clamp(1, MAX_LIMB_BITS)
}

impl Layout {
    /// Lays out `circuit`; `values` are its cell values (`Circuit::assign`), or `None` for key
    /// generation, where advice is left at zero.
    pub fn new(circuit: &Circuit, values: Option<&[i64]>) -> Layout {
        Layout::with_inputs(circuit, values, InputVisibility::Public)
    }

    /// As [`Layout::with_settings`] with fixed weights.
    pub fn with_inputs(
        circuit: &Circuit,
        values: Option<&[i64]>,
        inputs: InputVisibility,
    ) -> Layout {
        Layout::with_settings(circuit, values, inputs, WeightVisibility::Fixed)
    }

    /// The shape halo2 configures this layout's constraint system with.
    pub fn shape(&self) -> Shape {
        Shape {
            limb_bits: self.limb_bits,
            weights: self.weights,
        }
    }

    /// As [`Layout::new`], with the input shown as `inputs` says and the weights as `weights`
    /// says. A hashed or private input needs every input value within `2^15` of its lower bound
    /// (the prover checks it first).
    pub fn with_settings(
        circuit: &Circuit,
        values: Option<&[i64]>,
        inputs: InputVisibility,
        weights: WeightVisibility,
    ) -> Layout {
        let zeros;
        let v: &[i64] = match values {
            Some(v) => v,
            None => {
                zeros = vec![0; circuit.n_cells as usize];
                &zeros
            }
        };
        let limb_bits = limb_bits(circuit, inputs);
        let private = weights == WeightVisibility::Private;
        let mut b = Builder::default();
        let mut place: Vec<Loc> = vec![(usize::MAX, 0); circuit.n_cells as usize];
        for i in 0..circuit.n_inputs as usize {
            b.grow(i + 1);
            b.advice[A][i] = v[i];
            place[i] = (A, i);
        }
        b.row = circuit.n_inputs as usize;
        // Constants used as operands become cells written by an Arith row, one per value.
        let mut constants: HashMap<i64, Loc> = HashMap::new();
        let mut constant = |b: &mut Builder, k: i64| -> Loc {
            *constants.entry(k).or_insert_with(|| {
                let r = b.take(1);
                b.selectors[SEL_ARITH][r] = true;
                b.coeff[3][r] = k;
                b.advice[C][r] = k;
                (C, r)
            })
        };
        for g in &circuit.gates {
            match g {
                Gate::Mac { out, terms } => {
                    let n = terms.len().div_ceil(4).max(1);
                    let r0 = b.take(n);
                    b.grow(r0 + n + 1);
                    let mut acc = 0i64;
                    for i in 0..n {
                        let r = r0 + i;
                        b.selectors[if private { SEL_MAC_W } else { SEL_MAC }][r] = true;
                        b.coeff[4][r] = (i > 0) as i64;
                        // The first row's ACC may hold the previous MAC's sum: leave it.
                        if i > 0 {
                            b.advice[ACC][r] = acc;
                        }
                        for j in 0..4 {
                            if let Some(&(x, w)) = terms.get(4 * i + j) {
                                if private {
                                    b.weight[j][r] = w;
                                } else {
                                    b.coeff[j][r] = w;
                                }
                                b.advice[A + j][r] = v[x as usize];
                                b.read((A + j, r), x);
                                acc += w * v[x as usize];
                            }
                        }
                    }
                    b.advice[ACC][r0 + n] = acc;
                    place[*out as usize] = (ACC, r0 + n);
                    // The next gate may start on the row that holds the sum.
                    b.row = r0 + n;
                }
                Gate::Arith {
                    out,
                    a,
                    b: bb,
                    ca,
                    cb,
                    cab,
                    c0,
                } => {
                    let r = b.take(1);
                    b.selectors[if private { SEL_ARITH_W } else { SEL_ARITH }][r] = true;
                    let av = a.map_or(0, |c| v[c as usize]);
                    let bv = bb.map_or(0, |c| v[c as usize]);
                    // An absent operand reads as 0: its coefficients are dropped, so the free
                    // advice in its place cannot matter.
                    let coeffs = [
                        if a.is_some() { *ca } else { 0 },
                        if bb.is_some() { *cb } else { 0 },
                        if a.is_some() && bb.is_some() { *cab } else { 0 },
                        *c0,
                    ];
                    let to = if private { &mut b.weight } else { &mut b.coeff };
                    for (col, k) in to.iter_mut().zip(coeffs) {
                        col[r] = k;
                    }
                    if let Some(c) = a {
                        b.advice[A][r] = av;
                        b.read((A, r), *c);
                    }
                    if let Some(c) = bb {
                        b.advice[B][r] = bv;
                        b.read((B, r), *c);
                    }
                    b.advice[D][r] = av * bv;
                    b.advice[C][r] = v[*out as usize];
                    place[*out as usize] = (C, r);
                }
                Gate::Select {
                    out,
                    a,
                    b: bb,
                    p,
                    q,
                    ..
                } => {
                    let bloc = match bb {
                        Operand::Cell(c) => Ok(*c),
                        Operand::Const(k) => Err(constant(&mut b, *k)),
                    };
                    let r = b.take(2);
                    b.selectors[SEL_SELECT][r] = true;
                    let av = v[*a as usize];
                    let bv = match bb {
                        Operand::Cell(c) => v[*c as usize],
                        Operand::Const(k) => *k,
                    };
                    b.advice[A][r] = av;
                    b.read((A, r), *a);
                    b.advice[B][r] = bv;
                    match bloc {
                        Ok(c) => b.read((B, r), c),
                        Err(loc) => b.copies.push(((B, r), loc)),
                    }
                    let s = (av >= bv) as i64;
                    b.advice[D][r] = s;
                    b.coeff[0][r] = p[0];
                    b.coeff[1][r] = p[1];
                    b.coeff[2][r] = p[2];
                    b.coeff[3][r] = q[0];
                    b.coeff[4][r] = q[1];
                    // The second row has no coefficients of its own: one column fewer.
                    b.coeff[0][r + 1] = q[2];
                    b.advice[ACC][r + 1] = p[0] * av + p[1] * bv + p[2];
                    b.advice[A][r + 1] = q[0] * av + q[1] * bv + q[2];
                    let (lo, hi) = split(if s == 1 { av - bv } else { bv - av - 1 }, limb_bits);
                    b.advice[L][r] = lo;
                    b.advice[R][r] = hi;
                    b.advice[C][r] = v[*out as usize];
                    place[*out as usize] = (C, r);
                }
                Gate::Div {
                    out, n, k, d, q_lo, ..
                } => {
                    let dloc = match d {
                        Operand::Cell(c) => Ok(*c),
                        Operand::Const(x) => Err(constant(&mut b, *x)),
                    };
                    let r = b.take(3);
                    b.selectors[SEL_DIV][r] = true;
                    let nv = v[*n as usize];
                    let dv = match d {
                        Operand::Cell(c) => v[*c as usize],
                        Operand::Const(x) => *x,
                    };
                    let qv = v[*out as usize];
                    b.advice[A][r] = nv;
                    b.read((A, r), *n);
                    b.advice[B][r] = dv;
                    match dloc {
                        Ok(c) => b.read((B, r), c),
                        Err(loc) => b.copies.push(((B, r), loc)),
                    }
                    b.advice[C][r] = qv;
                    place[*out as usize] = (C, r);
                    b.coeff[0][r] = *k;
                    b.coeff[1][r] = *q_lo;
                    let rem = 2 * k * nv + dv - 2 * dv * qv;
                    for (i, x) in [rem, 2 * dv - 1 - rem, qv - q_lo].into_iter().enumerate() {
                        let (lo, hi) = split(x, limb_bits);
                        b.advice[L][r + i] = lo;
                        b.advice[R][r + i] = hi;
                    }
                }
                Gate::Lookup { out, x, table } => {
                    let r = b.take(1);
                    b.tag[r] = 1 + *table as i64;
                    b.advice[A][r] = v[*x as usize];
                    b.read((A, r), *x);
                    b.advice[L][r] = v[*x as usize];
                    b.advice[Y][r] = v[*out as usize];
                    b.advice[C][r] = v[*out as usize];
                    place[*out as usize] = (C, r);
                }
            }
        }
        let n_inputs = circuit.n_inputs as usize;
        let hash = if inputs == InputVisibility::Public {
            None
        } else {
            let lo: Vec<i64> = circuit.bounds[..n_inputs].iter().map(|b| b.0).collect();
            let elements = pack_inputs(&mut b, &v[..n_inputs], &lo);
            (inputs == InputVisibility::Hashed).then(|| {
                let cap = constant(&mut b, n_inputs as i64);
                poseidon_sponge(&mut b, cap, n_inputs, &elements)
            })
        };
        // The last gate may end on `b.row` (a MAC's sum).
        let rows = b.row + 1;
        let mut table: Vec<(i64, i64, i64)> = (0..1 << limb_bits).map(|x| (0, x, 0)).collect();
        for (t, tab) in circuit.tables.iter().enumerate() {
            for (i, &y) in tab.values.iter().enumerate() {
                table.push((1 + t as i64, tab.x_lo + i as i64, y));
            }
        }
        let need = rows.max(table.len()) + RESERVED_ROWS;
        let k = need.next_power_of_two().trailing_zeros();
        let copies = b
            .reads
            .iter()
            .map(|&(loc, cell)| (loc, place[cell as usize]))
            .chain(b.copies.iter().copied())
            .collect();
        let shown_inputs: Vec<Loc> = match inputs {
            InputVisibility::Public => (0..n_inputs).map(|i| place[i]).collect(),
            _ => hash.into_iter().collect(),
        };
        let public = shown_inputs
            .into_iter()
            .chain(circuit.outputs.iter().map(|&c| place[c as usize]))
            .collect();
        b.grow(rows);
        Layout {
            k,
            weights,
            weight: b.weight,
            limb_bits,
            rows,
            advice: b.advice,
            coeff: b.coeff,
            tag: b.tag,
            selectors: b.selectors,
            copies,
            public,
            n_outputs: circuit.outputs.len(),
            table,
            wide: b.wide,
            wide_coeff: b.wide_coeff,
        }
    }

    /// The instance column: the public values as field elements.
    pub fn instance_fr(&self) -> Vec<Fr> {
        self.public
            .iter()
            .map(|&(c, r)| {
                self.wide
                    .get(&(c, r))
                    .copied()
                    .unwrap_or_else(|| fr(self.advice[c][r]))
            })
            .collect()
    }

    /// The public values in instance order.
    pub fn instance(&self) -> Vec<i64> {
        self.public
            .iter()
            .map(|&(c, r)| self.advice[c][r])
            .collect()
    }
}

#[derive(Default)]
struct Builder {
    row: usize,
    advice: Vec<Vec<i64>>,
    weight: Vec<Vec<i64>>,
    coeff: Vec<Vec<i64>>,
    tag: Vec<i64>,
    selectors: Vec<Vec<bool>>,
    reads: Vec<(Loc, Cell)>,
    copies: Vec<(Loc, Loc)>,
    wide: HashMap<Loc, Fr>,
    wide_coeff: HashMap<(usize, usize), Fr>,
}

/// Packs the input values (cells `0..n`) two per row into field elements of sixteen 15-bit
/// digits `x - lo` (see `crate::poseidon`); returns where each element ends up.
fn pack_inputs(b: &mut Builder, x: &[i64], lo: &[i64]) -> Vec<Loc> {
    use crate::poseidon::DIGITS_PER_ELEMENT;
    let rows_per = DIGITS_PER_ELEMENT / 2;
    let n_el = x.len().div_ceil(DIGITS_PER_ELEMENT);
    // A fresh row: the previous gate may still own the current one's ACC.
    b.take(1);
    let r0 = b.take(rows_per * n_el);
    let base = Fr::from(1u64 << 15);
    let mut out = Vec::with_capacity(n_el);
    for k in 0..n_el {
        let mut acc = Fr::ZERO;
        for t in 0..rows_per {
            let r = r0 + rows_per * k + t;
            b.selectors[SEL_PACK][r] = true;
            b.coeff[1][r] = if t == 0 { 0 } else { 1 << 30 };
            for (input_col, limb_col, lo_coeff, j) in [
                (A, L, 0, DIGITS_PER_ELEMENT * k + 2 * t),
                (B, R, 2, DIGITS_PER_ELEMENT * k + 2 * t + 1),
            ] {
                let u = match x.get(j) {
                    Some(&xj) => {
                        b.coeff[lo_coeff][r] = lo[j];
                        b.advice[input_col][r] = xj;
                        b.read((input_col, r), j as Cell);
                        xj - lo[j]
                    }
                    None => 0,
                };
                b.advice[limb_col][r] = u;
                acc = acc * base + fr(u);
            }
            b.wide.insert((ACC, r + 1), acc);
        }
        out.push((ACC, r0 + rows_per * (k + 1)));
    }
    out
}

/// Lays out the Poseidon sponge over `elements`, starting from `[n, 0]` (`cap` holds `n`);
/// returns the cell of the hash.
fn poseidon_sponge(b: &mut Builder, cap: Loc, n: usize, elements: &[Loc]) -> Loc {
    use crate::poseidon::{constants, is_full, round, ROUNDS};
    let rc = &constants().round;
    let mut state = [Fr::from(n as u64), Fr::ZERO];
    let mut out_row: Option<usize> = None;
    for &e in elements {
        let value = b.wide.get(&e).copied().unwrap_or(Fr::ZERO);
        let r1 = match out_row {
            None => {
                b.take(1);
                let r1 = b.take(ROUNDS + 1);
                b.copies.push(((A, r1), cap));
                b.copies.push(((B, r1), e));
                r1
            }
            Some(ro) => {
                // Absorb on the previous output row with a MAC: ACC' = B + C, C = the element.
                b.selectors[SEL_MAC][ro] = true;
                b.coeff[1][ro] = 1;
                b.coeff[2][ro] = 1;
                b.wide.insert((C, ro), value);
                b.copies.push(((C, ro), e));
                let r1 = b.take(ROUNDS + 1);
                debug_assert_eq!(r1, ro + 1);
                b.wide.insert((ACC, r1), state[1] + value);
                b.copies.push(((B, r1), (ACC, r1)));
                b.copies.push(((A, r1), (A, ro)));
                r1
            }
        };
        state[1] += value;
        for (r, consts) in rc.iter().enumerate().take(ROUNDS) {
            let row = r1 + r;
            let full = is_full(r);
            b.selectors[SEL_POSEIDON][row] = true;
            b.wide_coeff.insert((0, row), consts[0]);
            b.wide_coeff.insert((1, row), consts[1]);
            b.coeff[2][row] = full as i64;
            b.wide.insert((A, row), state[0]);
            b.wide.insert((B, row), state[1]);
            let x0 = state[0] + consts[0];
            b.wide.insert((C, row), x0.square());
            let x1 = state[1] + consts[1];
            b.wide
                .insert((D, row), if full { x1.square() } else { Fr::ONE });
            round(&mut state, r);
        }
        let ro = r1 + ROUNDS;
        b.wide.insert((A, ro), state[0]);
        b.wide.insert((B, ro), state[1]);
        out_row = Some(ro);
    }
    (B, out_row.expect("a model has inputs"))
}

impl Builder {
    fn len(&self) -> usize {
        self.tag.len()
    }

    fn grow(&mut self, n: usize) {
        if self.advice.is_empty() {
            self.advice = vec![Vec::new(); N_ADVICE];
            self.weight = vec![Vec::new(); N_WEIGHT];
            self.coeff = vec![Vec::new(); N_COEFF];
            self.selectors = vec![Vec::new(); N_SEL];
        }
        if n > self.len() {
            let n = n.max(self.len() * 2).max(1024);
            self.advice.iter_mut().for_each(|c| c.resize(n, 0));
            self.weight.iter_mut().for_each(|c| c.resize(n, 0));
            self.coeff.iter_mut().for_each(|c| c.resize(n, 0));
            self.selectors.iter_mut().for_each(|c| c.resize(n, false));
            self.tag.resize(n, 0);
        }
    }

    /// Reserves `n` rows for a gate (plus one it may look at); returns the first.
    fn take(&mut self, n: usize) -> usize {
        let r = self.row;
        self.row += n;
        self.grow(self.row + 1);
        r
    }

    fn read(&mut self, at: Loc, cell: Cell) {
        self.reads.push((at, cell));
    }
}

pub fn fr(v: i64) -> Fr {
    if v >= 0 {
        Fr::from(v as u64)
    } else {
        -Fr::from(v.unsigned_abs())
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    advice: [Column<Advice>; N_ADVICE],
    coeff: [Column<Fixed>; N_COEFF],
    tag: Column<Fixed>,
    t_tag: Column<Fixed>,
    t_x: Column<Fixed>,
    t_y: Column<Fixed>,
    /// `N_SEL_FIXED` selectors, or `N_SEL` with private weights.
    selectors: Vec<Selector>,
    /// `W0..W3` with private weights, else empty.
    weight: Vec<Column<Advice>>,
    instance: Column<Instance>,
}

/// The halo2 circuit of a layout. Key generation needs its fixed part (coefficients, tables,
/// selectors, copies), the prover its witness; `MockProver` needs both.
pub struct Halo2Circuit<'a> {
    pub layout: &'a Layout,
    pub witness: bool,
    pub fixed: bool,
}

impl H2Circuit<Fr> for Halo2Circuit<'_> {
    type Config = Config;
    type FloorPlanner = SimpleFloorPlanner;
    /// The limb width (the select and division gates recombine `L + 2^bits·R`) and whether the
    /// weights are private (extra advice columns and gates).
    type Params = Shape;

    fn params(&self) -> Shape {
        self.layout.shape()
    }

    fn without_witnesses(&self) -> Self {
        Halo2Circuit {
            layout: self.layout,
            witness: false,
            fixed: true,
        }
    }

    fn configure(meta: &mut ConstraintSystem<Fr>) -> Config {
        Self::configure_with_params(
            meta,
            Shape {
                limb_bits: MAX_LIMB_BITS,
                weights: WeightVisibility::Fixed,
            },
        )
    }

    fn configure_with_params(meta: &mut ConstraintSystem<Fr>, shape: Shape) -> Config {
        let limb_bits = shape.limb_bits;
        let private = shape.weights == WeightVisibility::Private;
        let advice: [Column<Advice>; N_ADVICE] = std::array::from_fn(|_| meta.advice_column());
        // Allocated right after `A..Y`: the proof's advice commitments N_ADVICE.. are theirs.
        let weight: Vec<Column<Advice>> = (0..if private { N_WEIGHT } else { 0 })
            .map(|_| meta.advice_column())
            .collect();
        for c in EQUALITY {
            meta.enable_equality(advice[c]);
        }
        let coeff: [Column<Fixed>; N_COEFF] = std::array::from_fn(|_| meta.fixed_column());
        let [tag, t_tag, t_x, t_y] = std::array::from_fn(|_| meta.fixed_column());
        let selectors: Vec<Selector> = (0..if private { N_SEL } else { N_SEL_FIXED })
            .map(|_| meta.selector())
            .collect();
        let instance = meta.instance_column();
        meta.enable_equality(instance);

        let two = || Expression::Constant(Fr::from(2));
        let one = || Expression::Constant(Fr::ONE);
        let limb = || Expression::Constant(Fr::from(1u64 << limb_bits));
        let digit = || Expression::Constant(Fr::from(1u64 << crate::poseidon::DIGIT_BITS));
        // Every gate reads the current row's advice and coefficients as `a[..]` and `f[..]`.
        let cur = |m: &mut VirtualCells<'_, Fr>| {
            let a: [Expression<Fr>; N_ADVICE] =
                std::array::from_fn(|c| m.query_advice(advice[c], Rotation::cur()));
            let f: [Expression<Fr>; N_COEFF] =
                std::array::from_fn(|c| m.query_fixed(coeff[c], Rotation::cur()));
            (a, f)
        };
        // MAC and Arith rows read their weights from `F0..F3`, or, for the model's own gates
        // with private weights, from `W0..W3` under their own selectors (so structural rows, such
        // as the Poseidon absorb, keep fixed coefficients the key pins).
        let mut weighted = vec![("", SEL_MAC, SEL_ARITH, false)];
        if private {
            weighted.push((" (private weights)", SEL_MAC_W, SEL_ARITH_W, true));
        }
        for (suffix, mac_sel, arith_sel, from_advice) in weighted {
            let weights = |m: &mut VirtualCells<'_, Fr>, f: &[Expression<Fr>; N_COEFF]| {
                let w: [Expression<Fr>; N_WEIGHT] = std::array::from_fn(|j| {
                    if from_advice {
                        m.query_advice(weight[j], Rotation::cur())
                    } else {
                        f[j].clone()
                    }
                });
                w
            };
            meta.create_gate(format!("mac{suffix}"), |m| {
                let s = m.query_selector(selectors[mac_sel]);
                let next = m.query_advice(advice[ACC], Rotation::next());
                let (a, f) = cur(m);
                let [w0, w1, w2, w3] = weights(m, &f);
                let sum = f[4].clone() * a[ACC].clone()
                    + w0 * a[A].clone()
                    + w1 * a[B].clone()
                    + w2 * a[C].clone()
                    + w3 * a[D].clone();
                vec![s * (next - sum)]
            });
            meta.create_gate(format!("arith{suffix}"), |m| {
                let s = m.query_selector(selectors[arith_sel]);
                let (a, f) = cur(m);
                let [w0, w1, w2, w3] = weights(m, &f);
                let [xa, xb, xc, xd, ..] = a;
                vec![
                    s.clone() * (xd.clone() - xa.clone() * xb.clone()),
                    s * (xc - (w0 * xa + w1 * xb + w2 * xd + w3)),
                ]
            });
        }
        meta.create_gate("select", |m| {
            let s = m.query_selector(selectors[SEL_SELECT]);
            let x = m.query_advice(advice[ACC], Rotation::next());
            let y = m.query_advice(advice[A], Rotation::next());
            let (a, f) = cur(m);
            let [f0, f1, f2, f3, f4] = f;
            let f5 = m.query_fixed(coeff[0], Rotation::next());
            let [xa, xb, xc, sel, _, lo, hi, _] = a;
            vec![
                s.clone() * sel.clone() * (one() - sel.clone()),
                s.clone() * (x.clone() - (f0 * xa.clone() + f1 * xb.clone() + f2)),
                s.clone() * (y.clone() - (f3 * xa.clone() + f4 * xb.clone() + f5)),
                s.clone() * (xc - sel.clone() * x - (one() - sel.clone()) * y),
                s * (sel.clone() * (xa.clone() - xb.clone()) + (one() - sel) * (xb - xa - one())
                    - lo
                    - limb() * hi),
            ]
        });
        meta.create_gate("div", |m| {
            let s = m.query_selector(selectors[SEL_DIV]);
            let mut wide = |i: i32| {
                m.query_advice(advice[L], Rotation(i))
                    + limb() * m.query_advice(advice[R], Rotation(i))
            };
            let (rem, t, ql) = (wide(0), wide(1), wide(2));
            let (a, f) = cur(m);
            let [f0, f1, ..] = f;
            let [xn, xd, xq, ..] = a;
            vec![
                s.clone()
                    * (two() * f0 * xn + xd.clone()
                        - two() * xd.clone() * xq.clone()
                        - rem.clone()),
                s.clone() * (two() * xd - one() - rem - t),
                s * (xq - f1 - ql),
            ]
        });
        // On lookup rows (tag >= 1; 0 elsewhere): the input `A` is what `L` looks up, and the
        // output `C` is the `Y` found.
        meta.create_gate("lookup wiring", |m| {
            let t = m.query_fixed(tag, Rotation::cur());
            let (a, _) = cur(m);
            vec![
                t.clone() * (a[A].clone() - a[L].clone()),
                t * (a[C].clone() - a[Y].clone()),
            ]
        });
        meta.create_gate("pack", |m| {
            let s = m.query_selector(selectors[SEL_PACK]);
            let acc_next = m.query_advice(advice[ACC], Rotation::next());
            let (a, f) = cur(m);
            let [f0, f1, f2, ..] = f;
            vec![
                s.clone()
                    * (acc_next - (f1 * a[ACC].clone() + digit() * a[L].clone() + a[R].clone())),
                s.clone() * (a[A].clone() - a[L].clone() - f0),
                s * (a[B].clone() - a[R].clone() - f2),
            ]
        });
        let mds = crate::poseidon::constants().mds;
        // y0 = x0^5 = C²·x0; y1 = D²·x1, which is x1^5 on full rounds and x1 on partial ones.
        meta.create_gate("poseidon round", |m| {
            let s = m.query_selector(selectors[SEL_POSEIDON]);
            let a_next = m.query_advice(advice[A], Rotation::next());
            let b_next = m.query_advice(advice[B], Rotation::next());
            let (a, f) = cur(m);
            let [f0, f1, full, ..] = f;
            let x0 = a[A].clone() + f0;
            let x1 = a[B].clone() + f1;
            let y0 = a[C].clone() * a[C].clone() * x0.clone();
            let y1 = a[D].clone() * a[D].clone() * x1.clone();
            vec![
                s.clone() * (a[C].clone() - x0.clone() * x0),
                s.clone() * full.clone() * (a[D].clone() - x1.clone() * x1),
                s.clone() * (one() - full) * (a[D].clone() - one()),
                s.clone() * (a_next - (y0.clone() * mds[0][0] + y1.clone() * mds[0][1])),
                s * (b_next - (y0 * mds[1][0] + y1 * mds[1][1])),
            ]
        });
        meta.lookup_any("tagged table", |m| {
            vec![
                (
                    m.query_fixed(tag, Rotation::cur()),
                    m.query_fixed(t_tag, Rotation::cur()),
                ),
                (
                    m.query_advice(advice[L], Rotation::cur()),
                    m.query_fixed(t_x, Rotation::cur()),
                ),
                (
                    m.query_advice(advice[Y], Rotation::cur()),
                    m.query_fixed(t_y, Rotation::cur()),
                ),
            ]
        });
        // The range check reuses the tagged table's tag-0 rows `(0, v, 0)`: no column of its own.
        meta.lookup_any("range", |m| {
            let zero = || Expression::Constant(Fr::ZERO);
            vec![
                (zero(), m.query_fixed(t_tag, Rotation::cur())),
                (
                    m.query_advice(advice[R], Rotation::cur()),
                    m.query_fixed(t_x, Rotation::cur()),
                ),
                (zero(), m.query_fixed(t_y, Rotation::cur())),
            ]
        });
        Config {
            advice,
            weight,
            coeff,
            tag,
            t_tag,
            t_x,
            t_y,
            selectors,
            instance,
        }
    }

    fn synthesize(&self, cfg: Config, mut layouter: impl Layouter<Fr>) -> Result<(), Error> {
        let lay = self.layout;
        let (witness, fixed) = (self.witness, self.fixed);
        layouter.assign_region(
            || "ciro",
            |mut region| {
                if witness {
                    for (c, col) in lay.advice.iter().enumerate() {
                        for (r, &x) in col.iter().enumerate().take(lay.rows) {
                            if x != 0 || EQUALITY.contains(&c) {
                                region.assign_advice(cfg.advice[c], r, Value::known(fr(x)));
                            }
                        }
                    }
                    for (&(c, r), &x) in &lay.wide {
                        region.assign_advice(cfg.advice[c], r, Value::known(x));
                    }
                    for (col, values) in cfg.weight.iter().zip(&lay.weight) {
                        for (r, &x) in values.iter().enumerate().take(lay.rows) {
                            if x != 0 {
                                region.assign_advice(*col, r, Value::known(fr(x)));
                            }
                        }
                    }
                }
                if !fixed {
                    return Ok(());
                }
                // The shape, the fixed columns and the copies.
                for (c, col) in lay.coeff.iter().enumerate() {
                    for (r, &x) in col.iter().enumerate().take(lay.rows) {
                        if x != 0 {
                            region.assign_fixed(cfg.coeff[c], r, fr(x));
                        }
                    }
                }
                for (&(c, r), &x) in &lay.wide_coeff {
                    region.assign_fixed(cfg.coeff[c], r, x);
                }
                for (r, &t) in lay.tag.iter().enumerate().take(lay.rows) {
                    if t != 0 {
                        region.assign_fixed(cfg.tag, r, fr(t));
                    }
                }
                for (s, col) in lay.selectors.iter().enumerate() {
                    for (r, &on) in col.iter().enumerate().take(lay.rows) {
                        if on {
                            cfg.selectors[s].enable(&mut region, r)?;
                        }
                    }
                }
                for (r, &(t, x, y)) in lay.table.iter().enumerate() {
                    region.assign_fixed(cfg.t_tag, r, fr(t));
                    region.assign_fixed(cfg.t_x, r, fr(x));
                    region.assign_fixed(cfg.t_y, r, fr(y));
                }
                for &(x, y) in &lay.copies {
                    region.constrain_equal(cell(&cfg, x), cell(&cfg, y));
                }
                Ok(())
            },
        )?;
        for (i, &loc) in lay.public.iter().enumerate() {
            layouter.constrain_instance(cell(&cfg, loc), cfg.instance, i);
        }
        Ok(())
    }
}

fn cell(cfg: &Config, (c, r): Loc) -> H2Cell {
    H2Cell {
        row_offset: r,
        column: Column::<Any>::from(cfg.advice[c]),
    }
}
