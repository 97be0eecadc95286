//! Aggregates: one plonky2 proof that many plonky2 inference proofs verified (circuits in
//! `ciro_circuits::plonky2::recursion`).
//!
//! The file (magic `CIROAG01`, then a JSON header and the proof, as a bundle) lists the
//! statements it covers, in order: per proof, the model it claims (name, commitment and the
//! hash of its wrapper circuit, listed once per model) and the hash of the proof's public
//! values. The proof's
//! public inputs are not stored: the verifier rebuilds them from the list (its Merkle root) and
//! the merge circuit's own verifier data, so a changed, reordered or shortened list fails.
//! The claimed model of a statement is confirmed by rebuilding that model's wrapper from its
//! key ([`statement_of`], [`check_models`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ciro_circuits::plonky2::recursion::{self, Wrapper};
use ciro_circuits::plonky2::{C, D, F};
use plonky2::field::types::{Field, PrimeField64};
use plonky2::hash::hash_types::HashOut;
use plonky2::plonk::circuit_data::VerifierCircuitData;
use plonky2::plonk::proof::ProofWithPublicInputs;
use plonky2::util::serialization::DefaultGateSerializer;
use serde::{Deserialize, Serialize};

use super::verify::{public_inputs, read_proof, verify_proof};
use super::{hash_hex, parse_hash, proof_params, Plonky2VerifyingKey};
use crate::bundle::{container, split_container, write_atomic, KeyFile, ProofBundle, ProofParams};
use crate::error::{BundleError, VerifyError};
use crate::public::panic_message;

pub const AGGREGATE_MAGIC: &[u8; 8] = b"CIROAG01";
pub const AGGREGATE_FORMAT: &str = "ciro-plonky2-aggregate";
pub const AGGREGATE_VERSION: u32 = 1;
/// The most statements one aggregate may list (a million: far above any batch, and the root
/// of that many leaves is computed in about a second).
pub const MAX_STATEMENTS: usize = 1 << 20;

/// One proof an aggregate covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub model_name: String,
    /// The model's commitment (the hash of its key), as the aggregate claims it: true only if
    /// `circuit` is that key's wrapper ([`check_models`]).
    pub model_commitment: String,
    /// The hash of the wrapper circuit that verified the proof (`0x`, four field elements).
    pub circuit: String,
    /// The hash of the proof's public values (shown input or its hash, then the outputs).
    pub public_values: String,
}

/// A model an aggregate's statements claim, listed once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedModel {
    pub name: String,
    pub commitment: String,
    /// Its wrapper's hash.
    pub circuit: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateHeader {
    pub format: String,
    pub version: u32,
    pub params: ProofParams,
    /// The hash of the merge circuit's verifier data: one circuit for any models and any
    /// number of proofs.
    pub aggregator: String,
    /// The models the statements claim, each once.
    pub models: Vec<ClaimedModel>,
    /// Per proof, in order: the index of its model in `models` and the hash of its public
    /// values.
    pub statements: Vec<(usize, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    pub header: AggregateHeader,
    pub proof: Vec<u8>,
}

/// The parameters of the aggregation circuits' proofs.
pub fn aggregation_params() -> ProofParams {
    proof_params(
        &recursion::aggregation_config(),
        "Poseidon over Goldilocks, FRI, recursive aggregation",
    )
}

/// A hash as an aggregate writes it: `0x` and four 16-digit field elements.
pub fn hash_to_hex(h: HashOut<F>) -> String {
    hash_hex(h.elements.map(|e| e.to_canonical_u64()))
}

/// The hash [`hash_to_hex`] wrote; `what` names it in the error.
pub fn hash_from_hex(s: &str, what: &str) -> Result<HashOut<F>, VerifyError> {
    let e = parse_hash(s).ok_or_else(|| {
        VerifyError::Malformed(format!("{what} {s:?} is not four field elements"))
    })?;
    Ok(HashOut {
        elements: e.map(F::from_canonical_u64),
    })
}

/// The merge circuit's verifier data as this build ships them (`aggregation.key`, plonky2's
/// serialization): verifying an aggregate needs no circuit to be built. A test checks that they
/// are the merge circuit's ([`Merge::get`]).
pub const AGGREGATION_KEY: &[u8] = include_bytes!("aggregation.key");

/// The aggregates' verification key: the merge circuit's verifier data.
pub fn aggregation_key() -> &'static VerifierCircuitData<F, C, D> {
    static KEY: OnceLock<VerifierCircuitData<F, C, D>> = OnceLock::new();
    KEY.get_or_init(|| {
        VerifierCircuitData::from_bytes(AGGREGATION_KEY.to_vec(), &DefaultGateSerializer)
            .expect("the shipped aggregation key loads")
    })
}

