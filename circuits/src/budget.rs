//! What a backend can prove exactly: the limits the lowering ([`crate::lower`]) checks every
//! gadget against, one [`FieldBudget`] per proof system.
//!
//! The gate list is backend-neutral, but a gate's equation only pins the exact integer result
//! while every value it involves stays clear of the field's modulus, and a range check only covers
//! the widths the backend's range gadget can express. The lowering refuses a model whose worst
//! case leaves the budget ([`crate::CircuitError::Overflow`], naming the node); inside the budget
//! it emits the same gates whatever the budget, so a model both budgets accept lowers to the same
//! circuit (and keeps its keys). In particular the gates' high-limb bounds stay in units of
//! `2^LIMB_BITS` ([`crate::lower::LIMB_BITS`], stwo's limb) under every budget; halo2 ignores them
//! and picks its own limb width from the values ([`crate::halo2::limb_bits`]).

use std::sync::Arc;

use ciro_model_compiler::{Graph, GraphCheck};

use crate::Circuit;

/// Magnitudes the witness generators can evaluate: cells, gate coefficients and every partial
/// sum are `i64` (`Circuit::assign`, the stwo trace and the halo2 layout all compute in `i64`).
/// Keeping each checked quantity at most `2^62` leaves a factor of two for the one subtraction
/// the gadgets do after a checked sum (a division's remainder, `2kn + d - 2dq`).
const I64_EVALUATION: i128 = 1 << 62;

/// The limits of one backend's field and gadgets, in integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldBudget {
    /// The field, as errors name it ("cannot be proven exactly in M31").
    pub name: &'static str,
    /// The modulus, in words.
    pub modulus: &'static str,
    /// Largest magnitude a gadget's equation may reach: a dot product's worst case
    /// `sum |x|·|w|` (plus its constant), both sides of a division's `2kn + d = 2dq + r`, and
    /// every node's proven bound. Below it the field equation holds over the integers.
    pub max_magnitude: i128,
    /// Range checks prove a value in `[0, max_range_width)`: the widest comparison (`a - b` or
    /// `b - a - 1`) and division range (`r < 2d`, `q - q_lo`) the backend can check.
    pub max_range_width: i128,
}

/// stwo's range check: a value is `lo + 2^16·hi` with `lo` looked up in a 16-bit table and `hi`
/// below the gate's `hi_bound` by a shifted lookup; `hi_bound` stays below `2^14` so a limb pair
/// never reaches `p = 2^31 - 1`.
const STWO_MAX_HI_BOUND: i128 = (1 << 14) - 1;

impl FieldBudget {
    /// stwo, Circle STARK over M31 (`p = 2^31 - 1`). Every equation is checked in a field of 31
    /// bits, so each must stay within `±(p-1)/2`: a MAC's worst case, a division's two sides and
    /// every bound; the range checks cover `[0, (2^14 - 1)·2^16)`.
    pub const M31: FieldBudget = FieldBudget {
        name: "M31",
        modulus: "2^31 - 1",
        max_magnitude: ((crate::field::P as i128) - 1) / 2,
        max_range_width: STWO_MAX_HI_BOUND << crate::lower::LIMB_BITS,
    };

