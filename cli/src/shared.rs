//! What both binaries, `ciro` and `ciro-cli`, print and accept the same way.

use std::path::Path;

use ciro_verifier::{ProvenInput, Verified};

/// Ends the process after a failed command: `error: …` on stderr, or `{"error": …}` on stdout
/// with `--json`, and exit status 1.
pub fn exit_on_error(json: bool, result: anyhow::Result<()>) {
    if let Err(e) = result {
        if json {
            println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
        } else {
            eprintln!("error: {e:#}");
        }
        std::process::exit(1);
    }
}

/// A PNG or JPEG, by its extension.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

pub fn fmt_values(v: &[f64]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
    format!("[{}]", s.join(", "))
}

/// Prints a verified statement: model, the proven input (a digest, its hash, or hidden; and
/// the file it was checked against), outputs, label and `OK` (or the same as JSON).
/// A job checked through its batch: the aggregate verified and lists the job's statement.
pub struct BatchCheck {
    pub id: i64,
    pub index: usize,
    pub proofs: usize,
    pub verify_ms: f64,
}

pub fn print_verified(
    json: bool,
    v: &Verified,
    ms: f64,
    checked: Option<&str>,
    batch: Option<&BatchCheck>,
) {
    let (input_kind, input_id) = match v.proven_input() {
        ProvenInput::Public { digest } => ("public", Some(digest)),
        ProvenInput::Hashed { hash } => ("hashed", Some(hash)),
        ProvenInput::Private => ("private", None),
    };
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
                "input": input_kind,
                "input_digest": input_id,
                "input_checked": checked,
                "batch": batch.map(|b| serde_json::json!({
                    "id": b.id,
                    "index": b.index,
                    "proofs": b.proofs,
                    "aggregate_verify_ms": b.verify_ms,
                })),
            })
        );
        return;
    }
    println!("model: {} ({})", v.model_name, v.model_commitment);
    match (input_kind, &input_id) {
        ("public", Some(d)) => println!("input: sha256 {d} (the proof shows the values)"),
        ("hashed", Some(h)) => println!("input: Poseidon hash {h} (the proof shows only this)"),
        _ => println!("input: private (the proof shows nothing of it)"),
    }
    match checked {
        Some(what) => println!("input matches {what}"),
        None if input_kind != "private" => {
            println!("(give --input FILE to check that the proof is about your input)")
        }
        None => {}
    }
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
    if let Some(b) = batch {
        println!(
            "OK: batch {} covers it as statement #{} of {} (its aggregate verified in {:.1} ms)",
            b.id, b.index, b.proofs, b.verify_ms
        );
    }
}
