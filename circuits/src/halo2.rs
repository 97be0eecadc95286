//! The halo2 (PLONKish, BN254 scalar field) arithmetisation of the same gate list the stwo AIR
//! proves.
//!
//! One region of rows over six advice columns `A B C D ACC L`, four coefficient columns
//! `F0..F3`, a lookup tag column, five selectors and one instance column (public inputs or their
//! hash, then public outputs), which the first rows' `D` shows. Every cell has one canonical
//! place (where its gate writes it); every read is a copy constraint to that place, so the
//! permutation argument plays the role of stwo's LogUp wiring. Weights and gate coefficients are
//! fixed columns, which the verifying key commits to; with private weights
//! ([`WeightVisibility::Private`]) the model's MAC and Arith coefficients move to four advice
//! columns `W0..W3` under two more selectors instead.
//!
//! Every column and lookup is a commitment (an elliptic-curve multiplication) in the on-chain
//! verifier, so the layout spends rows to save columns. One lookup runs on every usable row:
//! `(TAG, L, TAG·C)` into the tagged table `(tag, x, tag·y)`. Tag 0 is the range table
//! `(0, v, 0)` for `v < 2^b`, where `C` is free; tag `t >= 1` is an activation table `(x, f(x))`,
//! an input range `(x, 0)` for `lo <= x <= hi`, or the public rows' `(0, 0)`, where `C` is the
//! output (`t` is invertible). A value
//! proven in `[0, 2^2b)` is two `L` limbs, `L + 2^b·L'` on two rows. The limb width `b` (at most
//! 15) is the narrowest the circuit's checks allow ([`limb_bits`]), so a small model's table, and
//! with it the circuit, stays small. The lookup's degree (5) also lets three selectors share a
//! fixed column and three columns share a permutation product.
//!
//! Gates (degree 3 with their selector; the Poseidon round, degree 4):
//! - MAC, `ceil(terms/4)` rows: `ACC' = ACC + F0·A + F1·B + F2·C + F3·D` (`W0..W3` for
//!   `F0..F3` with private weights); the sum lands in `ACC` of the row after the last, which the
//!   next gate may also use (no other gate reads `ACC` on its first row). A chain starts from
//!   `ACC` copied from a zero cell, or, on the previous chain's sum row, takes that sum back out
//!   with one more term (copied from it, weight -1).
//! - Arith, 1 row: `D = A·B`, `C = F0·A + F1·B + F2·D + F3` (likewise).
//! - Select, 2 rows: `D` boolean (`s = [a >= b]`), `ACC' = F0·A + F1·B + F2`,
//!   `A' = F3·A + F1'·B + F0'`, `C = D·ACC' + (1-D)·A'`, and
//!   `D·(A-B) + (1-D)·(B-A-1) = L + 2^b·L'`.
//! - Div, 3 rows: `2·F0·A + B = 2·B·C + r`, with `r`, `2B-1-r` and `C-F1` in range: their low
//!   limbs in `L`, `L'`, `L''`, and their high limbs (times `F2`, `F2`, `F3`: `2^b` where the
//!   honest value needs two limbs, else 0) in the `L` of rows 4, 5 and 3 of the gate, which other
//!   gates' rows may share where a limb is not needed. So `0 <= r < 2d` and `q >= q_lo` is an
//!   integer below `q_lo + 2^2b`; with every term far below the modulus the equation then holds
//!   over the integers, which makes `q` exactly `round_div(k·n, d)` (the upper bound M31 needs
//!   against wrap-around is implied here).
//! - Lookup, 1 row: `TAG = 1 + table`, `A = L = x`, `C = f(x)` (the tag gate ties `A` to `L`, so
//!   only `A B C D ACC` take part in copy constraints).
//! - A hashed or private input is range-checked on its own row (`TAG` of its range, `L = A`), and
//!   packed for the hash by MAC rows with the digit weights `2^(15·j)` as coefficients.
//!
//! Over a 254-bit field nothing wraps: the lowering's proven bounds (checked against the far
//! smaller M31) keep every equation far from the modulus.

use std::collections::HashMap;

