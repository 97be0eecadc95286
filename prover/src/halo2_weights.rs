//! Private weights for the halo2 backend.
//!
//! With private weights the model's weights sit in four advice columns `W0..W3`. halo2 blinds
//! every advice column by filling its last `b` rows (the *blinding rows*) with fresh random
//! values, so a proof's commitment to `W_j` is
//!
//! `C_j = Σ_rows w_j[row]·G_row + Σ_i r_ji·G_i`,
//!
//! where `G_row = [L_row(τ)]_1` is the KZG commitment to the Lagrange polynomial of that row and
//! `i` runs over the blinding rows. The model owner publishes, in the verification key, the
//! same commitment with blinding values `s_ji` of their own (kept secret in the *opening*):
//! `P_j = Σ_rows w_j[row]·G_row + Σ_i s_ji·G_i`. `P_j` is perfectly hiding (the `s_ji` are
//! uniform) and binding (two different weight columns with the same commitment would give a
//! linear relation between the `G`s, which nobody who does not know `τ` can find).
//!
//! Each proof then shows, by a Schnorr proof of knowledge, that `C_j − P_j` lies in the span of
//! the blinding bases alone, i.e. that the proof's weights equal the published ones on every
//! usable row. The columns are batched with a challenge `ρ`:
//! `D = Σ_j ρ^j (C_j − P_j) = Σ_i δ_i·G_i` with `δ_i = Σ_j ρ^j (r_ji − s_ji)`; the prover
//! sends `T = Σ_i k_i G_i` and `z_i = k_i + e·δ_i`, and the verifier checks
//! `Σ_i z_i G_i = T + e·D`. `ρ` and `e` are Keccak-256 hashes (big-endian, reduced mod the
//! scalar field) of everything before them, so the proof is non-interactive and replayable on
//! the EVM. The Schnorr proof is zero-knowledge, and the proof's `W` columns stay blinded, so
//! nothing about the weights leaks however many proofs are made.
//!
//! The prover learns its own `r_ji` by recording the random bytes halo2 draws (it draws the
//! blinding rows first, column by column) and replaying them; it then checks that the
//! recovered values reproduce the proof's commitments before using them.

use ciro_gpu::{EngineError, Engines};
use halo2_axiom::halo2curves::bn256::{Fq, Fr, G1Affine, G1};
use halo2_axiom::halo2curves::ff::{Field, FromUniformBytes, PrimeField};
use halo2_axiom::halo2curves::group::prime::PrimeCurveAffine;
use halo2_axiom::halo2curves::group::Curve;
use halo2_axiom::halo2curves::CurveAffine;
use rand::RngCore;
use rand_core::impls;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

use crate::error::VerifyError;

pub const DOMAIN: &[u8] = b"ciro/halo2/private-weights/v1";

/// The published part, in the verification key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightCommitment {
    /// `P_j` per weight column (64-byte `x || y`, big-endian, hex).
    pub columns: Vec<String>,
    /// `G_i` per blinding row, in row order.
    pub blinding_bases: Vec<String>,
}

/// The owner's secret: the blinding values `s_ji` of the published commitment. Whoever holds it
/// (and the model) can prove; it reveals the weights to no one, but it must stay with the
/// prover, since with it the commitment can be opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightOpening {
    pub format: String,
    pub version: u32,
    /// The compiled model's hash the opening belongs to.
    pub model_hash: String,
    /// `s_ji`, per weight column, per blinding row (big-endian hex).
    pub blinds: Vec<Vec<String>>,
}

pub const OPENING_FORMAT: &str = "ciro-halo2-weight-opening";

impl WeightOpening {
    /// Fresh uniform blinding values for `columns` columns and `rows` blinding rows.
    pub fn random(model_hash: &str, columns: usize, rows: usize, rng: &mut impl RngCore) -> Self {
        WeightOpening {
            format: OPENING_FORMAT.into(),
            version: 1,
            model_hash: model_hash.into(),
            blinds: (0..columns)
                .map(|_| (0..rows).map(|_| fr_hex(&Fr::random(&mut *rng))).collect())
                .collect(),
        }
    }

