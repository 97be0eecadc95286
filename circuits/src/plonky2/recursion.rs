//! Recursive aggregation: plonky2 inference proofs, of one model or of many, folded into one
//! proof of a fixed circuit.
//!
//! Two circuits, both of plonky2's standard recursion configuration (100 conjectured bits,
//! without zero-knowledge: what they hide is already hidden by the inner proofs, which are
//! zero-knowledge, and the statements they show are public anyway):
//! - a **wrapper** per model verifies one inference proof (the model's verifier data are
//!   constants of the wrapper) and shows the hash of that proof's public values. It is padded
//!   to the merge circuit's shape, so that one circuit can verify the wrapper of any model.
//! - the **merge** circuit ([`Merge`], one for every model and every number of proofs) verifies
//!   two proofs of its own shape. Each child is either a wrapper, whose verifier data are a
//!   witness hashed into the child's leaf (`leaf = H(1, H(wrapper's verifier data), values)`),
//!   or a merge proof, verified under the merge circuit's own verifier data, which every merge
//!   proof shows among its public inputs (plonky2's cyclic recursion). It shows
//!   `H(2, left, right)`; the right child may be empty ([`EMPTY`]).
//!
//! The root a merge proof shows is therefore the Merkle root ([`root`]) of the leaves it
//! covers, in order, each the pair (circuit, public values) of a proof that verified. The
//! verifier recomputes the root from the statement list and checks that the top proof shows
//! the merge circuit's own verifier data. A leaf names the *wrapper* that verified the inner
//! proof, and so the model (whose verifier data are the wrapper's constants): a statement is
//! about a model only if its circuit is that model's wrapper, which anyone rebuilds from the
//! model's key ([`Wrapper::build`]).

use std::sync::OnceLock;

use plonky2::field::types::Field;
use plonky2::gates::coset_interpolation::CosetInterpolationGate;
use plonky2::gates::gate::GateRef;
use plonky2::gates::noop::NoopGate;
use plonky2::gates::random_access::RandomAccessGate;
use plonky2::hash::hash_types::{HashOut, HashOutTarget};
use plonky2::hash::hashing::hash_n_to_hash_no_pad;
use plonky2::hash::poseidon::{PoseidonHash, PoseidonPermutation};
use plonky2::iop::target::{BoolTarget, Target};
use plonky2::iop::witness::{PartialWitness, WitnessWrite};
use plonky2::plonk::circuit_builder::CircuitBuilder;
use plonky2::plonk::circuit_data::{
    CircuitConfig, CircuitData, CommonCircuitData, VerifierCircuitData, VerifierCircuitTarget,
    VerifierOnlyCircuitData,
};
use plonky2::plonk::proof::{ProofWithPublicInputs, ProofWithPublicInputsTarget};

use super::fri::NARROW;
use super::{C, D, F};
use crate::error::CircuitError;

/// The configuration of the wrapper and merge circuits.
pub fn aggregation_config() -> CircuitConfig {
    CircuitConfig::standard_recursion_config()
}

const TAG_LEAF: u64 = 1;
const TAG_NODE: u64 = 2;
/// The hash of an absent right child (no known preimage).
pub const EMPTY: HashOut<F> = HashOut {
    elements: [F::ZERO; 4],
};
/// The merge circuit's smallest size (log2 rows): two recursive verifications need ~2^13.
const MIN_MERGE_DEGREE_BITS: usize = 13;

fn hash(inputs: &[F]) -> HashOut<F> {
    hash_n_to_hash_no_pad::<F, PoseidonPermutation<F>>(inputs)
}

/// The hash of a proof's public values, as a wrapper shows it.
pub fn values_hash(public_inputs: &[F]) -> HashOut<F> {
    hash(public_inputs)
}

/// The hash of a circuit's verifier data (its digest and the cap of its constants and
/// wiring): what a leaf names.
pub fn circuit_hash(vd: &VerifierOnlyCircuitData<C, D>) -> HashOut<F> {
    let mut v = vd.circuit_digest.elements.to_vec();
    for h in &vd.constants_sigmas_cap.0 {
        v.extend_from_slice(&h.elements);
    }
    hash(&v)
}

