//! What both binaries, `ciro` and `ciro-cli`, print and accept the same way.

use std::path::Path;

use ciro_verifier::Verified;

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

/// Prints a verified statement: model, outputs, label and `OK` (or the same as JSON).
pub fn print_verified(json: bool, v: &Verified, ms: f64) {
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
        return;
    }
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