    pub fn values(&self) -> Result<Vec<Vec<Fr>>, String> {
        if self.format != OPENING_FORMAT || self.version != 1 {
            return Err(format!(
                "not a weight opening ({} version {})",
                self.format, self.version
            ));
        }
        self.blinds
            .iter()
            .map(|col| col.iter().map(|h| fr_from_hex(h)).collect())
            .collect()
    }
}

/// The 64-byte EVM encoding of a point (`x || y`, big-endian; the identity is all zero).
pub fn point_bytes(p: &G1Affine) -> [u8; 64] {
    let mut out = [0u8; 64];
    if bool::from(p.is_identity()) {
        return out;
    }
    let c = p
        .coordinates()
        .expect("a point that is not the identity has coordinates");
    let mut x = c.x().to_repr();
    let mut y = c.y().to_repr();
    x.as_mut().reverse();
    y.as_mut().reverse();
    out[..32].copy_from_slice(x.as_ref());
    out[32..].copy_from_slice(y.as_ref());
    out
}

pub fn point_from_bytes(b: &[u8]) -> Option<G1Affine> {
    if b.len() != 64 {
        return None;
    }
    if b.iter().all(|&x| x == 0) {
        return Some(G1Affine::identity());
    }
    let coord = |s: &[u8]| {
        let mut repr = <Fq as PrimeField>::Repr::default();
        repr.as_mut().copy_from_slice(s);
        repr.as_mut().reverse();
        Option::<Fq>::from(Fq::from_repr(repr))
    };
    Option::from(G1Affine::from_xy(coord(&b[..32])?, coord(&b[32..])?))
}

pub fn point_hex(p: &G1Affine) -> String {
    hex::encode(point_bytes(p))
}

pub fn point_from_hex(s: &str) -> Option<G1Affine> {
    point_from_bytes(&hex::decode(s).ok()?)
}

/// Big-endian 32 bytes.
pub fn fr_bytes(v: &Fr) -> [u8; 32] {
    let mut r = v.to_repr();
    r.as_mut().reverse();
    let mut out = [0u8; 32];
    out.copy_from_slice(r.as_ref());
    out
}

fn fr_from_bytes(b: &[u8]) -> Option<Fr> {
    if b.len() != 32 {
        return None;
    }
    let mut repr = <Fr as PrimeField>::Repr::default();
    repr.as_mut().copy_from_slice(b);
    repr.as_mut().reverse();
    Option::from(Fr::from_repr(repr))
}

fn fr_hex(v: &Fr) -> String {
    hex::encode(fr_bytes(v))
}

fn fr_from_hex(s: &str) -> Result<Fr, String> {
    hex::decode(s)
        .ok()
        .and_then(|b| fr_from_bytes(&b))
        .ok_or_else(|| format!("{s:?} is not a scalar field element"))
}

/// A Keccak-256 hash as a scalar: the big-endian integer reduced mod r (as `mod(keccak256(..), r)`
/// in Solidity).
fn hash_to_fr(data: &[u8]) -> Fr {
    let h = Keccak256::digest(data);
    let mut wide = [0u8; 64];
    for (i, b) in h.iter().rev().enumerate() {
        wide[i] = *b;
    }
    Fr::from_uniform_bytes(&wide)
}

/// The batching challenge `ρ`: Keccak of the domain tag, the bases, the published and the
/// proof's commitments.
fn rho(bases: &[G1Affine], published: &[G1Affine], proof: &[G1Affine]) -> (Vec<u8>, Fr) {
    let mut data = DOMAIN.to_vec();
    for p in bases.iter().chain(published).chain(proof) {
        data.extend_from_slice(&point_bytes(p));
    }
    let r = hash_to_fr(&data);
    (data, r)
}