    /// halo2 over BN254's scalar field (254 bits). Per gadget (`crate::halo2`'s module doc has
    /// the constraints):
    /// - Range checks are two lookups of `b <= 15` bits (`L + 2^b·L'`), so they cover at most
    ///   `[0, 2^30)`: `max_range_width` is `2^30`, and no wider comparison or division range is
    ///   accepted (an honest witness would not fit the limbs).
    /// - MAC: `ACC' = ACC + sum F·x` over cells pinned to their bounds; with the worst case
    ///   `sum |x|·|w|` at most `2^62`, every partial sum is an integer far below `p/2 ≈ 2^253`, so
    ///   the chain's field sum is the integer sum.
    /// - Arith: `ca·a + cb·b + cab·a·b + c0` of `i64` operands and coefficients stays below
    ///   `2^130`: exact.
    /// - Select: the boolean `s` is pinned because the wrong branch's check value
    ///   (`a - b` or `b - a - 1`, below `2^64` in magnitude) is negative, i.e. a field element
    ///   near `p`, never below `2^30`; the branch values stay below `2^130`.
    /// - Div: `r` and `2d - 1 - r` in `[0, 2^30)` give `0 <= r < 2d`, and `q - q_lo` in
    ///   `[0, 2^30)` gives an integer `q`; both sides of `2kn + d = 2dq + r` are then below
    ///   `2^62 + 2^62·(2^30 + |q_lo| + 1)`, far below `p/2`, so the equation holds over the
    ///   integers and `q` is exactly `round_div(kn, d)`.
    /// - Lookup: a table row, no arithmetic.
    ///
    /// The modulus is never the limit here: `max_magnitude` is what `i64` witness generation can
    /// represent (`2^62`).
    pub const BN254: FieldBudget = FieldBudget {
        name: "BN254",
        modulus: "the 254-bit BN254 scalar field order",
        max_magnitude: I64_EVALUATION,
        max_range_width: 1 << 30,
    };

    /// Goldilocks (`p = 2^64 - 2^32 + 1`), plonky2's field. `(p-1)/2` is above `2^62`, so `i64`
    /// evaluation is the limit on magnitudes. Range checks are plonky2 bit decompositions (up
    /// to 62 bits), but held to `2^30` like halo2's, so a model both accept lowers to the same
    /// gates and one compile serves every backend; see [`crate::plonky2`] for why each gadget's
    /// equation is exact below `p/2`.
    pub const GOLDILOCKS: FieldBudget = FieldBudget {
        name: "Goldilocks",
        modulus: "2^64 - 2^32 + 1",
        max_magnitude: I64_EVALUATION,
        max_range_width: 1 << 30,
    };

    /// Whether a magnitude fits the budget.
    pub fn holds(&self, magnitude: i128) -> bool {
        magnitude <= self.max_magnitude
    }

    /// Whether a range check over `[0, width)` fits the budget.
    pub fn can_range_check(&self, width: i128) -> bool {
        width <= self.max_range_width
    }
}

/// The budgets of the proof systems Ciro proves with: stwo's M31, halo2's BN254 and plonky2's
/// Goldilocks, as the
/// prover's registry lists them (`BackendInfo::budget`; a registry test keeps the two equal).
pub const PROVING_BUDGETS: [FieldBudget; 3] = [
    FieldBudget::M31,
    FieldBudget::BN254,
    FieldBudget::GOLDILOCKS,
];

/// A compile check ([`GraphCheck`]) that every budget in `budgets` holds a graph, so that the
/// compiler's scale search only picks scales those proof systems can prove.
pub fn fits(budgets: Vec<FieldBudget>) -> GraphCheck {
    GraphCheck(Arc::new(move |graph: &Graph| {
        for b in &budgets {
            Circuit::from_graph(graph, b).map_err(|e| e.to_string())?;
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bn254_range_width_is_what_two_halo2_limbs_hold() {
        assert_eq!(
            FieldBudget::BN254.max_range_width,
            1 << (2 * crate::halo2::MAX_LIMB_BITS)
        );
    }

    #[test]
    fn m31_limits_are_stwo_limb_pairs_below_p() {
        let m31 = FieldBudget::M31;
        assert_eq!(m31.max_magnitude, (1 << 30) - 1);
        // A high limb below 2^14 and a 16-bit low limb: the widest range stays below 2^30.
        assert_eq!(m31.max_range_width, (1 << 30) - (1 << 16));
        assert!(m31.max_range_width < m31.max_magnitude);
    }

    #[test]
    fn goldilocks_fits_i64_evaluation() {
        let half_p = ((1i128 << 64) - (1 << 32)) / 2;
        assert!(FieldBudget::GOLDILOCKS.max_magnitude <= half_p);
        assert!(FieldBudget::GOLDILOCKS.max_magnitude < i64::MAX as i128);
    }
}
