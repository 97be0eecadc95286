//! The FRI folding of an inference proof, chosen per circuit so that its zero-knowledge
//! blinding takes as few rows as it can.
//!
//! With zero-knowledge on, plonky2 adds a row of random values for every value a FRI query
//! opens: `1 + 2·(arity - 1)` per folding and 2 per coefficient of the final polynomial, for each
//! of the 28 queries, three times over (its `CircuitBuilder::blinding_counts`). Under plonky2's
//! standard folding (by 16, down to 32 coefficients) that is about 8,300 rows for a circuit of
//! 2^14, which is what made a model of 1,200 rows prove at 2^14. Folding by 2 (down to 2
//! coefficients) opens the fewest values per halving, about 2,300 rows in all, but adds a Merkle
//! tree per halving to the proof. [`folding`] keeps the standard folding where the circuit fits
//! the same power of two with it, and folds by 2 where that makes the circuit smaller. Both are
//! plonky2 strategies that adapt to the size plonky2 settles on, so a circuit is consistent
//! whatever rows plonky2 adds when it builds. The merge circuit carries the gates that verifying
//! both takes (`recursion.rs`), so every inference proof is wrapped in one recursive step.

use plonky2::fri::reduction_strategies::FriReductionStrategy;
use plonky2::plonk::circuit_data::CircuitConfig;

use super::D;

/// plonky2's standard folding: by 16, down to a final polynomial of 2^5 coefficients.
pub const STANDARD: FriReductionStrategy = FriReductionStrategy::ConstantArityBits(4, 5);
/// Folding by 2 down to plonky2's smallest final polynomial.
pub const BY_TWO: FriReductionStrategy = FriReductionStrategy::ConstantArityBits(NARROW, 0);
/// log2 of the arity of [`BY_TWO`].
pub const NARROW: usize = 1;

/// Whether a key may use `strategy`: one of the two [`folding`] chooses.
pub fn admissible(strategy: &FriReductionStrategy) -> bool {
    *strategy == STANDARD || *strategy == BY_TWO
}

/// The rows plonky2 adds to blind a circuit of `2^degree_bits` rows folded by `strategy`.
pub fn blinding_rows(
    config: &CircuitConfig,
    degree_bits: usize,
    strategy: &FriReductionStrategy,
) -> usize {
    if !config.zero_knowledge {
        return 0;
    }
    let fri = &config.fri_config;
    let arities = strategy.reduction_arity_bits(
        degree_bits,
        fri.rate_bits,
        fri.cap_height,
        fri.num_query_rounds,
    );
    let folding: usize = arities.iter().map(|&a| (1 << a) - 1).sum();
    let final_coeffs = 1usize << degree_bits.saturating_sub(arities.iter().sum());
    let openings = fri.num_query_rounds * (1 + D * folding + D * final_coeffs);
    // One random row per opening of the regular polynomials, two for the permutation's.
    (D + openings) + 2 * (2 * D + openings)
}

/// log2 of the rows of a circuit of `rows` rows once blinded under `strategy` (plonky2's
/// search: from the power of two that holds the rows, doubling until the blinding fits too).
pub fn degree_bits(config: &CircuitConfig, rows: usize, strategy: &FriReductionStrategy) -> usize {
    let mut bits = rows.max(2).next_power_of_two().trailing_zeros() as usize;
    while rows + blinding_rows(config, bits, strategy) > 1 << bits {
        bits += 1;
    }
    bits
}

/// The folding of a circuit of `rows` rows before blinding: the standard one unless folding
/// by 2 makes the circuit smaller.
pub fn folding(config: &CircuitConfig, rows: usize) -> FriReductionStrategy {
    if degree_bits(config, rows, &BY_TWO) < degree_bits(config, rows, &STANDARD) {
        BY_TWO
    } else {
        STANDARD
    }
}

/// log2 of the rows of a circuit of `rows` rows under the folding [`folding`] chooses (the
/// smaller of the two).
pub fn smallest_degree_bits(config: &CircuitConfig, rows: usize) -> usize {
    degree_bits(config, rows, &BY_TWO).min(degree_bits(config, rows, &STANDARD))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts match plonky2's: under its standard folding a 2^14 circuit needs 8,326 rows
    /// of blinding (logged by its builder).
    #[test]
    fn blinding_matches_plonky2s_count() {
        let c = super::super::config();
        assert_eq!(blinding_rows(&c, 14, &STANDARD), 8326);
        assert_eq!(blinding_rows(&c, 12, &BY_TWO), 2278);
        assert_eq!(blinding_rows(&c, 15, &BY_TWO), 2782);
    }

    #[test]
    fn small_circuits_fold_by_two_and_large_ones_by_sixteen() {
        let c = super::super::config();
        assert_eq!(folding(&c, 1200), BY_TWO);
        assert_eq!(smallest_degree_bits(&c, 1200), 12);
        assert_eq!(degree_bits(&c, 1200, &STANDARD), 14);
        // Far from the top of its power of two, a circuit keeps the standard folding.
        assert_eq!(folding(&c, 40_000), STANDARD);
        assert_eq!(smallest_degree_bits(&c, 40_000), 16);
        // Near it, only folding by 2 leaves room for the blinding.
        assert_eq!(folding(&c, 32_768 - 2_782), BY_TWO);
        assert_eq!(smallest_degree_bits(&c, 32_768 - 2_782), 15);
        assert!(admissible(&STANDARD) && admissible(&BY_TWO));
        assert!(!admissible(&FriReductionStrategy::ConstantArityBits(1, 5)));
    }
}
