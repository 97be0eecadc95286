//! The input rows. Row `i` of the first `n_public` shows public value `i` in `D`: every tagged
//! row has `D` equal to the instance (zero past the public values; see the tag gate in
//! [`super::lookup`]), which spares the instance column a permutation commitment. A public input
//! is its own public row: its value is in `D` (the public rows' tag, with `A = L = 0`). A hashed
//! or private input is range-checked on its own row instead: its value in `A = L`, the tag of its
//! declared range (tables after the activation tables, one per distinct range), and packed for
//! the hash by MAC rows with the digit weights `2^(15·j)` as coefficients. Public rows past the
//! inputs carry the public rows' tag too.

use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::halo2curves::ff::Field;

use super::columns::{A, ACC, COEFFS, D, L, SEL_MAC, TERMS};
use super::layout::{Builder, Loc};
use super::{arith, fr, mac, poseidon_chip, InputVisibility};
use crate::lower::{Cell, Circuit};

/// The input ranges' tags, which the table needs.
pub(super) struct InputRows {
    /// The distinct declared ranges of range-checked inputs, in order of first use.
    ranges: Vec<(i64, i64)>,
    /// The first range's tag (after the activation tables').
    first_tag: usize,
}

impl InputRows {
    /// Tag of input range `t`; the one past the last range is the public rows'.
    fn tag(&self, t: usize) -> i64 {
        (self.first_tag + t) as i64
    }

    fn tag_public(&self) -> i64 {
        self.tag(self.ranges.len())
    }

    /// Appends each input range `(tag, x, 0)` for `lo <= x <= hi`, and the public rows'
    /// `(tag, 0, 0)` if a row (`tag`, the layout's tag column) uses it.
    pub(super) fn extend_table(&self, table: &mut Vec<(i64, i64, i64)>, tag: &[i64]) {
        for (t, &(lo, hi)) in self.ranges.iter().enumerate() {
            table.extend((lo..=hi).map(|x| (self.tag(t), x, 0)));
        }
        let tag_public = self.tag_public();
        if tag.contains(&tag_public) {
            table.push((tag_public, 0, 0));
        }
    }
}

/// Lays out the input and public rows (the first `max(n_public, n_inputs)`), where the gates'
/// rows start after.
pub(super) fn place_inputs(
    b: &mut Builder,
    circuit: &Circuit,
    inputs: InputVisibility,
    n_public: usize,
) -> InputRows {
    let n_inputs = circuit.n_inputs as usize;
    let mut rows = InputRows {
        ranges: Vec::new(),
        first_tag: 1 + circuit.tables.len(),
    };
    for i in 0..n_inputs {
        b.grow(i + 1);
        let v = b.value(i as Cell);
        if inputs == InputVisibility::Public {
            b.advice[D][i] = v;
            b.write((D, i), i as Cell);
        } else {
            b.advice[A][i] = v;
            b.write((A, i), i as Cell);
            let range = circuit.bounds[i];
            let t = match rows.ranges.iter().position(|&x| x == range) {
                Some(t) => t,
                None => {
                    rows.ranges.push(range);
                    rows.ranges.len() - 1
                }
            };
            b.tag[i] = rows.tag(t);
            b.advice[L][i] = v;
        }
    }
    let tag_public = rows.tag_public();
    for i in 0..n_public.max(n_inputs) {
        b.grow(i + 1);
        if b.tag[i] == 0 {
            b.tag[i] = tag_public;
        }
    }
    b.row = n_public.max(n_inputs);
    b.l_free = b.row;
    rows
}

/// Lays out the hash of the input (cells `0..n_inputs`, range-checked on their own rows): the
/// packing MACs, then the Poseidon sponge. Returns the cell of the hash.
pub(super) fn hash(b: &mut Builder, circuit: &Circuit) -> Loc {
    let n_inputs = circuit.n_inputs as usize;
    let lo: Vec<i64> = circuit.bounds[..n_inputs].iter().map(|b| b.0).collect();
    let one = arith::constant(b, 1);
    let zero = arith::constant(b, 0);
    let values = b.values;
    let elements = pack(b, &values[..n_inputs], &lo, one, zero);
    let cap = arith::constant(b, n_inputs as i64);
    poseidon_chip::sponge(b, cap, zero, n_inputs, &elements)
}

/// Packs the input values (cells `0..n`, each range-checked on its own row) into field elements
/// of sixteen 15-bit digits `x - lo` (see `crate::poseidon`), one MAC per element: the digit
/// weights `2^(15·j)` are its coefficients, and `-Σ lo·2^(15·j)` weighs the constant cell `one`.
/// Returns where each element ends up.
fn pack(b: &mut Builder, x: &[i64], lo: &[i64], one: Loc, zero: Loc) -> Vec<Loc> {
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
        let (r0, cancel) = mac::chain_start(b, terms.len(), zero);
        let mut acc = Fr::ZERO;
        if let Some(sum) = cancel {
            acc = b.value_at(sum);
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
                b.wide_coeff.insert((COEFFS[j], r), w);
                b.wide.insert((TERMS[j], r), value);
                b.copies.push(((TERMS[j], r), from));
                acc += value * w;
            }
        }
        mac::chain_end(b, r0 + n);
        b.wide.insert((ACC, r0 + n), acc);
        out.push((ACC, r0 + n));
    }
    out
}
