//! Poseidon over BN254's scalar field, width 2 (rate 1, capacity 1), x^5 S-box, 8 full and 56
//! partial rounds (the Poseidon paper's parameters for t = 2 at 128-bit security); round
//! constants and MDS matrix from the reference Grain LFSR (via `poseidon-primitives`).
//!
//! [`hash_input`] is the commitment to a model input that a halo2 proof with a hashed input makes
//! public. Each input value `x` with declared range `[lo, hi]` becomes the digit `u = x - lo`,
//! which lies in `[0, 2^15)` (the circuit proves `x` in its declared range, and setup refuses a
//! range of 2^15 values or more); sixteen digits pack into one field element
//! (`e = Σ u_j · 2^(15·(15-j))`, the last element zero-padded), so the packing is injective.
//! The sponge starts from `[n, 0]` (`n` = the number of input values), and for each element
//! adds it to the rate word and permutes. The hash is the rate word at the end.

use std::sync::OnceLock;

use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::halo2curves::ff::Field;
use poseidon_primitives::poseidon::primitives::Spec;

pub const WIDTH: usize = 2;
pub const FULL_ROUNDS: usize = 8;
pub const PARTIAL_ROUNDS: usize = 56;
pub const ROUNDS: usize = FULL_ROUNDS + PARTIAL_ROUNDS;
/// Bits per packed digit (one range-table limb).
pub const DIGIT_BITS: u32 = 15;
/// Digits per packed field element (240 bits, below the 254-bit modulus).
pub const DIGITS_PER_ELEMENT: usize = 16;

#[derive(Debug)]
pub struct CiroPoseidon;

impl Spec<Fr, WIDTH, 1> for CiroPoseidon {
    fn full_rounds() -> usize {
        FULL_ROUNDS
    }
    fn partial_rounds() -> usize {
        PARTIAL_ROUNDS
    }
    fn sbox(x: Fr) -> Fr {
        x.square().square() * x
    }
    fn secure_mds() -> usize {
        0
    }
}

pub struct Constants {
    pub round: Vec<[Fr; WIDTH]>,
    pub mds: [[Fr; WIDTH]; WIDTH],
}

pub fn constants() -> &'static Constants {
    static C: OnceLock<Constants> = OnceLock::new();
    C.get_or_init(|| {
        let (round, mds, _) = CiroPoseidon::constants();
        Constants { round, mds }
    })
}

/// Whether round `r` (0-based) is a full round: the first and last four are.
pub fn is_full(r: usize) -> bool {
    !(FULL_ROUNDS / 2..FULL_ROUNDS / 2 + PARTIAL_ROUNDS).contains(&r)
}

/// One round, as the circuit's round gates constrain it.
pub fn round(state: &mut [Fr; WIDTH], r: usize) {
    let c = constants();
    let x = [state[0] + c.round[r][0], state[1] + c.round[r][1]];
    let sbox = |v: Fr| v.square().square() * v;
    let y = [sbox(x[0]), if is_full(r) { sbox(x[1]) } else { x[1] }];
    for (i, s) in state.iter_mut().enumerate() {
        *s = c.mds[i][0] * y[0] + c.mds[i][1] * y[1];
    }
}

pub fn permute(state: &mut [Fr; WIDTH]) {
    for r in 0..ROUNDS {
        round(state, r);
    }
}

/// The packed elements of input digits `u` (each in `[0, 2^15)`).
pub fn pack(digits: &[u64]) -> Vec<Fr> {
    let base = Fr::from(1u64 << DIGIT_BITS);
    digits
        .chunks(DIGITS_PER_ELEMENT)
        .map(|chunk| {
            (0..DIGITS_PER_ELEMENT).fold(Fr::ZERO, |acc, j| {
                acc * base + Fr::from(chunk.get(j).copied().unwrap_or(0))
            })
        })
        .collect()
}

/// The sponge over packed elements; `n` is the number of input values.
pub fn sponge(elements: &[Fr], n: usize) -> Fr {
    let mut state = [Fr::from(n as u64), Fr::ZERO];
    for &e in elements {
        state[1] += e;
        permute(&mut state);
    }
    state[1]
}

/// The hash of input values `x` with lower bounds `lo` (one per value); `None` if a value is
/// outside `[lo, lo + 2^15)`.
pub fn hash_input(x: &[i64], lo: &[i64]) -> Option<Fr> {
    let digits: Option<Vec<u64>> = x
        .iter()
        .zip(lo)
        .map(|(&v, &l)| {
            let u = v.checked_sub(l)?;
            (0..1i64 << DIGIT_BITS).contains(&u).then_some(u as u64)
        })
        .collect();
    Some(sponge(&pack(&digits?), x.len()))
}

/// Big-endian hex of a field element (as the EVM and the bundle carry it).
pub fn to_hex(v: &Fr) -> String {
    use halo2_axiom::halo2curves::ff::PrimeField;
    let mut bytes = v.to_repr();
    bytes.reverse();
    format!("0x{}", hex_encode(&bytes))
}

/// Parses [`to_hex`]'s output.
pub fn from_hex(s: &str) -> Option<Fr> {
    use halo2_axiom::halo2curves::ff::PrimeField;
    let s = s.strip_prefix("0x")?;
    if s.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    bytes.reverse();
    Option::from(Fr::from_repr(bytes))
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use poseidon_primitives::poseidon::primitives::{ConstantLength, Hash};

    #[test]
    fn the_permutation_matches_the_reference_implementation() {
        for seed in 0..4u64 {
            let mut ours = [Fr::from(seed * 7 + 1), Fr::from(seed * 13 + 5)];
            let mut reference = ours;
            permute(&mut ours);
            Hash::<Fr, CiroPoseidon, ConstantLength<1>, WIDTH, 1>::init().permute(&mut reference);
            assert_eq!(ours, reference);
        }
    }

    #[test]
    fn packing_is_injective_on_digits_and_the_hash_changes_with_any_value() {
        let x: Vec<i64> = (0..37).map(|i| (i * 31) % 1000 - 500).collect();
        let lo = vec![-512; x.len()];
        let h = hash_input(&x, &lo).unwrap();
        for i in [0, 15, 16, 36] {
            let mut y = x.clone();
            y[i] += 1;
            assert_ne!(hash_input(&y, &lo).unwrap(), h, "value {i}");
        }
        // A value 2^15 above its bound is refused, not wrapped into the next digit.
        let mut y = x.clone();
        y[3] = -512 + (1 << 15);
        assert!(hash_input(&y, &lo).is_none());
        // One more trailing value, even a zero digit, changes the hash (the length is in it).
        let mut y = x.clone();
        y.push(-512);
        let mut lo2 = lo.clone();
        lo2.push(-512);
        assert_ne!(hash_input(&y, &lo2).unwrap(), h);
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
    }
}
