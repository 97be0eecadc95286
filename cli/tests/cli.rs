//! End-to-end tests of the `ciro` binary: compile, inspect, run, with and without --json, and
//! clear errors with a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ciro_test_support::fixtures;

fn ciro(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ciro"))
        .args(args)
        .output()
        .expect("ciro runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A file in this test process's own folder, emptied at first use: a folder left by an
/// earlier process with the same id must not supply files (an existing weight opening is
/// reused instead of written).
fn tmp(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ciro-cli-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
    .join(name)
}

/// `ciro compile` of fixture model `name` with its calibration inputs into `out`; must succeed.
fn compile_fixture(name: &str, out: &Path) -> Output {
    let dir = fixtures().join("models").join(name);
    let o = ciro(&[
        "compile",
        dir.join("model.onnx").to_str().unwrap(),
        "--calibration",
        dir.join("calibration").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    o
}

#[test]
fn compile_inspect_run_the_digit_model_on_an_image() {
    let out = tmp("digits.ciro.json");
    let o = compile_fixture("image_recognition_v1", &out);
    let t = text(&o);
    for want in [
        "MACs",
        "parameters",
        "scale",
        "calibration",
        "label agreement",
        "proven error",
    ] {
        assert!(t.contains(want), "compile summary lacks {want}: {t}");
    }

    let o = ciro(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "image_recognition_v1");
    assert_eq!(v["stats"]["macs"], 64 * 32 + 32 * 10);
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);

    let labels: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("images/labels.json")).unwrap(),
    )
    .unwrap();
    let (file, info) = labels
        .as_object()
        .unwrap()
        .iter()
        .find(|(f, _)| f.ends_with(".png"))
        .unwrap();
    let want = info
        .get("label")
        .and_then(|v| v.as_u64())
        .or_else(|| info.as_u64())
        .unwrap();
    let img = fixtures().join("images").join(file);
    let o = ciro(&[
        "run",
        out.to_str().unwrap(),
        "--input",
        img.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["label"], want.to_string(), "{v}");
    assert_eq!(v["outputs"][0].as_array().unwrap().len(), 10);

    let o = ciro(&[
        "run",
        out.to_str().unwrap(),
        "--input",
        img.to_str().unwrap(),
    ]);
    assert!(text(&o).contains(&format!("label: {want}")), "{}", text(&o));
}

#[test]
fn errors_are_clear_and_exit_nonzero() {
    let o = ciro(&[
        "compile",
        fixtures().join("ops/malformed.onnx").to_str().unwrap(),
        "-o",
        tmp("x.json").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("error: malformed or unsupported ONNX model"),
        "{}",
        text(&o)
    );

    let o = ciro(&[
        "compile",
        fixtures().join("ops/unsupported_op.onnx").to_str().unwrap(),
        "-o",
        tmp("y.json").to_str().unwrap(),
        "--json",
    ]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unsupported op `CumSum`"),
        "{v}"
    );

    // Compile mlp_small, then feed it a wrong-shaped input and an unreadable image.
    let out = tmp("small.json");
    compile_fixture("mlp_small", &out);
    let bad = tmp("bad.json");
    std::fs::write(&bad, r#"{"input_data": [[1, 2, 3]]}"#).unwrap();
    let o = ciro(&[
        "run",
        out.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("3 values, the model expects shape [1, 64]"),
        "{}",
        text(&o)
    );
    let img = tmp("broken.jpg");
    std::fs::write(&img, b"not a jpeg").unwrap();
    let o = ciro(&[
        "run",
        out.to_str().unwrap(),
        "--input",
        img.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("declares no image preprocessing"),
        "{}",
        text(&o)
    );
    let o = ciro(&["inspect", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not a ciro-compiled-model file"),
        "{}",
        text(&o)
    );
}

/// The README's main job: compile the digit classifier, prove it on the bundled image, verify
/// with the key alone; then a tampered bundle, another model's key and a truncated bundle are
/// refused with a reason and a non-zero exit.
#[test]
fn prove_and_verify_the_digit_classifier_on_an_image() {
    let image = fixtures().join("images/my-image.jpg");
    let (compiled, bundle, vk) = (tmp("d.ciro.json"), tmp("d.bundle"), tmp("d.vk"));
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    compile_fixture("image_recognition_v1", &compiled);
    let o = ciro(&[
        "prove",
        &s(&compiled),
        "--input",
        &s(&image),
        "-o",
        &s(&bundle),
        "--vk-out",
        &s(&vk),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("label: 7"), "{t}");
    assert!(
        t.contains("committing and proving"),
        "no progress shown: {t}"
    );

    let o = ciro(&["verify", &s(&bundle), "--vk", &s(&vk), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["label"], "7");
    assert_eq!(v["security_bits"], 100);

    // One flipped byte in the proof.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let n = bytes.len();
    bytes[n - 5000] ^= 0x10;
    let flipped = tmp("flipped.bundle");
    std::fs::write(&flipped, &bytes).unwrap();
    let o = ciro(&["verify", &s(&flipped), "--vk", &s(&vk)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("REJECTED"), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));

    // Truncated.
    let cut = tmp("cut.bundle");
    std::fs::write(&cut, &std::fs::read(&bundle).unwrap()[..n / 2]).unwrap();
    let o = ciro(&["verify", &s(&cut), "--vk", &s(&vk)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("truncated"), "{}", text(&o));

    // Another model's key.
    let (c2, vk2) = (tmp("s.ciro.json"), tmp("s.vk"));
    compile_fixture("mlp_small", &c2);
    let o = ciro(&["setup", &s(&c2), "-o", &s(&vk2)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ciro(&["verify", &s(&bundle), "--vk", &s(&vk2)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("model commitment"), "{}", text(&o));
}

/// The same job with `--backend halo2`: a succinct proof that `ciro verify` recognises by its
/// key, and a stwo key refused for it.
#[test]
fn prove_and_verify_with_halo2() {
    let dir = fixtures().join("models/mlp_small");
    let (compiled, bundle, vk) = (tmp("h.ciro.json"), tmp("h.bundle"), tmp("h.vk"));
    let stwo_vk = tmp("h-stwo.vk");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let srs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ciro"))
            .args(args)
            .env("CIRO_SRS_DIR", &srs)
            .output()
            .expect("ciro runs")
    };
    compile_fixture("mlp_small", &compiled);
    // `ciro prove --backend halo2 [extra] --input <the sample> -o OUT --vk-out VK`.
    let prove_halo2 = |extra: &[&str], out: &PathBuf, vk_out: &PathBuf| {
        let (c, i, o, v) = (s(&compiled), s(&dir.join("input.json")), s(out), s(vk_out));
        let mut args = vec!["prove", &c, "--backend", "halo2"];
        args.extend_from_slice(extra);
        args.extend(["--input", &i, "-o", &o, "--vk-out", &v]);
        run(&args)
    };
    let o = prove_halo2(&[], &bundle, &vk);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("halo2-kzg"), "{}", text(&o));
    assert!(std::fs::metadata(&bundle).unwrap().len() < 16 << 10);
    let o = run(&["verify", &s(&bundle), "--vk", &s(&vk), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);

    // On chain: the Solidity verifier, the calldata, and both run in a local EVM.
    let (sol, code, calldata) = (tmp("h.sol"), tmp("h.bin"), tmp("h.calldata"));
    let o = run(&[
        "gen-verifier",
        "--vk",
        &s(&vk),
        "--target",
        "evm",
        "-o",
        &s(&sol),
        "--bytecode",
        &s(&code),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["within_eip170"], true, "{v}");
    let source = std::fs::read_to_string(&sol).unwrap();
    assert!(source.contains("pragma solidity 0.8.19;"));
    assert!(source.contains("contract Halo2Verifier"));
    let o = run(&["encode-calldata", &s(&bundle), "-o", &s(&calldata)]);
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&calldata).unwrap();
    let proof_len = ciro_prover_bundle_proof_len(&bundle);
    assert_eq!(
        bytes.len(),
        32 * v["public_values"].as_u64().unwrap() as usize + proof_len
    );
    let o = run(&["verify-evm", &s(&bundle), "--vk", &s(&vk), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["accepted"], true, "{e}");
    assert!(e["gas"].as_u64().unwrap() > 100_000, "{e}");

    // A hashed input: the bundle shows only the hash, which `hash-input` recomputes.
    let (hb, hvk) = (tmp("hh.bundle"), tmp("hh.vk"));
    let o = prove_halo2(&["--input-visibility", "hashed"], &hb, &hvk);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&[
        "hash-input",
        "--vk",
        &s(&hvk),
        &s(&compiled),
        "--input",
        &s(&dir.join("input.json")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = ciro_prover::ProofBundle::load(&hb).unwrap().header;
    assert!(shown.inputs.is_empty());
    let printed = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(shown.input_hash.as_deref(), Some(printed.as_str()));
    let o = run(&["verify-evm", &s(&hb), "--vk", &s(&hvk)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&[
        "hash-input",
        "--vk",
        &s(&vk),
        &s(&compiled),
        "--input",
        &s(&dir.join("input.json")),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not as its hash"), "{}", text(&o));

    // Private weights: setup writes the secret opening, prove reuses it (the same key), and the
    // proof verifies offline and on chain.
    let (opening, pvk, pvk2, pb) = (tmp("w.opening"), tmp("w.vk"), tmp("w2.vk"), tmp("w.bundle"));
    let o = run(&[
        "setup",
        &s(&compiled),
        "--backend",
        "halo2",
        "--private-weights",
        &s(&opening),
        "-o",
        &s(&pvk),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("weight opening"), "{}", text(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&opening).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the opening is readable by others: {mode:o}"
        );
    }
    let o = prove_halo2(&["--private-weights", &s(&opening)], &pb, &pvk2);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&pvk).unwrap(), std::fs::read(&pvk2).unwrap());
    let o = run(&["verify", &s(&pb), "--vk", &s(&pvk)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["verify-evm", &s(&pb), "--vk", &s(&pvk)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&[
        "prove",
        &s(&compiled),
        "--private-weights",
        &s(&opening),
        "--input",
        &s(&dir.join("input.json")),
        "-o",
        &s(&pb),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--backend halo2"), "{}", text(&o));

    let o = run(&["setup", &s(&compiled), "-o", &s(&stwo_vk)]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["verify", &s(&bundle), "--vk", &s(&stwo_vk)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("REJECTED"), "{}", text(&o));
    let o = run(&["gen-verifier", "--vk", &s(&stwo_vk), "-o", &s(&sol)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("stwo key"), "{}", text(&o));
}

/// The length of the proof inside a bundle file.
fn ciro_prover_bundle_proof_len(bundle: &Path) -> usize {
    ciro_prover::ProofBundle::load(bundle).unwrap().proof.len()
}

/// The README's main command writes into `out/`, which a fresh clone does not have: outputs
/// create their folders.
#[test]
fn outputs_go_into_folders_that_do_not_exist_yet() {
    let dir = fixtures().join("models/mlp_small");
    let base = tmp("fresh-out");
    let _ = std::fs::remove_dir_all(&base);
    let (compiled, bundle, vk) = (
        base.join("a/m.json"),
        base.join("b/p.bundle"),
        base.join("c/m.vk"),
    );
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    compile_fixture("mlp_small", &compiled);
    let o = ciro(&[
        "prove",
        &s(&compiled),
        "--input",
        &s(&dir.join("input.json")),
        "-o",
        &s(&bundle),
        "--vk-out",
        &s(&vk),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ciro(&["verify", &s(&bundle), "--vk", &s(&vk)]);
    assert!(o.status.success(), "{}", text(&o));
}

/// `ciro aggregate` of two plonky2 proofs of one model (two inputs), then `ciro verify` of the
/// aggregate: the statements, the model confirmed by its key, the inclusion of a job it covers
/// and the refusal of one it does not.
#[test]
fn aggregate_plonky2_proofs_and_check_a_job_against_the_aggregate() {
    let dir = fixtures().join("models/mlp_small");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let compiled = tmp("p.ciro.json");
    compile_fixture("mlp_small", &compiled);
    // Three inputs: the sample, and two with the first value changed.
    let sample: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("input.json")).unwrap()).unwrap();
    let vk = tmp("p.vk");
    let mut bundles = Vec::new();
    for k in 0..3 {
        let mut x = sample.clone();
        let first = &mut x["input_data"][0][0];
        *first = serde_json::json!(first.as_f64().unwrap() + 0.25 * k as f64);
        let input = tmp(&format!("p{k}.json"));
        std::fs::write(&input, x.to_string()).unwrap();
        let bundle = tmp(&format!("p{k}.bundle"));
        let o = ciro(&[
            "prove",
            &s(&compiled),
            "--backend",
            "plonky2",
            "--input",
            &s(&input),
            "-o",
            &s(&bundle),
            "--vk-out",
            &s(&vk),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        bundles.push(bundle);
    }
    let agg = tmp("p.agg");
    let o = ciro(&[
        "aggregate",
        &s(&bundles[0]),
        &s(&bundles[1]),
        "--vk",
        &s(&vk),
        "-o",
        &s(&agg),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("aggregated 2 proofs"), "{}", text(&o));
    let o = ciro(&["--json", "verify", &s(&agg), "--vk", &s(&vk)]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let statements = v["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 2);
    assert!(
        statements.iter().all(|s| s["model_confirmed"] == true),
        "{v}"
    );
    assert_ne!(
        statements[0]["public_values"],
        statements[1]["public_values"]
    );
    let o = ciro(&[
        "verify",
        &s(&agg),
        "--vk",
        &s(&vk),
        "--statement",
        &s(&bundles[1]),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is statement #1"), "{}", text(&o));
    let o = ciro(&[
        "verify",
        &s(&agg),
        "--vk",
        &s(&vk),
        "--statement",
        &s(&bundles[2]),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("does not cover"), "{}", text(&o));
    // An aggregate with one byte of its proof changed is rejected.
    let mut bytes = std::fs::read(&agg).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    let bad = tmp("p-bad.agg");
    std::fs::write(&bad, bytes).unwrap();
    let o = ciro(&["verify", &s(&bad)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("REJECTED"), "{}", text(&o));
    // A file that is not a plonky2 key is refused.
    let o = ciro(&[
        "aggregate",
        &s(&bundles[0]),
        "--vk",
        &s(&dir.join("model.onnx")),
        "-o",
        &s(&bad),
    ]);
    assert!(!o.status.success());
}