/// The merge circuit's hash, as an aggregate names it.
pub fn aggregator() -> String {
    hash_to_hex(recursion::circuit_hash(&aggregation_key().verifier_only))
}

impl Aggregate {
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("aggregate headers serialise");
        container(AGGREGATE_MAGIC, &header, &self.proof)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        let (header, proof) = split_container(bytes, AGGREGATE_MAGIC).map_err(|e| match e {
            BundleError::NotABundle => {
                BundleError::Malformed("not a Ciro aggregate (bad magic bytes)".into())
            }
            e => e,
        })?;
        let header: AggregateHeader = serde_json::from_slice(header)
            .map_err(|e| BundleError::Malformed(format!("aggregate header: {e}")))?;
        if (header.format.as_str(), header.version) != (AGGREGATE_FORMAT, AGGREGATE_VERSION) {
            return Err(BundleError::Malformed(format!(
                "format {} v{} (this build reads {AGGREGATE_FORMAT} v{AGGREGATE_VERSION})",
                header.format, header.version
            )));
        }
        Ok(Aggregate {
            header,
            proof: proof.to_vec(),
        })
    }

    /// Whether `bytes` start as an aggregate does.
    pub fn is_aggregate(bytes: &[u8]) -> bool {
        bytes.starts_with(AGGREGATE_MAGIC)
    }

    pub fn save(&self, path: &Path) -> Result<(), BundleError> {
        write_atomic(path, &self.to_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let bytes =
            std::fs::read(path).map_err(|e| BundleError::Io(path.display().to_string(), e))?;
        Self::from_bytes(&bytes)
    }

    /// The statements in full, in order (each with its claimed model).
    pub fn statements(&self) -> Result<Vec<Statement>, VerifyError> {
        let h = &self.header;
        if h.statements.len() > MAX_STATEMENTS {
            return Err(VerifyError::Malformed(format!(
                "{} statements, over the limit of {MAX_STATEMENTS}",
                h.statements.len()
            )));
        }
        h.statements
            .iter()
            .map(|(m, values)| {
                let model = h.models.get(*m).ok_or_else(|| {
                    VerifyError::Malformed(format!(
                        "a statement names model {m} of {}",
                        h.models.len()
                    ))
                })?;
                Ok(Statement {
                    model_name: model.name.clone(),
                    model_commitment: model.commitment.clone(),
                    circuit: model.circuit.clone(),
                    public_values: values.clone(),
                })
            })
            .collect()
    }

    /// Lists `statements` in this aggregate's header, each model once.
    pub fn set_statements(&mut self, statements: &[Statement]) {
        let mut models: Vec<ClaimedModel> = Vec::new();
        let mut list = Vec::new();
        for s in statements {
            let claimed = ClaimedModel {
                name: s.model_name.clone(),
                commitment: s.model_commitment.clone(),
                circuit: s.circuit.clone(),
            };
            let m = models
                .iter()
                .position(|x| *x == claimed)
                .unwrap_or_else(|| {
                    models.push(claimed);
                    models.len() - 1
                });
            list.push((m, s.public_values.clone()));
        }
        self.header.models = models;
        self.header.statements = list;
    }
}

/// The Merkle root of a statement list ([`recursion::root`]).
pub fn statements_root(statements: &[Statement]) -> Result<HashOut<F>, VerifyError> {
    let leaves = statements
        .iter()
        .map(|s| {
            Ok(recursion::leaf(
                hash_from_hex(&s.circuit, "statement circuit")?,
                hash_from_hex(&s.public_values, "statement public values")?,
            ))
        })
        .collect::<Result<Vec<_>, VerifyError>>()?;
    recursion::root(&leaves)
        .ok_or_else(|| VerifyError::Malformed("the aggregate lists no statement".into()))
}

