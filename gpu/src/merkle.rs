//! Blake2s Merkle trees over M31 columns, laid out as stwo's prover commits a trace (its lifted
//! vector commitment, `vcs_lifted`, with columns of one size and one row per leaf): leaf `i` is
//! the Blake2s hash of the little-endian bytes of every column's value at row `i`, in column
//! order; an inner node is the hash of its children's 32 bytes, left then right.

use rayon::prelude::*;
use stwo::core::fields::m31::BaseField;
use stwo::core::vcs::blake2_hash::Blake2sHash;
use stwo::core::vcs_lifted::blake2_merkle::Blake2sMerkleHasher;
use stwo::core::vcs_lifted::MerkleHasherLifted;

use crate::EngineError;

/// Every layer of a Merkle tree, the root's first and the leaves last (stwo's order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    layers: Vec<Vec<Blake2sHash>>,
}

impl MerkleTree {
    pub fn root(&self) -> Blake2sHash {
        self.layers[0][0]
    }

    /// `layers()[d]` holds the `2^d` nodes at depth `d`; the last layer holds the leaves.
    pub fn layers(&self) -> &[Vec<Blake2sHash>] {
        &self.layers
    }

    /// The number of layers below the root (`log2` of the number of leaves).
    pub fn height(&self) -> u32 {
        self.layers.len() as u32 - 1
    }
}

pub trait MerkleEngine: Send + Sync {
    /// Which implementation this is (`"cpu"`), for logs and benches.
    fn name(&self) -> &'static str;

    /// The tree over `columns`, which must be of one power-of-two length (one row gives a tree
    /// that is a single leaf, its root).
    fn commit(&self, columns: &[&[BaseField]]) -> Result<MerkleTree, EngineError>;
}

/// stwo's own Blake2s Merkle hasher, leaves and layers hashed in parallel with rayon.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuMerkle;

impl MerkleEngine for CpuMerkle {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn commit(&self, columns: &[&[BaseField]]) -> Result<MerkleTree, EngineError> {
        let rows = columns.first().ok_or(EngineError::NoColumns)?.len();
        if let Some((index, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != rows) {
            return Err(EngineError::ColumnLengths {
                index,
                len: c.len(),
                expected: rows,
            });
        }
        if !rows.is_power_of_two() {
            return Err(EngineError::NotPowerOfTwo {
                what: "a Merkle tree",
                len: rows,
            });
        }
        let leaves: Vec<Blake2sHash> = (0..rows)
            .into_par_iter()
            .map(|row| {
                let mut hasher = Blake2sMerkleHasher::default();
                for column in columns {
                    hasher.update_leaf(&column[row..=row]);
                }
                MerkleHasherLifted::finalize(hasher)
            })
            .collect();
        let mut layers = vec![leaves];
        while let Some(below) = layers.last().filter(|l| l.len() > 1) {
            let next = below
                .par_chunks_exact(2)
                .map(|pair| Blake2sMerkleHasher::hash_children((pair[0], pair[1])))
                .collect();
            layers.push(next);
        }
        layers.reverse();
        Ok(MerkleTree { layers })
    }
}

#[cfg(test)]
mod tests {
    use blake2::{Blake2s256, Digest};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use stwo::core::fields::m31::P;
    use stwo::core::vcs_lifted::verifier::{
        MerkleDecommitmentLifted, MerkleVerificationError, MerkleVerifierLifted,
    };

    use super::*;

