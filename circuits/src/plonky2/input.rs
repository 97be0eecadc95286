//! The model input: every value a prover-set target. Public inputs are public values (the
//! verifier checks their declared range); a hashed input shows only its Poseidon hash over
//! Goldilocks (four elements, plonky2's `hash_n_to_hash_no_pad`), and a private input nothing.
//! Hashed and private inputs are range-checked to their declared range inside the circuit.

use plonky2::hash::poseidon::PoseidonHash;

use super::{bits_for, felt, Aux, Builder, MAX_RANGE_BITS};
use crate::error::CircuitError;
use crate::halo2::InputVisibility;

pub(super) fn build(s: &mut Builder<'_>, shown: InputVisibility) -> Result<(), CircuitError> {
    let n = s.circuit.n_inputs;
    let mut targets = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = s.prover_value(Aux::Cell(i));
        s.write(i, t)?;
        targets.push(t);
    }
    if shown == InputVisibility::Public {
        s.b.register_public_inputs(&targets);
        return Ok(());
    }
    for (i, &t) in targets.iter().enumerate() {
        let (lo, hi) = s.circuit.bounds[i];
        let bits = bits_for(hi as i128 - lo as i128 + 1);
        if bits > MAX_RANGE_BITS {
            return Err(CircuitError::Input(format!(
                "a hashed or private input needs a range of at most 2^{MAX_RANGE_BITS} values; this model's is [{lo}, {hi}]"
            )));
        }
        let above = s.affine(1, t, -lo);
        s.range_check_bits(above, bits)?;
        let below = s.affine(-1, t, hi);
        s.range_check_bits(below, bits)?;
    }
    if shown == InputVisibility::Hashed {
        let h = s.b.hash_n_to_hash_no_pad::<PoseidonHash>(targets);
        s.b.register_public_inputs(&h.elements);
    }
    Ok(())
}

/// The Poseidon hash a hashed-input proof shows, of the input values in order.
pub fn hash(values: &[i64]) -> [u64; 4] {
    use plonky2::field::types::PrimeField64;
    use plonky2::plonk::config::Hasher;
    let felts: Vec<_> = values.iter().map(|&v| felt(v)).collect();
    let h = PoseidonHash::hash_no_pad(&felts);
    h.elements.map(|e| e.to_canonical_u64())
}
