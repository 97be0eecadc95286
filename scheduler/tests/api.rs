//! The HTTP API end to end, every exchange checked against openapi.json.

mod common;

use base64::Engine;
use ciro_prover::{KeyFile, ProofBundle, StwoVerifyingKey};
use common::{fixture_input, repo, start, Api, Body, Spec};
use serde_json::{json, Value};

fn job_body(model: &str, input: serde_json::Value) -> Body<'static> {
    Body::Json(json!({ "model": model, "input": input, "chain": "starknet", "token": "CIRO" }))
}

/// A job paid on Ethereum is proved with halo2 by default: its result carries the calldata, which
/// the model's Solidity verifier (generated from the published halo2 key) accepts in a local EVM.
/// An explicit `proof_system` overrides the chain's default.
#[test]
fn an_ethereum_job_is_proved_with_halo2_and_its_calldata_passes_the_evm_verifier() {
    let spec = Spec::load();
    let svc = start("api-halo2", 1);
    let api = Api::new(svc.url(), &spec);
    let alice = api.funded_account("alice-eth", 0);
    for chain in ["ethereum", "polygon"] {
        let r = api.call(
            "POST",
            "/v1/faucet",
            Some(&alice),
            Body::Json(json!({ "chain": chain, "token": "CIRO", "amount_micro": 10_000_000 })),
        );
        assert_eq!(r.status, 200, "{}", r.error());
    }
    let info = api
        .call("GET", "/v1/models/mlp_small", None, Body::None)
        .json();
    let halo2_price = info["price_halo2_micro"].as_i64().unwrap();
    assert!(halo2_price > info["price_micro"].as_i64().unwrap());
    let input = fixture_input("fixtures/models/mlp_small/input.json");
    let body = |chain: &str, system: Option<&str>| {
        let mut b = json!({ "model": "mlp_small", "input": input, "chain": chain });
        if let Some(s) = system {
            b["proof_system"] = json!(s);
        }
        Body::Json(b)
    };
    let r = api.call("POST", "/v1/jobs", Some(&alice), body("ethereum", None));
    assert_eq!(r.status, 201, "{}", r.error());
    let job = r.json();
    assert_eq!(job["proof_system"], "halo2");
    assert_eq!(job["price_micro"].as_i64().unwrap(), halo2_price);
    let id = job["id"].as_i64().unwrap();
    // Follow it live: the event stream shows each change once, in lifecycle order, and ends
    // with the final state.
    let events = api.call(
        "GET",
        &format!("/v1/jobs/{id}/events"),
        Some(&alice),
        Body::None,
    );
    assert_eq!(events.status, 200, "{}", events.error());
    let jobs = sse_jobs(&events.bytes);
    let states: Vec<&str> = jobs.iter().map(|j| j["state"].as_str().unwrap()).collect();
    let order = ["queued", "proving", "proved", "verified"];
    let rank = |s: &str| order.iter().position(|o| *o == s).unwrap();
    assert!(
        states.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&"verified"), "{states:?}");
    let done = api
        .call("GET", &format!("/v1/jobs/{id}"), Some(&alice), Body::None)
        .json();
    assert_eq!(jobs.last().unwrap(), &done);
    assert_eq!(done["state"], "verified", "{done}");
    let result = api
        .call(
            "GET",
            &format!("/v1/jobs/{id}/result"),
            Some(&alice),
            Body::None,
        )
        .json();
    let calldata = hex::decode(
        result["evm_calldata"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
    )
    .unwrap();
    let proof = api.call(
        "GET",
        &format!("/v1/jobs/{id}/proof"),
        Some(&alice),
        Body::None,
    );
    let bundle = ProofBundle::from_bytes(&proof.bytes).unwrap();
    let vk_bytes = api
        .call(
            "GET",
            "/v1/models/mlp_small/vk?proof_system=halo2",
            None,
            Body::None,
        )
        .bytes;
    let vk: ciro_prover::Halo2VerifyingKey = serde_json::from_slice(&vk_bytes).unwrap();
    ciro_verifier::verify(&vk, &bundle).expect("the downloaded proof verifies");
    assert_eq!(calldata, ciro_verifier::evm::calldata(&bundle).unwrap());
    let verifier = ciro_verifier::evm::evm_verifier(&vk).unwrap();
    let mut chain = ciro_verifier::evm::LocalEvm::default();
    let deployed = chain.deploy(&verifier).unwrap();
    assert!(chain.call(deployed.entry, &calldata).unwrap().accepted);

    // Polygon with an explicit stwo proof; an unknown proof system is refused.
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&alice),
        body("polygon", Some("stwo")),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    assert_eq!(r.json()["proof_system"], "stwo");
    // plonky2 on request: the downloaded proof verifies under the published plonky2 key.
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&alice),
        body("polygon", Some("plonky2")),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let id = r.json()["id"].as_i64().unwrap();
    let done = api.wait(&alice, id);
    assert_eq!(done["state"], "verified", "{done}");
    assert_eq!(done["proof_system"], "plonky2");
    let proof = api.call(
        "GET",
        &format!("/v1/jobs/{id}/proof"),
        Some(&alice),
        Body::None,
    );
    let vk = api.published_key("mlp_small", "plonky2");
    assert_eq!(vk.backend(), ciro_prover::BackendId::Plonky2);
    let bundle = ProofBundle::from_bytes(&proof.bytes).unwrap();
    ciro_verifier::verify(vk.as_ref(), &bundle).expect("the plonky2 proof verifies");
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&alice),
        body("ethereum", Some("groth16")),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.error().contains("stwo, halo2 or plonky2"),
        "{}",
        r.error()
    );
    let r = api.call(
        "GET",
        "/v1/models/mlp_small/vk?proof_system=plonky3",
        None,
        Body::None,
    );
    assert_eq!(r.status, 400, "{}", r.error());
}

