//! `ciro bench --aggregate 2,4,16,64`: plonky2 recursive aggregation of proofs of one fixture
//! model, per batch size: wrapping, merge steps, total time, aggregate size, verification and
//! throughput.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use ciro_model_compiler::eval::IntTensor;
use ciro_prover::plonky2_backend::aggregate::{aggregate, verify_aggregate};
use ciro_prover::{Plonky2Backend, Plonky2VerifyingKey, ProofBundle, ProofSystem};
use serde::Serialize;

use super::bench::{compile_fixture, median, peak_rss_mib, render_table, sample_input};

#[derive(Debug, Serialize)]
struct AggRow {
    proofs: usize,
    /// Building the model's wrapper (once per model; a service keeps it).
    wrapper_build_s: f64,
    /// Wrapping (one recursive verification of each proof, both cores), per proof.
    wrap_s_per_proof: f64,
    /// The last merge step, alone on both cores: two proofs into one.
    merge_step_s: f64,
    merge_steps: usize,
    /// From the bundles to the aggregate: checking, wrapping and merging (not the inner proofs).
    total_s: f64,
    aggregate_kib: f64,
    verify_ms: f64,
    proofs_per_min: f64,
    peak_rss_mib: f64,
}

/// `n` distinct inputs: the fixture's sample input with one value moved by one step each.
fn inputs(sample: &[IntTensor], vk: &Plonky2VerifyingKey, n: usize) -> Vec<Vec<IntTensor>> {
    let info = &vk.inputs[0];
    (0..n)
        .map(|i| {
            let mut x = sample.to_vec();
            let len = x[0].data.len();
            let v = &mut x[0].data[i % len];
            let step = 1 + (i / len) as i64;
            *v = if *v + step <= info.hi {
                *v + step
            } else {
                *v - step
            };
            x
        })
        .collect()
}

pub fn run(
    json: bool,
    fixtures: &std::path::Path,
    model: &str,
    sizes: &[usize],
    markdown: bool,
) -> Result<()> {
    crate::proving::quiet_panics();
    let Some(&most) = sizes.iter().max() else {
        bail!("--aggregate takes batch sizes, e.g. 2,4,16,64");
    };
    if sizes.contains(&0) {
        bail!("a batch has at least one proof");
    }
    let m = compile_fixture(fixtures, model, None, 2)?;
    let be = Plonky2Backend::new();
    let (pk, vk) = be.setup(&m)?;
    let sample = sample_input(fixtures, &m)?;
    eprintln!("{model}: proving {most} inputs with plonky2");
    let bundles: Vec<ProofBundle> = inputs(&sample, &vk, most)
        .iter()
        .map(|x| be.prove(&pk, x, &mut |_| {}).context("an inner proof"))
        .collect::<Result<_>>()?;
    // The merge circuit is built once per process; every size below uses it.
    ciro_prover::plonky2_backend::aggregate::aggregator();
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("{model}: aggregating {n}");
        let items: Vec<(&Plonky2VerifyingKey, &ProofBundle)> =
            bundles[..n].iter().map(|b| (&vk, b)).collect();
        let t = Instant::now();
        let (agg, stats) = aggregate(&items, &mut |_| {})?;
        let total_s = t.elapsed().as_secs_f64();
        let mut verify = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            verify_aggregate(&agg).context("the aggregate failed to verify")?;
            verify.push(t.elapsed().as_secs_f64() * 1e3);
        }
        rows.push(AggRow {
            proofs: n,
            wrapper_build_s: stats.wrapper_setup_s,
            wrap_s_per_proof: stats.wrap_s / n as f64,
            merge_step_s: stats.levels.last().map_or(0.0, |l| l.1),
            merge_steps: stats.levels.iter().map(|l| l.0).sum(),
            total_s,
            aggregate_kib: agg.to_bytes().len() as f64 / 1024.0,
            verify_ms: median(verify),
            proofs_per_min: n as f64 / total_s * 60.0,
            peak_rss_mib: peak_rss_mib(),
        });
    }
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let head = [
        "proofs",
        "wrapper build s",
        "wrap s/proof",
        "merge step s",
        "merge steps",
        "total s",
        "aggregate KiB",
        "verify ms",
        "proofs/min",
        "peak RSS MiB",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.proofs.to_string(),
                format!("{:.2}", r.wrapper_build_s),
                format!("{:.2}", r.wrap_s_per_proof),
                format!("{:.2}", r.merge_step_s),
                r.merge_steps.to_string(),
                format!("{:.1}", r.total_s),
                format!("{:.1}", r.aggregate_kib),
                format!("{:.1}", r.verify_ms),
                format!("{:.1}", r.proofs_per_min),
                format!("{:.0}", r.peak_rss_mib),
            ]
        })
        .collect();
    println!("model: {model} (plonky2, public input)");
    render_table(&head, cells, markdown);
    Ok(())
}
