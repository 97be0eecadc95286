//! Shared setup for the benchmarks: a fixture model compiled, its keys for a backend and its
//! sample input.

use ciro_model_compiler::eval::IntTensor;
use ciro_prover::{BackendId, DynProver, DynProvingKey, ProofBundle, ProveError, ProverSettings};

pub use ciro_test_support::MODELS as FIXTURE_MODELS;

pub struct Prepared {
    pub prover: Box<dyn DynProver>,
    pub pk: Box<dyn DynProvingKey>,
    pub input: Vec<IntTensor>,
}

impl Prepared {
    pub fn prove(&self) -> Result<ProofBundle, ProveError> {
        self.prover
            .prove(self.pk.as_ref(), &self.input, &mut |_| {})
    }
}

/// Compiles a fixture model and sets up its keys for `backend`.
pub fn prepare(name: &str, backend: BackendId) -> Prepared {
    let model = ciro_test_support::compile_fixture(name);
    let input = ciro_test_support::sample_input(&model, name);
    let prover = ciro_prover::prover(backend, &ProverSettings::default()).expect("prover");
    let pk = prover.setup(&model, &mut |_| {}).expect("setup");
    Prepared { prover, pk, input }
}