use halo2_axiom::circuit::{Cell as H2Cell, Layouter, SimpleFloorPlanner, Value};
use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::halo2curves::ff::Field;
use halo2_axiom::plonk::{
    Advice, Any, Circuit as H2Circuit, Column, ConstraintSystem, Error, Expression, Fixed,
    Selector, VirtualCells,
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
pub const N_ADVICE: usize = 6;
pub const N_COEFF: usize = 4;
/// Columns that take part in copy constraints. Fewer columns, fewer permutation commitments
/// (cheaper on chain): lookup rows take their input in `A` (tied to `L` by the tag gate) and give
/// their output in `C`.
const EQUALITY: [usize; 5] = [A, B, C, D, ACC];

pub const SEL_MAC: usize = 0;
pub const SEL_ARITH: usize = 1;
pub const SEL_SELECT: usize = 2;
pub const SEL_DIV: usize = 3;
/// Poseidon rounds on the state `(A, B)`, round constants in `F0, F1`, `F2` = 1 on full rounds
/// (0 on partial ones), `C = (A+F0)^2`, and `D = (B+F1)^2` on full rounds, 1 on partial ones: one
/// gate (one selector) for both kinds.
pub const SEL_POSEIDON: usize = 4;
/// With private weights only: MAC and Arith rows of the model's own gates, whose weights come
/// from the advice columns `W0..W3` instead of the fixed `F0..F3` (see [`WeightVisibility`]).
pub const SEL_MAC_W: usize = 5;
pub const SEL_ARITH_W: usize = 6;
pub const N_SEL: usize = 7;
/// Selectors a circuit with fixed weights has (an unused selector would still cost a column).
const N_SEL_FIXED: usize = 5;
/// The private weight columns `W0..W3`: advice columns after `A..L`, so their commitments are
/// the proof's advice commitments `N_ADVICE..N_ADVICE + N_WEIGHT`.
pub const N_WEIGHT: usize = 4;
/// Where a division's three range-checked values keep their high limbs: the `L` of these rows
/// of the gate (`r`, `2d-1-r`, `q-q_lo`; the low limbs are in rows 0, 1, 2). The quotient's
/// comes first because it is the one most often wide (a rescale's divisor is small).
pub const DIV_HIGH_ROWS: [usize; 3] = [4, 5, 3];
/// The coefficient column (on the gate's first row) that multiplies each of those high limbs:
/// `2^b` where the honest value needs two limbs, else 0. `r` and `2d-1-r` share one, as both are
/// below `2d`.
pub const DIV_HIGH_COEFF: [usize; 3] = [2, 2, 3];

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
/// The constraint system's degree (the lookup's `TAG·C`; see the module documentation).
pub const DEGREE: usize = 5;

/// halo2-axiom caps every constraint system's degree at its `MAX_DEGREE` environment variable
/// (default 5); a lower cap would make keys, provers and verifiers of this circuit disagree with
/// each other. The error to show, if one is set too low.
pub fn degree_cap_error() -> Option<String> {
    let cap = std::env::var("MAX_DEGREE").ok()?;
    match cap.parse::<usize>() {
        Ok(c) if c >= DEGREE => None,
        _ => Some(format!(
            "the MAX_DEGREE environment variable ({cap:?}) caps halo2's constraint degree below the {DEGREE} this circuit needs: unset it"
        )),
    }
}

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
    /// The range-check limb width ([`limb_bits`]): a checked value is `L + 2^bits·L'`.
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
    /// The tagged lookup table `(tag, x, y)` (its third column holds `tag·y`).
    pub table: Vec<(i64, i64, i64)>,
    /// Advice cells whose values do not fit an `i64` (packed inputs, Poseidon states).
    pub wide: HashMap<Loc, Fr>,
    /// Coefficient cells likewise (Poseidon round constants): `(coefficient column, row)`.
    pub wide_coeff: HashMap<(usize, usize), Fr>,
    /// The rows whose `ACC` holds a MAC chain's sum, in order (where each chain ends).
    pub mac_sums: Vec<usize>,
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
/// [`check_bits`] counts (so honest witnesses fit). Narrower limbs never weaken a check: the gate
/// equations pin the exact integer result for any limb width (the values stay far below the
/// 254-bit modulus); the limbs only bound what an honest prover can express.
pub fn limb_bits(circuit: &Circuit) -> u32 {
    check_bits(circuit).div_ceil(2).clamp(1, MAX_LIMB_BITS)
}

/// Whether an honest value up to `max` needs a second limb of `limb_bits` bits.
fn wide(max: i64, limb_bits: u32) -> bool {
    bits(max) > limb_bits
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
        let limb_bits = limb_bits(circuit);
        let private = weights == WeightVisibility::Private;
        let mut b = Builder::default();
        let mut place: Vec<Loc> = vec![(usize::MAX, 0); circuit.n_cells as usize];
        let n_inputs = circuit.n_inputs as usize;
        let n_public = match inputs {
            InputVisibility::Public => n_inputs,
            InputVisibility::Hashed => 1,
            InputVisibility::Private => 0,
        } + circuit.outputs.len();
        // Row `i` of the first `n_public` shows public value `i` in `D`: every tagged row has
        // `D` equal to the instance (zero past the public values), which spares the instance
        // column a permutation commitment. A public input is its own public row: its value is
        // in `D` (tag `tag_public`, with `A = L = 0`). A hashed or private input is range-checked
        // on its own row instead: its value in `A = L`, the tag of its declared range (tables
        // after the activation tables, one per distinct range). Public rows past the inputs
        // carry `tag_public` too.
        let mut input_ranges: Vec<(i64, i64)> = Vec::new();
        // Tag of input range `t`; the one past the last range is the public rows'.
        let input_tag = |t: usize| (1 + circuit.tables.len() + t) as i64;
        for i in 0..n_inputs {
            b.grow(i + 1);
            if inputs == InputVisibility::Public {
                b.advice[D][i] = v[i];
                place[i] = (D, i);
            } else {
                b.advice[A][i] = v[i];
                place[i] = (A, i);
                let range = circuit.bounds[i];
                let t = match input_ranges.iter().position(|&x| x == range) {
                    Some(t) => t,
                    None => {
                        input_ranges.push(range);
                        input_ranges.len() - 1
                    }
                };
                b.tag[i] = input_tag(t);
                b.advice[L][i] = v[i];
            }
        }
        let tag_public = input_tag(input_ranges.len());
        for i in 0..n_public.max(n_inputs) {
            b.grow(i + 1);
            if b.tag[i] == 0 {
                b.tag[i] = tag_public;
            }
        }
        b.row = n_public.max(n_inputs);
        b.l_free = b.row;
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
                    let zero = constant(&mut b, 0);
                    let (r0, cancel) = b.mac_start(terms.len(), zero);
                    let n = (terms.len() + cancel.is_some() as usize).div_ceil(4).max(1);
                    b.take(n);
                    let mut acc = b.advice[ACC][r0];
                    for i in 0..n {
                        let r = r0 + i;
                        b.selectors[if private { SEL_MAC_W } else { SEL_MAC }][r] = true;
                        b.advice[ACC][r] = acc;
                        for j in 0..4 {
                            let k = 4 * i + j;
                            let (x, w) = match (terms.get(k), cancel) {
                                (Some(&(x, w)), _) => {
                                    b.read((A + j, r), x);
                                    (v[x as usize], w)
                                }
                                (None, Some(sum)) if k == terms.len() => {
                                    b.copies.push(((A + j, r), sum));
                                    (b.advice[ACC][r0], -1)
                                }
                                _ => continue,
                            };
                            if private {
                                b.weight[j][r] = w;
                            } else {
                                b.coeff[j][r] = w;
                            }
                            b.advice[A + j][r] = x;
                            acc += w * x;
                        }
                    }
                    b.mac_end(r0 + n);
                    b.advice[ACC][r0 + n] = acc;
                    place[*out as usize] = (ACC, r0 + n);
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
                    let r = b.take_l(2, 2);
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
                    // The second row has no coefficients of its own: one column fewer.
                    b.coeff[1][r + 1] = q[1];
                    b.coeff[0][r + 1] = q[2];
                    b.advice[ACC][r + 1] = p[0] * av + p[1] * bv + p[2];
                    b.advice[A][r + 1] = q[0] * av + q[1] * bv + q[2];
                    let (lo, hi) = split(if s == 1 { av - bv } else { bv - av - 1 }, limb_bits);
                    b.advice[L][r] = lo;
                    b.advice[L][r + 1] = hi;
                    b.advice[C][r] = v[*out as usize];
                    place[*out as usize] = (C, r);
                }
                Gate::Div {
                    out,
                    n,
                    k,
                    d,
                    q_lo,
                    q_hi,
                    ..
                } => {
                    let (dloc, d_hi) = match d {
                        Operand::Cell(c) => (Ok(*c), circuit.bounds[*c as usize].1),
                        Operand::Const(x) => (Err(constant(&mut b, *x)), *x),
                    };
                    // `r` and `2d-1-r` are below `2d`; `q - q_lo` is at most `q_hi - q_lo`.
                    let two_limbs = [
                        wide(2 * d_hi - 1, limb_bits),
                        wide(2 * d_hi - 1, limb_bits),
                        wide(q_hi - q_lo, limb_bits),
                    ];
                    let l_rows = (0..3)
                        .filter(|&i| two_limbs[i])
                        .map(|i| DIV_HIGH_ROWS[i] + 1)
                        .fold(3, usize::max);
                    let r = b.take_l(3, l_rows);
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
                    for i in 0..3 {
                        b.coeff[DIV_HIGH_COEFF[i]][r] =
                            if two_limbs[i] { 1 << limb_bits } else { 0 };
                    }
                    let rem = 2 * k * nv + dv - 2 * dv * qv;
                    for (i, x) in [rem, 2 * dv - 1 - rem, qv - q_lo].into_iter().enumerate() {
                        if two_limbs[i] {
                            let (lo, hi) = split(x, limb_bits);
                            b.advice[L][r + i] = lo;
                            b.advice[L][r + DIV_HIGH_ROWS[i]] = hi;
                        } else {
                            b.advice[L][r + i] = x;
                        }
                    }
                }
                Gate::Lookup { out, x, table } => {
                    let r = b.take_l(1, 1);
                    b.tag[r] = 1 + *table as i64;
                    b.advice[A][r] = v[*x as usize];
                    b.read((A, r), *x);
                    b.advice[L][r] = v[*x as usize];
                    b.advice[C][r] = v[*out as usize];
                    place[*out as usize] = (C, r);
                }
            }
        }
        let hash = (inputs == InputVisibility::Hashed).then(|| {
            let lo: Vec<i64> = circuit.bounds[..n_inputs].iter().map(|b| b.0).collect();
            let one = constant(&mut b, 1);
            let zero = constant(&mut b, 0);
            let elements = pack_inputs(&mut b, &v[..n_inputs], &lo, one, zero);
            let cap = constant(&mut b, n_inputs as i64);
            poseidon_sponge(&mut b, cap, zero, n_inputs, &elements)
        });
        // The last gate may end on `b.row` (a MAC's sum), and a division's high limbs after it.
        let rows = (b.row + 1).max(b.l_free);
        let mut table: Vec<(i64, i64, i64)> = (0..1 << limb_bits).map(|x| (0, x, 0)).collect();
        for (t, tab) in circuit.tables.iter().enumerate() {
            for (i, &y) in tab.values.iter().enumerate() {
                table.push((1 + t as i64, tab.x_lo + i as i64, y));
            }
        }
        for (t, &(lo, hi)) in input_ranges.iter().enumerate() {
            table.extend((lo..=hi).map(|x| (input_tag(t), x, 0)));
        }
        if b.tag.contains(&tag_public) {
            table.push((tag_public, 0, 0));
        }
        let need = rows.max(table.len()) + RESERVED_ROWS;
        let k = need.next_power_of_two().trailing_zeros();
        let mut copies: Vec<(Loc, Loc)> = b
            .reads
            .iter()
            .map(|&(loc, cell)| (loc, place[cell as usize]))
            .chain(b.copies.iter().copied())
            .collect();
        let shown_inputs: Vec<Loc> = match inputs {
            InputVisibility::Public => (0..n_inputs).map(|i| place[i]).collect(),
            _ => hash.into_iter().collect(),
        };
        let public: Vec<Loc> = shown_inputs
            .into_iter()
            .chain(circuit.outputs.iter().map(|&c| place[c as usize]))
            .collect();
        debug_assert_eq!(public.len(), n_public);
        for (i, &(c, r)) in public.iter().enumerate() {
            if (c, r) != (D, i) {
                b.advice[D][i] = b.advice[c][r];
                if let Some(&x) = b.wide.get(&(c, r)) {
                    b.wide.insert((D, i), x);
                }
                copies.push(((D, i), (c, r)));
            }
        }
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
            mac_sums: b.mac_sums,
        }
    }

    /// The instance column: the public values as field elements.
    pub fn instance_fr(&self) -> Vec<Fr> {
        self.public
            .iter()
            .map(|&loc| value_at(&self.advice, &self.wide, loc))
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
    /// The first row the next gate may use.
    row: usize,
    /// The first row whose `L` no gate uses yet (a division's high limbs may lie past `row`).
    l_free: usize,
    /// The rows holding MAC chains' sums, in order.
    mac_sums: Vec<usize>,
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

/// Packs the input values (cells `0..n`, each range-checked on its own row) into field elements
/// of sixteen 15-bit digits `x - lo` (see `crate::poseidon`), one MAC per element: the digit
/// weights `2^(15·j)` are its coefficients, and `-Σ lo·2^(15·j)` weighs the constant cell `one`.
/// Returns where each element ends up.
fn pack_inputs(b: &mut Builder, x: &[i64], lo: &[i64], one: Loc, zero: Loc) -> Vec<Loc> {
    use crate::poseidon::{DIGITS_PER_ELEMENT, DIGIT_BITS};
    let base = Fr::from(1u64 << DIGIT_BITS);
    let mut out = Vec::new();
    for k in 0..x.len().div_ceil(DIGITS_PER_ELEMENT) {
        // (where the term is read from, its value, its weight)
        let mut terms: Vec<(Loc, Fr, Fr)> = Vec::with_capacity(DIGITS_PER_ELEMENT + 1);
        let mut weight = Fr::ONE;
        let mut offset = Fr::ZERO;
        for t in (0..DIGITS_PER_ELEMENT).rev() {
            let j = DIGITS_PER_ELEMENT * k + t;
            if j < x.len() {
                terms.push(((A, j), fr(x[j]), weight));
                offset -= fr(lo[j]) * weight;
            }
            weight *= base;
        }
        terms.push((one, Fr::ONE, offset));
        let (r0, cancel) = b.mac_start(terms.len(), zero);
        let mut acc = Fr::ZERO;
        if let Some(sum) = cancel {
            acc = value_at(&b.advice, &b.wide, sum);
            terms.push((sum, acc, -Fr::ONE));
        }
        let n = terms.len().div_ceil(4);
        b.take(n);
        for (i, row_terms) in terms.chunks(4).enumerate() {
            let r = r0 + i;
            b.selectors[SEL_MAC][r] = true;
            if i > 0 {
                b.wide.insert((ACC, r), acc);
            }
            for (j, &(from, value, w)) in row_terms.iter().enumerate() {
                b.wide_coeff.insert((j, r), w);
                b.wide.insert((A + j, r), value);
                b.copies.push(((A + j, r), from));
                acc += value * w;
            }
        }
        b.mac_end(r0 + n);
        b.wide.insert((ACC, r0 + n), acc);
        out.push((ACC, r0 + n));
    }
    out
}

/// Lays out the Poseidon sponge over `elements`, starting from `[n, 0]` (`cap` holds `n`);
/// returns the cell of the hash.
fn poseidon_sponge(b: &mut Builder, cap: Loc, zero: Loc, n: usize, elements: &[Loc]) -> Loc {
    use crate::poseidon::{constants, is_full, round, ROUNDS};
    let rc = &constants().round;
    let mut state = [Fr::from(n as u64), Fr::ZERO];
    let mut out_row: Option<usize> = None;
    for &e in elements {
        let value = value_at(&b.advice, &b.wide, e);
        let r1 = match out_row {
            None => {
                b.take(1);
                let r1 = b.take(ROUNDS + 1);
                b.copies.push(((A, r1), cap));
                b.copies.push(((B, r1), e));
                r1
            }
            Some(ro) => {
                // Absorb on the previous output row with a MAC: ACC' = 0 + B + C, C = the
                // element.
                b.selectors[SEL_MAC][ro] = true;
                b.copies.push(((ACC, ro), zero));
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

    /// Reserves `n` rows for a gate that writes `L` on its first `l_rows` rows (which may reach
    /// past its `n`); starts where `L` is free. Returns the first row.
    fn take_l(&mut self, n: usize, l_rows: usize) -> usize {
        self.row = self.row.max(self.l_free);
        let r = self.take(n);
        self.l_free = r + l_rows;
        self.grow(self.l_free + 1);
        r
    }

    /// Where a MAC chain of `n_terms` terms starts. Its gate adds each row's terms to `ACC`, so
    /// the chain must start from a known `ACC`: on the previous chain's sum row, one more term
    /// takes that sum back out (returned: read it with weight -1), unless that term would cost
    /// a row; elsewhere (on a fresh row) `ACC` is a copy of the cell `zero`. The caller takes the
    /// rows from the returned one on.
    fn mac_start(&mut self, n_terms: usize, zero: Loc) -> (usize, Option<Loc>) {
        let on_sum = self.mac_sums.last() == Some(&self.row);
        if on_sum && !n_terms.is_multiple_of(4) {
            return (self.row, Some((ACC, self.row)));
        }
        if on_sum {
            self.row += 1;
        }
        self.grow(self.row + 1);
        self.copies.push(((ACC, self.row), zero));
        (self.row, None)
    }

    /// A MAC chain ends with its sum in `ACC` of row `sum`, where the next gate may start.
    fn mac_end(&mut self, sum: usize) {
        self.mac_sums.push(sum);
        self.row = sum;
        self.grow(sum + 1);
    }

    fn read(&mut self, at: Loc, cell: Cell) {
        self.reads.push((at, cell));
    }
}

/// A cell's value: from `wide` where it does not fit an `i64`, else from `advice`.
fn value_at(advice: &[Vec<i64>], wide: &HashMap<Loc, Fr>, (c, r): Loc) -> Fr {
    wide.get(&(c, r))
        .copied()
        .unwrap_or_else(|| fr(advice[c][r]))
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
        // Not in the permutation: tagged rows read it (see the tagged-row gate).
        let instance = meta.instance_column();

        let two = || Expression::Constant(Fr::from(2));
        let one = || Expression::Constant(Fr::ONE);
        let limb = || Expression::Constant(Fr::from(1u64 << limb_bits));
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
                let sum = a[ACC].clone()
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
            let [f0, f1, f2, f3] = f;
            let f4 = m.query_fixed(coeff[1], Rotation::next());
            let f5 = m.query_fixed(coeff[0], Rotation::next());
            let hi = m.query_advice(advice[L], Rotation::next());
            let [xa, xb, xc, sel, _, lo] = a;
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
            let mut l = |i: usize| m.query_advice(advice[L], Rotation(i as i32));
            let low: [Expression<Fr>; 3] = std::array::from_fn(&mut l);
            let high: [Expression<Fr>; 3] = DIV_HIGH_ROWS.map(l);
            let (a, f) = cur(m);
            // `r`, `2d-1-r`, `q-q_lo`: low limb + multiplier · high limb.
            let [rem, t, ql]: [Expression<Fr>; 3] = std::array::from_fn(|i| {
                low[i].clone() + f[DIV_HIGH_COEFF[i]].clone() * high[i].clone()
            });
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
        // On tagged rows (lookups, inputs, public values; tag >= 1, 0 elsewhere): the value `A`
        // is what `L` looks up, and `D` is the instance (the public values on the first rows,
        // zero after them).
        meta.create_gate("tagged rows", |m| {
            let t = m.query_fixed(tag, Rotation::cur());
            let shown = m.query_instance(instance, Rotation::cur());
            let (a, _) = cur(m);
            vec![
                t.clone() * (a[A].clone() - a[L].clone()),
                t * (a[D].clone() - shown),
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
        // `TAG·C`: the output on lookup rows (`tag·f(x)` in the table), and 0 on range rows, where
        // `C` is free. The product makes this lookup (and so the circuit) degree 5.
        meta.lookup_any("tagged table", |m| {
            let t = m.query_fixed(tag, Rotation::cur());
            vec![
                (t.clone(), m.query_fixed(t_tag, Rotation::cur())),
                (
                    m.query_advice(advice[L], Rotation::cur()),
                    m.query_fixed(t_x, Rotation::cur()),
                ),
                (
                    t * m.query_advice(advice[C], Rotation::cur()),
                    m.query_fixed(t_y, Rotation::cur()),
                ),
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
                    region.assign_fixed(cfg.t_y, r, fr(t) * fr(y));
                }
                for &(x, y) in &lay.copies {
                    region.constrain_equal(cell(&cfg, x), cell(&cfg, y));
                }
                Ok(())
            },
        )?;
        Ok(())
    }
}

fn cell(cfg: &Config, (c, r): Loc) -> H2Cell {
    H2Cell {
        row_offset: r,
        column: Column::<Any>::from(cfg.advice[c]),
    }
}
