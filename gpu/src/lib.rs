//! Engines for the provers' heavy kernels: multi-scalar multiplication over BN254 G1
//! ([`MsmEngine`]), the radix-2 NTT/FFT over BN254's scalar field on halo2's domain
//! ([`NttEngine`]), and Blake2s Merkle trees over M31 columns as stwo lays them out
//! ([`MerkleEngine`]). Each is an object-safe trait; the CPU implementations ([`CpuMsm`],
//! [`CpuNtt`], [`CpuMerkle`]) wrap the code halo2-axiom and stwo themselves run, and are always
//! built. Callers take their engines from [`Engines::select`], chosen once per process.
//!
//! Every kernel here computes an exact value (a group element, field elements, hashes), so all
//! correct engines agree bit for bit: swapping one changes speed, never a key or a proof.
//!
//! # What goes through the engines today
//! - MSM: the private-weights Schnorr proof (`prover/src/halo2_weights.rs`: `T = Σ k_i·G_i` when
//!   proving, `Σ z_i·G_i` when verifying).
//! - NTT: no caller yet. The KZG commitments the halo2 prover computes itself (the published
//!   weight-column commitments and blinding bases, and the check of the recorded blinding
//!   values) stay on halo2-axiom's `commit_lagrange`: halo2-axiom keeps its Lagrange bases
//!   private (`ParamsKZG::g_lagrange` is `pub(crate)`), so through these engines they would be an
//!   iFFT and a dense MSM over the monomial bases, the path a device runs best but on the CPU
//!   slower than halo2's MSM over mostly short scalars (small weights, one-hot rows). They move
//!   here with the first device engine.
//! - Merkle: no caller yet; it reproduces the layout of stwo's trace commitments, checked
//!   against stwo's own verifier, ready for a device backend.
//!
//! # What still runs inside the libraries
//! - halo2-axiom: `keygen_vk`/`keygen_pk` and `create_proof` commit every fixed, advice,
//!   permutation, lookup and quotient polynomial, run the extended-domain FFTs and the SHPLONK
//!   openings by calling `best_multiexp`, `best_fft` and `ParamsKZG::commit_lagrange` directly;
//!   they take no engine or hook, so those kernels stay on halo2-axiom's CPU code.
//! - stwo: the prover's circle FFTs (over M31, not this crate's BN254 NTT) and its Merkle
//!   commitments run through stwo's `Backend` type parameter (`SimdBackend`); only a whole stwo
//!   backend could move them, not a per-kernel hook.
//!
//! # Where a device backend plugs in
//! A device backend (ICICLE's CUDA kernels, say) implements these three traits in its own
//! module behind a cargo feature that pulls in its bindings, so a default build stays pure CPU.
//! [`Engines::select`] then checks at run time that the device is usable (its runtime loads and a
//! device answers) and hands out the device engines, or the CPU ones if not; a device engine
//! should also fall back to the CPU engine below the sizes where moving data costs more than the
//! kernel saves. Its tests compare it with the CPU engines on the same inputs.

mod error;
mod merkle;
mod msm;
mod ntt;

use std::sync::OnceLock;

pub use error::EngineError;
pub use merkle::{CpuMerkle, MerkleEngine, MerkleTree};
pub use msm::{CpuMsm, MsmEngine};
pub use ntt::{omega, CpuNtt, NttEngine};

/// One engine per kernel.
pub struct Engines {
    msm: Box<dyn MsmEngine>,
    ntt: Box<dyn NttEngine>,
    merkle: Box<dyn MerkleEngine>,
}

impl Engines {
    /// The CPU engines (always available).
    pub fn cpu() -> Self {
        Engines {
            msm: Box::new(CpuMsm),
            ntt: Box::new(CpuNtt),
            merkle: Box::new(CpuMerkle),
        }
    }

    /// The engines this process uses, chosen on first use: today the CPU engines (see the crate
    /// docs for where a device backend's runtime check goes).
    pub fn select() -> &'static Engines {
        static SELECTED: OnceLock<Engines> = OnceLock::new();
        SELECTED.get_or_init(Engines::cpu)
    }

    pub fn msm(&self) -> &dyn MsmEngine {
        self.msm.as_ref()
    }

    pub fn ntt(&self) -> &dyn NttEngine {
        self.ntt.as_ref()
    }

    pub fn merkle(&self) -> &dyn MerkleEngine {
        self.merkle.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_gives_the_cpu_engines_once() {
        let e = Engines::select();
        assert_eq!(
            [e.msm().name(), e.ntt().name(), e.merkle().name()],
            ["cpu"; 3]
        );
        assert!(
            std::ptr::eq(e, Engines::select()),
            "chosen once per process"
        );
    }
}
