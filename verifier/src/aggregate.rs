//! Offline checks of a plonky2 aggregate: its one proof, the models its statements claim
//! (confirmed by those models' keys) and whether it covers a given job's bundle.

use ciro_prover::plonky2_backend::aggregate::{
    check_models, positions, verify_aggregate, Aggregate, Statement,
};
use ciro_prover::{DynVerifyingKey, Plonky2VerifyingKey, ProofBundle};

use crate::Error;

/// What a verified aggregate shows.
#[derive(Clone, Debug)]
pub struct VerifiedAggregate {
    /// The statements, in order, each with whether one of the given keys confirmed its model.
    pub statements: Vec<(Statement, bool)>,
    /// The indexes of the bundle's statement, when one was asked about (equal statements: one
    /// model, one input, proved twice, are listed at each place).
    pub covers: Vec<usize>,
    /// The time of the aggregate's proof check alone (not of rebuilding the keys' wrappers).
    pub verify_ms: f64,
}

fn plonky2_key(k: &dyn DynVerifyingKey) -> Result<&Plonky2VerifyingKey, Error> {
    k.as_any()
        .downcast_ref::<Plonky2VerifyingKey>()
        .ok_or_else(|| {
            Error::Key(format!(
                "{} is a {} key; aggregates cover plonky2 proofs only",
                k.model_name(),
                k.backend()
            ))
        })
}

/// Verifies `agg`; confirms the statements of `keys`' models; with `statement` (a bundle under
/// one of `keys`), checks that the aggregate covers it.
pub fn verify(
    agg: &Aggregate,
    keys: &[Box<dyn DynVerifyingKey>],
    statement: Option<&ProofBundle>,
) -> Result<VerifiedAggregate, Error> {
    let keys: Vec<&Plonky2VerifyingKey> = keys
        .iter()
        .map(|k| plonky2_key(k.as_ref()))
        .collect::<Result<_, _>>()?;
    // The merge circuit is built once per process (seconds); only the check itself is timed.
    ciro_prover::plonky2_backend::aggregate::aggregator();
    let start = std::time::Instant::now();
    let statements = verify_aggregate(agg)?;
    let verify_ms = start.elapsed().as_secs_f64() * 1e3;
    let confirmed = check_models(&statements, &keys)?;
    let covers = match statement {
        None => Vec::new(),
        Some(b) => {
            let vk = keys
                .iter()
                .find(|k| ciro_prover::KeyFile::commitment(**k) == b.header.model_commitment)
                .ok_or_else(|| {
                    Error::Key(format!(
                        "no --vk is the key of the bundle's model {} ({})",
                        b.header.model_name, b.header.model_commitment
                    ))
                })?;
            positions(&statements, vk, b)?
        }
    };
    Ok(VerifiedAggregate {
        statements: statements.into_iter().zip(confirmed).collect(),
        covers,
        verify_ms,
    })
}
