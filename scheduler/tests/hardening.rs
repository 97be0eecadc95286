//! Issue 19's attacks, each replayed against a running service: the refusal, then that the
//! service still answers and every balance still adds up.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ciro_scheduler::isolate::Isolation;
use ciro_scheduler::{Config, Running, ServiceError};
use common::{config, repo, Api, Body, Spec};
use serde_json::{json, Value};

fn start(c: Config) -> Running {
    ciro_scheduler::start(c).expect("the service starts")
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(repo().join("fixtures").join(path)).unwrap()
}

/// The service answers, and every balance of `key` adds up: credited = available + held + spent.
fn assert_up_and_balanced(api: &Api<'_>, key: &str) {
    let r = api.call("GET", "/healthz", None, Body::None);
    assert_eq!(r.status, 200, "the service is down");
    let a = api.call("GET", "/v1/account", Some(key), Body::None);
    assert_eq!(a.status, 200, "{}", a.error());
    for b in a.json()["balances"].as_array().unwrap() {
        let n = |k: &str| b[k].as_i64().unwrap_or_else(|| panic!("{k} in {b}"));
        assert_eq!(
            n("credited_micro"),
            n("available_micro") + n("held_micro") + n("spent_micro"),
            "{b}"
        );
    }
}

/// Submits an mlp_small job; returns its id.
fn submit_small_job(api: &Api<'_>, key: &str) -> i64 {
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(key),
        Body::Json(json!({
            "model": "mlp_small",
            "input": common::fixture_input("fixtures/models/mlp_small/input.json"),
            "chain": "starknet",
        })),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    r.json()["id"].as_i64().unwrap()
}

fn upload(api: &Api<'_>, key: &str, bytes: &[u8]) -> common::Resp {
    api.call(
        "POST",
        "/v1/models",
        Some(key),
        Body::Raw(bytes, "application/octet-stream"),
    )
}

fn listed(api: &Api<'_>) -> Vec<String> {
    api.call("GET", "/v1/models", None, Body::None).json()["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn hostile_models_are_refused_before_anything_is_allocated() {
    let spec = Spec::load();
    let svc = start(config("hostile-models", 0));
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("attacker", 10);
    let before = listed(&api);
    // (file, what the refusal must say)
    let cases = [
        ("ops/huge_input.onnx", "1000000000000 elements"),
        ("ops/huge_constant.onnx", "1000000000000 elements"),
        (
            "ops/huge_macs.onnx",
            "needs 1811939328 multiply-accumulates per inference, more than the limit of 67108864",
        ),
        (
            "ops/bad_image_spec.onnx",
            "metadata ciro.image: an image of 1000000×1000000",
        ),
    ];
    for (file, want) in cases {
        let start = Instant::now();
        let r = upload(&api, &key, &fixture(file));
        assert_eq!(r.status, 422, "{file}: {}", r.error());
        assert!(r.error().contains(want), "{file}: {}", r.error());
        // Refused from the static shapes: no compilation, no key generation.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{file} took {:?}",
            start.elapsed()
        );
        // No server path leaks into the message.
        assert!(
            !r.error().contains(env!("CARGO_TARGET_TMPDIR")),
            "{}",
            r.error()
        );
        assert_up_and_balanced(&api, &key);
    }
    assert_eq!(listed(&api), before, "a refused model must not be listed");
}