/// The `job` events of a server-sent event stream, each event's data parsed as JSON.
fn sse_jobs(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("the event stream is UTF-8");
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l == "event: job"))
        .map(|block| {
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            serde_json::from_str(&data).expect("an event's data is a job document")
        })
        .collect()
}

#[test]
fn job_lifecycle_accounts_and_ledger_follow_the_openapi_document() {
    let spec = Spec::load();
    let svc = start("api-lifecycle", 1);
    let api = Api::new(svc.url(), &spec);

    let health = api.call("GET", "/healthz", None, Body::None);
    assert_eq!(health.status, 200);
    // The embedded store, and this service's worker reporting itself.
    let start_t = std::time::Instant::now();
    let health = loop {
        let h = api.call("GET", "/v1/health", None, Body::None).json();
        if h["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            break h;
        }
        assert!(
            start_t.elapsed() < std::time::Duration::from_secs(30),
            "{h}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(health["store"], "sqlite", "{health}");
    assert_eq!(health["workers"][0]["id"], svc.shared.worker_id.as_str());
    assert_eq!(health["workers"][0]["concurrency"], 1, "{health}");
    assert_eq!(
        api.call("GET", "/v1/openapi.json", None, Body::None).status,
        200
    );

    let alice = api.funded_account("alice", 10);
    let bob = api.funded_account("bob", 10);

    // The registry serves the fixtures by name, with their price and key.
    let models = api.call("GET", "/v1/models", None, Body::None).json();
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for want in [
        "image_recognition_v1",
        "mlp_small",
        "mlp_mnist",
        "cnn_lenet",
        "act_mix",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let info = api
        .call("GET", "/v1/models/mlp_small", None, Body::None)
        .json();
    let price = info["price_micro"].as_i64().unwrap();
    assert!(price > 0);
    let vk_bytes = api
        .call("GET", "/v1/models/mlp_small/vk", None, Body::None)
        .bytes;
    let vk: StwoVerifyingKey = serde_json::from_slice(&vk_bytes).unwrap();
    assert_eq!(vk.commitment(), info["commitment"].as_str().unwrap());

    // Submit with an idempotency key, then retry: one job, one hold.
    let input = fixture_input("fixtures/models/mlp_small/input.json");
    let headers = [("Idempotency-Key", "retry-me")];
    let first = api.call_with(
        "POST",
        "/v1/jobs",
        Some(&alice),
        &headers,
        job_body("mlp_small", input.clone()),
    );
    assert_eq!(first.status, 201, "{}", first.error());
    let job = first.json();
    assert_eq!(job["price_micro"].as_i64().unwrap(), price);
    let again = api.call_with(
        "POST",
        "/v1/jobs",
        Some(&alice),
        &headers,
        job_body("mlp_small", input.clone()),
    );
    assert_eq!(again.status, 200, "{}", again.error());
    assert_eq!(again.json()["id"], job["id"]);
    let id = job["id"].as_i64().unwrap();

    let done = api.wait(&alice, id);
    assert_eq!(done["state"], "verified", "{done}");
    for t in [
        "queue_wait_ms",
        "witness_ms",
        "prove_ms",
        "verify_ms",
        "total_ms",
    ] {
        assert!(done["timings"][t].as_f64().is_some(), "{t} missing: {done}");
    }
    assert_eq!(done["attempts"], 1);

    // The result and the proof; the proof verifies offline with the published key.
    let result = api
        .call(
            "GET",
            &format!("/v1/jobs/{id}/result"),
            Some(&alice),
            Body::None,
        )
        .json();
    assert_eq!(result["verified"], true);
    let proof = api.call(
        "GET",
        &format!("/v1/jobs/{id}/proof"),
        Some(&alice),
        Body::None,
    );
    assert_eq!(proof.status, 200);
    let bundle = ProofBundle::from_bytes(&proof.bytes).unwrap();
    let verified = ciro_verifier::verify(&vk, &bundle).expect("the downloaded proof verifies");
    let outputs: Vec<Vec<f64>> = verified.outputs.iter().map(|t| t.real()).collect();
    assert_eq!(json!(outputs), result["outputs"]);

    // The metrics count it: the job by state, its prove time in the histogram, the worker.
    let metrics = api.call("GET", "/metrics", None, Body::None);
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.bytes);
    for line in [
        "ciro_jobs{state=\"verified\"} 1",
        "ciro_queue_depth 0",
        "ciro_workers 1",
        "ciro_prove_seconds_count{model=\"mlp_small\",proof_system=\"stwo\"} 1",
        "ciro_prove_seconds_bucket{le=\"+Inf\",model=\"mlp_small\",proof_system=\"stwo\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }

    // Charged exactly once, after verification.
    let b = api.balance(&alice);
    assert_eq!(b["spent_micro"].as_i64().unwrap(), price);
    assert_eq!(b["held_micro"].as_i64().unwrap(), 0);
    assert_eq!(b["available_micro"].as_i64().unwrap(), 10_000_000 - price);

    // Another key sees none of it.
    for path in [
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/result"),
        format!("/v1/jobs/{id}/proof"),
        format!("/v1/jobs/{id}/events"),
    ] {
        let r = api.call("GET", &path, Some(&bob), Body::None);
        assert_eq!(r.status, 404, "{path}: {}", r.error());
    }
    assert_eq!(
        api.call(
            "POST",
            &format!("/v1/jobs/{id}/cancel"),
            Some(&bob),
            Body::None
        )
        .status,
        404
    );
    let bobs = api.call("GET", "/v1/jobs", Some(&bob), Body::None).json();
    assert_eq!(bobs["jobs"].as_array().unwrap().len(), 0);
    let alices = api
        .call("GET", "/v1/jobs?limit=10", Some(&alice), Body::None)
        .json();
    assert_eq!(alices["jobs"].as_array().unwrap().len(), 1);

    // An image upload to the digit classifier: the bundled 7.
    let image = std::fs::read(repo().join("fixtures/images/my-image.jpg")).unwrap();
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&bob),
        Body::Json(json!({
            "model": "image_recognition_v1",
            "image_base64": base64::engine::general_purpose::STANDARD.encode(&image),
            "chain": "starknet",
        })),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let digit = api.wait(&bob, r.json()["id"].as_i64().unwrap());
    assert_eq!(digit["state"], "verified", "{digit}");
    assert_eq!(digit["result"]["label"], "7");

    // An uploaded model, compiled once and cached by content hash.
    let onnx = std::fs::read(repo().join("fixtures/ops/gemm.onnx")).unwrap();
    let up = api.call(
        "POST",
        "/v1/models",
        Some(&alice),
        Body::Raw(&onnx, "application/octet-stream"),
    );
    assert_eq!(up.status, 201, "{}", up.error());
    let name = up.json()["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("m-"));
    let again = api.call(
        "POST",
        "/v1/models",
        Some(&alice),
        Body::Raw(&onnx, "application/octet-stream"),
    );
    assert_eq!(again.json()["name"], name.as_str());
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&alice),
        job_body(&name, fixture_input("fixtures/ops/gemm.json")),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let j = api.wait(&alice, r.json()["id"].as_i64().unwrap());
    assert_eq!(j["state"], "verified", "{j}");
    svc.stop();

    // Cancelling needs a job that is still queued: a service with no workers keeps it there.
    let idle = start("api-cancel", 0);
    let api = Api::new(idle.url(), &spec);
    let carol = api.funded_account("carol", 1);
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&carol),
        job_body("mlp_small", input),
    );
    let id = r.json()["id"].as_i64().unwrap();
    let held = api.balance(&carol);
    assert_eq!(held["held_micro"].as_i64().unwrap(), price);
    let c = api.call(
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        Some(&carol),
        Body::None,
    );
    assert_eq!(c.status, 200, "{}", c.error());
    assert_eq!(c.json()["state"], "cancelled");
    let after = api.balance(&carol);
    assert_eq!(after["held_micro"].as_i64().unwrap(), 0);
    assert_eq!(after["spent_micro"].as_i64().unwrap(), 0);
    assert_eq!(after["available_micro"].as_i64().unwrap(), 1_000_000);
    let twice = api.call(
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        Some(&carol),
        Body::None,
    );
    assert_eq!(twice.status, 409);
    let not_ready = api.call(
        "GET",
        &format!("/v1/jobs/{id}/result"),
        Some(&carol),
        Body::None,
    );
    assert_eq!(not_ready.status, 409);
    assert_eq!(
        api.call(
            "GET",
            &format!("/v1/jobs/{id}/proof"),
            Some(&carol),
            Body::None
        )
        .status,
        409
    );
    // Batches (aggregated plonky2 jobs; the batch test makes real ones): none here.
    for path in ["/v1/batches/1", "/v1/batches/1/aggregate"] {
        assert_eq!(api.call("GET", path, Some(&carol), Body::None).status, 404);
    }
    idle.stop();

    let missing: Vec<_> = spec
        .operations()
        .difference(&spec.covered.lock().unwrap())
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "operations never exercised: {missing:?}"
    );
}

