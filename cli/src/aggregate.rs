//! `ciro aggregate` (fold plonky2 bundles into one proof) and `ciro verify` of an aggregate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ciro_prover::plonky2_backend::aggregate::{aggregate, Aggregate};
use ciro_prover::{KeyFile, Plonky2VerifyingKey, ProofBundle};

use crate::proving::quiet_panics;

fn plonky2_keys(paths: &[PathBuf]) -> Result<Vec<Plonky2VerifyingKey>> {
    paths
        .iter()
        .map(|p| {
            let k = ciro_verifier::load_key(p)?;
            k.as_any()
                .downcast_ref::<Plonky2VerifyingKey>()
                .cloned()
                .with_context(|| {
                    format!(
                        "{} is a {} key; only plonky2 proofs aggregate",
                        p.display(),
                        k.backend()
                    )
                })
        })
        .collect()
}

pub fn cmd_aggregate(
    json: bool,
    bundles: &[PathBuf],
    vks: &[PathBuf],
    output: &Path,
) -> Result<()> {
    quiet_panics();
    let keys = plonky2_keys(vks)?;
    let loaded: Vec<ProofBundle> = bundles
        .iter()
        .map(|p| ProofBundle::load(p).with_context(|| p.display().to_string()))
        .collect::<Result<_>>()?;
    let mut items = Vec::new();
    for (p, b) in bundles.iter().zip(&loaded) {
        let vk = keys
            .iter()
            .find(|k| k.commitment() == b.header.model_commitment)
            .with_context(|| {
                format!(
                    "{} is a proof of {} ({}): give its key with --vk",
                    p.display(),
                    b.header.model_name,
                    b.header.model_commitment
                )
            })?;
        items.push((vk, b));
    }
    let start = Instant::now();
    let (agg, stats) = aggregate(&items, &mut |m| {
        if !json {
            eprintln!("{m}");
        }
    })?;
    let secs = start.elapsed().as_secs_f64();
    agg.save(output)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "proofs": items.len(),
                "output": output.display().to_string(),
                "bytes": agg.to_bytes().len(),
                "seconds": secs,
                "wrap_s": stats.wrap_s,
                "levels": stats.levels,
            })
        );
    } else {
        println!(
            "aggregated {} proofs into {} ({} KiB) in {secs:.1} s",
            items.len(),
            output.display(),
            agg.to_bytes().len() / 1024
        );
    }
    Ok(())
}

pub fn cmd_verify_aggregate(
    json: bool,
    agg: &Path,
    vks: &[PathBuf],
    statement: Option<&Path>,
) -> Result<()> {
    quiet_panics();
    let keys = vks
        .iter()
        .map(|p| Ok(ciro_verifier::load_key(p)?))
        .collect::<Result<Vec<_>>>()?;
    let bundle = statement
        .map(|p| ProofBundle::load(p).with_context(|| p.display().to_string()))
        .transpose()?;
    if let (Some(b), Some(p)) = (&bundle, statement) {
        if !keys
            .iter()
            .any(|k| k.commitment() == b.header.model_commitment)
        {
            bail!(
                "{} is a proof of {} ({}): give its key with --vk",
                p.display(),
                b.header.model_name,
                b.header.model_commitment
            );
        }
    }
    let a = Aggregate::load(agg).with_context(|| agg.display().to_string())?;
    let v = ciro_verifier::aggregate::verify(&a, &keys, bundle.as_ref())?;
    let ms = v.verify_ms;
    if json {
        let statements: Vec<_> = v
            .statements
            .iter()
            .map(|(s, confirmed)| {
                serde_json::json!({
                    "model": s.model_name,
                    "commitment": s.model_commitment,
                    "circuit": s.circuit,
                    "public_values": s.public_values,
                    "model_confirmed": confirmed,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "statements": statements,
                "covers": v.covers,
                "verify_ms": ms,
            })
        );
        return Ok(());
    }
    println!(
        "VERIFIED: an aggregate of {} proofs ({ms:.1} ms)",
        v.statements.len()
    );
    for (i, (s, confirmed)) in v.statements.iter().enumerate() {
        let model = if *confirmed {
            "model confirmed by its key"
        } else {
            "model as claimed (pass its --vk to confirm)"
        };
        println!(
            "  #{i}: {} ({}), public values {}: {model}",
            s.model_name, s.model_commitment, s.public_values
        );
    }
    if let Some(p) = statement {
        let at: Vec<String> = v.covers.iter().map(|i| format!("#{i}")).collect();
        println!("COVERED: {} is statement {}", p.display(), at.join(" and "));
    }
    Ok(())
}

/// Whether the file at `path` is an aggregate (else a bundle).
pub fn is_aggregate(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 8];
    let mut f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let n = f.read(&mut magic)?;
    Ok(Aggregate::is_aggregate(&magic[..n]))
}

/// `ciro verify` of a bundle takes one key and no `--statement`.
pub fn single_key<'a>(vks: &'a [PathBuf], statement: Option<&Path>) -> Result<&'a Path> {
    if statement.is_some() {
        bail!("--statement goes with an aggregate, not a proof bundle");
    }
    match vks {
        [one] => Ok(one),
        [] => bail!("verifying a proof bundle needs its model's key: --vk KEY"),
        _ => bail!(
            "a proof bundle is checked against one key; {} given",
            vks.len()
        ),
    }
}