/// A leaf: a proof under the circuit `circuit` whose public values hash to `values`.
pub fn leaf(circuit: HashOut<F>, values: HashOut<F>) -> HashOut<F> {
    let mut v = vec![F::from_canonical_u64(TAG_LEAF)];
    v.extend_from_slice(&circuit.elements);
    v.extend_from_slice(&values.elements);
    hash(&v)
}

/// An inner node of the tree.
pub fn node(left: HashOut<F>, right: HashOut<F>) -> HashOut<F> {
    let mut v = vec![F::from_canonical_u64(TAG_NODE)];
    v.extend_from_slice(&left.elements);
    v.extend_from_slice(&right.elements);
    hash(&v)
}

/// The root of `leaves`: pairs in order, an odd last one paired with [`EMPTY`], level by level
/// until one node is left (one leaf gives `node(leaf, EMPTY)`). `None` for no leaves.
pub fn root(leaves: &[HashOut<F>]) -> Option<HashOut<F>> {
    let mut level = leaves.to_vec();
    loop {
        if level.is_empty() {
            return None;
        }
        level = level
            .chunks(2)
            .map(|c| node(c[0], c.get(1).copied().unwrap_or(EMPTY)))
            .collect();
        if level.len() == 1 {
            return Some(level[0]);
        }
    }
}

fn flat(vd: &VerifierCircuitTarget) -> Vec<Target> {
    let mut v = vd.circuit_digest.elements.to_vec();
    for h in &vd.constants_sigmas_cap.0 {
        v.extend_from_slice(&h.elements);
    }
    v
}

fn select_hash(
    b: &mut CircuitBuilder<F, D>,
    cond: BoolTarget,
    x: HashOutTarget,
    y: HashOutTarget,
) -> HashOutTarget {
    HashOutTarget {
        elements: std::array::from_fn(|i| b.select(cond, x.elements[i], y.elements[i])),
    }
}

fn tagged(
    b: &mut CircuitBuilder<F, D>,
    tag: u64,
    x: HashOutTarget,
    y: HashOutTarget,
) -> HashOutTarget {
    let mut v = vec![b.constant(F::from_canonical_u64(tag))];
    v.extend_from_slice(&x.elements);
    v.extend_from_slice(&y.elements);
    b.hash_n_to_hash_no_pad::<PoseidonHash>(v)
}

/// Pads `b` with no-op rows so that its build has exactly `2^degree_bits` rows (the build adds
/// a few rows of its own: public inputs, constants).
fn pad(b: &mut CircuitBuilder<F, D>, degree_bits: usize) {
    while b.num_gates() <= (1 << (degree_bits - 1)) {
        b.add_gate(NoopGate, vec![]);
    }
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> CircuitError {
    move |e| CircuitError::Aggregation(format!("{what}: {e}"))
}

/// What differs between two circuit shapes, for the error message.
fn differences(a: &CommonCircuitData<F, D>, b: &CommonCircuitData<F, D>) -> String {
    let ids =
        |c: &CommonCircuitData<F, D>| -> Vec<String> { c.gates.iter().map(|g| g.0.id()).collect() };
    let mut d = Vec::new();
    if a.degree_bits() != b.degree_bits() {
        d.push(format!(
            "2^{} rows, not 2^{}",
            a.degree_bits(),
            b.degree_bits()
        ));
    }
    let (ga, gb) = (ids(a), ids(b));
    let extra: Vec<&String> = ga.iter().filter(|g| !gb.contains(g)).collect();
    if !extra.is_empty() {
        d.push(format!("gates {extra:?} beyond the shape's"));
    }
    if a.selectors_info != b.selectors_info {
        d.push("selectors".into());
    }
    if a.num_constants != b.num_constants {
        d.push(format!(
            "{} constants, not {}",
            a.num_constants, b.num_constants
        ));
    }
    if a.quotient_degree_factor != b.quotient_degree_factor {
        d.push("quotient degree".into());
    }
    if d.is_empty() {
        d.push("other parameters".into());
    }
    d.join("; ")
}

/// Proves, with a failed in-circuit check (a witness that conflicts with a constraint; plonky2
/// panics on some) as an error.
fn prove(
    data: &CircuitData<F, C, D>,
    pw: PartialWitness<F>,
    what: &'static str,
) -> Result<ProofWithPublicInputs<F, C, D>, CircuitError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| data.prove(pw)))
        .map_err(|e| failed(what)(ciro_model_compiler::panic_message(e)))?
        .map_err(failed(what))
}

