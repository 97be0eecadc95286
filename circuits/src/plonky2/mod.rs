//! The plonky2 (PLONK with FRI over Goldilocks, `p = 2^64 - 2^32 + 1`) arithmetisation of the
//! same gate list the stwo AIR and the halo2 circuit prove.
//!
//! Every cell is a plonky2 target. An input cell is a virtual target the prover sets; a cell a
//! gate writes is the output of the plonky2 arithmetic built for that gate, so plonky2's own
//! witness generators compute it and copy constraints carry it to every reader. Where a gate
//! needs a value plonky2 cannot derive (a comparison's bit, a division's quotient and
//! remainder), the prover sets a virtual target from [`Circuit::assign`] ([`Aux`]) and the gate's
//! constraints pin it. One file per gate kind:
//! - `arith`: `out = ca·a + cb·b + cab·a·b + c0` (constants are plonky2 constants).
//! - `mac`: each dot product a chain of `acc' = w·x + acc` (20 per row of plonky2's
//!   arithmetic gate); the weights are gate constants, which the verifying key commits to.
//! - `select`: a boolean `s`, the comparison `s·(a-b) + (1-s)·(b-a-1)` range-checked.
//! - `div`: `2kn + d = 2dq + r` with `r`, `2d-1-r`, `q-q_lo` and `q_hi-q` range-checked.
//! - `lookup`: plonky2 lookup tables of 16-bit limbs of the function's values.
//! - `input`: public inputs, their Poseidon hash, or private inputs range-checked.
//!
//! With private weights, the MAC and Arith coefficients are prover-set targets instead of
//! constants (every one, zeros included, so the circuit shows nothing of them), and the circuit
//! shows a Poseidon commitment to them with four secret blinding elements
//! ([`weights_commitment`]), which the key records.
//!
//! Range checks are collected and placed together at the end (`range`): as limbs looked up in
//! one shared table where that saves rows (40 lookups a row), else plonky2's bit decomposition
//! (one row per check); the gates' high-limb bounds give the width, at most `2^30` under
//! [`FieldBudget::GOLDILOCKS`](crate::FieldBudget::GOLDILOCKS). The FRI folding is chosen per
//! circuit to keep the zero-knowledge blinding small (`fri`).
//!
//! Why nothing wraps: every cell's honest value is an integer of magnitude at most `2^62`
//! (the budget), below `p/2 ≈ 2^63`, so a field element names exactly one such integer. A wrong
//! comparison branch or a negative remainder is a field element above `p - 2^63`, never below
//! `2^30`, so the range checks refuse it; a division's two sides stay within `2^62` given its
//! checked ranges, so `2kn + d = 2dq + r` holds over the integers.

mod arith;
mod div;
pub mod fri;
pub mod input;
mod lookup;
mod mac;
mod range;
pub mod recursion;
mod select;

use std::collections::HashMap;

use plonky2::field::goldilocks_field::GoldilocksField;
use plonky2::field::types::{Field, Field64, PrimeField64};
use plonky2::hash::poseidon::PoseidonHash;
use plonky2::iop::target::Target;
use plonky2::iop::witness::{PartialWitness, WitnessWrite};
use plonky2::plonk::circuit_builder::CircuitBuilder;
use plonky2::plonk::circuit_data::{CircuitConfig, CircuitData};
use plonky2::plonk::config::PoseidonGoldilocksConfig;

use crate::error::CircuitError;
use crate::halo2::InputVisibility;
use crate::lower::{Cell, Circuit, Gate, Operand, LIMB_BITS};

pub type F = GoldilocksField;
/// The extension degree of plonky2's challenges (the quadratic extension of Goldilocks).
pub const D: usize = 2;
pub type C = PoseidonGoldilocksConfig;

/// plonky2's standard configuration (100 conjectured bits: blowup 8, 28 queries, 16 bits of
/// proof of work) with zero-knowledge on: wires and permutation products are blinded. Each
/// circuit replaces the FRI folding with its own ([`fri::folding`]).
pub fn config() -> CircuitConfig {
    CircuitConfig::standard_recursion_zk_config()
}

/// The field element of an integer.
pub fn felt(v: i64) -> F {
    if v >= 0 {
        F::from_canonical_u64(v as u64)
    } else {
        -F::from_canonical_u64(v.unsigned_abs())
    }
}

/// The integer of magnitude below `p/2` a field element names.
pub fn integer(x: F) -> i64 {
    let v = x.to_canonical_u64();
    if v <= F::ORDER / 2 {
        v as i64
    } else {
        -((F::ORDER - v) as i64)
    }
}

