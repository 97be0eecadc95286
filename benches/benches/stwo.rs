//! `cargo bench -p ciro-benches`: stwo prove and verify of every fixture model.

use ciro_benches::{prepare, FIXTURE_MODELS};
use ciro_prover::{ProofSystem, StwoBackend};
use criterion::{criterion_group, criterion_main, Criterion};

fn stwo(c: &mut Criterion) {
    let backend = StwoBackend::default();
    for name in FIXTURE_MODELS {
        let p = prepare(name);
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.bench_function("prove", |b| {
            b.iter(|| backend.prove(&p.pk, &p.input, &mut |_| {}).expect("prove"))
        });
        let bundle = backend.prove(&p.pk, &p.input, &mut |_| {}).expect("prove");
        g.bench_function("verify", |b| {
            b.iter(|| backend.verify(&p.vk, &bundle).expect("verify"))
        });
        g.finish();
    }
}

criterion_group!(benches, stwo);
criterion_main!(benches);
