//! The row builder the chips share: [`Builder`] hands out rows (tracking where `L` is free, as a
//! division's high limbs may reach past its rows), records each cell's canonical place and every
//! read of it, and [`Layout::with_settings`] runs the chips over a circuit's gates in order and
//! collects the result. Also the range-check limb arithmetic (`limb_bits`, `split`).

use std::collections::HashMap;

use halo2_axiom::halo2curves::bn256::Fr;

use super::columns::{AdviceCol, Coeff, Grid, Sel, WeightCol, D};
use super::{arith, div, fr, input, lookup, mac, select, InputVisibility, Shape};
use std::collections::VecDeque;

use super::{WeightVisibility, MAX_LIMB_BITS};
use crate::lower::{Cell, Circuit, Gate, Operand};

/// Rows halo2 reserves at the end for blinding (plus one), with a margin.
const RESERVED_ROWS: usize = 16;

/// A place in the region: (advice column, row).
pub type Loc = (AdviceCol, usize);

/// The rows of a circuit: fixed parts (coefficients, selectors, tags, copies, tables) from the
/// gate list, advice values from the cell values.
#[derive(Clone, Debug)]
pub struct Layout {
    pub k: u32,
    pub weights: WeightVisibility,
    /// The private weight columns `W0..W3` (all zero with fixed weights).
    pub weight: Grid<WeightCol, i64>,
    /// The range-check limb width ([`limb_bits`]): a checked value is `L + 2^bits·L'`.
    pub limb_bits: u32,
    pub rows: usize,
    pub advice: Grid<AdviceCol, i64>,
    pub coeff: Grid<Coeff, i64>,
    pub tag: Vec<i64>,
    pub selectors: Grid<Sel, bool>,
    pub copies: Vec<(Loc, Loc)>,
    /// Instance order: the public inputs (or their hash, or nothing), then the public outputs.
    pub public: Vec<Loc>,
    pub n_outputs: usize,
    /// The tagged lookup table `(tag, x, y)` (its third column holds `tag·y`).
    pub table: Vec<(i64, i64, i64)>,
    /// Advice cells whose values do not fit an `i64` (packed inputs, Poseidon states).
    pub wide: HashMap<Loc, Fr>,
    /// Coefficient cells likewise (Poseidon round constants).
    pub wide_coeff: HashMap<(Coeff, usize), Fr>,
    /// The rows whose `ACC` holds a MAC chain's sum, in order (where each chain ends).
    pub mac_sums: Vec<usize>,
}