/// One child of a merge step.
#[derive(Clone, Copy)]
pub enum Child<'a> {
    /// A wrapper's proof and the wrapper's verifier data.
    Leaf(
        &'a ProofWithPublicInputs<F, C, D>,
        &'a VerifierOnlyCircuitData<C, D>,
    ),
    /// A merge proof.
    Node(&'a ProofWithPublicInputs<F, C, D>),
}

struct Side {
    proof: ProofWithPublicInputsTarget<D>,
    is_node: BoolTarget,
    other: VerifierCircuitTarget,
}

/// The merge circuit: fixed, whatever the models and the number of proofs.
pub struct Merge {
    pub data: CircuitData<F, C, D>,
    own: VerifierCircuitTarget,
    sides: [Side; 2],
    right_empty: BoolTarget,
}

impl Merge {
    /// The merge circuit, built once per process (about a second).
    pub fn get() -> &'static Merge {
        static MERGE: OnceLock<Merge> = OnceLock::new();
        MERGE.get_or_init(Merge::fixed_point)
    }

    /// The shape every proof the merge circuit verifies has: its own.
    pub fn shape(&self) -> &CommonCircuitData<F, D> {
        &self.data.common
    }

    pub fn verifier_data(&self) -> VerifierCircuitData<F, C, D> {
        self.data.verifier_data()
    }

    /// The merge circuit must verify proofs of its own shape: start from a small circuit's
    /// shape and rebuild against the last build's shape until they agree (two or three builds).
    fn fixed_point() -> Merge {
        let mut b = CircuitBuilder::<F, D>::new(aggregation_config());
        let npi = 4 + 4 + 4 * aggregation_config().fri_config.num_cap_elements();
        for _ in 0..npi {
            b.add_virtual_public_input();
        }
        let mut shape = b.build::<C>().common;
        for _ in 0..8 {
            let m = Merge::build(&shape);
            if m.data.common == shape {
                return m;
            }
            shape = m.data.common.clone();
        }
        panic!("the merge circuit's shape does not settle")
    }

    fn build(shape: &CommonCircuitData<F, D>) -> Merge {
        let config = aggregation_config();
        let mut b = CircuitBuilder::<F, D>::new(config.clone());
        let root = b.add_virtual_hash();
        b.register_public_inputs(&root.elements);
        let own = b.add_verifier_data_public_inputs();
        let own_flat = flat(&own);
        let mut hashes = Vec::new();
        let mut sides = Vec::new();
        for _ in 0..2 {
            let proof = b.add_virtual_proof_with_pis(shape);
            let is_node = b.add_virtual_bool_target_safe();
            let other = b.add_virtual_verifier_data(config.fri_config.cap_height);
            let vd = b.select_verifier_data(is_node, &own, &other);
            b.verify_proof::<C>(&proof, &vd, shape);
            // A merge child shows the verifier data it was verified under: they must be ours
            // (the top proof's are checked by the verifier, so every merge below is this one).
            for (&c, &o) in proof.public_inputs[4..].iter().zip(&own_flat) {
                let s = b.select(is_node, c, o);
                b.connect(s, o);
            }
            let child = HashOutTarget::from_vec(proof.public_inputs[..4].to_vec());
            let circuit = b.hash_n_to_hash_no_pad::<PoseidonHash>(flat(&other));
            let leaf = tagged(&mut b, TAG_LEAF, circuit, child);
            hashes.push(select_hash(&mut b, is_node, child, leaf));
            sides.push(Side {
                proof,
                is_node,
                other,
            });
        }
        let right_empty = b.add_virtual_bool_target_safe();
        let empty = HashOutTarget {
            elements: [b.zero(); 4],
        };
        let right = select_hash(&mut b, right_empty, empty, hashes[1]);
        let r = tagged(&mut b, TAG_NODE, hashes[0], right);
        b.connect_hashes(root, r);
        for g in &shape.gates {
            b.add_gate_to_gate_set(g.clone());
        }
        // Inference proofs fold by 2 or by 16 (`fri.rs`): verifying the former takes these
        // gates, which every wrapper, in the merge circuit's shape, must find in its gate set.
        b.add_gate_to_gate_set(GateRef::new(CosetInterpolationGate::new(NARROW)));
        b.add_gate_to_gate_set(GateRef::new(RandomAccessGate::new_from_config(
            &config, NARROW,
        )));
        pad(&mut b, shape.degree_bits().max(MIN_MERGE_DEGREE_BITS));
        let data = b.build::<C>();
        let [s0, s1]: [Side; 2] = sides.try_into().ok().expect("two sides");
        Merge {
            data,
            own,
            sides: [s0, s1],
            right_empty,
        }
    }

    /// One merge step: proves `H(2, left, right)` (right absent: [`EMPTY`]).
    pub fn prove(
        &self,
        left: Child,
        right: Option<Child>,
    ) -> Result<ProofWithPublicInputs<F, C, D>, CircuitError> {
        let err = failed("merge");
        let mut pw = PartialWitness::new();
        pw.set_verifier_data_target(&self.own, &self.data.verifier_only)
            .map_err(&err)?;
        pw.set_bool_target(self.right_empty, right.is_none())
            .map_err(&err)?;
        // An absent right child still needs a proof to verify: the left one again.
        let right = right.unwrap_or(left);
        for (side, child) in self.sides.iter().zip([left, right]) {
            let (proof, other, is_node) = match child {
                Child::Leaf(p, vd) => (p, vd, false),
                Child::Node(p) => (p, &self.data.verifier_only, true),
            };
            pw.set_proof_with_pis_target(&side.proof, proof)
                .map_err(&err)?;
            pw.set_verifier_data_target(&side.other, other)
                .map_err(&err)?;
            pw.set_bool_target(side.is_node, is_node).map_err(&err)?;
        }
        prove(&self.data, pw, "merge")
    }
}