/// The Schnorr challenge `e`: Keccak of everything `ρ` hashed, then `T`.
fn challenge(mut data: Vec<u8>, t: &G1Affine) -> Fr {
    data.extend_from_slice(&point_bytes(t));
    hash_to_fr(&data)
}

/// `Σ_i scalars[i]·bases[i]` on the selected MSM engine.
fn msm(bases: &[G1Affine], scalars: &[Fr]) -> Result<G1, EngineError> {
    Engines::select().msm().msm(bases, scalars)
}

/// `D = Σ_j ρ^j (C_j − P_j)`.
fn batched_difference(published: &[G1Affine], proof: &[G1Affine], rho: Fr) -> G1 {
    let mut acc = G1::default();
    let mut pow = Fr::ONE;
    for (p, c) in published.iter().zip(proof) {
        acc += (c.to_curve() - p.to_curve()) * pow;
        pow *= rho;
    }
    acc
}

/// The Schnorr proof bytes: `T` (64) then `z_i` (32 each).
pub fn prove(
    bases: &[G1Affine],
    published: &[G1Affine],
    proof_commitments: &[G1Affine],
    proof_blinds: &[Vec<Fr>],
    published_blinds: &[Vec<Fr>],
    rng: &mut impl RngCore,
) -> Result<Vec<u8>, EngineError> {
    let (data, rho) = rho(bases, published, proof_commitments);
    let mut delta = vec![Fr::ZERO; bases.len()];
    let mut pow = Fr::ONE;
    for (r, s) in proof_blinds.iter().zip(published_blinds) {
        for (d, (ri, si)) in delta.iter_mut().zip(r.iter().zip(s)) {
            *d += pow * (*ri - *si);
        }
        pow *= rho;
    }
    let k: Vec<Fr> = (0..bases.len()).map(|_| Fr::random(&mut *rng)).collect();
    let t = msm(bases, &k)?.to_affine();
    let e = challenge(data, &t);
    let mut out = point_bytes(&t).to_vec();
    for (ki, di) in k.iter().zip(&delta) {
        out.extend_from_slice(&fr_bytes(&(*ki + e * di)));
    }
    Ok(out)
}

/// Checks a Schnorr proof that the proof's weight commitments equal the published ones up to
/// the blinding rows.
pub fn verify(
    bases: &[G1Affine],
    published: &[G1Affine],
    proof_commitments: &[G1Affine],
    bytes: &[u8],
) -> Result<(), VerifyError> {
    let bad = |what: &str| VerifyError::WeightOpening(what.to_string());
    if published.len() != proof_commitments.len() {
        return Err(bad("the proof has another number of weight columns"));
    }
    if bytes.len() != 64 + 32 * bases.len() {
        return Err(bad(&format!(
            "the weight proof has {} bytes, expected {}",
            bytes.len(),
            64 + 32 * bases.len()
        )));
    }
    let t = point_from_bytes(&bytes[..64]).ok_or_else(|| bad("T is not a curve point"))?;
    let z: Vec<Fr> = bytes[64..]
        .chunks(32)
        .map(fr_from_bytes)
        .collect::<Option<_>>()
        .ok_or_else(|| bad("a response is not a scalar field element"))?;
    let (data, rho) = rho(bases, published, proof_commitments);
    let e = challenge(data, &t);
    let d = batched_difference(published, proof_commitments, rho);
    let lhs = msm(bases, &z).map_err(|e| bad(&e.to_string()))?;
    if lhs != t.to_curve() + d * e {
        return Err(bad(
            "the proof's weight columns are not the ones the key commits to",
        ));
    }
    Ok(())
}

/// An RNG that records every byte it hands out, so the prover can replay halo2's draws.
pub struct Recording<R> {
    inner: R,
    pub bytes: Vec<u8>,
}

impl<R: RngCore> Recording<R> {
    pub fn new(inner: R) -> Self {
        Recording {
            inner,
            bytes: Vec::new(),
        }
    }
}