#[test]
fn an_upload_that_kills_its_checker_is_quarantined_and_never_loaded_again() {
    let spec = Spec::load();
    let checker = || vec![env!("CARGO_BIN_EXE_ciro-check-upload").into()];
    let mut c = config("quarantine", 0);
    let mut iso = Isolation::new(checker());
    iso.memory_bytes = 1 << 30;
    c.isolation = Some(iso);
    let dir = c.data_dir.clone();
    let svc = start(c.clone());
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("uploader", 10);
    // Within the child's limits: compiled in the child, published once its keys exist.
    let small = fixture("models/mlp_mnist/model.onnx");
    let r = upload(&api, &key, &small);
    assert_eq!(r.status, 201, "{}", r.error());
    let small_name = r.json()["name"].as_str().unwrap().to_string();
    assert!(listed(&api).contains(&small_name));
    svc.stop();

    // The same service with 128 MiB for the checker: a 1.8M-MAC model exhausts it.
    let mut iso = Isolation::new(checker());
    iso.memory_bytes = 128 << 20;
    c.isolation = Some(iso);
    let svc = start(c.clone());
    let api = Api::new(svc.url(), &spec);
    let big = fixture("models/mlp_1024/model.onnx");
    let r = upload(&api, &key, &big);
    assert_eq!(r.status, 422, "{}", r.error());
    assert!(r.error().contains("quarantined"), "{}", r.error());
    let big_name = r.error().split_whitespace().nth(1).unwrap().to_string();
    assert!(big_name.starts_with("m-"), "{}", r.error());
    assert_up_and_balanced(&api, &key);
    // Uploaded again: refused at once, without running anything.
    let start_t = Instant::now();
    let r = upload(&api, &key, &big);
    assert_eq!(r.status, 422);
    assert!(r.error().contains("is quarantined"), "{}", r.error());
    assert!(start_t.elapsed() < Duration::from_secs(2));
    assert!(!listed(&api).contains(&big_name));
    svc.stop();

    // A restart neither loads nor lists it, and the staging folders an interrupted upload
    // leaves are swept once they are an hour old (a fresh one may be another node's).
    let stale = dir.join("models/uploads/.tmp-deadbeef");
    let fresh = dir.join("models/uploads/.tmp-0123abcd");
    for d in [&stale, &fresh] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("m-0000000000000000.onnx"), b"junk").unwrap();
    }
    std::fs::File::open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    c.warm_models = true;
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let names = listed(&api);
    assert!(
        names.contains(&small_name) && !names.contains(&big_name),
        "{names:?}"
    );
    assert!(
        !stale.exists(),
        "the stale staging folder is swept at start"
    );
    assert!(fresh.exists(), "a fresh staging folder is left alone");
    assert_up_and_balanced(&api, &key);
}

#[test]
fn parallel_uploads_of_the_same_bytes_all_get_the_model() {
    let spec = Spec::load();
    let svc = start(config("parallel-uploads", 0));
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("racer", 0);
    let bytes = fixture("models/mlp_mnist/model.onnx");
    let names: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let r = upload(&api, &key, &bytes);
                    assert!(r.status == 201, "{} {}", r.status, r.error());
                    r.json()["name"].as_str().unwrap().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(names.windows(2).all(|w| w[0] == w[1]), "{names:?}");
}

/// A PNG whose header declares `w × h` grey pixels, with an empty image stream: decoding it
/// would allocate `w·h` bytes.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit greyscale
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

#[test]
fn a_decompression_bomb_image_is_refused_and_nothing_is_held() {
    use base64::Engine;
    let spec = Spec::load();
    let svc = start(config("image-bomb", 0));
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("bomber", 10);
    let before = api.balance(&key);
    let png = png_header_only(100_000, 100_000);
    let r = api.call(
        "POST",
        "/v1/jobs",
        Some(&key),
        Body::Json(json!({
            "model": "image_recognition_v1",
            "image_base64": base64::engine::general_purpose::STANDARD.encode(&png),
            "chain": "starknet",
        })),
    );
    assert_eq!(r.status, 400, "{}", r.error());
    assert!(r.json()["code"] == "bad_image", "{}", r.error());
    assert!(r.error().contains("limit"), "{}", r.error());
    assert_eq!(api.balance(&key), before, "a refused request holds nothing");
    assert_up_and_balanced(&api, &key);
}