/// Checks an aggregate in one plonky2 verification; returns the statements it covers. A
/// statement's model is as claimed once [`check_models`] has seen that model's key.
pub fn verify_aggregate(agg: &Aggregate) -> Result<Vec<Statement>, VerifyError> {
    let h = &agg.header;
    if h.params != aggregation_params() {
        return Err(VerifyError::Mismatch {
            field: "parameters".into(),
            detail: format!("{:?}", h.params),
        });
    }
    let key = aggregation_key();
    let ours = aggregator();
    if h.aggregator != ours {
        return Err(VerifyError::Mismatch {
            field: "aggregator".into(),
            detail: format!(
                "made by merge circuit {}, this build's is {ours}",
                h.aggregator
            ),
        });
    }
    let statements = agg.statements()?;
    let root = statements_root(&statements)?;
    let mut public_inputs = root.elements.to_vec();
    let own = &key.verifier_only;
    public_inputs.extend_from_slice(&own.circuit_digest.elements);
    for c in &own.constants_sigmas_cap.0 {
        public_inputs.extend_from_slice(&c.elements);
    }
    let proof = read_proof(&agg.proof, &key.common)?;
    let checked = verify_proof(
        key,
        ProofWithPublicInputs {
            proof,
            public_inputs,
        },
    );
    checked.map_err(|e| match e {
        VerifyError::Plonky2(m) => VerifyError::Plonky2(format!("the aggregate: {m}")),
        e => e,
    })?;
    Ok(statements)
}

/// The hash of a model's wrapper, built once per key per process.
pub fn wrapper_hash(vk: &Plonky2VerifyingKey) -> Result<HashOut<F>, VerifyError> {
    static CACHE: OnceLock<Mutex<HashMap<String, HashOut<F>>>> = OnceLock::new();
    let commitment = vk.commitment();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().expect("wrapper cache").get(&commitment) {
        return Ok(*h);
    }
    let h = wrapper(&vk.circuit_data()?)?.circuit_hash();
    cache.lock().expect("wrapper cache").insert(commitment, h);
    Ok(h)
}

/// The wrapper of the model whose verifier data are `data`.
fn wrapper(data: &VerifierCircuitData<F, C, D>) -> Result<Wrapper, VerifyError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Wrapper::build(data)))
        .map_err(|e| VerifyError::Malformed(panic_message(e)))?
        .map_err(|e| VerifyError::Malformed(e.to_string()))
}

/// The statement an aggregate lists for `bundle`, a proof under `vk` (its header checked
/// against the key; its proof is not read: the aggregate's own proof is what shows it verified).
pub fn statement_of(
    vk: &Plonky2VerifyingKey,
    bundle: &ProofBundle,
) -> Result<Statement, VerifyError> {
    let values = recursion::values_hash(&public_inputs(vk, bundle)?);
    Ok(Statement {
        model_name: vk.model_name.clone(),
        model_commitment: vk.commitment(),
        circuit: hash_to_hex(wrapper_hash(vk)?),
        public_values: hash_to_hex(values),
    })
}

/// Checks that every statement claiming one of `keys`' models was verified by that model's
/// wrapper; returns, per statement, whether one of the keys confirmed it.
pub fn check_models(
    statements: &[Statement],
    keys: &[&Plonky2VerifyingKey],
) -> Result<Vec<bool>, VerifyError> {
    let mut wrappers = HashMap::new();
    for k in keys {
        wrappers.insert(k.commitment(), hash_to_hex(wrapper_hash(k)?));
    }
    statements
        .iter()
        .enumerate()
        .map(|(i, s)| match wrappers.get(&s.model_commitment) {
            None => Ok(false),
            Some(w) if *w == s.circuit => Ok(true),
            Some(_) => Err(VerifyError::Mismatch {
                field: format!("statement {i}"),
                detail: format!(
                    "it claims model {} ({}), but its proof was verified by another circuit",
                    s.model_name, s.model_commitment
                ),
            }),
        })
        .collect()
}

