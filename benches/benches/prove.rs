//! `cargo bench -p ciro-benches`: prove and verify of every fixture model, through the backend
//! registry. `CIRO_BENCH_BACKENDS=stwo,halo2` picks the proof systems (default: stwo; halo2's
//! larger fixtures take seconds per proof).

use ciro_benches::{prepare, FIXTURE_MODELS};
use ciro_prover::BackendId;
use criterion::{criterion_group, criterion_main, Criterion};

fn backends() -> Vec<BackendId> {
    std::env::var("CIRO_BENCH_BACKENDS")
        .unwrap_or_else(|_| "stwo".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn prove(c: &mut Criterion) {
    for backend in backends() {
        for name in FIXTURE_MODELS {
            let p = prepare(name, backend);
            let mut g = c.benchmark_group(format!("{backend}/{name}"));
            g.sample_size(10);
            g.bench_function("prove", |b| b.iter(|| p.prove().expect("prove")));
            let bundle = p.prove().expect("prove");
            g.bench_function("verify", |b| {
                b.iter(|| p.pk.verifying_key().verify(&bundle).expect("verify"))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, prove);
criterion_main!(benches);