/// A value the prover sets, and how it follows from the cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aux {
    /// The cell's value (inputs, a division's quotient).
    Cell(Cell),
    /// `[a >= b]`.
    Bit { a: Cell, b: Operand },
    /// A division's remainder `2kn + d - 2dq`.
    Remainder {
        n: Cell,
        k: i64,
        d: Operand,
        q: Cell,
    },
    /// Private weights: the `i`th coefficient, in the order the gates use them.
    Weight(u32),
    /// Private weights: the `j`th blinding element of their commitment.
    Blind(u8),
}

/// A circuit built for plonky2: its data (keys), and where the prover's values go.
pub struct Plonky2Circuit {
    pub data: CircuitData<F, C, D>,
    /// The target of every cell.
    pub cells: Vec<Target>,
    /// The targets the prover sets.
    pub aux: Vec<(Target, Aux)>,
    /// Private weights: the MAC and Arith coefficients in the order the circuit commits to
    /// them (`None`: they are constants of the circuit).
    pub private_weights: Option<Vec<i64>>,
}

/// The commitment a private-weights circuit shows: Poseidon over the coefficients, then the
/// four secret blinding elements (which make it hiding).
pub fn weights_commitment(weights: &[i64], blinds: [F; 4]) -> [u64; 4] {
    use plonky2::plonk::config::Hasher;
    let felts: Vec<F> = weights.iter().map(|&w| felt(w)).chain(blinds).collect();
    plonky2::hash::poseidon::PoseidonHash::hash_no_pad(&felts)
        .elements
        .map(|e| e.to_canonical_u64())
}

/// The builder's state while the gates are placed.
pub(crate) struct Builder<'c> {
    pub b: CircuitBuilder<F, D>,
    pub circuit: &'c Circuit,
    cells: Vec<Option<Target>>,
    pub aux: Vec<(Target, Aux)>,
    /// Each lowering table's plonky2 lookup tables (one per 16-bit limb of its values).
    pub luts: HashMap<u32, lookup::Limbs>,
    /// Private weights: each coefficient's target and value, in order.
    pub weights: Option<Vec<(Target, i64)>>,
    /// Every range check (a target and its width in bits), placed together at the end.
    ranges: Vec<(Target, usize)>,
}

impl Builder<'_> {
    /// The target of a cell already written (the gate list is in evaluation order).
    pub fn cell(&self, c: Cell) -> Result<Target, CircuitError> {
        self.cells
            .get(c as usize)
            .copied()
            .flatten()
            .ok_or_else(|| {
                CircuitError::Malformed(format!("cell {c} is read before it is written"))
            })
    }

    pub fn operand(&mut self, o: Operand) -> Result<Target, CircuitError> {
        match o {
            Operand::Cell(c) => self.cell(c),
            Operand::Const(v) => Ok(self.b.constant(felt(v))),
        }
    }

    pub fn write(&mut self, c: Cell, t: Target) -> Result<(), CircuitError> {
        let slot = self
            .cells
            .get_mut(c as usize)
            .ok_or_else(|| CircuitError::Malformed(format!("cell {c} is out of range")))?;
        if slot.is_some() {
            return Err(CircuitError::Malformed(format!(
                "cell {c} is written twice"
            )));
        }
        *slot = Some(t);
        Ok(())
    }

    /// A MAC or Arith coefficient: a prover-set target bound by the weight commitment when
    /// the weights are private, else `None` (the caller uses a constant).
    pub fn private_weight(&mut self, v: i64) -> Option<Target> {
        let n = self.weights.as_ref()?.len() as u32;
        let t = self.prover_value(Aux::Weight(n));
        self.weights.as_mut()?.push((t, v));
        Some(t)
    }

    /// A target the prover sets to `aux`'s value.
    pub fn prover_value(&mut self, aux: Aux) -> Target {
        let t = self.b.add_virtual_target();
        self.aux.push((t, aux));
        t
    }

    /// `k·x + c` in one operation of plonky2's arithmetic gate (`k·x·1 + c·1`; operations
    /// share a row when they share `k` and `c`).
    pub fn affine(&mut self, k: i64, x: Target, c: i64) -> Target {
        let one = self.b.one();
        self.b.arithmetic(felt(k), felt(c), x, one, one)
    }

    /// `Σ k·t + c`.
    pub fn linear(&mut self, terms: &[(i64, Target)], c: i64) -> Target {
        let one = self.b.one();
        let mut acc = self.b.constant(felt(c));
        for &(k, t) in terms {
            if k != 0 {
                acc = self.b.arithmetic(felt(k), F::ONE, t, one, acc);
            }
        }
        acc
    }

    /// Proves `0 <= x < 2^b` for a `b` from the width of `hi_bound · 2^16` (a gate's high-limb
    /// bound, as the lowering gives it) up to [`MAX_RANGE_BITS`]: limbs round the width up
    /// (`range`), so a caller may rely on non-negativity below `2^62`, not on the tight bound.
    pub fn range_check(&mut self, x: Target, hi_bound: i64) -> Result<(), CircuitError> {
        self.range_check_bits(x, bits_for(hi_bound as i128) + LIMB_BITS as usize)
    }

    /// Proves `0 <= x < 2^b` for a `b` from `bits` (at least 1: plonky2's zero-bit decomposition
    /// would not constrain `x` at all) up to [`MAX_RANGE_BITS`], as [`Builder::range_check`].
    pub fn range_check_bits(&mut self, x: Target, bits: usize) -> Result<(), CircuitError> {
        let bits = bits.max(1);
        if bits > MAX_RANGE_BITS {
            return Err(CircuitError::Malformed(format!(
                "a range of 2^{bits} values is wider than the 2^{MAX_RANGE_BITS} plonky2's range check proves here"
            )));
        }
        self.ranges.push((x, bits));
        Ok(())
    }
}

