//! `ciro setup`, `ciro prove`, `ciro verify`.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use ciro_model_compiler::{quantize_inputs, CompiledModel};
use ciro_prover::{ProofBundle, ProofSystem, Stage, StwoBackend, StwoVerifyingKey};

use crate::read_input;

/// stwo's verifier asserts on some malformed proofs; the verifier turns those panics into
/// rejections, so keep the default hook from printing a backtrace for them.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

pub fn cmd_setup(json: bool, compiled: &Path, output: &Path) -> Result<()> {
    let m = CompiledModel::load(compiled)?;
    let start = Instant::now();
    let (_, vk) = StwoBackend::default().setup(&m)?;
    vk.save(output)?;
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": vk.model_name,
                "commitment": vk.commitment(),
                "verification_key": output,
                "security_bits": vk.params.security_bits(),
                "setup_s": secs,
            })
        );
    } else {
        println!("model        {}", vk.model_name);
        println!("commitment   {}", vk.commitment());
        println!(
            "components   {}",
            vk.components
                .iter()
                .map(|c| format!("{} 2^{}", c.kind.name(), c.log_size))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "security     {} bits (conjectured)",
            vk.params.security_bits()
        );
        println!("wrote        {} ({secs:.2} s)", output.display());
    }
    Ok(())
}

pub fn cmd_prove(
    json: bool,
    compiled: &Path,
    input: &Path,
    output: &Path,
    vk_out: Option<&Path>,
) -> Result<()> {
    let m = CompiledModel::load(compiled)?;
    let inputs = quantize_inputs(&m.graph, &read_input(&m.graph, input)?)?;
    let backend = StwoBackend::default();
    let start = Instant::now();
    let step = |what: &str| {
        if !json {
            eprintln!("[{:>6.2} s] {what}", start.elapsed().as_secs_f64());
        }
    };
    step("building the circuit and committing to the model");
    let (pk, vk) = backend.setup(&m)?;
    let setup_s = start.elapsed().as_secs_f64();
    let bundle = backend.prove(&pk, &inputs, &mut |s: Stage| step(s.describe()))?;
    let prove_s = start.elapsed().as_secs_f64() - setup_s;
    bundle
        .save(output)
        .with_context(|| format!("writing {}", output.display()))?;
    if let Some(p) = vk_out {
        vk.save(p)?;
    }
    let size = bundle.to_bytes().len();
    let label = ciro_verifier::verify(&vk, &bundle)
        .ok()
        .and_then(|v| v.label().map(|l| l.1));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bundle": output,
                "bytes": size,
                "setup_s": setup_s,
                "prove_s": prove_s,
                "outputs": bundle.header.outputs.iter().map(|t| t.real()).collect::<Vec<_>>(),
                "label": label,
                "commitment": bundle.header.model_commitment,
            })
        );
    } else {
        for (i, t) in bundle.header.outputs.iter().enumerate() {
            println!("output {i}: {}", fmt_values(&t.real()));
        }
        if let Some(l) = label {
            println!("label: {l}");
        }
        println!(
            "wrote {} ({:.1} KiB): setup {setup_s:.2} s, prove {prove_s:.2} s",
            output.display(),
            size as f64 / 1024.0
        );
    }
    Ok(())
}

fn fmt_values(v: &[f64]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
    format!("[{}]", s.join(", "))
}

pub fn cmd_verify(json: bool, bundle: &Path, vk: &Path) -> Result<()> {
    quiet_panics();
    let vk = StwoVerifyingKey::load(vk)?;
    let bundle = ProofBundle::load(bundle)?;
    let start = Instant::now();
    let verified = ciro_verifier::verify(&vk, &bundle);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let v = verified?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "model": v.model_name,
                "commitment": v.model_commitment,
                "outputs": v.outputs.iter().map(|t| t.real()).collect::<Vec<_>>(),
                "label": v.label().map(|l| l.1),
                "security_bits": v.security_bits,
                "verify_ms": ms,
            })
        );
    } else {
        println!("model: {} ({})", v.model_name, v.model_commitment);
        for (i, t) in v.outputs.iter().enumerate() {
            println!("output {i}: {}", fmt_values(&t.real()));
        }
        if let Some((_, l)) = v.label() {
            println!("label: {l}");
        }
        println!(
            "OK: proof verified in {ms:.1} ms ({} bits conjectured security)",
            v.security_bits
        );
    }
    Ok(())
}