/// `v = lo + 2^bits·hi`.
pub(super) fn split(v: i64, bits: u32) -> (i64, i64) {
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
pub(super) fn wide(max: i64, limb_bits: u32) -> bool {
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
    ///
    /// The limb width is the one that needs fewer rows: narrow limbs (two per value) keep the
    /// range table small but give a division up to 8 rows of `L`; whole limbs (one per value)
    /// give it 4 and a table of `2^bits` rows. Models with many divisions take the second.
    pub fn with_settings(
        circuit: &Circuit,
        values: Option<&[i64]>,
        inputs: InputVisibility,
        weights: WeightVisibility,
    ) -> Layout {
        let narrow = limb_bits(circuit);
        let whole = check_bits(circuit).clamp(1, MAX_LIMB_BITS);
        let best = Layout::with_limbs(circuit, values, inputs, weights, narrow);
        if whole == narrow {
            return best;
        }
        let other = Layout::with_limbs(circuit, values, inputs, weights, whole);
        if other.k < best.k {
            other
        } else {
            best
        }
    }

    /// As [`Layout::with_settings`], with range-check limbs of `limb_bits` bits (a key's own).
    pub fn with_limbs(
        circuit: &Circuit,
        values: Option<&[i64]>,
        inputs: InputVisibility,
        weights: WeightVisibility,
        limb_bits: u32,
    ) -> Layout {
        let zeros;
        let v: &[i64] = match values {
            Some(v) => v,
            None => {
                zeros = vec![0; circuit.n_cells as usize];
                &zeros
            }
        };
        let mut b = Builder::new(v, limb_bits, weights);
        let n_inputs = circuit.n_inputs as usize;
        let n_public = match inputs {
            InputVisibility::Public => n_inputs,
            InputVisibility::Hashed => 1,
            InputVisibility::Private => 0,
        } + circuit.outputs.len();
        let input_rows = input::place_inputs(&mut b, circuit, inputs, n_public);
        // Gates that range-check reach past their own rows in `L` (a division by up to 7 rows),
        // which no other gate reads: they take their turn wherever `L` is free while the MAC and
        // arithmetic rows go by, whatever their order in the circuit (every cell is placed
        // before copies are resolved, so halo2 needs no order).
        let uses_l = |g: &&Gate| {
            matches!(
                g,
                Gate::Select { .. } | Gate::Div { .. } | Gate::Lookup { .. }
            )
        };
        let mut waiting: VecDeque<&Gate> = circuit.gates.iter().filter(uses_l).collect();
        let fill_l = |b: &mut Builder, waiting: &mut VecDeque<&Gate>| {
            while b.l_free <= b.row {
                match waiting.pop_front() {
                    Some(g) => place_gate(b, circuit, g),
                    None => break,
                }
            }
        };
        for g in circuit.gates.iter().filter(|g| !uses_l(g)) {
            match g {
                Gate::Mac { outs, xs, weights } => {
                    for (out, terms) in Gate::dot_products(outs, xs, weights) {
                        fill_l(&mut b, &mut waiting);
                        mac::place(&mut b, out, &terms);
                    }
                }
                _ => {
                    fill_l(&mut b, &mut waiting);
                    place_gate(&mut b, circuit, g);
                }
            }
        }
        for g in waiting {
            place_gate(&mut b, circuit, g);
        }
        let hash = (inputs == InputVisibility::Hashed).then(|| input::hash(&mut b, circuit));
        // The last gate may end on `b.row` (a MAC's sum), and a division's high limbs after it.
        let rows = (b.row + 1).max(b.l_free);
        let mut table = lookup::table(circuit, limb_bits);
        input_rows.extend_table(&mut table, &b.tag);
        let need = rows.max(table.len()) + RESERVED_ROWS;
        let k = need.next_power_of_two().trailing_zeros();
        let place =
            |cell: Cell| b.place[cell as usize].expect("a cell is written before it is read");
        let mut copies: Vec<(Loc, Loc)> = b
            .reads
            .iter()
            .map(|&(loc, cell)| (loc, place(cell)))
            .chain(b.copies.iter().copied())
            .collect();
        let shown_inputs: Vec<Loc> = match inputs {
            InputVisibility::Public => (0..n_inputs as Cell).map(place).collect(),
            _ => hash.into_iter().collect(),
        };
        let public: Vec<Loc> = shown_inputs
            .into_iter()
            .chain(circuit.outputs.iter().map(|&c| place(c)))
            .collect();
        debug_assert_eq!(public.len(), n_public);
        // Row `i` shows public value `i` in `D` (see `input::place_inputs`): a public value
        // written elsewhere is copied there.
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

/// The rows under construction, which the chips' `place` functions write.
pub(super) struct Builder<'a> {
    /// The cell values (zeros for key generation).
    pub values: &'a [i64],
    pub limb_bits: u32,
    /// Where the model's MAC and Arith weights go: `F0..F3` or `W0..W3`.
    pub weights: WeightVisibility,
    /// The first row the next gate may use.
    pub row: usize,
    /// The first row whose `L` no gate uses yet (a division's high limbs may lie past `row`).
    pub l_free: usize,
    /// The rows holding MAC chains' sums, in order.
    pub mac_sums: Vec<usize>,
    pub advice: Grid<AdviceCol, i64>,
    pub weight: Grid<WeightCol, i64>,
    pub coeff: Grid<Coeff, i64>,
    pub tag: Vec<i64>,
    pub selectors: Grid<Sel, bool>,
    /// Cell reads, resolved to copies of the cell's place once every cell is placed.
    pub reads: Vec<(Loc, Cell)>,
    pub copies: Vec<(Loc, Loc)>,
    pub wide: HashMap<Loc, Fr>,
    pub wide_coeff: HashMap<(Coeff, usize), Fr>,
    /// Each cell's canonical place (where its gate writes it).
    pub place: Vec<Option<Loc>>,
    /// The cells holding constant operands (see `arith::constant`).
    pub constants: HashMap<i64, Loc>,
}

impl<'a> Builder<'a> {
    fn new(values: &'a [i64], limb_bits: u32, weights: WeightVisibility) -> Self {
        Builder {
            values,
            limb_bits,
            weights,
            row: 0,
            l_free: 0,
            mac_sums: Vec::new(),
            advice: Grid::new(),
            weight: Grid::new(),
            coeff: Grid::new(),
            tag: Vec::new(),
            selectors: Grid::new(),
            reads: Vec::new(),
            copies: Vec::new(),
            wide: HashMap::new(),
            wide_coeff: HashMap::new(),
            place: vec![None; values.len()],
            constants: HashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.tag.len()
    }

    /// Makes sure the columns have at least `n` rows.
    pub fn grow(&mut self, n: usize) {
        if n > self.len() {
            let n = n.max(self.len() * 2).max(1024);
            self.advice.resize(n, 0);
            self.weight.resize(n, 0);
            self.coeff.resize(n, 0);
            self.selectors.resize(n, false);
            self.tag.resize(n, 0);
        }
    }

    /// Reserves `n` rows for a gate (plus one it may look at); returns the first.
    pub fn take(&mut self, n: usize) -> usize {
        let r = self.row;
        self.row += n;
        self.grow(self.row + 1);
        r
    }

    /// Reserves `n` rows for a gate that writes `L` on its first `l_rows` rows (which may reach
    /// past its `n`); starts where `L` is free. Returns the first row.
    pub fn take_l(&mut self, n: usize, l_rows: usize) -> usize {
        self.row = self.row.max(self.l_free);
        let r = self.take(n);
        self.l_free = r + l_rows;
        self.grow(self.l_free + 1);
        r
    }

    /// The value of cell `cell`.
    pub fn value(&self, cell: Cell) -> i64 {
        self.values[cell as usize]
    }

    /// Records that `cell` is written at `at` (its canonical place).
    pub fn write(&mut self, at: Loc, cell: Cell) {
        self.place[cell as usize] = Some(at);
    }

    /// Records that `at` reads `cell` (a copy of the cell's place).
    pub fn read(&mut self, at: Loc, cell: Cell) {
        self.reads.push((at, cell));
    }

    /// The value at `at` as a field element.
    pub fn value_at(&self, at: Loc) -> Fr {
        value_at(&self.advice, &self.wide, at)
    }
}

/// Places one gate.
fn place_gate(b: &mut Builder, circuit: &Circuit, g: &Gate) {
    match g {
        Gate::Mac { outs, xs, weights } => {
            for (out, terms) in Gate::dot_products(outs, xs, weights) {
                mac::place(b, out, &terms);
            }
        }
        Gate::Arith {
            out,
            a,
            b: bb,
            ca,
            cb,
            cab,
            c0,
        } => arith::place(b, *out, [*a, *bb], [*ca, *cb, *cab, *c0]),
        Gate::Select {
            out,
            a,
            b: bb,
            p,
            q,
            ..
        } => select::place(b, *out, *a, *bb, *p, *q),
        Gate::Div {
            out,
            n,
            k,
            d,
            q_lo,
            q_hi,
            ..
        } => {
            let division = div::Division {
                out: *out,
                n: *n,
                k: *k,
                d: *d,
                q_lo: *q_lo,
                q_hi: *q_hi,
            };
            div::place(b, &circuit.bounds, division)
        }
        Gate::Lookup { out, x, table } => lookup::place(b, *out, *x, *table),
    }
}

/// A cell's value: from `wide` where it does not fit an `i64`, else from `advice`.
fn value_at(advice: &Grid<AdviceCol, i64>, wide: &HashMap<Loc, Fr>, (c, r): Loc) -> Fr {
    wide.get(&(c, r))
        .copied()
        .unwrap_or_else(|| fr(advice[c][r]))
}