    fn columns(count: usize, rows: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<BaseField>> {
        (0..count)
            .map(|_| {
                (0..rows)
                    .map(|_| BaseField::from_u32_unchecked(rng.gen_range(0..P)))
                    .collect()
            })
            .collect()
    }

    fn refs(cols: &[Vec<BaseField>]) -> Vec<&[BaseField]> {
        cols.iter().map(Vec::as_slice).collect()
    }

    /// The root from the layout's definition, with the `blake2` crate directly.
    fn root_by_hand(cols: &[Vec<BaseField>]) -> [u8; 32] {
        let mut layer: Vec<[u8; 32]> = (0..cols[0].len())
            .map(|row| {
                let mut h = Blake2s256::new();
                for c in cols {
                    h.update(c[row].0.to_le_bytes());
                }
                h.finalize().into()
            })
            .collect();
        while layer.len() > 1 {
            layer = layer
                .chunks(2)
                .map(|p| {
                    let mut h = Blake2s256::new();
                    h.update(p[0]);
                    h.update(p[1]);
                    h.finalize().into()
                })
                .collect();
        }
        layer[0]
    }

    // Shapes from a single leaf up, with more than 16 columns (stwo feeds its hasher 16 values
    // at a time) and over a thousand rows.
    const SHAPES: [(usize, usize); 7] =
        [(1, 1), (3, 1), (1, 2), (2, 4), (5, 16), (20, 8), (3, 1024)];

    #[test]
    fn root_matches_hashing_by_hand() {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        for (count, rows) in SHAPES {
            let cols = columns(count, rows, &mut rng);
            let tree = CpuMerkle.commit(&refs(&cols)).unwrap();
            assert_eq!(tree.root().0, root_by_hand(&cols), "{count} x {rows}");
            assert_eq!(tree.height(), rows.ilog2());
            let sizes: Vec<usize> = tree.layers().iter().map(Vec::len).collect();
            let expected: Vec<usize> = (0..=rows.ilog2()).map(|d| 1 << d).collect();
            assert_eq!(sizes, expected);
        }
    }

    /// stwo's own Merkle verifier accepts our root for every row opened at once, and for one row
    /// with its path of sibling hashes taken from our layers; it rejects another root.
    #[test]
    fn stwo_verifies_our_trees() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        for (count, rows) in SHAPES.into_iter().filter(|(_, rows)| *rows > 1) {
            let cols = columns(count, rows, &mut rng);
            let tree = CpuMerkle.commit(&refs(&cols)).unwrap();
            let log = rows.ilog2();
            let verifier = |root| {
                MerkleVerifierLifted::<Blake2sMerkleHasher>::new(root, vec![log; count], None)
            };

            let every_row: Vec<usize> = (0..rows).collect();
            verifier(tree.root())
                .verify(&every_row, cols.clone(), MerkleDecommitmentLifted::empty())
                .expect("all rows open against our root");

            let row = rng.gen_range(0..rows);
            let path: Vec<Blake2sHash> = (1..=log as usize)
                .rev()
                .map(|depth| tree.layers()[depth][(row >> (log as usize - depth)) ^ 1])
                .collect();
            let values: Vec<Vec<BaseField>> = cols.iter().map(|c| vec![c[row]]).collect();
            let opening = MerkleDecommitmentLifted { hash_witness: path };
            verifier(tree.root())
                .verify(&[row], values.clone(), opening.clone())
                .unwrap_or_else(|e| panic!("row {row} does not open with its path: {e}"));

            let mut other = tree.root();
            other.0[0] ^= 1;
            assert_eq!(
                verifier(other).verify(&[row], values, opening),
                Err(MerkleVerificationError::RootMismatch)
            );
        }
    }

    #[test]
    fn malformed_columns_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        assert_eq!(CpuMerkle.commit(&[]), Err(EngineError::NoColumns));
        let empty: &[BaseField] = &[];
        assert_eq!(
            CpuMerkle.commit(&[empty]),
            Err(EngineError::NotPowerOfTwo {
                what: "a Merkle tree",
                len: 0
            })
        );
        let three = columns(2, 3, &mut rng);
        assert!(matches!(
            CpuMerkle.commit(&refs(&three)),
            Err(EngineError::NotPowerOfTwo { len: 3, .. })
        ));
        let mut uneven = columns(3, 4, &mut rng);
        uneven[2].pop();
        assert_eq!(
            CpuMerkle.commit(&refs(&uneven)),
            Err(EngineError::ColumnLengths {
                index: 2,
                len: 3,
                expected: 4
            })
        );
    }
}