/// Checks that `agg` covers `bundle` (a proof under `vk`): the aggregate verifies and lists the
/// bundle's statement. Returns every index it has (proofs of one model on one input make equal
/// statements: the aggregate shows that such a proof verified, once per listing).
pub fn check_inclusion(
    agg: &Aggregate,
    vk: &Plonky2VerifyingKey,
    bundle: &ProofBundle,
) -> Result<Vec<usize>, VerifyError> {
    positions(&verify_aggregate(agg)?, vk, bundle)
}

/// Where `statements` (of an aggregate already verified) list `bundle`'s statement: every
/// index, or an error if none.
pub fn positions(
    statements: &[Statement],
    vk: &Plonky2VerifyingKey,
    bundle: &ProofBundle,
) -> Result<Vec<usize>, VerifyError> {
    let s = statement_of(vk, bundle)?;
    let at: Vec<usize> = (0..statements.len())
        .filter(|&i| statements[i] == s)
        .collect();
    if at.is_empty() {
        return Err(VerifyError::Mismatch {
            field: "statement".into(),
            detail: format!(
                "the aggregate does not cover this proof of {} (public values {})",
                s.model_name, s.public_values
            ),
        });
    }
    Ok(at)
}

#[cfg(feature = "plonky2-prover")]
pub use prove::{aggregate, AggregateStats};

#[cfg(feature = "plonky2-prover")]
mod prove {
    use std::time::Instant;

    use ciro_circuits::plonky2::recursion::{Child, Merge, Wrapper};
    use plonky2::plonk::proof::ProofWithPublicInputs;
    use plonky2::util::serialization::Write;
    use rayon::prelude::*;

    use super::*;
    use crate::error::ProveError;

    type Proof = ProofWithPublicInputs<F, C, D>;

    /// Where the time of an aggregation went.
    #[derive(Clone, Debug, Default)]
    pub struct AggregateStats {
        /// Building the wrappers (one per model).
        pub wrapper_setup_s: f64,
        /// Wrapping every proof (in parallel).
        pub wrap_s: f64,
        /// Each level of merges: how many steps, and the wall time of the level.
        pub levels: Vec<(usize, f64)>,
    }