#[test]
fn the_faucet_is_off_unless_enabled_and_capped_when_on() {
    let spec = Spec::load();
    let mut c = config("faucet-off", 0);
    c.dev_faucet = false;
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("nobody", 0);
    let credit = |api: &Api<'_>, key: &str, micro: i64| {
        api.call(
            "POST",
            "/v1/faucet",
            Some(key),
            Body::Json(json!({ "chain": "starknet", "token": "CIRO", "amount_micro": micro })),
        )
    };
    let r = credit(&api, &key, 1_000_000);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "faucet_disabled", "{}", r.error());
    svc.stop();

    let mut c = config("faucet-cap", 0);
    c.faucet_cap_micro = 1_000_000_000;
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("greedy", 0);
    assert_eq!(credit(&api, &key, 600_000_000).status, 200);
    let r = credit(&api, &key, 600_000_000);
    assert_eq!(r.status, 403, "{}", r.error());
    assert_eq!(r.json()["code"], "faucet_cap", "{}", r.error());
    assert_eq!(api.balance(&key)["available_micro"], 600_000_000);
    assert_up_and_balanced(&api, &key);
}

#[test]
fn sign_ups_and_faucet_requests_are_rate_limited() {
    let spec = Spec::load();
    let mut c = config("rates", 0);
    c.rate_per_minute = 3;
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let signup = || api.call("POST", "/v1/accounts", None, Body::Json(json!({})));
    let key = signup().json()["api_key"].as_str().unwrap().to_string();
    assert_eq!(signup().status, 201);
    assert_eq!(signup().status, 201);
    let r = signup();
    assert_eq!(r.status, 429, "{}", r.error());
    assert_eq!(r.json()["code"], "rate_limited");
    let faucet = || {
        api.call(
            "POST",
            "/v1/faucet",
            Some(&key),
            Body::Json(json!({ "chain": "starknet", "token": "CIRO", "amount_micro": 1 })),
        )
        .status
    };
    assert_eq!(
        [faucet(), faucet(), faucet(), faucet()],
        [200, 200, 200, 429]
    );
    assert_up_and_balanced(&api, &key);
}