impl<R: RngCore> RngCore for Recording<R> {
    fn next_u32(&mut self) -> u32 {
        impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
        self.bytes.extend_from_slice(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Replays recorded bytes (then zeros, which the self-check would catch).
pub struct Replay<'a> {
    bytes: &'a [u8],
}

impl<'a> Replay<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Replay { bytes }
    }
}

impl RngCore for Replay<'_> {
    fn next_u32(&mut self) -> u32 {
        impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let n = dest.len().min(self.bytes.len());
        dest[..n].copy_from_slice(&self.bytes[..n]);
        dest[n..].fill(0);
        self.bytes = &self.bytes[n..];
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2_axiom::halo2curves::group::Group;
    use rand::rngs::OsRng;

    /// Four columns sharing the weight part `w[j]`, published with blinds `s`, proved with `r`.
    #[allow(clippy::type_complexity)]
    fn commitments(g: &[G1Affine], w: &[G1], blinds: &[Vec<Fr>]) -> Vec<G1Affine> {
        w.iter()
            .zip(blinds)
            .map(|(wj, b)| (*wj + msm(g, b).unwrap()).to_affine())
            .collect()
    }

    #[test]
    fn schnorr_accepts_the_same_weights_and_rejects_others() {
        let n = 6;
        let g: Vec<G1Affine> = (0..n).map(|_| G1::random(OsRng).to_affine()).collect();
        let w: Vec<G1> = (0..4).map(|_| G1::random(OsRng)).collect();
        let blinds = || -> Vec<Vec<Fr>> {
            (0..4)
                .map(|_| (0..n).map(|_| Fr::random(OsRng)).collect())
                .collect()
        };
        let (s, r) = (blinds(), blinds());
        let published = commitments(&g, &w, &s);
        let honest = commitments(&g, &w, &r);
        let proof = prove(&g, &published, &honest, &r, &s, &mut OsRng).unwrap();
        verify(&g, &published, &honest, &proof).expect("the same weights verify");

        // One column's weight part changed: no opening the prover knows can explain it.
        let mut w2 = w.clone();
        w2[2] += G1::generator();
        let other = commitments(&g, &w2, &r);
        let forged = prove(&g, &published, &other, &r, &s, &mut OsRng).unwrap();
        assert!(verify(&g, &published, &other, &forged).is_err());
        // A valid proof for other commitments, and tampered bytes.
        assert!(verify(&g, &published, &other, &proof).is_err());
        for at in [0, 63, 64, proof.len() - 1] {
            let mut t = proof.clone();
            t[at] ^= 1;
            assert!(verify(&g, &published, &honest, &t).is_err(), "byte {at}");
        }
        assert!(verify(&g, &published, &honest, &proof[..proof.len() - 32]).is_err());
    }

    #[test]
    fn points_and_scalars_round_trip() {
        let p = G1::random(OsRng).to_affine();
        assert_eq!(point_from_bytes(&point_bytes(&p)), Some(p));
        assert_eq!(point_from_bytes(&[0; 64]), Some(G1Affine::identity()));
        let mut off = point_bytes(&p);
        off[63] ^= 1;
        assert_eq!(point_from_bytes(&off), None, "off the curve");
        let v = Fr::random(OsRng);
        assert_eq!(fr_from_bytes(&fr_bytes(&v)), Some(v));
        assert_eq!(fr_from_bytes(&[0xff; 32]), None, "not below the modulus");
    }

    #[test]
    fn replay_reproduces_recorded_draws() {
        let mut rec = Recording::new(OsRng);
        let a: Vec<Fr> = (0..5).map(|_| Fr::random(&mut rec)).collect();
        let mut rep = Replay::new(&rec.bytes);
        let b: Vec<Fr> = (0..5).map(|_| Fr::random(&mut rep)).collect();
        assert_eq!(a, b);
    }
}
