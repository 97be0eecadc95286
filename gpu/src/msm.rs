//! Multi-scalar multiplication over BN254 G1: `Σ_i scalars[i]·bases[i]`.

use halo2_axiom::arithmetic::best_multiexp;
use halo2_axiom::halo2curves::bn256::{Fr, G1Affine, G1};
use halo2_axiom::halo2curves::group::Group;

use crate::EngineError;

pub trait MsmEngine: Send + Sync {
    /// Which implementation this is (`"cpu"`), for logs and benches.
    fn name(&self) -> &'static str;

    /// `Σ_i scalars[i]·bases[i]`; the identity for no terms. The result is a group element, so
    /// every correct engine returns the same point (and the same affine bytes).
    fn msm(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1, EngineError>;
}

/// halo2curves' Pippenger MSM (multi-threaded with rayon), as halo2-axiom commits with it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuMsm;

impl MsmEngine for CpuMsm {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn msm(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1, EngineError> {
        if bases.len() != scalars.len() {
            return Err(EngineError::LengthMismatch {
                bases: bases.len(),
                scalars: scalars.len(),
            });
        }
        if bases.is_empty() {
            return Ok(G1::identity());
        }
        Ok(best_multiexp(scalars, bases))
    }
}

#[cfg(test)]
mod tests {
    use halo2_axiom::halo2curves::ff::Field;
    use halo2_axiom::halo2curves::group::Curve;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn points(n: usize, rng: &mut ChaCha20Rng) -> Vec<G1Affine> {
        (0..n).map(|_| G1::random(&mut *rng).to_affine()).collect()
    }

    fn scalars(n: usize, rng: &mut ChaCha20Rng) -> Vec<Fr> {
        (0..n).map(|_| Fr::random(&mut *rng)).collect()
    }

    /// The definition: one scalar multiplication per term, summed.
    fn naive(bases: &[G1Affine], scalars: &[Fr]) -> G1 {
        bases
            .iter()
            .zip(scalars)
            .fold(G1::identity(), |acc, (b, s)| acc + *b * s)
    }

    #[test]
    fn matches_the_sum_of_scalar_multiplications() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        // Sizes on both sides of halo2curves' switch from the serial to the bucket method (c ≥ 10
        // from about 8,100 terms) and its thread split.
        for n in [1, 2, 3, 4, 31, 32, 100, 257, 9000] {
            let (b, s) = (points(n, &mut rng), scalars(n, &mut rng));
            let got = CpuMsm.msm(&b, &s).unwrap();
            assert_eq!(got, naive(&b, &s), "{n} terms");
            assert_eq!(got.to_affine(), naive(&b, &s).to_affine(), "{n} terms");
        }
    }

    #[test]
    fn edge_scalars_and_bases() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let b = points(5, &mut rng);
        let id = G1Affine::from(G1::identity());
        let cases: [(Vec<G1Affine>, Vec<Fr>); 4] = [
            (b.clone(), vec![Fr::ZERO; 5]),
            (
                b.clone(),
                vec![Fr::ONE, -Fr::ONE, Fr::ZERO, Fr::ONE, -Fr::ONE],
            ),
            (vec![id; 5], scalars(5, &mut rng)),
            (vec![b[0]; 5], scalars(5, &mut rng)),
        ];
        for (i, (bases, s)) in cases.iter().enumerate() {
            assert_eq!(CpuMsm.msm(bases, s).unwrap(), naive(bases, s), "case {i}");
        }
        assert_eq!(
            CpuMsm.msm(&b[..1], &[Fr::ONE]).unwrap().to_affine(),
            b[0],
            "one term with scalar 1 is the base itself"
        );
    }

    #[test]
    fn empty_is_the_identity_and_mismatched_lengths_are_refused() {
        assert_eq!(CpuMsm.msm(&[], &[]).unwrap(), G1::identity());
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (b, s) = (points(3, &mut rng), scalars(2, &mut rng));
        assert_eq!(
            CpuMsm.msm(&b, &s),
            Err(EngineError::LengthMismatch {
                bases: 3,
                scalars: 2
            })
        );
        assert!(CpuMsm.msm(&[], &s).is_err());
        assert!(CpuMsm.msm(&b, &[]).is_err());
    }
}