/// The rows a circuit will have before blinding: its gates, the lookup rows plonky2 places
/// when it builds (each table, then 40 lookups a row), the public values' hash and gate, and
/// a margin for the constants plonky2 places then (two a row).
fn rows(b: &CircuitBuilder<F, D>) -> usize {
    let config = &b.config;
    let lookups: usize = (0..b.num_luts())
        .map(|i| {
            b.get_lut(i)
                .len()
                .div_ceil(range::table_entries_per_row(config))
                + b.get_lut_lookups(i)
                    .len()
                    .div_ceil(range::lookups_per_row(config))
        })
        .sum();
    let gates = b.num_gates();
    gates + lookups + b.num_public_inputs().div_ceil(8) + 1 + gates / 64 + 16
}

/// The widest range check: the wrong side of a comparison (at most `2^63` below `p`) must
/// never fall inside it.
pub const MAX_RANGE_BITS: usize = 62;

/// The bits that hold values below `n` (`n >= 1`).
pub fn bits_for(n: i128) -> usize {
    (128 - (n.max(1) - 1).leading_zeros()) as usize
}

impl Plonky2Circuit {
    /// Builds the plonky2 circuit of `circuit`, with proofs that show the input as `inputs`
    /// says, and the weights as constants or (`private_weights`) as prover values bound by a
    /// commitment. Public values, in order: the inputs (or the four elements of their Poseidon
    /// hash, or nothing), the outputs, then the weight commitment's four elements.
    pub fn build(
        circuit: &Circuit,
        inputs: InputVisibility,
        private_weights: bool,
    ) -> Result<Self, CircuitError> {
        let mut s = Builder {
            b: CircuitBuilder::new(config()),
            circuit,
            cells: vec![None; circuit.n_cells as usize],
            aux: Vec::new(),
            luts: HashMap::new(),
            weights: private_weights.then(Vec::new),
            ranges: Vec::new(),
        };
        input::build(&mut s, inputs)?;
        for g in &circuit.gates {
            match g {
                Gate::Mac { outs, xs, weights } => mac::build(&mut s, outs, xs, weights)?,
                &Gate::Arith {
                    out,
                    a,
                    b,
                    ca,
                    cb,
                    cab,
                    c0,
                } => arith::build(&mut s, out, a, b, [ca, cb, cab, c0])?,
                &Gate::Select {
                    out,
                    a,
                    b,
                    p,
                    q,
                    hi_bound,
                } => select::build(&mut s, out, a, b, p, q, hi_bound)?,
                &Gate::Div {
                    out,
                    n,
                    k,
                    d,
                    q_lo,
                    q_hi,
                    q_hi_bound,
                    r_hi_bound,
                } => div::build(
                    &mut s,
                    div::Division {
                        out,
                        n,
                        k,
                        d,
                        q_lo,
                        q_hi,
                        q_hi_bound,
                        r_hi_bound,
                    },
                )?,
                &Gate::Lookup { out, x, table } => lookup::build(&mut s, out, x, table)?,
            }
        }
        for &o in &circuit.outputs {
            let t = s.cell(o)?;
            s.b.register_public_input(t);
        }
        let private_weights = match s.weights.take() {
            None => None,
            Some(w) => {
                let mut preimage: Vec<Target> = w.iter().map(|&(t, _)| t).collect();
                for j in 0..4 {
                    preimage.push(s.prover_value(Aux::Blind(j)));
                }
                let h = s.b.hash_n_to_hash_no_pad::<PoseidonHash>(preimage);
                s.b.register_public_inputs(&h.elements);
                Some(w.into_iter().map(|(_, v)| v).collect())
            }
        };
        let cells = s
            .cells
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.ok_or_else(|| CircuitError::Malformed(format!("cell {i} is never written")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = config();
        let widths: Vec<usize> = s.ranges.iter().map(|&(_, bits)| bits).collect();
        let secret = inputs != InputVisibility::Public || private_weights.is_some();
        let plan = range::plan(&config, rows(&s.b), &widths, s.b.num_luts() > 0, secret);
        range::place(&mut s.b, &s.ranges, plan);
        s.b.config.fri_config.reduction_strategy = fri::folding(&config, rows(&s.b));
        let data = s.b.build::<C>();
        Ok(Plonky2Circuit {
            data,
            cells,
            aux: s.aux,
            private_weights,
        })
    }

    /// The prover's values for every cell `values` holds (from [`Circuit::assign`]), and with
    /// private weights the blinding of their commitment.
    pub fn witness(
        &self,
        values: &[i64],
        blinds: Option<[F; 4]>,
    ) -> Result<PartialWitness<F>, CircuitError> {
        let mut pw = PartialWitness::new();
        let op = |o: Operand| match o {
            Operand::Cell(c) => values[c as usize],
            Operand::Const(v) => v,
        };
        for &(t, aux) in &self.aux {
            let v = match aux {
                Aux::Cell(c) => felt(values[c as usize]),
                Aux::Bit { a, b } => felt((values[a as usize] >= op(b)) as i64),
                Aux::Remainder { n, k, d, q } => {
                    let (n, d, q) = (
                        values[n as usize] as i128,
                        op(d) as i128,
                        values[q as usize] as i128,
                    );
                    let r = 2 * k as i128 * n + d - 2 * d * q;
                    felt(i64::try_from(r).map_err(|_| {
                        CircuitError::Witness(format!("a division's remainder {r} leaves i64"))
                    })?)
                }
                Aux::Weight(i) => felt(
                    self.private_weights
                        .as_ref()
                        .and_then(|w| w.get(i as usize).copied())
                        .ok_or_else(|| CircuitError::Witness("no private weights".into()))?,
                ),
                Aux::Blind(j) => blinds.ok_or_else(|| {
                    CircuitError::Witness("private weights need their blinding".into())
                })?[j as usize],
            };
            pw.set_target(t, v)
                .map_err(|e| CircuitError::Witness(e.to_string()))?;
        }
        Ok(pw)
    }

    /// How many public values proofs of this circuit carry.
    pub fn n_public(&self) -> usize {
        self.data.common.num_public_inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private input whose declared range is one value: `x = lo` must still be enforced
    /// (plonky2's zero-bit range check constrains nothing).
    #[test]
    fn a_private_input_of_a_one_value_range_is_pinned() {
        let circuit = Circuit {
            n_cells: 2,
            n_inputs: 1,
            bounds: vec![(5, 5), (10, 10)],
            gates: vec![Gate::Arith {
                out: 1,
                a: Some(0),
                b: None,
                // The output does not depend on the input: only the range check can refuse it.
                ca: 0,
                cb: 0,
                cab: 0,
                c0: 10,
            }],
            tables: vec![],
            outputs: vec![1],
            reads: vec![1, 1],
            origins: vec![],
        };
        let built = Plonky2Circuit::build(&circuit, InputVisibility::Private, false).unwrap();
        let verifies = |x: i64| {
            let pw = built.witness(&[x, 10], None).unwrap();
            let proof =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| built.data.prove(pw)));
            match proof {
                Ok(Ok(p)) => {
                    assert_eq!(p.public_inputs, vec![felt(10)]);
                    built.data.verify(p).is_ok()
                }
                _ => false,
            }
        };
        assert!(verifies(5));
        assert!(
            !verifies(6),
            "an input outside its one-value range verified"
        );
    }
}