#[test]
fn half_sent_requests_are_dropped_and_connections_are_capped_per_client() {
    let spec = Spec::load();
    let mut c = config("slowloris", 0);
    c.http.header_timeout = Duration::from_secs(1);
    c.http.max_connections_per_ip = 8;
    let svc = start(c);
    let open = || {
        let mut s = TcpStream::connect(svc.addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let mut held: Vec<TcpStream> = (0..8).map(|_| open()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // One more from the same address: closed at once.
    let mut extra = open();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the 9th connection must be closed");
    assert!(t.elapsed() < Duration::from_secs(2));
    // The half-sent ones are dropped after the header timeout.
    for s in &mut held {
        let t = Instant::now();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "held for {:?}",
            t.elapsed()
        );
        assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("after", 1);
    assert_up_and_balanced(&api, &key);
}

#[test]
fn every_rejection_is_json_without_server_paths() {
    let svc = start(config("json-errors", 0));
    let agent = ureq::AgentBuilder::new().build();
    let raw = |method: &str, path: &str| -> (u16, Value) {
        let r = match agent
            .request(method, &format!("{}{path}", svc.url()))
            .call()
        {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        let status = r.status();
        let text = r.into_string().unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"));
        (status, v)
    };
    let (s, v) = raw("DELETE", "/v1/models");
    assert_eq!(
        (s, v["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{v}"
    );
    let (s, v) = raw("GET", "/v1/models/%ff%fe");
    assert!(s == 400 || s == 404, "{s} {v}");
    let (s, v) = raw("GET", "/nope");
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let key = {
        let r = agent
            .post(&format!("{}/v1/accounts", svc.url()))
            .send_json(json!({}))
            .unwrap();
        r.into_json::<Value>().unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = agent
        .get(&format!("{}/v1/jobs?limit=lots", svc.url()))
        .set("Authorization", &format!("Bearer {key}"))
        .call();
    let Err(ureq::Error::Status(400, r)) = r else {
        panic!("a bad query must be a 400")
    };
    let v: Value = r.into_json().unwrap();
    assert_eq!(v["code"], "bad_query", "{v}");
}

#[test]
fn a_second_service_on_the_same_data_directory_is_refused() {
    let c = config("locked", 0);
    let first = start(c.clone());
    match ciro_scheduler::start(c.clone()) {
        Err(ServiceError::Locked(d)) => assert!(d.contains("locked"), "{d}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("two services ran on one data directory"),
    }
    drop(first);
    // Free again once the first has stopped.
    drop(start(c));
}

#[test]
fn a_job_left_in_flight_by_a_lost_worker_is_swept_back_without_a_restart() {
    let spec = Spec::load();
    let mut c = config("sweep", 0);
    c.sweep_interval = Duration::from_millis(500);
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("patient", 10);
    let id = submit_small_job(&api, &key);
    // A worker claims it and is lost before recording anything (a full disk, a crash): its
    // lease is not renewed and runs out.
    let claimed = svc
        .shared
        .store
        .claim_next(&ciro_scheduler::store::Claim {
            worker: "lost",
            lease: Duration::from_millis(500),
            proof_systems: &[],
        })
        .unwrap()
        .unwrap();
    assert_eq!(claimed.doc.id, id);
    let start_t = Instant::now();
    loop {
        let j = api
            .call("GET", &format!("/v1/jobs/{id}"), Some(&key), Body::None)
            .json();
        if j["state"] == "queued" {
            break;
        }
        assert!(
            start_t.elapsed() < Duration::from_secs(10),
            "never swept: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still held (it will be proved), and nothing charged.
    let b = api.balance(&key);
    assert_eq!(b["spent_micro"], 0, "{b}");
    assert!(b["held_micro"].as_i64().unwrap() > 0, "{b}");
    assert_up_and_balanced(&api, &key);
}

#[test]
fn halo2_key_generation_is_refused_past_the_row_cap() {
    let spec = Spec::load();
    let mut c = config("halo2-cap", 0);
    c.max_halo2_k = 10;
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    // mlp_mnist needs 2^15 rows on halo2: refused before an SRS or a key is made.
    let r = api.call(
        "GET",
        "/v1/models/mlp_mnist/vk?proof_system=halo2",
        None,
        Body::None,
    );
    assert_eq!(r.status, 422, "{}", r.error());
    assert!(
        r.error().contains("more than the 2^10 allowed"),
        "{}",
        r.error()
    );
    let key = api.funded_account("evm", 10);
    assert_up_and_balanced(&api, &key);
}

#[test]
fn a_job_past_the_time_limit_fails_and_releases_its_hold_even_if_its_worker_hangs() {
    let spec = Spec::load();
    let mut c = config("time-limit", 0);
    c.sweep_interval = Duration::from_millis(300);
    c.job_time_limit = Duration::from_secs(1);
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("stuck", 10);
    let before = api.balance(&key);
    let id = submit_small_job(&api, &key);
    // A worker takes it and hangs, renewing its lease: only the time limit can free it.
    svc.shared
        .store
        .claim_next(&ciro_scheduler::store::Claim {
            worker: "hung",
            lease: Duration::from_secs(3600),
            proof_systems: &[],
        })
        .unwrap()
        .unwrap();
    let start_t = Instant::now();
    let j = loop {
        let j = api
            .call("GET", &format!("/v1/jobs/{id}"), Some(&key), Body::None)
            .json();
        if j["state"] == "failed" {
            break j;
        }
        assert!(
            start_t.elapsed() < Duration::from_secs(10),
            "never failed: {j}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(j["error"].as_str().unwrap().contains("time limit"), "{j}");
    assert_eq!(
        api.balance(&key),
        before,
        "the hold is released, nothing charged"
    );
    // A proof the hung worker stores afterwards changes nothing.
    assert!(!svc
        .shared
        .store
        .record_proof(id, "hung", b"late", &json!({}), 1.0, 1.0)
        .unwrap());
    svc.shared.store.record_verified(id, "hung", 1.0).unwrap();
    assert_eq!(api.balance(&key), before);
    assert_up_and_balanced(&api, &key);
}

/// A fault hook that acts on the first job it sees only.
fn first_job_only(done: &std::sync::atomic::AtomicBool) -> bool {
    !done.swap(true, std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn a_panic_in_a_worker_step_fails_the_job_and_the_worker_goes_on() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let spec = Spec::load();
    let mut c = config("worker-panic", 1);
    c.fault_hook = Some(|_| {
        if first_job_only(&DONE) {
            panic!("injected fault");
        }
    });
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("panicky", 10);
    let before = api.balance(&key);
    let first = api.wait(&key, submit_small_job(&api, &key));
    assert_eq!(first["state"], "failed", "{first}");
    let error = first["error"].as_str().unwrap();
    assert!(
        error.contains("internal error") && error.contains("injected fault"),
        "{first}"
    );
    assert_eq!(api.balance(&key), before, "the hold is released");
    // The same (only) worker proves the next job.
    let second = api.wait(&key, submit_small_job(&api, &key));
    assert_eq!(second["state"], "verified", "{second}");
    let b = api.balance(&key);
    assert!(b["spent_micro"].as_i64().unwrap() > 0, "{b}");
    assert_eq!(b["held_micro"], 0, "{b}");
    assert_up_and_balanced(&api, &key);
}

#[test]
fn a_hung_worker_step_is_failed_by_the_time_limit_and_the_worker_goes_on() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let spec = Spec::load();
    let mut c = config("worker-hang", 1);
    c.sweep_interval = Duration::from_millis(300);
    c.job_time_limit = Duration::from_secs(1);
    c.fault_hook = Some(|_| {
        if first_job_only(&DONE) {
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("hung", 10);
    let before = api.balance(&key);
    let id = submit_small_job(&api, &key);
    let first = api.wait(&key, id);
    assert_eq!(first["state"], "failed", "{first}");
    assert!(
        first["error"].as_str().unwrap().contains("time limit"),
        "{first}"
    );
    assert_eq!(api.balance(&key), before, "the hold is released at once");
    // The worker wakes, proves the failed job to no effect, then proves the next one.
    let second = api.wait(&key, submit_small_job(&api, &key));
    assert_eq!(second["state"], "verified", "{second}");
    let again = api
        .call("GET", &format!("/v1/jobs/{id}"), Some(&key), Body::None)
        .json();
    assert_eq!(again["state"], "failed", "{again}");
    let b = api.balance(&key);
    assert_eq!(b["held_micro"], 0, "{b}");
    assert_eq!(
        b["spent_micro"].as_i64().unwrap(),
        before["available_micro"].as_i64().unwrap() - b["available_micro"].as_i64().unwrap(),
        "only the second job is charged: {b}"
    );
    assert_up_and_balanced(&api, &key);
}

#[test]
fn expensive_requests_past_the_slots_get_busy_not_a_queue() {
    use base64::Engine;
    let spec = Spec::load();
    let mut c = config("busy", 0);
    c.http.max_expensive = 1;
    let svc = start(c);
    let api = Api::new(svc.url(), &spec);
    let key = api.funded_account("crowd", 10);
    let png = std::fs::read(repo().join("fixtures/images/my-image.jpg")).unwrap();
    let job = || {
        api.call(
            "POST",
            "/v1/jobs",
            Some(&key),
            Body::Json(json!({
                "model": "image_recognition_v1",
                "image_base64": base64::engine::general_purpose::STANDARD.encode(&png),
                "chain": "starknet",
            })),
        )
    };
    // Another request holds the only slot.
    let held = svc.shared.expensive.clone().try_acquire_owned().unwrap();
    let r = job();
    assert_eq!(r.status, 503, "{}", r.error());
    assert_eq!(r.json()["code"], "busy");
    drop(held);
    assert_eq!(job().status, 201);
    assert_up_and_balanced(&api, &key);
}