/// One recursive verification: a proof under fixed verifier data, its public values (hashed,
/// or the first four as they are) shown.
struct Stage {
    data: CircuitData<F, C, D>,
    proof: ProofWithPublicInputsTarget<D>,
}

impl Stage {
    /// With `shape`, padded to it (an error if it does not fit); without, as small as it comes.
    fn build(
        inner: &VerifierCircuitData<F, C, D>,
        hash_values: bool,
        shape: Option<&CommonCircuitData<F, D>>,
    ) -> Result<Stage, CircuitError> {
        let mut b = CircuitBuilder::<F, D>::new(aggregation_config());
        let proof = b.add_virtual_proof_with_pis(&inner.common);
        let vd = b.constant_verifier_data(&inner.verifier_only);
        b.verify_proof::<C>(&proof, &vd, &inner.common);
        let values = if hash_values {
            b.hash_n_to_hash_no_pad::<PoseidonHash>(proof.public_inputs.clone())
        } else {
            HashOutTarget::from_vec(proof.public_inputs[..4].to_vec())
        };
        b.register_public_inputs(&values.elements);
        let Some(shape) = shape else {
            return Ok(Stage {
                data: b.build::<C>(),
                proof,
            });
        };
        let zero = b.zero();
        for _ in 4..shape.num_public_inputs {
            b.register_public_input(zero);
        }
        for g in &shape.gates {
            b.add_gate_to_gate_set(g.clone());
        }
        if b.num_gates() >= shape.degree() {
            return Err(CircuitError::Aggregation(format!(
                "verifying this proof takes {} rows, over the aggregation circuit's {}",
                b.num_gates(),
                shape.degree()
            )));
        }
        pad(&mut b, shape.degree_bits());
        let data = b.build::<C>();
        if data.common != *shape {
            return Err(CircuitError::Aggregation(format!(
                "this wrapper does not have the aggregation circuit's shape ({})",
                differences(&data.common, shape)
            )));
        }
        Ok(Stage { data, proof })
    }

