//! The service as users run it: `ciro serve` as a real process, `ciro-cli` commands exactly as
//! the docs show them, and a SIGKILL while a job is proving.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use ciro_test_support::{fixtures, Service};

fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(data: &Path) -> Service {
    start_with(data, &[])
}

fn start_with(data: &Path, extra: &[&str]) -> Service {
    Service::start(Path::new(env!("CARGO_BIN_EXE_ciro")), data, extra)
}

/// Runs `ciro-cli` in `cwd` with the service's URL and a config file in the environment.
fn cli(svc: &Service, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ciro-cli"))
        .args(args)
        .current_dir(cwd)
        .env("CIRO_SERVER", &svc.url)
        .env("CIRO_CONFIG", cwd.join("config.json"))
        .env_remove("CIRO_API_KEY")
        .output()
        .expect("ciro-cli runs")
}

/// `ciro-cli submit-job` exactly as the docs write it.
fn submit(svc: &Service, cwd: &Path, model: &str, input: &str, chain: &str) -> Output {
    cli(
        svc,
        cwd,
        &[
            "submit-job",
            "--model",
            model,
            "--input",
            input,
            "--pay-with",
            chain,
        ],
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

fn json(o: Output) -> Value {
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

fn wait_state(svc: &Service, cwd: &Path, id: &str, want: &[&str], limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let j = json(cli(svc, cwd, &["job-status", "--job-id", id, "--json"]));
        if want.contains(&j["state"].as_str().unwrap_or("")) {
            return j;
        }
        assert!(
            start.elapsed() < limit,
            "job {id} never reached {want:?}: {j}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_documented_commands_work_verbatim() {
    let data = fresh_dir("svc-docs");
    let home = fresh_dir("svc-docs-home");
    std::fs::copy(
        fixtures().join("images/my-image.jpg"),
        home.join("my-image.jpg"),
    )
    .unwrap();
    let svc = start(&data);

    ok(cli(&svc, &home, &["signup", "--name", "docs", "--save"]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the API key file is its owner's only");
    }
    // No balance yet: refused with a message that says what to do.
    let o = submit(
        &svc,
        &home,
        "image_recognition_v1",
        "./my-image.jpg",
        "starknet",
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no balance on starknet"), "{}", text(&o));
    ok(cli(
        &svc,
        &home,
        &[
            "faucet", "--chain", "starknet", "--token", "CIRO", "--amount", "5",
        ],
    ));

    let out = ok(submit(
        &svc,
        &home,
        "image_recognition_v1",
        "./my-image.jpg",
        "starknet",
    ));
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {out}"))
        .to_string();
    assert!(out.starts_with(&format!("job {id} submitted")), "{out}");
    assert!(out.contains("price"), "{out}");
    wait_state(&svc, &home, &id, &["verified"], Duration::from_secs(300));
    let status = ok(cli(&svc, &home, &["job-status", "--job-id", &id]));
    for want in ["verified", "label: 7", "timings: queue", "charged"] {
        assert!(status.contains(want), "job-status lacks {want:?}: {status}");
    }

    // Result and proof download, then an offline check with the model's key.
    let got = ok(cli(
        &svc,
        &home,
        &["job-result", "--job-id", &id, "-o", "results"],
    ));
    assert!(got.contains("label: 7"), "{got}");
    let bundle = home.join(format!("results/job-{id}.bundle"));
    let vk = home.join("results/image_recognition_v1.vk.json");
    let v = ok(cli(
        &svc,
        &home,
        &[
            "verify",
            "--bundle",
            bundle.to_str().unwrap(),
            "--vk",
            vk.to_str().unwrap(),
        ],
    ));
    assert!(
        v.contains("OK: proof verified") && v.contains("label: 7"),
        "{v}"
    );
    // The operator CLI reads the same files.
    let o = Command::new(env!("CARGO_BIN_EXE_ciro"))
        .args([
            "verify",
            bundle.to_str().unwrap(),
            "--vk",
            vk.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The check by job id uses the key and the input pinned when this machine submitted it.
    let v = ok(cli(&svc, &home, &["verify", "--job-id", &id]));
    assert!(
        v.contains(&format!("input matches the input submitted as job {id}")),
        "{v}"
    );
    assert!(v.contains("input: sha256 "), "{v}");
    // --wait follows a job to the end; a retried submission with the same idempotency key
    // returns the first job and is not charged again.
    let args = [
        "submit-job",
        "--model",
        "image_recognition_v1",
        "--input",
        "./my-image.jpg",
        "--pay-with",
        "starknet",
        "--idempotency-key",
        "order-42",
        "--wait",
    ];
    let waited = ok(cli(&svc, &home, &args));
    assert!(
        waited.contains("verified") && waited.contains("label: 7"),
        "{waited}"
    );
    ok(cli(&svc, &home, &args));
    let list = json(cli(&svc, &home, &["list-jobs", "--json"]));
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{list}");
    let price = jobs[0]["price_micro"].as_i64().unwrap();
    let acct = json(cli(&svc, &home, &["--json", "balance"]));
    assert_eq!(
        acct["balances"][0]["spent_micro"].as_i64().unwrap(),
        2 * price,
        "{acct}"
    );

    proofs_are_checked_against_the_users_input(&svc, &home);

    // Clear errors.
    let o = submit(&svc, &home, "nope", "./my-image.jpg", "starknet");
    assert!(text(&o).contains("unknown model"), "{}", text(&o));
    let o = submit(
        &svc,
        &home,
        "image_recognition_v1",
        "./missing.jpg",
        "starknet",
    );
    assert!(
        text(&o).contains("cannot read ./missing.jpg"),
        "{}",
        text(&o)
    );
    std::fs::write(home.join("bad.jpg"), b"not a jpeg").unwrap();
    let o = submit(&svc, &home, "image_recognition_v1", "bad.jpg", "starknet");
    assert!(text(&o).contains("cannot decode"), "{}", text(&o));
    let o = submit(
        &svc,
        &home,
        "image_recognition_v1",
        "./my-image.jpg",
        "bitcoin",
    );
    assert!(text(&o).contains("unknown chain"), "{}", text(&o));
    let o = cli(&svc, &home, &["--json", "job-status", "--job-id", "999999"]);
    assert!(!o.status.success());
    assert!(json_err(&o).contains("not found"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_ciro-cli"))
        .args([
            "--server",
            "http://127.0.0.1:9",
            "--api-key",
            "x",
            "list-jobs",
        ])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("cannot reach the Ciro service"),
        "{}",
        text(&o)
    );
}

/// A valid proof of another input is refused when checked against the user's input, and
/// `job-result` saves nothing it could not check.
fn proofs_are_checked_against_the_users_input(svc: &Service, home: &Path) {
    let right = fixtures().join("models/mlp_small/input.json");
    let mut other: Value = serde_json::from_slice(&std::fs::read(&right).unwrap()).unwrap();
    let x = &mut other["input_data"][0][0];
    *x = json!(x.as_f64().unwrap() + 0.5);
    let wrong = home.join("other-input.json");
    std::fs::write(&wrong, other.to_string()).unwrap();
    let job = json(cli(
        svc,
        home,
        &[
            "--json",
            "submit-job",
            "--model",
            "mlp_small",
            "--input",
            right.to_str().unwrap(),
            "--pay-with",
            "starknet",
            "--wait",
        ],
    ));
    assert_eq!(job["state"], "verified", "{job}");
    let id = job["id"].to_string();
    ok(cli(
        svc,
        home,
        &["job-result", "--job-id", &id, "-o", "small"],
    ));
    let bundle = home.join(format!("small/job-{id}.bundle"));
    let vk = home.join("small/mlp_small.vk.json");
    let verify = |input: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ciro"))
            .arg("verify")
            .arg(&bundle)
            .arg("--vk")
            .arg(&vk)
            .arg("--input")
            .arg(input)
            .output()
            .unwrap()
    };
    let good = ok(verify(&right));
    assert!(
        good.contains("input matches") && good.contains("OK"),
        "{good}"
    );
    let bad = verify(&wrong);
    assert!(
        !bad.status.success(),
        "a proof of another input passed: {}",
        text(&bad)
    );
    assert!(
        text(&bad).contains("the proof is about another input"),
        "{}",
        text(&bad)
    );

    // A pinned record that disagrees with the proof (as a lying server's proof would):
    // refused, and nothing is written.
    let jobs = home.join("jobs");
    let pin = std::fs::read_dir(&jobs)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(&format!("-{id}.json")))
        .expect("the submission was pinned");
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&pin).unwrap()).unwrap();
    rec["input"][0][0] = json!(rec["input"][0][0].as_f64().unwrap() + 0.5);
    std::fs::write(&pin, rec.to_string()).unwrap();
    let o = cli(
        svc,
        home,
        &["job-result", "--job-id", &id, "-o", "unchecked"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("REJECTED"), "{}", text(&o));
    assert!(
        !home.join("unchecked").exists(),
        "unchecked files were saved"
    );
    let o = cli(svc, home, &["verify", "--job-id", &id]);
    assert!(
        !o.status.success() && text(&o).contains("another input"),
        "{}",
        text(&o)
    );
}

fn json_err(o: &Output) -> String {
    serde_json::from_slice::<Value>(&o.stdout)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_service_killed_while_proving_finishes_the_job_after_restart_and_charges_once() {
    let data = fresh_dir("svc-crash");
    let home = fresh_dir("svc-crash-home");
    let input = fixtures().join("models/cnn_lenet/input.json");
    let mut svc = start(&data);
    ok(cli(&svc, &home, &["signup", "--save"]));
    ok(cli(
        &svc,
        &home,
        &[
            "faucet", "--chain", "polygon", "--token", "USDC", "--amount", "1",
        ],
    ));
    let job = json(cli(
        &svc,
        &home,
        &[
            "--json",
            "submit-job",
            "--model",
            "cnn_lenet",
            "--input",
            input.to_str().unwrap(),
            "--pay-with",
            "polygon",
            "--token",
            "USDC",
        ],
    ));
    let id = job["id"].to_string();
    let price = job["price_micro"].as_i64().unwrap();

    wait_state(&svc, &home, &id, &["proving"], Duration::from_secs(300));
    svc.kill();

    let svc = start(&data);
    let done = wait_state(
        &svc,
        &home,
        &id,
        &["verified", "failed"],
        Duration::from_secs(300),
    );
    assert_eq!(done["state"], "verified", "{done}");
    assert_eq!(
        done["attempts"], 2,
        "the job was not interrupted mid-proof: {done}"
    );
    let acct = json(cli(&svc, &home, &["--json", "balance"]));
    let b = &acct["balances"][0];
    assert_eq!(b["chain"], "polygon");
    assert_eq!(b["spent_micro"].as_i64().unwrap(), price, "{acct}");
    assert_eq!(b["held_micro"].as_i64().unwrap(), 0, "{acct}");
    assert_eq!(
        b["available_micro"].as_i64().unwrap(),
        1_000_000 - price,
        "{acct}"
    );
    let list = json(cli(&svc, &home, &["--json", "list-jobs"]));
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
}

/// plonky2 jobs are aggregated in batches (here every two jobs, or one after 15 s):
/// `ciro-cli verify --job-id` then also checks the job through its batch's aggregate, and the
/// operator's `ciro verify` checks the downloaded aggregate against the job's bundle.
#[test]
fn plonky2_jobs_are_aggregated_in_batches_and_checked_through_them() {
    let data = fresh_dir("svc-batches");
    let home = fresh_dir("svc-batches-home");
    let svc = start_with(&data, &["--batch-size", "2", "--batch-wait-s", "15"]);
    ok(cli(&svc, &home, &["signup", "--name", "batches", "--save"]));
    ok(cli(
        &svc,
        &home,
        &[
            "faucet", "--chain", "polygon", "--token", "USDC", "--amount", "50",
        ],
    ));
    let input = fixtures().join("models/mlp_small/input.json");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = ok(cli(
            &svc,
            &home,
            &[
                "submit-job",
                "--model",
                "mlp_small",
                "--input",
                input.to_str().unwrap(),
                "--pay-with",
                "polygon",
                "--token",
                "USDC",
                "--proof-system",
                "plonky2",
            ],
        ));
        ids.push(out.split_whitespace().nth(1).unwrap().to_string());
    }
    let mut batches = Vec::new();
    for id in &ids {
        wait_state(&svc, &home, id, &["verified"], Duration::from_secs(300));
        let start = Instant::now();
        let batch = loop {
            let j = json(cli(&svc, &home, &["job-status", "--job-id", id, "--json"]));
            if let Some(b) = j["batch"]["id"].as_i64() {
                break (b, j["batch"]["index"].as_i64().unwrap());
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "job {id} never batched: {j}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        batches.push(batch);
    }
    // Two jobs fill a batch; the third waits its 15 s and goes alone.
    assert_eq!(batches[0].0, batches[1].0, "{batches:?}");
    assert_eq!((batches[0].1, batches[1].1), (0, 1));
    assert_ne!(batches[2].0, batches[0].0);
    assert_eq!(batches[2].1, 0);
    for id in &ids {
        let v = json(cli(&svc, &home, &["--json", "verify", "--job-id", id]));
        assert_eq!(v["ok"], true, "{v}");
        assert!(v["batch"]["index"].is_u64(), "{v}");
    }
    let v = ok(cli(&svc, &home, &["verify", "--job-id", &ids[1]]));
    assert!(
        v.contains(&format!(
            "OK: batch {} covers it as statement #1 of 2",
            batches[1].0
        )),
        "{v}"
    );
    // The operator's offline check of the downloaded files.
    ok(cli(
        &svc,
        &home,
        &["job-result", "--job-id", &ids[0], "-o", "r"],
    ));
    let agg_bytes = ureq_get(
        &svc,
        &home,
        &format!("/v1/batches/{}/aggregate", batches[0].0),
    );
    std::fs::write(home.join("b.agg"), agg_bytes).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ciro"))
        .current_dir(&home)
        .args(["verify", "b.agg", "--vk", "r/mlp_small.plonky2.vk.json"])
        .args(["--statement", &format!("r/job-{}.bundle", ids[0])])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("is statement #0"), "{}", text(&o));
}

/// GET with the saved API key (what the web app or an SDK does).
fn ureq_get(svc: &Service, home: &Path, path: &str) -> Vec<u8> {
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(home.join("config.json")).unwrap()).unwrap();
    let key = cfg["api_key"].as_str().unwrap();
    let r = ureq::get(&format!("{}{path}", svc.url))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut out).unwrap();
    out
}

/// SIGTERM while a user follows a job that is not moving: the service stops within seconds
/// (the event stream ends on the stop, not after its 30-minute life), and the follower is told
/// the service is gone.
#[test]
fn sigterm_with_an_open_event_stream_stops_promptly() {
    let home = fresh_dir("sigterm-events");
    let mut svc = start_with(&home.join("data"), &["--workers", "0"]);
    ok(cli(&svc, &home, &["signup", "--save"]));
    ok(cli(
        &svc,
        &home,
        &["faucet", "--chain", "starknet", "--amount", "5"],
    ));
    let input = fixtures().join("models/mlp_small/input.json");
    ok(submit(
        &svc,
        &home,
        "mlp_small",
        input.to_str().unwrap(),
        "starknet",
    ));
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.join("config.json")).unwrap()).unwrap();
    let key = config["api_key"].as_str().unwrap().to_string();
    let client = ciro_client::Client::new(&svc.url, Some(key));
    let follower = std::thread::spawn(move || client.follow(1, Duration::from_secs(120), |_| {}));
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = svc.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the service took {:?} to stop",
        t.elapsed()
    );
    let err = follower.join().unwrap().unwrap_err();
    assert!(
        matches!(err, ciro_client::ClientError::Transport { .. }),
        "{err}"
    );
}