    /// Folds plonky2 inference proofs (each with its model's key) into one aggregate: each
    /// proof checked, wrapped, then merged in pairs, each level in parallel.
    pub fn aggregate(
        items: &[(&Plonky2VerifyingKey, &ProofBundle)],
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Aggregate, AggregateStats), ProveError> {
        if items.is_empty() {
            return Err(ProveError::Input("nothing to aggregate".into()));
        }
        if items.len() > MAX_STATEMENTS {
            return Err(ProveError::Input(format!(
                "{} proofs, over the limit of {MAX_STATEMENTS}",
                items.len()
            )));
        }
        if Merge::get().data.verifier_only != aggregation_key().verifier_only {
            return Err(ProveError::Backend(
                "this build's merge circuit is not the one its aggregation key describes".into(),
            ));
        }
        let mut stats = AggregateStats::default();
        let fail = |i: usize, e: VerifyError| {
            ProveError::Input(format!("proof {i} ({}): {e}", items[i].0.model_name))
        };
        // Each model once: its commitment, verifier data and first proof; `model_of[i]` is
        // proof i's.
        let mut models: Vec<(String, VerifierCircuitData<F, C, D>, usize)> = Vec::new();
        let mut model_of = Vec::with_capacity(items.len());
        for (i, (vk, _)) in items.iter().enumerate() {
            let c = vk.commitment();
            let m = match models.iter().position(|(m, _, _)| *m == c) {
                Some(m) => m,
                None => {
                    models.push((c, vk.circuit_data().map_err(|e| fail(i, e))?, i));
                    models.len() - 1
                }
            };
            model_of.push(m);
        }
        // Every proof must verify first: a clear message instead of a failed wrapping.
        let inner: Vec<Proof> = items
            .par_iter()
            .enumerate()
            .map(|(i, (vk, b))| {
                let data = &models[model_of[i]].1;
                let p = ProofWithPublicInputs {
                    proof: read_proof(&b.proof, &data.common).map_err(|e| fail(i, e))?,
                    public_inputs: public_inputs(vk, b).map_err(|e| fail(i, e))?,
                };
                verify_proof(data, p.clone()).map_err(|e| fail(i, e))?;
                Ok(p)
            })
            .collect::<Result<_, ProveError>>()?;
        progress(&format!(
            "{} proofs verified; building wrappers",
            items.len()
        ));
        let t = Instant::now();
        let merge = Merge::get();
        let wrappers: Vec<Wrapper> = models
            .par_iter()
            .map(|(_, data, first)| wrapper(data).map_err(|e| fail(*first, e)))
            .collect::<Result<_, _>>()?;
        stats.wrapper_setup_s = t.elapsed().as_secs_f64();
        let wrapper_of = |i: usize| &wrappers[model_of[i]];
        progress(&format!("wrapping {} proofs", items.len()));
        let t = Instant::now();
        let wrapped: Vec<Proof> = inner
            .par_iter()
            .enumerate()
            .map(|(i, p)| wrapper_of(i).prove(p).map_err(ProveError::from))
            .collect::<Result<_, _>>()?;
        stats.wrap_s = t.elapsed().as_secs_f64();
        let statements: Vec<Statement> = items
            .iter()
            .zip(&wrapped)
            .enumerate()
            .map(|(i, ((vk, _), w))| Statement {
                model_name: vk.model_name.clone(),
                model_commitment: models[model_of[i]].0.clone(),
                circuit: hash_to_hex(wrapper_of(i).circuit_hash()),
                public_values: hash_to_hex(HashOut {
                    elements: [
                        w.public_inputs[0],
                        w.public_inputs[1],
                        w.public_inputs[2],
                        w.public_inputs[3],
                    ],
                }),
            })
            .collect();
        // The first level merges wrappers; every level above merges merge proofs.
        let t = Instant::now();
        let first: Vec<Proof> = wrapped
            .par_chunks(2)
            .enumerate()
            .map(|(k, pair)| {
                let leaf = |j: usize| Child::Leaf(&pair[j], wrapper_of(2 * k + j).verifier_data());
                merge.prove(leaf(0), (pair.len() == 2).then(|| leaf(1)))
            })
            .collect::<Result<_, _>>()?;
        stats.levels.push((first.len(), t.elapsed().as_secs_f64()));
        let mut level = first;
        while level.len() > 1 {
            progress(&format!("merging {} proofs", level.len()));
            let t = Instant::now();
            level = level
                .par_chunks(2)
                .map(|pair| merge.prove(Child::Node(&pair[0]), pair.get(1).map(Child::Node)))
                .collect::<Result<_, _>>()?;
            stats.levels.push((level.len(), t.elapsed().as_secs_f64()));
        }
        let top = level.pop().expect("one proof left");
        let mut proof = Vec::new();
        proof
            .write_proof(&top.proof)
            .map_err(|e| ProveError::Backend(format!("plonky2 aggregate: {e:?}")))?;
        let mut agg = Aggregate {
            header: AggregateHeader {
                format: AGGREGATE_FORMAT.into(),
                version: AGGREGATE_VERSION,
                params: aggregation_params(),
                aggregator: aggregator(),
                models: Vec::new(),
                statements: Vec::new(),
            },
            proof,
        };
        agg.set_statements(&statements);
        Ok((agg, stats))
    }
}

#[cfg(all(test, feature = "plonky2-prover"))]
mod tests {
    use ciro_circuits::plonky2::recursion::Merge;
    use plonky2::util::serialization::DefaultGateSerializer;

    use super::AGGREGATION_KEY;

    /// The shipped aggregation key is the merge circuit's verifier data, byte for byte. After a
    /// change to the circuit, `CIRO_WRITE_AGGREGATION_KEY=1` rewrites the file (then rebuild).
    #[test]
    fn the_shipped_aggregation_key_is_the_merge_circuits() {
        let built = Merge::get()
            .verifier_data()
            .to_bytes(&DefaultGateSerializer)
            .expect("the merge circuit's verifier data serialise");
        if std::env::var_os("CIRO_WRITE_AGGREGATION_KEY").is_some() {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/plonky2_backend/aggregation.key"
            );
            std::fs::write(path, &built).expect("writes the key");
        }
        assert!(
            built == AGGREGATION_KEY,
            "the merge circuit changed: rerun with CIRO_WRITE_AGGREGATION_KEY=1 and rebuild"
        );
    }
}