#[test]
fn bad_requests_get_clear_4xx_answers_and_the_service_keeps_serving() {
    let spec = Spec::load();
    let svc = start("api-bad", 0);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("dave", 1);
    let input = fixture_input("fixtures/models/mlp_small/input.json");
    let post = |body: Body<'_>| api.call("POST", "/v1/jobs", Some(&key), body);

    let cases: Vec<(&str, common::Resp, u16, &str)> = vec![
        (
            "no key",
            api.call("GET", "/v1/jobs", None, Body::None),
            401,
            "missing API key",
        ),
        (
            "wrong key",
            api.call("GET", "/v1/jobs", Some("ciro_nope"), Body::None),
            401,
            "unknown API key",
        ),
        (
            "bad JSON",
            post(Body::Raw(b"{\"model\": ", "application/json")),
            400,
            "invalid JSON",
        ),
        (
            "unknown field",
            post(Body::Json(
                json!({"model": "mlp_small", "chain": "starknet", "inputs": []}),
            )),
            400,
            "unknown field",
        ),
        (
            "unknown model",
            post(job_body("resnet9000", input.clone())),
            400,
            "unknown model",
        ),
        (
            "unknown chain",
            post(Body::Json(
                json!({"model": "mlp_small", "input": input, "chain": "solana"}),
            )),
            400,
            "unknown chain",
        ),
        (
            "unknown token",
            post(Body::Json(
                json!({"model": "mlp_small", "input": input, "chain": "polygon", "token": "DOGE"}),
            )),
            400,
            "unknown token",
        ),
        (
            "wrong shape",
            post(job_body("mlp_small", json!({"input_data": [[0.5, 0.25]]}))),
            400,
            "2 values",
        ),
        (
            "out of range",
            post(job_body(
                "mlp_small",
                json!({"input_data": [vec![1e6; 64]]}),
            )),
            400,
            "outside the declared input range",
        ),
        (
            "no input",
            post(Body::Json(
                json!({"model": "mlp_small", "chain": "starknet"}),
            )),
            400,
            "exactly one of",
        ),
        (
            "image to a tensor model",
            post(Body::Json(
                json!({"model": "mlp_small", "image_base64": "AAAA", "chain": "starknet"}),
            )),
            400,
            "takes no images",
        ),
        (
            "not base64",
            post(Body::Json(
                json!({"model": "image_recognition_v1", "image_base64": "%%%", "chain": "starknet"}),
            )),
            400,
            "not base64",
        ),
        (
            "not an image",
            post(Body::Json(
                json!({"model": "image_recognition_v1", "image_base64": "aGVsbG8=", "chain": "starknet"}),
            )),
            400,
            "cannot decode",
        ),
        (
            "no balance on that chain",
            post(Body::Json(
                json!({"model": "mlp_small", "input": input, "chain": "ethereum", "token": "USDC"}),
            )),
            402,
            "no balance on ethereum in USDC",
        ),
        (
            "malformed ONNX",
            api.call(
                "POST",
                "/v1/models",
                Some(&key),
                Body::Raw(
                    &std::fs::read(repo().join("fixtures/ops/malformed.onnx")).unwrap(),
                    "application/octet-stream",
                ),
            ),
            422,
            "cannot compile the uploaded model",
        ),
        (
            "empty upload",
            api.call(
                "POST",
                "/v1/models",
                Some(&key),
                Body::Raw(b"", "application/octet-stream"),
            ),
            422,
            "empty",
        ),
        (
            "unknown model key",
            api.call("GET", "/v1/models/nope/vk", None, Body::None),
            404,
            "unknown model",
        ),
        (
            "bad faucet",
            api.call(
                "POST",
                "/v1/faucet",
                Some(&key),
                Body::Json(json!({"chain": "starknet", "token": "CIRO", "amount_micro": -5})),
            ),
            400,
            "faucet credits",
        ),
        (
            "bad job id",
            api.call("GET", "/v1/jobs/abc", Some(&key), Body::None),
            404,
            "not found",
        ),
    ];
    for (what, r, status, text) in &cases {
        assert_eq!(r.status, *status, "{what}: {}", r.error());
        assert!(
            r.error().contains(text),
            "{what}: {:?} lacks {text:?}",
            r.error()
        );
    }

    // An oversized body: 413 with a message, or, when the server answers before the client has
    // finished sending, a connection the server closed. Either way the service keeps serving.
    let big = vec![b' '; 5 << 20];
    let r = ureq::post(&format!("{}/v1/jobs", api.url))
        .set("Authorization", &format!("Bearer {key}"))
        .set("Content-Type", "application/json")
        .send_bytes(&big);
    match r {
        Err(ureq::Error::Status(413, resp)) => {
            let text = resp.into_string().unwrap();
            assert!(text.contains("length limit"), "{text}");
        }
        Err(ureq::Error::Transport(t)) => eprintln!("oversized: connection closed early ({t})"),
        other => panic!("an oversized body was not refused: {other:?}"),
    }
    assert_eq!(api.call("GET", "/healthz", None, Body::None).status, 200);

    // The same idempotency key for a different request is refused, not silently reused.
    let h = [("Idempotency-Key", "k1")];
    let a = api.call_with(
        "POST",
        "/v1/jobs",
        Some(&key),
        &h,
        job_body("mlp_small", input.clone()),
    );
    assert_eq!(a.status, 201, "{}", a.error());
    let mut other = input.clone();
    other["input_data"][0][0] = json!(0.0);
    let b = api.call_with(
        "POST",
        "/v1/jobs",
        Some(&key),
        &h,
        job_body("mlp_small", other),
    );
    assert_eq!(b.status, 422, "{}", b.error());

    // Nothing above was charged beyond the one accepted job, and the service still answers.
    let bal = api.balance(&key);
    assert_eq!(bal["held_micro"], a.json()["price_micro"]);
    assert_eq!(
        api.call("GET", "/healthz", None, Body::None).json()["queued"],
        1
    );
    svc.stop();
}

