//! Range checks `0 <= x < 2^bits`, placed after every gate so that they can share one table.
//!
//! Each check is either plonky2's bit decomposition (one row of its `BaseSumGate` per check), or,
//! when a table pays for itself, `x` split into `w`-bit limbs: the prover sets the limbs
//! ([`LimbSplit`]), each is looked up in the table of `0..2^w` (plonky2's lookup argument, 40
//! lookups a row) and `x = Σ limb_j·2^(w·j)` is an arithmetic constraint (20 a row). A check of
//! at most `w` bits looks `x` up directly. [`plan`] picks `w` (or no table) for the fewest rows.
//!
//! The limbs bound `x` by `2^(w·limbs)`, a little more than asked: every caller checks the two
//! sides of a range, or a value whose wrong alternative is negative (a field element within
//! `2^63` of `p`), so what a check must do is refuse field elements from `2^62` up, which any
//! width up to [`MAX_RANGE_BITS`] does; a check that rounds past it is decomposed in bits.

use std::sync::Arc;

use plonky2::field::types::{Field, PrimeField64};
use plonky2::iop::generator::{GeneratedValues, SimpleGenerator};
use plonky2::iop::target::Target;
use plonky2::iop::witness::{PartitionWitness, Witness, WitnessWrite};
use plonky2::plonk::circuit_builder::CircuitBuilder;
use plonky2::plonk::circuit_data::{CircuitConfig, CommonCircuitData};
use plonky2::util::serialization::{Buffer, IoResult, Read, Write};

use super::{fri, D, F, MAX_RANGE_BITS};

/// Entries of a lookup table per row (plonky2's `LookupTableGate`: 3 routed wires each).
pub fn table_entries_per_row(config: &CircuitConfig) -> usize {
    config.num_routed_wires / 3
}

/// Lookups per row (plonky2's `LookupGate`: 2 routed wires each).
pub fn lookups_per_row(config: &CircuitConfig) -> usize {
    config.num_routed_wires / 2
}

/// Operations per row of plonky2's arithmetic gate (4 routed wires each).
fn ops_per_row(config: &CircuitConfig) -> usize {
    config.num_routed_wires / 4
}

/// How the range checks are placed: `None` decomposes each in bits, `Some(w)` uses `w`-bit
/// limbs and a table of `2^w` entries.
pub type Plan = Option<usize>;

/// The widest limb: plonky2's lookup tables hold 16-bit values.
const MAX_LIMB_BITS: usize = 16;

/// The rows `checks` (their widths in bits) take under `plan`.
pub fn rows(config: &CircuitConfig, checks: &[usize], plan: Plan) -> usize {
    let Some(w) = plan else {
        return checks.len();
    };
    let (mut lookups, mut ops, mut decomposed) = (0, 0, 0);
    for &bits in checks {
        let limbs = bits.div_ceil(w);
        if limbs * w > MAX_RANGE_BITS {
            decomposed += 1;
        } else {
            lookups += limbs;
            ops += limbs - 1;
        }
    }
    (1usize << w).div_ceil(table_entries_per_row(config))
        + lookups.div_ceil(lookups_per_row(config))
        + ops.div_ceil(ops_per_row(config))
        + decomposed
}

/// The plan that gives the smallest circuit, for `checks` after `rows_before` rows of gates:
/// the fewest padded rows, then no new table (a circuit without lookups has no lookup
/// argument to prove), then the fewest rows.
///
/// A circuit whose witness is secret (a hashed or private input, private weights) gets no
/// table: plonky2 1.1 does not blind its lookup polynomials (they are opened at `ζ` and at every
/// FRI query point like the blinded ones), so a table would expose combinations of the limbs
/// of secret values.
pub fn plan(
    config: &CircuitConfig,
    rows_before: usize,
    checks: &[usize],
    has_luts: bool,
    secret_witness: bool,
) -> Plan {
    if secret_witness {
        return None;
    }
    let candidates = std::iter::once(None).chain((1..=MAX_LIMB_BITS).map(Some));
    candidates
        .min_by_key(|&p| {
            let rows = rows_before + rows(config, checks, p);
            (
                fri::smallest_degree_bits(config, rows),
                p.is_some() && !has_luts,
                rows,
            )
        })
        .flatten()
}

/// Places `checks` (a target and its width in bits) under `plan`; returns the limbs each check
/// was split into, each with its lookup's output (none where `x` itself is looked up or
/// decomposed in bits).
pub fn place(
    b: &mut CircuitBuilder<F, D>,
    checks: &[(Target, usize)],
    plan: Plan,
) -> Vec<Vec<[Target; 2]>> {
    let Some(w) = plan else {
        for &(x, bits) in checks {
            b.range_check(x, bits);
        }
        return vec![Vec::new(); checks.len()];
    };
    let table: Vec<(u16, u16)> = (0..1u32 << w).map(|i| (i as u16, i as u16)).collect();
    let lut = b.add_lookup_table_from_pairs(Arc::new(table));
    let one = b.one();
    let mut split = Vec::with_capacity(checks.len());
    for &(x, bits) in checks {
        let n = bits.div_ceil(w);
        if n * w > MAX_RANGE_BITS {
            b.range_check(x, bits);
            split.push(Vec::new());
            continue;
        }
        if n == 1 {
            b.add_lookup_from_index(x, lut);
            split.push(Vec::new());
            continue;
        }
        let limbs = b.add_virtual_targets(n);
        b.add_simple_generator(LimbSplit {
            x,
            limbs: limbs.clone(),
            w,
        });
        let looked: Vec<[Target; 2]> = limbs
            .iter()
            .map(|&l| [l, b.add_lookup_from_index(l, lut)])
            .collect();
        let mut acc = limbs[0];
        for (j, &l) in limbs.iter().enumerate().skip(1) {
            acc = b.arithmetic(F::from_canonical_u64(1 << (w * j)), F::ONE, l, one, acc);
        }
        b.connect(x, acc);
        split.push(looked);
    }
    split
}