    fn prove(
        &self,
        inner: &ProofWithPublicInputs<F, C, D>,
    ) -> Result<ProofWithPublicInputs<F, C, D>, CircuitError> {
        let err = failed("wrapping");
        let mut pw = PartialWitness::new();
        pw.set_proof_with_pis_target(&self.proof, inner)
            .map_err(&err)?;
        prove(&self.data, pw, "wrapping")
    }
}

/// The wrapper of one model: verifies a proof under the model's verifier data and shows the
/// hash of its public values, in the merge circuit's shape. A model whose proofs take more to
/// verify than that shape holds (many lookup tables: more gate kinds to check) gets a first
/// stage of its own size, which the second, in shape, verifies.
pub struct Wrapper {
    stages: Vec<Stage>,
}

impl Wrapper {
    /// The wrapper of the model whose verifier data are `inner` (deterministic: anyone with the
    /// model's key rebuilds it and gets the same [`Wrapper::circuit_hash`]).
    pub fn build(inner: &VerifierCircuitData<F, C, D>) -> Result<Wrapper, CircuitError> {
        let shape = Merge::get().shape();
        if let Ok(one) = Stage::build(inner, true, Some(shape)) {
            return Ok(Wrapper { stages: vec![one] });
        }
        let first = Stage::build(inner, true, None)?;
        let second = Stage::build(&first.data.verifier_data(), false, Some(shape))?;
        Ok(Wrapper {
            stages: vec![first, second],
        })
    }

    /// The verifier data of the wrapper's last stage, the proof the merge circuit verifies.
    pub fn verifier_data(&self) -> &VerifierOnlyCircuitData<C, D> {
        &self.stages.last().expect("a stage").data.verifier_only
    }

    /// How many recursive verifications one wrapping takes (1 or 2).
    pub fn stages(&self) -> usize {
        self.stages.len()
    }

    /// What a leaf names for proofs of this model.
    pub fn circuit_hash(&self) -> HashOut<F> {
        circuit_hash(self.verifier_data())
    }

    /// Wraps one proof of the model (fails if the proof does not verify).
    pub fn prove(
        &self,
        inner: &ProofWithPublicInputs<F, C, D>,
    ) -> Result<ProofWithPublicInputs<F, C, D>, CircuitError> {
        let mut p = self.stages[0].prove(inner)?;
        for s in &self.stages[1..] {
            p = s.prove(&p)?;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_pairs_in_order_and_pads_an_odd_level() {
        let l: Vec<HashOut<F>> = (1..=3u64)
            .map(|i| HashOut::from_partial(&[F::from_canonical_u64(i)]))
            .collect();
        assert_eq!(root(&[]), None);
        assert_eq!(root(&l[..1]), Some(node(l[0], EMPTY)));
        assert_eq!(root(&l[..2]), Some(node(l[0], l[1])));
        assert_eq!(root(&l), Some(node(node(l[0], l[1]), node(l[2], EMPTY))));
        assert_ne!(root(&[l[1], l[0]]), root(&l[..2]));
    }

    /// The merge circuit is a fixed point (built against its own shape it has that shape) and
    /// deterministic: a verifier that rebuilds it gets the aggregator's verifier data.
    #[test]
    fn the_merge_circuit_is_a_deterministic_fixed_point() {
        let m = Merge::get();
        assert_eq!(m.shape().degree_bits(), MIN_MERGE_DEGREE_BITS);
        let again = Merge::build(m.shape());
        assert!(again.data.common == *m.shape());
        assert_eq!(
            circuit_hash(&again.data.verifier_only),
            circuit_hash(&m.data.verifier_only)
        );
    }
}