/// Verified plonky2 jobs are aggregated two at a time: each job names its batch and index,
/// `GET /v1/batches/{id}` lists the statements and the caller's own jobs, and the downloaded
/// aggregate verifies and covers each job's downloaded proof under the published key.
#[test]
fn plonky2_jobs_are_aggregated_into_batches_that_cover_them() {
    let spec = Spec::load();
    let mut config = common::config("api-batches", 1);
    config.batch_size = 2;
    config.batch_wait = std::time::Duration::from_secs(600);
    let svc = ciro_scheduler::start(config).expect("the service starts");
    let api = Api::new(svc.url(), &spec);
    let alice = api.funded_account("alice-batch", 10);
    let bob = api.funded_account("bob-batch", 10);
    let input = fixture_input("fixtures/models/mlp_small/input.json");
    let submit = |key: &str| {
        let r = api.call(
            "POST",
            "/v1/jobs",
            Some(key),
            Body::Json(json!({ "model": "mlp_small", "input": input, "chain": "starknet", "proof_system": "plonky2" })),
        );
        assert_eq!(r.status, 201, "{}", r.error());
        r.json()["id"].as_i64().unwrap()
    };
    let jobs = [(alice.clone(), submit(&alice)), (bob.clone(), submit(&bob))];
    let mut refs = Vec::new();
    for (key, id) in &jobs {
        assert_eq!(api.wait(key, *id)["state"], "verified");
        let start = std::time::Instant::now();
        loop {
            let j = api
                .call("GET", &format!("/v1/jobs/{id}"), Some(key), Body::None)
                .json();
            if !j["batch"].is_null() {
                refs.push((
                    j["batch"]["id"].as_i64().unwrap(),
                    j["batch"]["index"].as_i64().unwrap(),
                ));
                break;
            }
            assert!(
                start.elapsed().as_secs() < 300,
                "job {id} never batched: {j}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert_eq!(refs[0].0, refs[1].0);
    assert_eq!((refs[0].1, refs[1].1), (0, 1));
    let batch = refs[0].0;
    let b = api
        .call(
            "GET",
            &format!("/v1/batches/{batch}"),
            Some(&alice),
            Body::None,
        )
        .json();
    assert_eq!(b["state"], "aggregated", "{b}");
    assert_eq!(b["proofs"], 2);
    assert_eq!(b["statements"].as_array().unwrap().len(), 2);
    assert_eq!(
        b["your_jobs"],
        json!([{ "job": jobs[0].1, "index": 0 }]),
        "only alice's own job"
    );
    let agg = api.call(
        "GET",
        &format!("/v1/batches/{batch}/aggregate"),
        Some(&bob),
        Body::None,
    );
    assert_eq!(agg.status, 200);
    let agg = ciro_prover::plonky2_backend::aggregate::Aggregate::from_bytes(&agg.bytes).unwrap();
    let vk = api.published_key("mlp_small", "plonky2");
    for (i, (key, id)) in jobs.iter().enumerate() {
        let proof = api.call(
            "GET",
            &format!("/v1/jobs/{id}/proof"),
            Some(key),
            Body::None,
        );
        let bundle = ProofBundle::from_bytes(&proof.bytes).unwrap();
        let v = ciro_verifier::aggregate::verify(&agg, std::slice::from_ref(&vk), Some(&bundle))
            .expect("the aggregate covers the job");
        assert!(v.covers.contains(&i), "{:?}", v.covers);
        assert!(v.statements.iter().all(|(_, confirmed)| *confirmed));
    }
    assert_eq!(
        api.call("GET", "/v1/batches/999", Some(&alice), Body::None)
            .status,
        404
    );
    assert_eq!(
        api.call("GET", &format!("/v1/batches/{batch}"), None, Body::None)
            .status,
        401
    );
}

/// The Rust client library reads every document the service writes (one definition for both
/// sides): a typed job flow, live events, downloads, and errors carrying the API's codes.
#[test]
fn the_rust_client_library_runs_a_job_with_typed_documents() {
    use ciro_client::types::{JobRequest, JobState, ModelEntry};
    use ciro_client::{Client, ClientError};

    let svc = start("api-client-lib", 1);
    let mut client = Client::new(&svc.url(), None);
    assert!(matches!(client.account(), Err(ClientError::NoKey)));
    let created = client.signup(Some("typed")).unwrap();
    assert_eq!(client.api_key(), Some(created.api_key.as_str()));

    // No balance: the API's code and status come through.
    let input = fixture_input("fixtures/models/mlp_small/input.json");
    let req = JobRequest {
        model: "mlp_small".into(),
        input: Some(input),
        chain: "starknet".into(),
        ..Default::default()
    };
    let e = client.submit_job(&req, None).unwrap_err();
    assert_eq!(e.code(), Some("insufficient_balance"), "{e}");
    assert_eq!(e.status(), Some(402));

    let account = client.faucet("starknet", "CIRO", 5_000_000).unwrap();
    assert_eq!(account.balances[0].available_micro, 5_000_000);
    let models = client.models().unwrap();
    let Some(ModelEntry::Model(info)) = models.models.iter().find(|m| m.name() == "mlp_small")
    else {
        panic!("mlp_small is listed: {models:?}");
    };
    assert_eq!(info.prices_micro["stwo"], info.price_micro);

    let job = client.submit_job(&req, Some("typed-1")).unwrap();
    assert_eq!(job.price_micro, info.price_micro);
    let again = client.submit_job(&req, Some("typed-1")).unwrap();
    assert_eq!(
        again.id, job.id,
        "the idempotency key returns the first job"
    );
    let mut states = Vec::new();
    let done = client
        .follow(job.id, std::time::Duration::from_secs(300), |j| {
            states.push(j.state)
        })
        .unwrap();
    assert_eq!(done.state, JobState::Verified, "{done:?}");
    assert_eq!(states.last(), Some(&JobState::Verified));
    assert_eq!(client.job(job.id).unwrap(), done);

    let result = client.result(job.id).unwrap();
    assert!(result.verified);
    assert_eq!(result.model_commitment, info.commitment);
    let bundle = ProofBundle::from_bytes(&client.proof(job.id).unwrap()).unwrap();
    let key = ciro_prover::load_verifying_key(&client.verifying_key("mlp_small", "stwo").unwrap())
        .unwrap();
    let verified = ciro_verifier::verify(key.as_ref(), &bundle).unwrap();
    let outputs: Vec<Vec<f64>> = verified.outputs.iter().map(|t| t.real()).collect();
    assert_eq!(outputs, result.outputs);
    assert_eq!(client.jobs(Some(10)).unwrap().jobs[0].id, job.id);

    let e = client.result(i64::MAX).unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "{e}");
    let e = client.cancel(job.id).unwrap_err();
    assert_eq!(e.code(), Some("not_cancellable"), "{e}");
}

/// An event stream on a job that is not moving (no workers) shows its state at once, stays
/// open, and ends promptly when the service stops, so a shutdown never waits on a follower.
/// Streams per account are capped; a refused follower polls.
#[test]
fn an_open_event_stream_ends_when_the_service_stops() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    let spec = Spec::load();
    let svc = start("api-events-stop", 0);
    let api = Api::new(svc.url(), &spec);
    let alice = api.funded_account("follower", 10);
    let input = fixture_input("fixtures/models/mlp_small/input.json");
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&alice),
        job_body("mlp_small", input),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let id = r.json()["id"].as_i64().unwrap();

    let resp = ureq::get(&format!("{}/v1/jobs/{id}/events", svc.url()))
        .set("Authorization", &format!("Bearer {alice}"))
        .call()
        .unwrap();
    assert_eq!(resp.content_type(), "text/event-stream");
    let mut lines = std::io::BufReader::new(resp.into_reader()).lines();
    let first: Vec<String> = lines
        .by_ref()
        .map(|l| l.unwrap())
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(first.contains(&"event: job".to_string()), "{first:?}");
    assert!(
        first.iter().any(|l| l.contains("\"state\":\"queued\"")),
        "{first:?}"
    );

    let reader = std::thread::spawn(move || lines.map_while(Result::ok).count());

    // An account holds at most 8 streams: the 9th is refused with `busy`, and a follower then
    // polls instead (the Rust client's `follow` sees the job cancelled all the same).
    let held: Vec<_> = (0..7)
        .map(|_| {
            ureq::get(&format!("{}/v1/jobs/{id}/events", svc.url()))
                .set("Authorization", &format!("Bearer {alice}"))
                .call()
                .unwrap()
        })
        .collect();
    let refused = api.call(
        "GET",
        &format!("/v1/jobs/{id}/events"),
        Some(&alice),
        Body::None,
    );
    assert_eq!(refused.status, 503, "{}", refused.error());
    assert!(refused.error().contains("poll"), "{}", refused.error());
    let follower = {
        let client = ciro_client::Client::new(&svc.url(), Some(alice.clone()));
        std::thread::spawn(move || client.follow(id, Duration::from_secs(60), |_| {}))
    };
    std::thread::sleep(Duration::from_millis(700));
    let r = api.call(
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        Some(&alice),
        Body::None,
    );
    assert_eq!(r.status, 200, "{}", r.error());
    let done = follower
        .join()
        .unwrap()
        .expect("the follower polls to the end");
    assert_eq!(done.state, ciro_client::types::JobState::Cancelled);
    drop(held);

    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    svc.stop();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
    reader
        .join()
        .expect("the stream ends once the service stops");
}