/// Sets the `w`-bit limbs of `x`, lowest first (for an `x` out of range they do not add up to
/// it, and the prover fails).
#[derive(Debug, Default)]
pub struct LimbSplit {
    x: Target,
    limbs: Vec<Target>,
    w: usize,
}

impl SimpleGenerator<F, D> for LimbSplit {
    fn id(&self) -> String {
        "CiroLimbSplit".into()
    }

    fn dependencies(&self) -> Vec<Target> {
        vec![self.x]
    }

    fn run_once(
        &self,
        witness: &PartitionWitness<F>,
        out: &mut GeneratedValues<F>,
    ) -> anyhow::Result<()> {
        let x = witness.get_target(self.x).to_canonical_u64();
        let mask = (1u64 << self.w) - 1;
        for (j, &l) in self.limbs.iter().enumerate() {
            let limb = x.checked_shr((self.w * j) as u32).unwrap_or(0) & mask;
            out.set_target(l, F::from_canonical_u64(limb))?;
        }
        Ok(())
    }

    fn serialize(&self, dst: &mut Vec<u8>, _: &CommonCircuitData<F, D>) -> IoResult<()> {
        dst.write_target(self.x)?;
        dst.write_target_vec(&self.limbs)?;
        dst.write_usize(self.w)
    }

    fn deserialize(src: &mut Buffer, _: &CommonCircuitData<F, D>) -> IoResult<Self> {
        Ok(LimbSplit {
            x: src.read_target()?,
            limbs: src.read_target_vec()?,
            w: src.read_usize()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use plonky2::iop::generator::generate_partial_witness;
    use plonky2::iop::witness::PartialWitness;
    use plonky2::plonk::prover::prove_with_partition_witness;
    use plonky2::util::timing::TimingTree;

    use super::super::{config, C};
    use super::*;

    /// `x` checked below 2^20 with two 10-bit limbs; the witness after plonky2 generated it,
    /// changed by `edit`, proved: `None` if plonky2's prover refuses it, else whether the
    /// verifier accepts the proof.
    fn verifies(x: u64, edit: impl Fn(&mut PartitionWitness<F>, &[[Target; 2]])) -> Option<bool> {
        let mut b = CircuitBuilder::<F, D>::new(config());
        let t = b.add_virtual_target();
        b.register_public_input(t);
        let limbs = place(&mut b, &[(t, 20)], Some(10)).remove(0);
        assert_eq!(limbs.len(), 2);
        let data = b.build::<C>();
        let mut pw = PartialWitness::new();
        pw.set_target(t, F::from_canonical_u64(x)).unwrap();
        let mut w = generate_partial_witness::<F, C, D>(pw, &data.prover_only, &data.common)
            .expect("the honest limbs are generated");
        edit(&mut w, &limbs);
        let proof = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prove_with_partition_witness::<F, C, D>(
                &data.prover_only,
                &data.common,
                w,
                &mut TimingTree::default(),
            )
        }));
        match proof {
            Ok(Ok(p)) => Some(data.verify(p).is_ok()),
            _ => None,
        }
    }

    fn set(w: &mut PartitionWitness<F>, t: Target, v: u64) {
        let rep = w.representative_map[t.index(w.num_wires, w.degree)];
        w.values[rep] = Some(F::from_canonical_u64(v));
    }

    #[test]
    fn honest_limbs_verify() {
        assert_eq!(verifies(5 + (3 << 10), |_, _| {}), Some(true));
    }

    /// Limbs that still add up to `x` but one of them outside the table: plonky2's prover
    /// cannot even count it among the table's entries (the lookup argument's multiplicities).
    #[test]
    fn a_limb_outside_the_table_cannot_be_proven() {
        let wide_low_limb = |w: &mut PartitionWitness<F>, l: &[[Target; 2]]| {
            for (limb, v) in l.iter().zip([5 + (1 << 10), 2]) {
                set(w, limb[0], v);
                set(w, limb[1], v);
            }
        };
        assert_eq!(verifies(5 + (3 << 10), wide_low_limb), None);
    }

    /// One limb changed to another entry of the table, its lookup with it (so the lookup
    /// holds): only the recombination can refuse it, low limb or high.
    #[test]
    fn limbs_that_do_not_add_up_are_rejected_by_the_verifier() {
        for (j, v) in [(0, 6), (1, 4)] {
            let other_entry = |w: &mut PartitionWitness<F>, l: &[[Target; 2]]| {
                set(w, l[j][0], v);
                set(w, l[j][1], v);
            };
            assert_eq!(
                verifies(5 + (3 << 10), other_entry),
                Some(false),
                "limb {j}"
            );
        }
    }

    /// Secret witnesses get no table (plonky2 does not blind lookup polynomials).
    #[test]
    fn a_secret_witness_gets_no_table() {
        let many = vec![30; 20_000];
        assert_eq!(plan(&config(), 10_000, &many, false, true), None);
    }

    #[test]
    fn a_table_is_used_only_where_it_saves_rows() {
        let c = config();
        // A few checks: bit decomposition; thousands: limbs of a table.
        assert_eq!(plan(&c, 1000, &[30; 10], false, false), None);
        let many = vec![30; 20_000];
        let p = plan(&c, 10_000, &many, false, false).expect("a table");
        assert!(rows(&c, &many, Some(p)) < many.len() / 4, "{p}");
    }
}
